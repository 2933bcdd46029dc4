// The handlers the integration tests talk to, in-process and in the
// tern_test_service binary.
#pragma once

#include "tern/microservice.hpp"

namespace tern::test {

/// Registers: "ping" -> "pong"; {cmd:echo} -> its data; {cmd:sum} ints ->
/// their sum; {cmd:sleep} ms -> ms after that long; {cmd:fail} -> rpc_error
/// 418 with details; {cmd:crash} -> std::runtime_error; {cmd:count} n ->
/// stream 1..n; {cmd:offload} -> whether it ran off the loop thread; event
/// "note" -> counted, {cmd:notes} -> the count; {cmd:whoami} -> peer seen;
/// {cmd:block} ms -> ms after blocking the loop that long; {cmd:deadline}
/// -> ms left before the caller's deadline (-1: none).
void register_test_handlers(microservice& app);

}  // namespace tern::test
