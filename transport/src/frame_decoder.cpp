#include "tern/transport/frame_decoder.hpp"

namespace tern::transport {

frame_result frame_decoder::next(const char* data, std::size_t size) const noexcept {
  if (size < frame_header_size) return {frame_status::need_more};
  auto b = reinterpret_cast<const unsigned char*>(data);
  std::uint32_t len = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) |
                      (std::uint32_t{b[2]} << 8) | std::uint32_t{b[3]};
  if (len > max_frame_) return {frame_status::too_large, len, frame_header_size};
  if (size - frame_header_size < len) return {frame_status::need_more, len, frame_header_size};
  return {frame_status::complete, len, frame_header_size};
}

void write_frame_header(char* out, std::uint32_t length) noexcept {
  out[0] = static_cast<char>(length >> 24);
  out[1] = static_cast<char>(length >> 16);
  out[2] = static_cast<char>(length >> 8);
  out[3] = static_cast<char>(length);
}

}  // namespace tern::transport
