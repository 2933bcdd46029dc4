// tern_call: send one request to a tern service and print the reply as JSON.
//
//   tern_call [--host H] [--port P] [--timeout-ms N] [--wait-ms N] PATTERN [DATA]
//
// --wait-ms N: while nothing listens yet (connection refused), try again
// for up to N ms (for scripts that have just started the service).
// PATTERN is JSON text ('{"cmd":"get_users"}') or a plain string (ping);
// DATA is JSON (default null). Exit status: 0 on a reply, 1 on an error
// (printed to stderr with its kind), 2 on bad usage. Handy for health checks.
#include <tern/task_group.hpp>
#include <tern/tern.hpp>

#include <spdlog/spdlog.h>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <iostream>

int main(int argc, char** argv) {
  std::string host = "127.0.0.1", pattern_text, data_text = "null";
  long port = 3000, timeout_ms = 3000, wait_ms = 0;
  int positional = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--host" || a == "--port" || a == "--timeout-ms" || a == "--wait-ms") &&
        i + 1 < argc) {
      std::string v = argv[++i];
      if (a == "--host") host = v;
      if (a == "--port") port = std::strtol(v.c_str(), nullptr, 10);
      if (a == "--timeout-ms") timeout_ms = std::strtol(v.c_str(), nullptr, 10);
      if (a == "--wait-ms") wait_ms = std::strtol(v.c_str(), nullptr, 10);
    } else if (positional == 0) {
      pattern_text = a;
      ++positional;
    } else if (positional == 1) {
      data_text = a;
      ++positional;
    } else {
      positional = -1;
      break;
    }
  }
  if (positional < 1 || port <= 0 || port > 65535 || timeout_ms <= 0 || wait_ms < 0) {
    std::cerr
        << "usage: tern_call [--host H] [--port P] [--timeout-ms N] [--wait-ms N] PATTERN [DATA]\n";
    return 2;
  }
  spdlog::set_level(spdlog::level::off);
  auto pattern = pattern_text.front() == '{' || pattern_text.front() == '"'
                     ? tern::pattern::from_json(pattern_text)
                     : tern::pattern(pattern_text);
  auto data = nlohmann::json::parse(data_text, nullptr, false);
  if (data.is_discarded()) {
    std::cerr << "tern_call: DATA is not valid JSON\n";
    return 2;
  }
  auto packed = nlohmann::json::to_msgpack(data);
  asio::io_context io;
  int status = 1;
  auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  // Kept here while its coroutine runs (the coroutine refers to its captures).
  auto call = [&]() -> asio::awaitable<void> {
    for (;;) {
      // A client per attempt: one that was refused backs off before its next connect.
      tern::client_proxy client(io, {.host = host,
                                     .port = static_cast<std::uint16_t>(port),
                                     .connect_timeout = std::chrono::milliseconds(timeout_ms)});
      bool again = false;
      try {
        std::string printed = "null";
        auto print = [&printed](const tern::transport::value_view& v) {
          printed = nlohmann::json::from_msgpack(v.packed()).dump();
        };
        co_await client.send_raw(
            pattern, std::string_view(reinterpret_cast<const char*>(packed.data()), packed.size()),
            print, {.timeout = std::chrono::milliseconds(timeout_ms)});
        std::cout << printed << "\n";
        status = 0;
      } catch (const tern::rpc_error& e) {
        again = e.kind() == tern::errc::connection_refused &&
                std::chrono::steady_clock::now() < give_up;
        if (!again) {
          std::cerr << "tern_call: " << tern::to_string(e.kind());
          if (e.status() != 0) std::cerr << " " << e.status();
          std::cerr << ": " << e.what() << "\n";
        }
      }
      client.close();
      if (!again) break;
      asio::steady_timer pause(io, std::chrono::milliseconds(50));
      co_await pause.async_wait(asio::use_awaitable);
    }
  };
  tern::task_group tasks(io.get_executor(), "tern_call");
  tasks.spawn(call());
  io.run();
  return status;
}
