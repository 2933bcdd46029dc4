// Runs coroutine tests on a fresh io_context under a deadline, so a hang
// fails the test instead of blocking the suite.
#pragma once

#include <doctest/doctest.h>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <exception>
#include <functional>

namespace tern::test {

inline constexpr auto max_test_wait = std::chrono::seconds(20);

/// Runs body(io) to completion; fails the test if it throws or has not
/// finished within `limit`.
inline void run(std::function<asio::awaitable<void>(asio::io_context&)> body,
                std::chrono::milliseconds limit = max_test_wait) {
  asio::io_context io(1);
  bool done = false;
  std::exception_ptr error;
  asio::co_spawn(io, body(io), [&](std::exception_ptr e) {
    done = true;
    error = e;
    io.stop();
  });
  io.run_for(limit);
  REQUIRE_MESSAGE(done, "the test coroutine did not finish within ", limit.count(), " ms");
  if (error) std::rethrow_exception(error);
}

/// Waits until `done()` holds, checking it each millisecond, for at most
/// `limit` (the caller's checks then report what did not happen).
inline asio::awaitable<void> until(std::function<bool()> done,
                                   std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    t.expires_after(std::chrono::milliseconds(1));
    co_await t.async_wait(asio::use_awaitable);
  }
}

/// Suspends the calling coroutine for `d`.
inline asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace tern::test
