// The real tern_test_service process: killed, restarted, stopped by signal.
#include "process.hpp"
#include "harness.hpp"
#include "tern/tern.hpp"

#include <asio/write.hpp>

#include <csignal>
#include <fstream>

using namespace std::chrono_literals;
using tern::errc;
using tern::test::child_process;
using tern::test::run;
using tern::test::sleep_for;
using tern::test::until;

namespace {
const std::string service_binary = tern::test::sibling_binary("tern_test_service");

// Waits until the service reports `n` requests in hand besides the query.
asio::awaitable<void> being_handled(tern::client_proxy& c, int n) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (co_await c.send<int>({{"cmd", "in_flight"}}) < n &&
         std::chrono::steady_clock::now() < deadline) {
    co_await sleep_for(1ms);
  }
}
}  // namespace

TEST_CASE("a killed server fails every pending call at once, a restarted one is reached") {
  auto server = std::make_unique<child_process>(service_binary, std::vector<std::string>{});
  auto port = server->port();
  run([&](asio::io_context& io) -> asio::awaitable<void> {
    tern::client_proxy c(io, {.port = port, .timeout = 10s});
    CHECK(co_await c.send<std::string>("ping") == std::string("pong"));
    constexpr int n = 20;
    int closed = 0, other = 0;
    for (int i = 0; i < n; ++i) {
      tern::test::spawn([&]() -> asio::awaitable<void> {
        try {
          co_await c.send<int>({{"cmd", "sleep"}}, 5000);
          ++other;
        } catch (const tern::rpc_error& e) {
          ++(e.kind() == errc::connection_closed ? closed : other);
        }
      });
    }
    co_await being_handled(c, n);
    CHECK(c.pending() == n);
    auto killed_at = std::chrono::steady_clock::now();
    server->signal(SIGKILL);
    co_await until([&] { return closed + other == n; });
    CHECK(closed == n);
    CHECK(other == 0);
    CHECK(std::chrono::steady_clock::now() - killed_at < 1s);  // far below the 10 s timeout
    CHECK(server->wait() == 128 + SIGKILL);

    server = std::make_unique<child_process>(
        service_binary, std::vector<std::string>{"--port", std::to_string(port)});
    CHECK(co_await c.send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("SIGTERM drains in-flight requests, then the process exits 0") {
  child_process server(service_binary, {});
  run([&](asio::io_context& io) -> asio::awaitable<void> {
    tern::client_proxy c(io, {.port = server.port()});
    int reply = 0;
    std::optional<tern::rpc_error> failure;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      try {
        reply = co_await c.send<int>({{"cmd", "sleep"}}, 300);
      } catch (const tern::rpc_error& e) {
        failure = e;
      }
    });
    co_await being_handled(c, 1);
    server.signal(SIGTERM);
    co_await until([&] { return reply != 0 || failure.has_value(); });
    CHECK(reply == 300);
    CHECK_FALSE(failure.has_value());
  });
  CHECK(server.wait(5s) == 0);
}

TEST_CASE(
    "SIGTERM on one of two instances under load: goaway moves new calls to the other, none "
    "fails, and it exits 0 well before its drain timeout") {
  child_process a(service_binary, {"--drain-grace-ms", "200"});
  child_process b(service_binary, {"--drain-grace-ms", "200"});
  std::chrono::steady_clock::time_point signalled;
  run([&](asio::io_context& io) -> asio::awaitable<void> {
    auto at = [](const child_process& p) { return "127.0.0.1:" + std::to_string(p.port()); };
    tern::client_proxy c(io, {.endpoints = {at(a), at(b)}, .timeout = 5s});
    int ok = 0, failed = 0, running = 4;
    bool stop = false;
    std::string first_failure;
    for (int w = 0; w < running; ++w) {
      tern::test::spawn([&]() -> asio::awaitable<void> {
        while (!stop) {
          try {
            co_await c.send<int>({{"cmd", "sleep"}}, 5);
            ++ok;
          } catch (const tern::rpc_error& e) {
            if (failed++ == 0) first_failure = e.what();
          }
        }
        --running;
      });
    }
    co_await tern::test::until([&] { return ok >= 100; });
    signalled = std::chrono::steady_clock::now();
    a.signal(SIGTERM);
    // a closes its connection once its last call has been answered.
    auto a_closed = [&] {
      for (const auto& e : c.endpoints()) {
        if (e.address == at(a)) return e.state != tern::client_proxy::connection_state::connected;
      }
      return false;
    };
    co_await tern::test::until(a_closed);
    CHECK(a_closed());
    int before = ok;
    co_await tern::test::until([&] { return ok >= before + 100; });
    stop = true;
    co_await tern::test::until([&] { return running == 0; });
    CHECK(failed == 0);
    if (failed) MESSAGE("first failure: ", first_failure);
  });
  CHECK(a.wait(5s) == 0);
  CHECK(std::chrono::steady_clock::now() - signalled < 3s);  // its drain timeout is 10 s
}

TEST_CASE("a second signal during the drain exits at once with status 1") {
  child_process server(service_binary, {});
  std::chrono::steady_clock::time_point again, call_ended;
  run([&](asio::io_context& io) -> asio::awaitable<void> {
    tern::client_proxy c(io, {.port = server.port()});
    std::optional<tern::rpc_error> failure;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      try {
        co_await c.send<int>({{"cmd", "sleep"}}, 5000);
      } catch (const tern::rpc_error& e) {
        failure = e;
      }
      call_ended = std::chrono::steady_clock::now();
    });
    co_await being_handled(c, 1);
    server.signal(SIGTERM);
    // Draining: the health pattern answers 503.
    bool draining = false;
    for (int i = 0; i < 500 && !draining; ++i) {
      try {
        co_await c.send(tern::health_pattern);
        co_await sleep_for(2ms);
      } catch (const tern::rpc_error& e) {
        draining = e.status() == 503;
      }
    }
    REQUIRE(draining);
    again = std::chrono::steady_clock::now();
    server.signal(SIGTERM);
    // The process is gone: the 5 s call ends with its connection.
    co_await tern::test::until([&] { return failure.has_value(); });
    REQUIRE(failure.has_value());
    CHECK(failure->kind() == errc::connection_closed);
  });
  CHECK(server.wait(2s) == 1);
  CHECK(call_ended - again < 1s);  // not the 5 s call, nor the drain
}

TEST_CASE("SIGINT on an idle service exits 0 promptly") {
  child_process server(service_binary, {});
  auto start = std::chrono::steady_clock::now();
  server.signal(SIGINT);
  CHECK(server.wait(5s) == 0);
  CHECK(std::chrono::steady_clock::now() - start < 1s);
}

TEST_CASE("drain time is bounded: a handler slower than drain_timeout does not hold the exit") {
  child_process server(service_binary, {"--drain-ms", "100"});
  run([&](asio::io_context& io) -> asio::awaitable<void> {
    tern::client_proxy c(io, {.port = server.port()});
    std::optional<tern::rpc_error> failure;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      try {
        co_await c.send<int>({{"cmd", "sleep"}}, 3000);
      } catch (const tern::rpc_error& e) {
        failure = e;
      }
    });
    co_await being_handled(c, 1);
    server.signal(SIGTERM);
    co_await until([&] { return failure.has_value(); });
    REQUIRE(failure.has_value());
    CHECK(failure->kind() == errc::connection_closed);
  });
  CHECK(server.wait(5s) == 0);
}

namespace {
// The resident memory of a process, in KiB, from /proc.
long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}
}  // namespace

TEST_CASE("lengths a header only announces pin no memory: 20 connections of 4 bytes each") {
  child_process server(service_binary, {});
  run([&](asio::io_context& io) -> asio::awaitable<void> {
    tern::client_proxy c(io, {.port = server.port()});
    CHECK(co_await c.send<std::string>("ping") == std::string("pong"));
    const long before = rss_kib(server.pid());
    std::vector<asio::ip::tcp::socket> hostile;
    for (int i = 0; i < 20; ++i) {
      hostile.emplace_back(io);
      co_await hostile.back().async_connect({asio::ip::make_address("127.0.0.1"), server.port()},
                                            asio::use_awaitable);
      // 16 MiB - 1 announced (under the limit), one byte sent.
      co_await asio::async_write(hostile.back(),
                                 asio::buffer("\x00\xff\xff\xff"
                                              "x",
                                              5),
                                 asio::use_awaitable);
    }
    // A ping on a new connection is answered after the service has read them.
    tern::client_proxy late(io, {.port = server.port()});
    CHECK(co_await late.send<std::string>("ping") == std::string("pong"));
    long most = before;
    for (int i = 0; i < 30; ++i) {  // and it stays so for 300 ms
      most = std::max(most, rss_kib(server.pid()));
      co_await sleep_for(10ms);
    }
    MESSAGE("RSS before ", before, " KiB, at most ", most, " KiB after");
    CHECK(before > 0);
    CHECK(most - before < 20 * 1024);  // 64 KiB or so each, not 16 MiB each
  });
}
