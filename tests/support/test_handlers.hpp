// The handlers the integration tests talk to, in-process and in the
// tern_test_service binary.
#pragma once

#include "tern/client_proxy.hpp"
#include "tern/microservice.hpp"

#include <cstdint>
#include <functional>
#include <memory>

namespace tern::test {

/// Registers: "ping" -> "pong"; {cmd:echo} -> its data; {cmd:sum} ints ->
/// their sum; {cmd:sleep} ms -> ms after that long; {cmd:fail} -> rpc_error
/// 418 with details; {cmd:crash} -> std::runtime_error; {cmd:count} n ->
/// stream 1..n; {cmd:offload} -> whether it ran off the loop thread; event
/// "note" -> counted, {cmd:notes} -> the count; {cmd:whoami} -> peer seen;
/// {cmd:block} ms -> ms after blocking the loop that long; {cmd:deadline}
/// -> ms left before the caller's deadline (-1: none).
void register_test_handlers(microservice& app);

/// A service with the test handlers (and what `more` registers) on an
/// ephemeral port, its admin port on, started; and a client of it (5 s timeout).
struct served_test_service {
  explicit served_test_service(asio::io_context& io,
                               const std::function<void(microservice&)>& more = {});
  microservice app;
  std::uint16_t port = 0;
  std::unique_ptr<client_proxy> client;
};

}  // namespace tern::test
