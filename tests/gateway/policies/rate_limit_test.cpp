// The rate_limit policy through its chain, in process: the bucket's refill
// on the process's clock, the RateLimit fields, keys past max_keys.
#include "../gateway_fixture.hpp"
#include "../policy_fixture.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>

using namespace tern::gateway;
using namespace tern::gateway::test;
using namespace std::chrono_literals;

namespace {

const std::string limited = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "routes": [
    {"method": "GET", "path": "/a", "service": "users", "pattern": "a",
     "policies": {"rate_limit": {"limits": [{"requests": 2, "per_s": 1}]}}},
    {"method": "GET", "path": "/k", "service": "users", "pattern": "k",
     "policies": {"rate_limit": {"limits": [{"requests": 1, "per_s": 10}],
                                 "key": "header:x-key", "max_keys": 2}}},
    {"method": "GET", "path": "/two", "service": "users", "pattern": "t",
     "policies": {"rate_limit": {"limits": [{"requests": 3, "per_s": 1},
                                            {"requests": 4, "per_s": 60, "name": "minute"}]}}},
    {"method": "GET", "path": "/s", "service": "users", "pattern": "s",
     "policies": {"rate_limit": {"limits": [{"requests": 1, "per_s": 60}], "shadow": true}}}
  ]})";

asio::awaitable<void> answer(request_context& ctx) {
  ctx.response.status = 200;
  co_return;
}

}  // namespace

TEST_CASE("a bucket refills one request per interval, and says so in its fields") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, limited, answer);
    auto r = co_await f.get("/a");
    CHECK(r.status == 200);
    CHECK(field(r, "RateLimit-Policy") == R"("2-per-1s";q=2;w=1)");
    CHECK(field(r, "RateLimit") == R"("2-per-1s";r=1;t=1)");
    r = co_await f.get("/a");
    CHECK(r.status == 200);
    CHECK(field(r, "RateLimit") == R"("2-per-1s";r=0;t=1)");
    r = co_await f.get("/a");
    CHECK(r.status == 429);
    CHECK(field(r, "Retry-After") == "1");
    CHECK(f.handled() == 2);
    // One request comes back every 500 ms, not before.
    manual_clock::advance(499ms);
    CHECK((co_await f.get("/a")).status == 429);
    manual_clock::advance(1ms);
    CHECK((co_await f.get("/a")).status == 200);
    CHECK((co_await f.get("/a")).status == 429);
    // A full second refills the burst, and no more.
    manual_clock::advance(1s);
    CHECK((co_await f.get("/a")).status == 200);
    CHECK((co_await f.get("/a")).status == 200);
    CHECK((co_await f.get("/a")).status == 429);
    CHECK(f.handled() == 5);
    CHECK(sample(f.metrics(), "gateway_rate_limited_requests_total",
                 {{"route", "/a"}, {"mode", "enforced"}}) == 4);
    co_await f.close();
  });
}

TEST_CASE("every limit of a route applies, and the longest wait is the one told") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, limited, answer);
    std::vector<int> statuses;
    for (int i = 0; i < 4; ++i) statuses.push_back((co_await f.get("/two")).status);
    CHECK(statuses == std::vector<int>{200, 200, 200, 429});  // 3 per second
    // A second on, the per-second limit has refilled; the minute one has
    // one request left, and is full again 60 s after the first.
    manual_clock::advance(1s);
    auto r = co_await f.get("/two");
    CHECK(r.status == 200);
    CHECK(field(r, "RateLimit-Policy") == R"("3-per-1s";q=3;w=1, "minute";q=4;w=60)");
    CHECK(field(r, "RateLimit") == R"("3-per-1s";r=2;t=1, "minute";r=0;t=59)");
    manual_clock::advance(1s);
    r = co_await f.get("/two");
    CHECK(r.status == 429);
    CHECK(field(r, "Retry-After") == "13");  // 4 per minute: one per 15 s from the first
    co_await f.close();
  });
}

TEST_CASE("past max_keys new keys share one bucket until full ones are evicted") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, limited, answer);
    auto as = [&](std::string key) -> asio::awaitable<int> {
      tern::http::request req;
      req.method = "GET";
      req.path = "/k";
      req.headers.emplace_back("x-key", std::move(key));
      co_return (co_await f.ask(req)).status;
    };
    auto keys = [&] {
      return sample(f.process().metrics, "gateway_rate_limit_keys", {{"route", "/k"}});
    };
    CHECK(co_await as("a") == 200);
    CHECK(co_await as("b") == 200);
    CHECK(keys() == 2);
    CHECK(co_await as("c") == 200);  // the shared bucket's one request
    CHECK(co_await as("d") == 429);  // the same bucket
    CHECK(co_await as("a") == 429);  // its own, still empty
    CHECK(keys() == 2);
    // Ten seconds on, a and b are full again: the same as no bucket, so
    // they are dropped for new keys, which get their own again.
    manual_clock::advance(10s);
    CHECK(co_await as("e") == 200);
    CHECK(keys() == 1);
    CHECK(co_await as("e") == 429);
    CHECK(co_await as("a") == 200);
    CHECK(keys() == 2);
    co_await f.close();
  });
}

TEST_CASE("a shadow limit lets everything through and counts what it would refuse") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, limited, answer);
    for (int i = 0; i < 3; ++i) CHECK((co_await f.get("/s")).status == 200);
    CHECK(f.handled() == 3);
    CHECK(sample(f.metrics(), "gateway_rate_limited_requests_total",
                 {{"route", "/s"}, {"mode", "shadow"}}) == 2);
    CHECK(field(co_await f.get("/s"), "RateLimit").empty());  // the client is told nothing
    co_await f.close();
  });
}

TEST_CASE("rate_limit pieces are checked, naming the setting") {
  auto limited = [](const std::string& piece) {
    return chain_error(with_policies("", R"({"rate_limit": )" + piece + "}"));
  };
  CHECK(limited(R"({"limits": [{"requests": 5, "per_s": 10}]})").empty());
  CHECK(limited(R"({"limits": [{"requests": 5, "per_s": 10}], "key": "header:X-Api-Key",
                    "shadow": true, "max_keys": 10})")
            .empty());
  CHECK(limited(R"({"limits": []})") ==
        "routes[0].policies.rate_limit.limits: must list 1 to 4 limits");
  CHECK(
      limited(R"({"limits": [{"requests": 0, "per_s": 1}]})") ==
      "routes[0].policies.rate_limit.limits[0].requests: must be a whole number from 1 to 1000000");
  CHECK(limited(R"({"limits": [{"requests": 1}]})") ==
        "routes[0].policies.rate_limit.limits[0]: needs requests and per_s");
  CHECK(limited(R"({"limits": [{"requests": 1, "per_s": 1, "rate": 2}]})")
            .find("limits[0].rate: is not a limit setting") != std::string::npos);
  CHECK(limited(R"({"limits": [{"requests": 1, "per_s": 1}], "key": "ip"})") ==
        R"(routes[0].policies.rate_limit.key: must be "client", "subject" or "header:<name>")");
  CHECK(limited(R"({"limit": 1})").find("must be {\"limits\"") != std::string::npos);
}

TEST_CASE("clients are keyed by address: each IPv4 address alone, IPv6 by /64") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, limited, answer);
    auto from = [&](const char* peer) -> asio::awaitable<int> {
      tern::http::request req;
      req.method = "GET";
      req.path = "/a";  // 2 a second
      req.peer = tern::parse_ip_endpoint(peer, 0);
      co_return (co_await f.ask(req)).status;
    };
    std::vector<int> got;
    for (const char* p :
         {"192.0.2.7:1", "192.0.2.7:2", "192.0.2.7:3", "192.0.2.8:1", "198.51.100.7:1"}) {
      got.push_back(co_await from(p));
    }
    CHECK(got == std::vector<int>{200, 200, 429, 200, 200});
    got.clear();
    // One /64 shares a bucket whatever its low 64 bits; the next /64 does
    // not. ::ffff:192.0.2.9 is that IPv4 client, written as IPv6.
    std::vector<const char*> v6{
        "[2001:db8:0:1::1]:1", "[2001:db8:0:1:ffff::2]:1", "[2001:db8:0:1:1:2:3:4]:1",
        "[2001:db8:0:2::1]:1", "[::ffff:192.0.2.9]:1",     "192.0.2.9:1",
        "192.0.2.9:2"};
    for (const char* p : v6) got.push_back(co_await from(p));
    CHECK(got == std::vector<int>{200, 200, 429, 200, 200, 200, 429});
    co_await f.close();
  });
}
