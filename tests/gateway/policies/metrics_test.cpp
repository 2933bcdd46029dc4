// The metrics policy through its chain: requests by route, method and
// status, their duration, the active count, each upstream call's outcome.
#include "../policy_fixture.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <string>

using namespace tern::gateway;
using namespace tern::gateway::test;

namespace {

const std::string counted = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "routes": [
    {"method": "GET", "path": "/u/:id", "service": "users", "pattern": "get", "data": "params"},
    {"method": "GET", "path": "/quiet", "service": "users", "pattern": "q",
     "policies": {"metrics": false}}
  ]})";

}  // namespace

TEST_CASE("requests are counted by route template, method and status, with their calls") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    asio::steady_timer gate(io, asio::steady_timer::time_point::max());
    bool hold = true;
    policy_fixture f(io, counted, [&](request_context& ctx) -> asio::awaitable<void> {
      if (hold) co_await gate.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      ctx.calls.push_back({.call = 0,
                           .error = tern::errc::timeout,
                           .took = std::chrono::milliseconds(5),
                           .retries = 0});
      ctx.response.status = 504;
    });
    bool done = false;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      co_await f.get("/u/7");
      done = true;
    });
    co_await tern::test::until([&] { return f.handled() == 1; });
    CHECK(sample(f.metrics(), "http_server_active_requests") == 1);  // in its handler now
    gate.cancel();
    co_await tern::test::until([&] { return done; });
    REQUIRE(done);
    CHECK(sample(f.metrics(), "http_server_active_requests") == 0);
    hold = false;
    co_await f.get("/u/8");
    CHECK(sample(f.metrics(), "http_server_requests_total",
                 {{"route", "/u/:id"}, {"method", "GET"}, {"status", "504"}}) == 2);
    CHECK(sample(f.metrics(), "rpc_client_requests_total",
                 {{"service", "users"}, {"outcome", "timeout"}}) == 2);
    co_await f.get("/quiet");  // metrics off for this route
    CHECK(sample(f.metrics(), "http_server_requests_total", {{"route", "/quiet"}}) == -1);
    CHECK(f.handled() == 3);
    co_await f.close();
  });
}
