#include "test_handlers.hpp"

#include "tern/offload.hpp"

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <chrono>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

namespace tern::test {

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
  app.event_pattern("note", [notes](int) { ++*notes; });
  app.message_pattern({{"cmd", "notes"}}, [notes]() { return *notes; });
  app.message_pattern({{"cmd", "whoami"}},
                      [](const message_context& ctx) { return ctx.peer() + " " + ctx.pattern(); });
}

}  // namespace tern::test
