// Packets as they travel: the decoded view of an incoming frame.
#pragma once

#include <msgpack.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tern::transport {

enum class packet_kind {
  request,  ///< {id, pattern, data[, meta]}: wants replies
  event,    ///< {pattern, data[, meta]}: no id, no reply
  reply,    ///< {id, response | err, isDisposed}
  goaway,   ///< {goaway: true}: the service drains; send new calls elsewhere
};

/// A decoded packet. The msgpack objects live in the zone given to the
/// decoder and may point into the receive buffer, as `response` does: they
/// are valid until the next frame is decoded on that connection.
struct packet {
  packet_kind kind = packet_kind::event;
  /// request, reply: the id. On a wire whose ids are any JSON value
  /// (NestJS's), a request's is a hash of packed_id, and a reply's the
  /// number its id string spells (0 if none: no call of ours).
  std::uint64_t id = 0;
  /// request, on a wire whose ids are any JSON value: the id as the peer
  /// sent it, as packed msgpack, which the replies echo; empty otherwise.
  std::string_view packed_id;
  msgpack::object pattern;          ///< request, event: a string or a map (not interpreted here)
  std::string_view packed_pattern;  ///< request, event: the pattern's msgpack bytes
  msgpack::object data;             ///< request, event: nil when absent
  msgpack::object meta;             ///< optional map (request id, deadline, trace context)
  /// request: meta's `deadline_ms`, the time its caller still waited when it
  /// sent it (a duration, so clocks need not agree); none when absent or not
  /// an unsigned integer.
  std::optional<std::chrono::milliseconds> deadline;
  std::string_view response;      ///< reply: the value's msgpack bytes, valid when has_response
  msgpack::object err;            ///< reply: valid when has_err
  msgpack::zone* zone = nullptr;  ///< the decoder's zone, for objects made from `response`
  bool has_meta = false;
  bool has_response = false;
  bool has_err = false;
  bool disposed = false;      ///< reply: the last frame for this id
  bool status_error = false;  ///< reply: top-level `status: "error"` (NestJS's no-handler form)

  /// Whether this reply ends its call (an error always does).
  [[nodiscard]] bool final() const noexcept { return disposed || has_err; }
};

/// The request a reply answers: its id and, on a wire whose ids are any
/// JSON value (NestJS's), the id as received (packet::packed_id), which the
/// reply echoes unchanged.
struct reply_to {
  reply_to(std::uint64_t i) noexcept : id(i) {}  // NOLINT(google-explicit-constructor): tern's ids
  reply_to(std::uint64_t i, std::string_view packed) noexcept : id(i), packed_id(packed) {}
  std::uint64_t id;
  std::string_view packed_id;
};

/// A frame that breaks the protocol: oversized, undecodable, or of the wrong
/// shape. The connection it came on is closed, unless the frame is a
/// packet_error that names its id.
class protocol_violation : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A whole frame whose packet cannot be accepted (a value nested too deep,
/// malformed bytes inside a value, a field of the wrong type), with what
/// could still be read of it. The frame's length delimited it, so the
/// stream is intact: a packet whose id was read is answered (server) or
/// fails its call (client) on its own, and the connection stays open.
class packet_error : public protocol_violation {
 public:
  packet_error(const std::string& what, std::optional<std::uint64_t> id, bool well_formed,
               bool has_pattern, std::string packed_id = {})
      : protocol_violation(what),
        id_(id),
        well_formed_(well_formed),
        has_pattern_(has_pattern),
        packed_id_(std::move(packed_id)) {}
  /// The packet's `id`, when it could be read.
  [[nodiscard]] std::optional<std::uint64_t> id() const noexcept { return id_; }
  /// Where to send the answer to the refused request (id() is set).
  [[nodiscard]] reply_to to() const noexcept { return {id_.value_or(0), packed_id_}; }
  /// The frame holds exactly one msgpack map, whatever its depth.
  [[nodiscard]] bool well_formed() const noexcept { return well_formed_; }
  /// The map has a `pattern` key (a request, or without an id an event).
  [[nodiscard]] bool has_pattern() const noexcept { return has_pattern_; }

 private:
  std::optional<std::uint64_t> id_;
  bool well_formed_;
  bool has_pattern_;
  std::string packed_id_;
};

}  // namespace tern::transport
