// What the gateway's tests share: a small config, a gateway a test closes
// and joins, and the config errors a gateway or parse_config gives.
#pragma once

#include "app/gateway.hpp"
#include "config/config.hpp"

#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>

#include <chrono>
#include <exception>
#include <string>

namespace tern::gateway::test {

inline const char* minimal = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 3001}},
  "routes": [
    {"method": "GET", "path": "/u/:id", "service": "users", "pattern": {"cmd": "get_user"}, "data": "params"}
  ]})";

/// Runs `io` a handler at a time until done() holds, for at most 10 s: the
/// gateway keeps timers (the access log's flush), so the loop never runs
/// out of work by itself.
template <typename Done>
void run_until(asio::io_context& io, Done done) {
  io.restart();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(std::chrono::milliseconds(100));
  }
  REQUIRE_MESSAGE(done(), "not done within 10 s");
}

/// A gateway its test closes and joins before it goes, as every owner of
/// one must (its tasks, the access log's flushes and the probes, borrow
/// it). Not for a gateway inside a coroutine on `io`: that one co_awaits
/// close() and join() itself.
class test_gateway : public gateway {
 public:
  template <class Config>
  test_gateway(asio::io_context& io, Config cfg) : gateway(io, std::move(cfg)), io_(io) {}
  test_gateway(const test_gateway&) = delete;
  test_gateway& operator=(const test_gateway&) = delete;
  ~test_gateway() {
    close();
    bool joined = false;
    asio::co_spawn(io_, join(std::chrono::steady_clock::now() + std::chrono::seconds(10)),
                   [&](std::exception_ptr e, bool ok) { joined = !e && ok; });
    io_.restart();
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!joined && std::chrono::steady_clock::now() < deadline) {
      io_.run_one_for(std::chrono::milliseconds(100));
    }
    CHECK_MESSAGE(joined, "the gateway's tasks did not end within 10 s");
  }

 private:
  asio::io_context& io_;
};

/// parse_config(text) must throw a config_error whose text has `names`.
inline void expect_config_error(const std::string& text, const std::string& names) {
  try {
    parse_config(text);
    FAIL("accepted a bad config");
  } catch (const config_error& e) {
    CHECK_MESSAGE(std::string(e.what()).find(names) != std::string::npos, e.what());
  }
}

/// The config_error a gateway built from `text` throws (empty if none).
inline std::string chain_error(const std::string& text) {
  asio::io_context io(1);
  try {
    test_gateway gw(io, parse_config(text));
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

/// A config with routes GET /a and GET /b on upstream users, the
/// top-level policies `top` and /a's own `route` (each JSON, or empty).
inline std::string with_policies(const std::string& top, const std::string& route) {
  return R"({"upstreams": {"users": {"host": "127.0.0.1", "port": 1}},)" +
         (top.empty() ? std::string() : R"("policies": )" + top + ",") + R"("routes": [
    {"method": "GET", "path": "/a", "service": "users", "pattern": "a")" +
         (route.empty() ? std::string() : R"(, "policies": )" + route) + R"(},
    {"method": "GET", "path": "/b", "service": "users", "pattern": "b"}]})";
}

}  // namespace tern::gateway::test
