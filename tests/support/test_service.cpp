// A real service process for the end-to-end tests: prints "READY <port>"
// once listening, then serves until SIGINT/SIGTERM.
#include "tern/client_proxy.hpp"
#include "test_handlers.hpp"

#include <spdlog/spdlog.h>
#include <asio/signal_set.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <optional>
#include <string>

int main(int argc, char** argv) {
  tern::microservice_options o;
  o.port = 0;
  std::uint16_t next = 0;
  std::string name = "test";
  auto level = spdlog::level::warn;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    long v = std::strtol(argv[i + 1], nullptr, 10);
    if (k == "--host") {
      o.host = argv[i + 1];
    } else if (k == "--name") {
      name = argv[i + 1];
    } else if (k == "--log-level") {
      level = spdlog::level::from_str(argv[i + 1]);
    } else if (k == "--next") {
      next = static_cast<std::uint16_t>(v);
    } else if (k == "--admin-port") {
      o.admin_port = static_cast<std::uint16_t>(v);
    } else if (k == "--port") {
      o.port = static_cast<std::uint16_t>(v);
    } else if (k == "--drain-ms") {
      o.drain_timeout = std::chrono::milliseconds(v);
    } else if (k == "--drain-grace-ms") {
      o.drain_grace = std::chrono::milliseconds(v);
    } else if (k == "--stall-ms") {
      o.connection.incomplete_frame_timeout = std::chrono::milliseconds(v);
    } else if (k == "--max-frame") {
      o.max_frame = static_cast<std::uint32_t>(v);
    } else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  spdlog::set_level(level);
  tern::microservice app(o);
  tern::test::register_test_handlers(app);
  app.message_pattern({{"cmd", "name"}}, [&name]() { return name; });  // which instance answered
  // With --next: {cmd:relay_sleep} {ms} calls the next service's
  // {cmd:sleep} ms, passing the request's deadline (and cancellation) on.
  std::optional<tern::client_proxy> to_next;
  if (next != 0) {
    to_next.emplace(tern::client_options{.port = next, .timeout = std::chrono::seconds(30)});
    app.message_pattern(
        {{"cmd", "relay_sleep"}},
        [&to_next](std::map<std::string, int> q,
                   const tern::message_context& ctx) -> asio::awaitable<int> {
          co_return co_await to_next->send<int>({{"cmd", "sleep"}}, q["ms"], ctx.forward());
        });
  }
  // Says so when a signal arrives (for child_process::saw_signal()); the
  // service's own signal_set sees it too.
  asio::signal_set seen(tern::default_io_context(), SIGINT, SIGTERM);
  seen.async_wait([](std::error_code ec, int) {
    if (ec) return;
    std::printf("SIGNALLED\n");
    std::fflush(stdout);
  });
  return app.listen([](std::uint16_t port) {
    std::printf("READY %u\n", static_cast<unsigned>(port));
    std::fflush(stdout);
  });
}
