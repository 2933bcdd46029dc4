// The protocol's own messages, which ride on the ordinary packet shapes so
// that peers that predate them handle them by the rules they already have
// (docs/protocol.md, "Control messages").
#pragma once

#include <asio/cancellation_signal.hpp>

#include <cstdint>
#include <string_view>

namespace tern::transport {

/// An event {pattern: "tern.cancel", data: id}: the caller no longer waits
/// for request `id`. An older service drops it as an event it has no
/// handler for.
inline constexpr std::string_view cancel_pattern = "tern.cancel";
/// A request {id, pattern: "tern.ping"}: a keep-alive probe. tern services
/// answer {id, isDisposed: true} at once; any reply, a no-handler one from
/// an older peer included, shows the peer is alive.
inline constexpr std::string_view ping_pattern = "tern.ping";

/// A request's work that its caller can stop: its cancel event, or the
/// connection's end, sets `stopped` and emits `signal` (terminal).
struct cancellable {
  enum class reason : std::uint8_t { none, cancelled, closed };
  asio::cancellation_signal signal;
  reason stopped = reason::none;
};

}  // namespace tern::transport
