// NestJS's own TCP wire: `<length>#<JSON>` frames, so tern services answer
// NestJS clients and tern clients call NestJS services.
#pragma once

#include "tern/transport/codec.hpp"

#include <algorithm>

namespace tern::transport {

/// NestJS's TCP transport as @nestjs/microservices 10 to 12 write it
/// (docs/nestjs-migration.md has the whole mapping):
///
/// - A frame is the decimal length of its JSON text in UTF-16 code units
///   (JavaScript's string length, not bytes), `#`, then the JSON as UTF-8.
///   The length is counted exactly from the UTF-8 as it arrives, so a
///   character split across reads is safe. Leading whitespace before the
///   digits is accepted, as NestJS accepts it; any other prefix, a frame
///   that ends inside a character or is not UTF-8 close the connection. A
///   frame that is not one JSON object is answered with 400 when its id can
///   still be read (a lone surrogate escape, which JavaScript writes, is
///   read as U+FFFD first), and closes the connection otherwise. max_frame() limits the frame's
///   bytes, checked before anything is allocated for it, and values may nest max_msgpack_depth
///   levels, as on tern's own wire.
/// - Packets are NestJS's: requests {pattern, data, id} with string ids
///   (any JSON id a peer sends is echoed as sent), events {pattern, data}
///   with an object pattern flattened to its JSON text, replies
///   {response, id}, {response, isDisposed, id}, {err, isDisposed, id},
///   {isDisposed, id}, and the no-handler reply {id, status: "error", err}.
///   Replies carry no other key (a NestJS 12 client would take the whole
///   packet as the response). NestJS 12's `metadata` is tern's `meta`.
/// - Values are msgpack inside tern and JSON on this wire: strings, numbers,
///   booleans, null, arrays and objects map both ways; integers are
///   written exactly (JavaScript reads those past 2^53 rounded, as its
///   JSON.parse does) and read exactly when they fit 64 bits (else as the
///   nearest double); binaries and extensions are written as base64
///   strings and arrive back as strings; non-finite floats become null.
/// - NestJS has no cancel, goaway or keep-alive packets: none are sent
///   (a tern client's keep-alive ping is an ordinary request, which a
///   NestJS service answers with its no-handler error, proof enough that
///   it is alive).
class nestjs_codec final : public codec {
 public:
  /// `max_frame`: the largest frame, in bytes (at most 1 GiB).
  explicit nestjs_codec(std::uint32_t max_frame = default_max_frame) noexcept
      : max_frame_(std::min<std::uint32_t>(max_frame, 1u << 30)) {}

  [[nodiscard]] frame_result next_frame(const char* data, std::size_t size) const override;
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
  [[nodiscard]] std::uint32_t max_frame() const noexcept override { return max_frame_; }

 private:
  std::uint32_t max_frame_;
};

/// The number of UTF-16 code units the UTF-8 text `s` is in JavaScript:
/// one per character below U+10000, two above (each byte that does not
/// start a valid sequence counts one, as a decoder's U+FFFD would).
std::size_t utf16_length(std::string_view s) noexcept;

}  // namespace tern::transport
