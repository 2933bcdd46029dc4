// The native wire format: 4-byte big-endian length + msgpack map.
#pragma once

#include "tern/transport/codec.hpp"

namespace tern::transport {

/// Frames of a 4-byte big-endian body length followed by a msgpack map with
/// NestJS's packet keys; docs/protocol.md is the full specification.
class msgpack_codec final : public codec {
 public:
  explicit msgpack_codec(std::uint32_t max_frame = default_max_frame) noexcept
      : decoder_(max_frame) {}

  [[nodiscard]] frame_result next_frame(const char* data, std::size_t size) const override {
    return decoder_.next(data, size);
  }
  void decode(const char* body, std::size_t size, msgpack::zone& zone, bool reference,
              packet& out) const override;
  void encode_request(byte_buffer& out, std::uint64_t id, std::string_view packed_pattern,
                      std::string_view packed_meta, std::chrono::milliseconds deadline,
                      value_writer data) const override;
  void encode_event(byte_buffer& out, std::string_view packed_pattern, std::string_view packed_meta,
                    value_writer data) const override;
  void encode_response(byte_buffer& out, reply_to to, const value_writer* response,
                       bool disposed) const override;
  void encode_error(byte_buffer& out, reply_to to, value_writer err) const override;
  void encode_no_handler(byte_buffer& out, reply_to to) const override;
  bool encode_goaway(byte_buffer& out) const override;
  bool encode_cancel(byte_buffer& out, std::uint64_t id) const override;
  [[nodiscard]] std::uint32_t max_frame() const noexcept override { return decoder_.max_frame(); }

 private:
  frame_decoder decoder_;
};

}  // namespace tern::transport
