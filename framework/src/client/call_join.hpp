// The calls of one send (or of one send_raw_all): each call's attempts
// (a pick, a send, retries within the budget), its cancellation, and the
// join that completes once every call has ended. Internal to framework/
// (docs/architecture.md, "The client").
#pragma once

#include "core.hpp"

#include "tern/call_options.hpp"

#include <optional>
#include <span>

namespace tern::detail {

struct call_join;

/// One call on its way: its attempts and its outcome. Lives in the
/// awaiting frame until run() returns.
struct call_slot {
  transport::call_state state;
  client_core* owner = nullptr;
  call_join* all = nullptr;
  endpoint_ptr ep;  // of the attempt in flight, or of the last one
  std::shared_ptr<transport::client_connection> conn;
  endpoint_ptr picked;  // the fast path's pick, for the connecting task
  const pattern* p = nullptr;
  std::string_view packed;                          // the data, packed (raw calls)
  const transport::value_writer* writer = nullptr;  // or written by this
  const transport::value_sink* sink = nullptr;
  std::string_view meta;
  clock::time_point deadline{};
  bool idempotent = false;
  bool cancelled = false;
  bool trial = false;                     // admitted by a half-open breaker
  int tries = 0;                          // attempts begun
  int retries = 0;                        // of them, after the first
  std::uint64_t closes = 0;               // the client's close() count when the call began
  int breaker_vote = -1;                  // the last attempt's: -1 none, 0 success, 1 failure
  asio::steady_timer* backoff = nullptr;  // while waiting to retry
  std::optional<rpc_error> error;
  clock::time_point ended{};
};

/// When a call ends: its timeout from now, or the deadline it inherited if sooner.
clock::time_point deadline_of(const call_options& o, const client_options& defaults,
                              clock::time_point now);
rpc_error past_deadline(const pattern& p);

/// Sends every slot's call at once and completes when all have ended and
/// every task it started has finished. A call whose endpoint is connected
/// starts without a task. Cancelling the awaiting coroutine ends the calls
/// still pending with errc::cancelled.
asio::awaitable<void> run(std::span<call_slot> slots);

}  // namespace tern::detail
