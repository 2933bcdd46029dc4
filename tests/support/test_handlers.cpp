#include "test_handlers.hpp"

#include "tern/offload.hpp"

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace tern::test {

namespace {
// Calls of "meet" waiting for one another, by name, across the services of
// this process.
std::map<std::string, int>& arrivals() {
  static std::map<std::string, int> m;
  return m;
}
}  // namespace

void register_test_handlers(microservice& app) {
  auto notes = std::make_shared<int>(0);
  app.message_pattern("ping", []() { return std::string("pong"); });
  app.message_pattern({{"cmd", "echo"}}, [](msgpack::object data) { return data; });
  app.message_pattern({{"cmd", "sum"}}, [](const std::vector<long>& xs) {
    return std::accumulate(xs.begin(), xs.end(), 0L);
  });
  app.message_pattern({{"cmd", "sleep"}}, [](int ms) -> asio::awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
    co_await t.async_wait(asio::use_awaitable);
    co_return ms;
  });
  // [name, n]: waits (up to 2 s) until n calls named `name` have arrived,
  // and returns how many had: n proves that they were all in flight at once.
  app.message_pattern({{"cmd", "meet"}},
                      [](std::tuple<std::string, int> q) -> asio::awaitable<int> {
                        auto& [name, n] = q;
                        int& here = ++arrivals()[name];
                        asio::steady_timer t(co_await asio::this_coro::executor);
                        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
                        while (here < n && std::chrono::steady_clock::now() < until) {
                          t.expires_after(std::chrono::milliseconds(1));
                          co_await t.async_wait(asio::use_awaitable);
                        }
                        co_return here;
                      });
  // How many requests the service is handling besides this one.
  app.message_pattern({{"cmd", "in_flight"}},
                      [&app]() { return static_cast<int>(app.in_flight()) - 1; });
  app.message_pattern({{"cmd", "fail"}}, []() -> int {
    throw rpc_error(418, "I am a teapot", std::map<std::string, int>{{"spout", 1}});
  });
  app.message_pattern({{"cmd", "crash"}}, []() -> int {
    throw std::runtime_error("secret detail that must not leave the service");
  });
  app.message_pattern({{"cmd", "count"}},
                      [](int n, stream_writer<int>& out) -> asio::awaitable<void> {
                        for (int i = 1; i <= n; ++i) co_await out.write(i);
                      });
  app.message_pattern({{"cmd", "offload"}}, []() -> asio::awaitable<bool> {
    auto loop = std::this_thread::get_id();
    auto worker = co_await offload([] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return std::this_thread::get_id();
    });
    co_return worker != loop&& std::this_thread::get_id() == loop;
  });
  // Blocks the service's loop for ms (what a CPU-bound handler does).
  app.message_pattern({{"cmd", "block"}}, [](int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
  // The ms left before the caller's deadline, or -1 without one.
  app.message_pattern({{"cmd", "deadline"}}, [](const message_context& ctx) -> long {
    if (ctx.deadline() == std::chrono::steady_clock::time_point::max()) return -1;
    return std::chrono::duration_cast<std::chrono::milliseconds>(ctx.deadline() -
                                                                 std::chrono::steady_clock::now())
        .count();
  });
  app.event_pattern("note", [notes](int) { ++*notes; });
  app.message_pattern({{"cmd", "notes"}}, [notes]() { return *notes; });
  app.message_pattern({{"cmd", "whoami"}},
                      [](const message_context& ctx) { return ctx.peer() + " " + ctx.pattern(); });
}

served_test_service::served_test_service(asio::io_context& io,
                                         const std::function<void(microservice&)>& more)
    : app(io, {.port = 0, .admin_port = 0}) {
  register_test_handlers(app);
  if (more) more(app);
  port = app.start();
  client = std::make_unique<client_proxy>(
      io, client_options{.host = "127.0.0.1", .port = port, .timeout = std::chrono::seconds(5)});
}

}  // namespace tern::test
