// Runs coroutine tests on a fresh io_context under a deadline, so a hang
// fails the test instead of blocking the suite.
#pragma once

#include "tern/rpc_error.hpp"
#include "tern/transport/task_group.hpp"

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

namespace detail {
// The task group of the run() going on on this thread (see spawn()).
inline thread_local transport::task_group* test_tasks = nullptr;
}  // namespace detail

/// Starts `f()`, a coroutine lambda kept in the task's frame, as a task of
/// the running test's (run()'s task group, whose tasks end with its event
/// loop): the tests' way to start a coroutine beside the test's own.
template <class F>
void spawn(F f) {
  REQUIRE_MESSAGE(detail::test_tasks, "tern::test::spawn outside tern::test::run");
  detail::test_tasks->spawn([](F g) -> asio::awaitable<void> { co_await g(); }(std::move(f)));
}

/// Runs body(io) to completion; fails the test if it throws or has not
/// finished within `limit`.
inline void run(std::function<asio::awaitable<void>(asio::io_context&)> body,
                std::chrono::milliseconds limit = max_test_wait) {
  asio::io_context io(1);
  transport::task_group tasks(io.get_executor(), "test");
  struct current {
    explicit current(transport::task_group& t) { detail::test_tasks = &t; }
    ~current() { detail::test_tasks = nullptr; }
  } in_this_run(tasks);
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

/// Awaits `call` and returns the rpc_error it throws (fails the test if none).
template <class Awaitable>
asio::awaitable<rpc_error> error_of(Awaitable call) {
  try {
    co_await std::move(call);
  } catch (const rpc_error& e) {
    co_return e;
  }
  FAIL("the call succeeded but was expected to fail");
  co_return rpc_error(errc::remote, "unreachable");
}

/// Suspends the calling coroutine for `d`.
inline asio::awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

}  // namespace tern::test
