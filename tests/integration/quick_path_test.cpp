// tern::quick_path: blocking work that runs on the event loop while it is
// quick, and on the worker pool while it is not or would wait.
#include "harness.hpp"
#include "tern/offload.hpp"

#include <chrono>
#include <optional>
#include <stdexcept>
#include <thread>

using namespace std::chrono_literals;
using tern::quick_path;
using tern::test::run;

namespace {

// Where one run of `q` ran: the loop's thread or a worker's. `try_for`
// is how long the loop's try takes; `busy`, that its lock is taken.
asio::awaitable<bool> ran_on_loop(quick_path& q, std::chrono::milliseconds try_for = 0ms,
                                  bool busy = false) {
  auto id = co_await q.run(
      [&]() -> std::optional<std::thread::id> {
        if (busy) return std::nullopt;
        std::this_thread::sleep_for(try_for);
        return std::this_thread::get_id();
      },
      [] { return std::this_thread::get_id(); });
  co_return id == std::this_thread::get_id();
}

}  // namespace

TEST_CASE("a quick path runs on the pool until it has proved quick, then on the loop") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 3);
    for (int i = 0; i < 3; ++i) CHECK_FALSE(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q));
    CHECK(q.ran_on_pool() == 3);
    CHECK(q.ran_here() == 2);
  });
}

TEST_CASE("one run over the limit sends the next ones back to the pool, asking twice the proof") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 2);
    for (int i = 0; i < 2; ++i) co_await ran_on_loop(q);
    CHECK(co_await ran_on_loop(q, 150ms));  // ran here, and was slow
    for (int i = 0; i < 4; ++i) CHECK_FALSE(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q, 150ms));  // slow again: 8 now
    for (int i = 0; i < 8; ++i) CHECK_FALSE(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q));
    CHECK(q.ran_here() == 4);
    CHECK(q.ran_on_pool() == 14);
  });
}

TEST_CASE("1024 quick runs on the loop halve the proof a slow run doubled") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 2);
    for (int i = 0; i < 2; ++i) co_await ran_on_loop(q);
    CHECK(co_await ran_on_loop(q, 150ms));  // proof 2 -> 4
    for (int i = 0; i < 4; ++i) CHECK_FALSE(co_await ran_on_loop(q));
    int here = 0;
    for (int i = 0; i < 1024; ++i) here += co_await ran_on_loop(q) ? 1 : 0;
    CHECK(here == 1024);                    // proof 4 -> 2
    CHECK(co_await ran_on_loop(q, 150ms));  // proof 2 -> 4, not 8
    for (int i = 0; i < 4; ++i) CHECK_FALSE(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q));
  });
}

TEST_CASE("a slow run on the pool delays the move to the loop") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 2);
    co_await ran_on_loop(q);
    std::chrono::milliseconds pool_for = 150ms;
    co_await q.run([]() -> std::optional<int> { return 1; },
                   [&] {
                     std::this_thread::sleep_for(pool_for);
                     return 1;
                   });
    CHECK_FALSE(co_await ran_on_loop(q));  // the slow run reset the count
    CHECK_FALSE(co_await ran_on_loop(q));
    CHECK(co_await ran_on_loop(q));
  });
}

TEST_CASE("a quick path whose lock is taken runs on the pool, and stays proved") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 2);
    for (int i = 0; i < 2; ++i) co_await ran_on_loop(q);
    CHECK_FALSE(co_await ran_on_loop(q, 0ms, true));
    CHECK(co_await ran_on_loop(q));
    CHECK(q.ran_on_pool() == 3);
    CHECK(q.ran_here() == 1);
  });
}

TEST_CASE("a quick path's run on the pool after the loop declined is not timed") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 2);
    for (int i = 0; i < 2; ++i) co_await ran_on_loop(q);
    // Declined on the loop, then slow on the pool (waiting for the lock).
    co_await q.run([]() -> std::optional<int> { return std::nullopt; },
                   [] {
                     std::this_thread::sleep_for(150ms);
                     return 1;
                   });
    CHECK(co_await ran_on_loop(q));
  });
}

TEST_CASE("an error thrown by a quick path's run on the loop reaches its caller") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 100ms, 1);
    co_await ran_on_loop(q);
    std::string what;
    try {
      co_await q.run([]() -> std::optional<int> { throw std::runtime_error("no such table"); },
                     [] { return 1; });
    } catch (const std::runtime_error& e) {
      what = e.what();
    }
    CHECK(what == "no such table");
    CHECK(q.ran_here() == 1);
    CHECK(co_await ran_on_loop(q));  // an error is not slowness
  });
}

TEST_CASE("a quick path with a limit of 0 always runs on the pool") {
  run([](asio::io_context&) -> asio::awaitable<void> {
    quick_path q("t", 0us, 0);
    for (int i = 0; i < 3; ++i) CHECK_FALSE(co_await ran_on_loop(q));
    CHECK(q.ran_here() == 0);
  });
}
