// A growable byte buffer that msgpack::packer can write into.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace tern::transport {

/// Contiguous bytes appended at the end; the write side of a connection.
/// Not thread-safe. Pointers into it are invalidated by any append.
///
/// msgpack's packer writes every token through write(), a few bytes at a
/// time, so the room check and copy stay inline and only growing is a call.
class byte_buffer {
 public:
  byte_buffer() = default;
  byte_buffer(const byte_buffer&) = delete;
  byte_buffer& operator=(const byte_buffer&) = delete;
  ~byte_buffer() { std::free(data_); }

  /// Appends n bytes (the msgpack "stream" concept).
  [[gnu::always_inline]] void write(const char* p, std::size_t n) {
    if (capacity_ - size_ < n) grow(n);
    if (n != 0) std::memcpy(data_ + size_, p, n);  // p may be null when n is 0
    size_ += n;
  }
  /// Appends n uninitialized bytes and returns where they start.
  char* extend(std::size_t n) {
    if (capacity_ - size_ < n) grow(n);
    char* at = data_ + size_;
    size_ += n;
    return at;
  }
  [[nodiscard]] char* data() noexcept { return data_; }
  [[nodiscard]] const char* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  void clear() noexcept { size_ = 0; }
  /// Drops everything from position n on (n <= size()).
  void truncate(std::size_t n) noexcept { size_ = n; }
  void swap(byte_buffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }
  /// Releases memory beyond `keep` bytes of capacity (after a burst).
  void shrink_to(std::size_t keep) {
    if (capacity_ > keep && size_ <= keep) reallocate(keep);
  }

 private:
  // Makes room for n more bytes: at least doubles, so appends are amortized O(1).
  [[gnu::noinline]] void grow(std::size_t n) {
    std::size_t want = size_ + n;
    reallocate(want > 2 * capacity_ + 256 ? want : 2 * capacity_ + 256);
  }
  void reallocate(std::size_t capacity) {
    auto* p = static_cast<char*>(std::realloc(data_, capacity));
    if (!p && capacity != 0) throw std::bad_alloc();
    data_ = p;
    capacity_ = capacity;
  }

  char* data_ = nullptr;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace tern::transport
