// The seam between connections and the bytes on the wire.
#pragma once

#include "tern/transport/byte_buffer.hpp"
#include "tern/transport/frame_decoder.hpp"
#include "tern/transport/function_ref.hpp"
#include "tern/transport/packet.hpp"

#include <msgpack.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace tern::transport {

/// msgpack's packer over a byte_buffer, able to splice in bytes that are
/// already packed (a value that came off the wire, or a cached encoding).
class packer : public msgpack::packer<byte_buffer> {
 public:
  explicit packer(byte_buffer& out) : msgpack::packer<byte_buffer>(out), out_(out) {}
  /// Appends `packed`, which must be exactly one msgpack value.
  void pack_packed(std::string_view packed) { out_.write(packed.data(), packed.size()); }

 private:
  byte_buffer& out_;
};
/// Writes one msgpack value (data, response or err) with the given packer.
using value_writer = function_ref<void(packer&)>;
/// Decodes one packed msgpack value into `zone`; with `reference`, strings,
/// binaries and extensions point into `packed`. Throws protocol_violation
/// for truncated, malformed or too deeply nested bytes, or trailing bytes.
msgpack::object decode_value(std::string_view packed, msgpack::zone& zone, bool reference);
/// decode_value() into a zone of its own, which the handle owns (no
/// pointers into `packed` remain).
msgpack::object_handle decode_owned(std::string_view packed);

/// One value of a reply, as its frame is read: its msgpack bytes, and the
/// decoded object on demand. Both are valid during the sink's call only.
class value_view {
 public:
  value_view(std::string_view packed, msgpack::zone& zone) noexcept
      : packed_(packed), zone_(zone) {}
  /// Exactly one msgpack value, as it came off the wire (a relay copies or
  /// transcodes these without decoding).
  [[nodiscard]] std::string_view packed() const noexcept { return packed_; }
  /// The value as an object (decoded on the first call; strings point into
  /// the receive buffer). Throws protocol_violation if it does not decode.
  [[nodiscard]] const msgpack::object& object() const {
    if (!decoded_) {
      object_ = decode_value(packed_, zone_, true);
      decoded_ = true;
    }
    return object_;
  }

 private:
  std::string_view packed_;
  msgpack::zone& zone_;
  mutable msgpack::object object_;
  mutable bool decoded_ = false;
};

/// Receives each value of a reply while its frame is being read: the view
/// is valid during the call only (convert or copy what it needs there).
/// A sink may throw: its call then ends with errc::decode_error, and later
/// values of that reply are dropped; other calls are not affected.
using value_sink = function_ref<void(const value_view&)>;

/// Framing plus packet encoding for one wire format.
///
/// Values (data, response, err, pattern, meta) are msgpack inside the
/// framework whatever the wire says; a codec for another format (NestJS's
/// JSON `length#` frames) transcodes them. Codecs are stateless and shared:
/// every method is const and thread-safe.
///
/// Encoders append one whole frame to `out`. A frame whose body would exceed
/// max_frame() is not appended and protocol_violation is thrown.
class codec {
 public:
  virtual ~codec() = default;

  /// Whether the front of [data, data + size) holds a whole frame. While
  /// it does not, `length` may be a lower bound of the body (the caller
  /// need not ask again before header + length bytes are there). Throws
  /// protocol_violation for a frame header that can never be valid.
  [[nodiscard]] virtual frame_result next_frame(const char* data, std::size_t size) const = 0;

  /// Decodes a frame body. With `reference`, strings and binaries may point
  /// into [body, body + size) instead of being copied into `zone`.
  /// Throws packet_error for an undecodable or wrongly shaped packet, with
  /// its id when that can still be read.
  virtual void decode(const char* body, std::size_t size, msgpack::zone& zone, bool reference,
                      packet& out) const = 0;

  /// {id, pattern, data[, meta]}; `packed_pattern`/`packed_meta` are msgpack
  /// bytes (meta empty = none). A `deadline` above zero is the time the
  /// caller still waits, written as meta's first key `deadline_ms`.
  virtual void encode_request(byte_buffer& out, std::uint64_t id, std::string_view packed_pattern,
                              std::string_view packed_meta, std::chrono::milliseconds deadline,
                              value_writer data) const = 0;
  /// {pattern, data[, meta]}
  virtual void encode_event(byte_buffer& out, std::string_view packed_pattern,
                            std::string_view packed_meta, value_writer data) const = 0;
  /// {id, response, isDisposed} or, with a null response writer, {id, isDisposed: true}.
  virtual void encode_response(byte_buffer& out, reply_to to, const value_writer* response,
                               bool disposed) const = 0;
  /// {id, err, isDisposed: true}
  virtual void encode_error(byte_buffer& out, reply_to to, value_writer err) const = 0;
  /// {id, status: "error", err: "There is no matching message handler ..."}
  virtual void encode_no_handler(byte_buffer& out, reply_to to) const = 0;
  /// {goaway: true}, a service's notice that it drains; returns false (and
  /// appends nothing) for a wire format that has no such packet.
  virtual bool encode_goaway(byte_buffer& out) const {
    (void)out;
    return false;
  }

  /// {pattern: "tern.cancel", data: id}: the caller gave up on request
  /// `id`. Returns false (and appends nothing) for a wire format that has
  /// no such packet.
  virtual bool encode_cancel(byte_buffer& out, std::uint64_t id) const {
    (void)out;
    (void)id;
    return false;
  }

  [[nodiscard]] virtual std::uint32_t max_frame() const noexcept = 0;
};

}  // namespace tern::transport
