// Request ids and W3C trace context (traceparent, tracestate), as they travel
// in a packet's `meta` from the gateway to services and on to nested calls.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tern {

/// The `meta` keys tern sets (docs/protocol.md, "meta").
inline constexpr std::string_view meta_request_id = "request_id";
inline constexpr std::string_view meta_traceparent = "traceparent";
inline constexpr std::string_view meta_tracestate = "tracestate";
/// The caller's verified identity, a map: {"sub": str, "roles": [str],
/// "scopes": [str], "claims": {name: value}} (set by the gateway's auth
/// policy; message_context reads it).
inline constexpr std::string_view meta_identity = "identity";

/// True for a request id worth keeping: 1 to 128 characters of
/// [A-Za-z0-9._:-].
[[nodiscard]] bool valid_request_id(std::string_view id) noexcept;
/// 128 random bits as 32 lower-case hex digits (a new request id).
[[nodiscard]] std::string new_request_id();

/// A parsed `traceparent`: version 00 fields, in lower-case hex.
struct trace_parent {
  char trace_id[32];
  char parent_id[16];
  std::uint8_t flags = 0;
  [[nodiscard]] std::string_view trace() const noexcept { return {trace_id, 32}; }
  [[nodiscard]] std::string_view parent() const noexcept { return {parent_id, 16}; }
};

/// Parses a W3C traceparent header value (version 00, or a later version
/// read as 00 where the spec says so); false if it is not valid (then the
/// receiver starts a new trace).
[[nodiscard]] bool parse_traceparent(std::string_view text, trace_parent& out) noexcept;
/// A new trace: random trace id and parent id, flags 01 (sampled).
[[nodiscard]] trace_parent new_trace() noexcept;
/// The same trace with a new random span id as the parent: the value to
/// send on a call made while handling `t`.
[[nodiscard]] trace_parent child_of(const trace_parent& t) noexcept;
/// "00-<trace id>-<parent id>-<flags>" (55 characters) appended to `out`.
void append_traceparent(const trace_parent& t, std::string& out);
/// True if `text` may be forwarded as `tracestate` (at most 512 printable
/// ASCII characters; its list syntax is the vendors' business).
[[nodiscard]] bool valid_tracestate(std::string_view text) noexcept;

/// Appends a packed msgpack map of the request id, traceparent,
/// tracestate and identity (each left out when empty or null): a call's
/// `meta`. `identity` is an already packed msgpack value (see
/// meta_identity). Appends nothing when there is neither a request id, a
/// parent nor an identity (tracestate alone means nothing).
void append_trace_meta(std::string& out, std::string_view request_id, const trace_parent* parent,
                       std::string_view tracestate, std::string_view identity = {});

}  // namespace tern
