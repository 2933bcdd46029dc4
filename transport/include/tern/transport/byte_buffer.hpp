// A growable byte buffer that msgpack::packer can write into.
#pragma once

#include <cstddef>
#include <cstring>
#include <vector>

namespace tern::transport {

/// Contiguous bytes appended at the end; the write side of a connection.
/// Not thread-safe. Pointers into it are invalidated by any append.
class byte_buffer {
 public:
  /// Appends n bytes (the msgpack "stream" concept).
  void write(const char* p, std::size_t n) {
    std::size_t old = size_;
    grow(n);
    std::memcpy(buf_.data() + old, p, n);
  }
  /// Appends n uninitialized bytes and returns where they start.
  char* extend(std::size_t n) {
    std::size_t old = size_;
    grow(n);
    return buf_.data() + old;
  }
  [[nodiscard]] char* data() noexcept { return buf_.data(); }
  [[nodiscard]] const char* data() const noexcept { return buf_.data(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  void clear() noexcept { size_ = 0; }
  /// Drops everything from position n on (n <= size()).
  void truncate(std::size_t n) noexcept { size_ = n; }
  void swap(byte_buffer& o) noexcept {
    buf_.swap(o.buf_);
    std::swap(size_, o.size_);
  }
  /// Releases memory beyond `keep` bytes of capacity (after a burst).
  void shrink_to(std::size_t keep) {
    if (buf_.size() > keep && size_ <= keep) {
      buf_.resize(keep);
      buf_.shrink_to_fit();
    }
  }

 private:
  void grow(std::size_t n) {
    if (size_ + n > buf_.size()) buf_.resize(std::max(size_ + n, buf_.size() * 2 + 256));
    size_ += n;
  }
  std::vector<char> buf_;
  std::size_t size_ = 0;
};

}  // namespace tern::transport
