// The cache policy through its chain, in process: single flight, TTLs on
// the process's clock, eviction and invalidation.
#include "../gateway_fixture.hpp"
#include "../policy_fixture.hpp"

#include "render/errors.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <stdexcept>

using namespace tern::gateway;
using namespace tern::gateway::test;
using tern::test::until;

namespace {

const std::string cached = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "cache": {"max_entries": 2},
  "routes": [
    {"method": "GET", "path": "/u/:id", "service": "users", "pattern": "u", "data": "params",
     "policies": {"cache": {"ttl_s": 10}}},
    {"method": "POST", "path": "/u", "service": "users", "pattern": "c", "data": "body",
     "policies": {"cache": {"invalidates": ["/u/:id"]}}}
  ]})";

// A handler that waits for `gate` to open (its cancel) before answering.
struct gated {
  explicit gated(asio::io_context& io) : gate(io, asio::steady_timer::time_point::max()) {}
  asio::awaitable<void> wait() {
    co_await gate.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  asio::steady_timer gate;
};

tern::http::response ok(std::string body) {
  tern::http::response r;
  r.status = 200;
  r.body = std::move(body);
  return r;
}

double evictions(policy_fixture& f, const char* reason) {
  return sample(f.process().metrics, "gateway_cache_evictions_total", {{"reason", reason}});
}

}  // namespace

TEST_CASE("single flight: a leader that fails answers its followers, and nothing is cached") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    gated g(io);
    bool fail = true;
    policy_fixture f(io, cached, [&](request_context& ctx) -> asio::awaitable<void> {
      if (!fail) {
        ctx.response = ok("{}");
        co_return;
      }
      co_await g.wait();
      throw std::runtime_error("the service fell over");
    });
    std::vector<tern::http::response> got;
    for (int i = 0; i < 3; ++i) {
      tern::test::spawn([&]() -> asio::awaitable<void> { got.push_back(co_await f.get("/u/7")); });
    }
    // The three start in order: the first leads into the handler, the
    // other two wait on its flight.
    co_await until([&] { return f.handled() == 1; });
    g.gate.cancel();
    co_await until([&] { return got.size() == 3; });
    REQUIRE(got.size() == 3);
    CHECK(f.handled() == 1);  // the followers did not call
    for (const auto& r : got) {
      CHECK(r.status == 500);
      CHECK(r.body == internal_error().body);
      CHECK(field(r, "X-Cache") == "MISS");
    }
    // A failure is not kept: the next request calls again, and its
    // success is.
    fail = false;
    CHECK(field(co_await f.get("/u/7"), "X-Cache") == "MISS");
    CHECK(f.handled() == 2);
    CHECK(field(co_await f.get("/u/7"), "X-Cache") == "HIT");
    CHECK(f.handled() == 2);
    co_await f.close();
  });
}

TEST_CASE("single flight: when the leader's client leaves, a follower leads instead") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    gated g(io);
    policy_fixture f(io, cached, [&](request_context& ctx) -> asio::awaitable<void> {
      if (f.handled() > 1) {
        ctx.response = ok(R"({"from":"second"})");
        co_return;
      }
      co_await g.wait();
      // As the gateway answers a request whose client went: its calls were
      // cancelled, and the 499 is nobody's.
      ctx.response = ctx.request.client_gone ? client_closed() : ok(R"({"from":"first"})");
    });
    tern::http::request leader;
    leader.method = "GET";
    leader.path = "/u/7";
    bool leader_done = false;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      co_await f.ask(leader);
      leader_done = true;
    });
    std::vector<tern::http::response> got;
    for (int i = 0; i < 2; ++i) {
      tern::test::spawn([&]() -> asio::awaitable<void> { got.push_back(co_await f.get("/u/7")); });
    }
    co_await until([&] { return f.handled() == 1; });
    leader.client_gone = true;
    g.gate.cancel();
    co_await until([&] { return leader_done && got.size() == 2; });
    REQUIRE(got.size() == 2);
    CHECK(f.handled() == 2);  // one follower led the second call; the other waited on it
    for (const auto& r : got) {
      CHECK(r.status == 200);
      CHECK(r.body == R"({"from":"second"})");
    }
    CHECK(field(got[0], "X-Cache") != field(got[1], "X-Cache"));  // one MISS, one HIT
    co_await f.close();
  });
}

TEST_CASE("an entry lives its TTL on the process's clock, with its Age") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, cached, [](request_context& ctx) -> asio::awaitable<void> {
      ctx.response = ok("{}");
      co_return;
    });
    CHECK(field(co_await f.get("/u/1"), "X-Cache") == "MISS");
    manual_clock::advance(std::chrono::milliseconds(4500));
    auto r = co_await f.get("/u/1");
    CHECK(field(r, "X-Cache") == "HIT");
    CHECK(field(r, "Age") == "4");
    manual_clock::advance(std::chrono::milliseconds(5499));
    CHECK(field(co_await f.get("/u/1"), "Age") == "9");
    CHECK(f.handled() == 1);
    manual_clock::advance(std::chrono::milliseconds(1));  // 10 s: gone
    CHECK(field(co_await f.get("/u/1"), "X-Cache") == "MISS");
    CHECK(f.handled() == 2);
    CHECK(evictions(f, "expired") == 1);
    co_await f.close();
  });
}

TEST_CASE("past max_entries the least recently used entry goes, and a write invalidates") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, cached, [](request_context& ctx) -> asio::awaitable<void> {
      ctx.response = ok("{}");
      co_return;
    });
    co_await f.get("/u/1");
    co_await f.get("/u/2");
    CHECK(field(co_await f.get("/u/1"), "X-Cache") == "HIT");  // 1 is now the more recent
    co_await f.get("/u/3");                                    // 2 goes
    CHECK(evictions(f, "lru") == 1);
    CHECK(field(co_await f.get("/u/1"), "X-Cache") == "HIT");
    CHECK(field(co_await f.get("/u/3"), "X-Cache") == "HIT");
    CHECK(f.handled() == 3);
    CHECK(field(co_await f.get("/u/2"), "X-Cache") == "MISS");
    CHECK(f.handled() == 4);
    CHECK(sample(f.process().metrics, "gateway_cache_entries") == 2);
    // A successful POST /u drops every /u/:id entry.
    tern::http::request write;
    write.method = "POST";
    write.path = "/u";
    write.body = "{}";
    CHECK((co_await f.ask(write)).status == 200);
    CHECK(evictions(f, "invalidated") == 2);
    CHECK(sample(f.process().metrics, "gateway_cache_entries") == 0);
    CHECK(field(co_await f.get("/u/1"), "X-Cache") == "MISS");
    co_await f.close();
  });
}

TEST_CASE("cache pieces and the cache section are checked, naming the setting") {
  auto cached = [](const std::string& piece) {
    return chain_error(with_policies("", R"({"cache": )" + piece + "}"));
  };
  CHECK(cached(R"({"ttl_s": 5})").empty());
  CHECK(cached(R"({"ttl_s": 0.5, "invalidates": ["/b"]})").empty());
  CHECK(cached(R"({"ttl_s": 0})") ==
        "routes[0].policies.cache.ttl_s: must be a number of seconds (up to 86400)");
  CHECK(cached(R"({"invalidates": ["/nope"]})") ==
        "routes[0].policies.cache.invalidates: '/nope' is not the path of a GET route");
  CHECK(cached(R"({"ttl": 5})").find("must be {\"ttl_s\": N}") != std::string::npos);
  CHECK(cached(R"({"ttl_s": 5, "vary": []})") ==
        "routes[0].policies.cache.vary: is not a cache setting (ttl_s, invalidates)");
  // The cache's own section is checked even when no route caches.
  CHECK(chain_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "cache": {"max_entries": 10, "max_size": 5}})") ==
        "cache.max_size: is not a cache setting (max_entries, max_bytes, max_entry_bytes)");
  CHECK(chain_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "cache": {"max_entries": 0}})") == "cache.max_entries: must be a positive integer");
}
