// The request_id policy through its chain: X-Request-Id and the W3C trace
// context kept when well-formed, made when not.
#include "../gateway_fixture.hpp"
#include "../policy_fixture.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace tern::gateway;
using namespace tern::gateway::test;

namespace {

const std::string one_route = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "routes": [{"method": "GET", "path": "/a", "service": "users", "pattern": "a"}]})";

// What the handler saw of the request's id and trace.
struct seen {
  std::string request_id, trace, parent, tracestate;
};

const std::string parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

}  // namespace

TEST_CASE("a request id is kept when well-formed, made when not, and returned") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    seen s;
    policy_fixture f(io, one_route, [&](request_context& ctx) -> asio::awaitable<void> {
      s.request_id = ctx.request_id;
      ctx.response.status = 200;
      co_return;
    });
    auto r = co_await f.get("/a");
    CHECK(s.request_id.size() == 32);  // 128 random bits in hex
    CHECK(field(r, "X-Request-Id") == s.request_id);
    auto first = s.request_id;
    co_await f.get("/a");
    CHECK(s.request_id != first);

    tern::http::request req;
    req.method = "GET";
    req.path = "/a";
    req.headers = {{"x-request-id", "lb-7f3a:02.x_y"}};
    r = co_await f.ask(req);
    CHECK(s.request_id == "lb-7f3a:02.x_y");
    CHECK(field(r, "X-Request-Id") == "lb-7f3a:02.x_y");
    const std::vector<std::string> bad_ids{"has space", std::string(129, 'a'), "new\nline", ""};
    for (const auto& bad : bad_ids) {
      req.headers = {{"x-request-id", bad}};
      r = co_await f.ask(req);
      CHECK(s.request_id.size() == 32);
      CHECK(field(r, "X-Request-Id") == s.request_id);
    }
    co_await f.close();
  });
}

TEST_CASE("a traceparent is continued with its tracestate, and a bad one starts a new trace") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    seen s;
    policy_fixture f(io, one_route, [&](request_context& ctx) -> asio::awaitable<void> {
      REQUIRE(ctx.traced);
      s.trace = std::string(ctx.trace.trace());
      s.parent = std::string(ctx.trace.parent());
      s.tracestate = std::string(ctx.tracestate);
      ctx.response.status = 200;
      co_return;
    });
    tern::http::request req;
    req.method = "GET";
    req.path = "/a";
    req.headers = {{"traceparent", parent}, {"tracestate", "vendor=abc"}};
    co_await f.ask(req);
    CHECK(s.trace == "0af7651916cd43dd8448eb211c80319c");
    CHECK(s.parent == "b7ad6b7169203331");
    CHECK(s.tracestate == "vendor=abc");
    // Two traceparent fields make it invalid: a new trace, its state dropped.
    req.headers = {{"traceparent", parent}, {"traceparent", parent}, {"tracestate", "vendor=abc"}};
    co_await f.ask(req);
    CHECK(s.trace.size() == 32);
    CHECK(s.trace != "0af7651916cd43dd8448eb211c80319c");
    CHECK(s.tracestate.empty());
    // Two tracestate fields are dropped; the trace goes on.
    req.headers = {{"traceparent", parent}, {"tracestate", "a=1"}, {"tracestate", "b=2"}};
    co_await f.ask(req);
    CHECK(s.trace == "0af7651916cd43dd8448eb211c80319c");
    CHECK(s.tracestate.empty());
    co_await f.close();
  });
}

TEST_CASE("a request_id piece is true, false or {}") {
  CHECK(chain_error(with_policies(R"({"request_id": {}})", "")).empty());
  CHECK(chain_error(with_policies("", R"({"request_id": 3})")) ==
        "routes[0].policies.request_id: must be true, false or {}");
}
