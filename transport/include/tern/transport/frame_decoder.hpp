// Length-prefixed framing as a pure, I/O-free function of the bytes received.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tern::transport {

/// Size of the frame header: a 4-byte big-endian unsigned body length.
inline constexpr std::size_t frame_header_size = 4;
/// Default largest frame body accepted or sent: 16 MiB.
inline constexpr std::uint32_t default_max_frame = 16u * 1024 * 1024;

/// What the front of a receive buffer holds.
enum class frame_status {
  complete,   ///< a whole frame: body at [header, header + length)
  need_more,  ///< not yet a whole frame; `length` is the body size when the header is in
  too_large,  ///< the header announces more than the limit: a protocol error
};

struct frame_result {
  frame_status status;
  std::uint32_t length = 0;  ///< body length, once the header has arrived
  std::uint32_t header = 0;  ///< header length, once the header has arrived (0 before)
  /// Bytes the whole frame takes (header + body) once the header is in.
  [[nodiscard]] std::size_t total() const noexcept { return std::size_t{header} + length; }
};

/// Decides, from the bytes at the front of a buffer, whether a whole frame is
/// there. Stateless and allocation-free: the caller keeps the bytes and calls
/// again after consuming `total()` bytes (many frames per read are handled by
/// a loop in the caller) or after more bytes arrive. A length over the limit
/// is reported before any memory for it is reserved.
class frame_decoder {
 public:
  explicit frame_decoder(std::uint32_t max_frame = default_max_frame) noexcept
      : max_frame_(max_frame) {}

  [[nodiscard]] frame_result next(const char* data, std::size_t size) const noexcept;
  [[nodiscard]] std::uint32_t max_frame() const noexcept { return max_frame_; }

 private:
  std::uint32_t max_frame_;
};

/// Writes `length` as the 4-byte big-endian header at `out`.
void write_frame_header(char* out, std::uint32_t length) noexcept;

}  // namespace tern::transport
