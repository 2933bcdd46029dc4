// What one call may say about itself (light: no Asio, no msgpack).
#pragma once

#include <chrono>
#include <string_view>

namespace tern {

struct call_options {
  /// How long to wait for the reply; zero means client_options::timeout.
  std::chrono::milliseconds timeout{0};
  /// A deadline the call must not outlive, whatever its timeout: the call
  /// ends at min(now + timeout, deadline). A handler passes its own
  /// (message_context::deadline(), or all of message_context::forward()),
  /// so a call made for a request ends when that request's caller stops
  /// waiting. Already passed: the call fails with errc::deadline_exceeded
  /// without being sent.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  /// The packet's `meta`: one packed msgpack map (request id, trace
  /// context, identity travel there), or empty for none. Must stay valid
  /// until the call has been sent (the awaiting frame). The remaining time
  /// is added to it as `deadline_ms` (docs/protocol.md).
  std::string_view meta{};
  /// The call may run twice (a read, or a write the service deduplicates):
  /// it is retried on another endpoint after failures (retry_options).
  bool idempotent = false;
};

}  // namespace tern
