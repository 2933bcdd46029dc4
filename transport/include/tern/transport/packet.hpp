// Packets as they travel: the decoded view of an incoming frame.
#pragma once

#include <msgpack.hpp>

#include <cstdint>
#include <stdexcept>
#include <string_view>

namespace tern::transport {

enum class packet_kind {
  request,  ///< {id, pattern, data[, meta]}: wants replies
  event,    ///< {pattern, data[, meta]}: no id, no reply
  reply,    ///< {id, response | err, isDisposed}
};

/// A decoded packet. The msgpack objects live in the zone given to the
/// decoder and may point into the receive buffer, as `response` does: they
/// are valid until the next frame is decoded on that connection.
struct packet {
  packet_kind kind = packet_kind::event;
  std::uint64_t id = 0;
  msgpack::object pattern;          ///< request, event: a string or a map (not interpreted here)
  std::string_view packed_pattern;  ///< request, event: the pattern's msgpack bytes
  msgpack::object data;             ///< request, event: nil when absent
  msgpack::object meta;             ///< optional map (request id, deadline, trace context)
  std::string_view response;        ///< reply: the value's msgpack bytes, valid when has_response
  msgpack::object err;              ///< reply: valid when has_err
  msgpack::zone* zone = nullptr;    ///< the decoder's zone, for objects made from `response`
  bool has_meta = false;
  bool has_response = false;
  bool has_err = false;
  bool disposed = false;      ///< reply: the last frame for this id
  bool status_error = false;  ///< reply: top-level `status: "error"` (NestJS's no-handler form)

  /// Whether this reply ends its call (an error always does).
  [[nodiscard]] bool final() const noexcept { return disposed || has_err; }
};

/// A frame that breaks the protocol: oversized, undecodable, or of the wrong
/// shape. The connection it came on is closed.
class protocol_violation : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tern::transport
