#include "app/gateway.hpp"
#include "auth/jwt.hpp"
#include "config/config.hpp"
#include "policies/client_address.hpp"
#include "render/call_data.hpp"
#include "render/errors.hpp"

#include <tern/endpoint.hpp>

#include "../support/harness.hpp"
#include "source_dir.hpp"

#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

using namespace tern::gateway;

namespace {

nlohmann::json decoded(const std::string& packed) {
  return nlohmann::json::from_msgpack(packed);
}

const char* minimal = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 3001}},
  "routes": [
    {"method": "GET", "path": "/u/:id", "service": "users", "pattern": {"cmd": "get_user"}, "data": "params"}
  ]})";

// Runs `io` a handler at a time until done() holds, for at most 10 s: the
// gateway keeps timers (the access log's flush), so the loop never runs out
// of work by itself.
template <typename Done>
void run_until(asio::io_context& io, Done done) {
  io.restart();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    io.run_one_for(std::chrono::milliseconds(100));
  }
  REQUIRE_MESSAGE(done(), "not done within 10 s");
}

// A gateway its test closes and joins before it goes, as every owner of
// one must (its tasks, the access log's flushes and the probes, borrow
// it). Not for a gateway inside a coroutine on `io`: that one co_awaits
// close() and join() itself.
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

void expect_config_error(const std::string& text, const std::string& names) {
  try {
    parse_config(text);
    FAIL("accepted a bad config");
  } catch (const config_error& e) {
    CHECK_MESSAGE(std::string(e.what()).find(names) != std::string::npos, e.what());
  }
}

}  // namespace

TEST_CASE("call data: params, query and body, merged in order") {
  std::vector<std::pair<std::string_view, std::string>> params{{"id", "42"}, {"slug", "a b"}};
  CHECK(decoded(build_call_data({data_source::params}, params, "", "")) ==
        nlohmann::json{{"id", 42}, {"slug", "a b"}});
  CHECK(decoded(
            build_call_data({data_source::query}, {}, "limit=5&name=J%C3%BCrgen+X&neg=-3&x", "")) ==
        nlohmann::json{{"limit", 5}, {"name", "Jürgen X"}, {"neg", -3}, {"x", ""}});
  CHECK(build_call_data({data_source::query}, {}, "", "") == std::string(1, '\x80'));
  CHECK(build_call_data({data_source::none}, {}, "a=1", "{}") == std::string(1, '\xc0'));
  CHECK(decoded(build_call_data({data_source::body}, {}, "", R"({"name":"x","n":[1]})")) ==
        nlohmann::json{{"name", "x"}, {"n", {1}}});
  CHECK(decoded(build_call_data({data_source::params, data_source::body}, params, "",
                                R"({"name":"x","id":7})")) ==
        nlohmann::json{{"id", 7}, {"slug", "a b"}, {"name", "x"}});
  CHECK_THROWS_AS(build_call_data({data_source::body}, {}, "", "{oops"), tern::rpc_error);
  CHECK_THROWS_AS(build_call_data({data_source::params, data_source::body}, params, "", "[1]"),
                  tern::rpc_error);
}

namespace {
// The rpc_error message build_call_data throws for a body (none: "").
std::string refusal(std::string_view body, std::vector<data_source> sources = {data_source::body}) {
  try {
    build_call_data(sources, {}, "", body);
  } catch (const tern::rpc_error& e) {
    CHECK(e.status() == 400);
    return std::string(e.message());
  }
  return "";
}
std::string nested_array(int levels) {
  return std::string(static_cast<std::size_t>(levels), '[') +
         std::string(static_cast<std::size_t>(levels), ']');
}
}  // namespace

TEST_CASE("a JSON body nested past the wire's limit is refused before anything recurses") {
  CHECK(refusal(nested_array(100000)) == "the JSON body nests deeper than 64 levels");
  CHECK(refusal("{\"a\":" + nested_array(64) + "}") == "the JSON body nests deeper than 64 levels");
  CHECK(refusal(nested_array(64)) == "");
  auto ok =
      decoded(build_call_data({data_source::body}, {}, "", "{\"a\":" + nested_array(63) + "}"));
  CHECK(ok.is_object());
}

TEST_CASE("a JSON body becomes the same value nlohmann reads, with the smallest encodings") {
  const char* body = R"({"s":"x\u00e9\ud83d\ude00","n":[0,-1,-33,127,128,-129,65536,-2147483649,
    18446744073709551615,-9223372036854775808,1.5,-0.25,1e300],"t":true,"f":false,"z":null,
    "o":{"k":{}},"a":[[],{}],"long":"0123456789012345678901234567890123456789"})";
  auto packed = build_call_data({data_source::body}, {}, "", body);
  CHECK(decoded(packed) == nlohmann::json::parse(body));
  CHECK(build_call_data({data_source::body}, {}, "", "[1,2,3]") == "\x93\x01\x02\x03");
  CHECK(build_call_data({data_source::body}, {}, "", "{}") == "\x80");
  auto wide = "[" + std::string(17 * 2 - 1, ',') + "]";  // 17 empty slots: malformed
  CHECK(refusal(wide) == "malformed JSON body");
  std::string many = "[";
  for (int i = 0; i < 70000; ++i) many += i ? ",1" : "1";
  many += "]";
  auto big = build_call_data({data_source::body}, {}, "", many);
  CHECK(big.substr(0, 5) == std::string("\xdd\x00\x01\x11\x70", 5));  // array32 of 70000
  CHECK(decoded(big).size() == 70000);
}

TEST_CASE("a JSON body with a key twice in one object is refused") {
  CHECK(refusal(R"({"a":1,"a":2})") == "duplicate key \"a\" in the JSON body");
  CHECK(refusal(R"({"o":{"b":[{"c":1,"c":1}]}})") == "duplicate key \"c\" in the JSON body");
  CHECK(refusal(R"({"a":{"a":1},"b":{"a":2}})") == "");  // one per object is fine
  std::string body = "{";
  for (int i = 0; i < 100000; ++i) body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
  CHECK(decoded(build_call_data({data_source::body}, {}, "", body + "}")).size() == 100000);
  CHECK(refusal(body + ",\"k99999\":2}") == "duplicate key \"k99999\" in the JSON body");
}

TEST_CASE("a JSON body with a number out of range, bad text or trailing bytes is refused") {
  CHECK(refusal("[1e400]") == "malformed JSON body");              // nlohmann's number overflow
  CHECK(refusal("{\"name\":\"\xff\"}") == "malformed JSON body");  // not UTF-8
  CHECK(refusal("{\"a\":1} x") == "malformed JSON body");
}

TEST_CASE("path and query values: 64-bit integers, UTF-8 checked, last repeat wins") {
  std::vector<std::pair<std::string_view, std::string>> ids{{"a", "18446744073709551615"},
                                                            {"b", "18446744073709551616"},
                                                            {"c", "-9223372036854775808"},
                                                            {"d", "-"},
                                                            {"e", "+1"},
                                                            {"f", "007"}};
  CHECK(decoded(build_call_data({data_source::params}, ids, "", "")) ==
        nlohmann::json{{"a", 18446744073709551615ull},
                       {"b", "18446744073709551616"},
                       {"c", INT64_MIN},
                       {"d", "-"},
                       {"e", "+1"},
                       {"f", 7}});
  CHECK(decoded(build_call_data({data_source::query}, {}, "a=1&b=2&a=3", "")) ==
        nlohmann::json{{"a", 3}, {"b", 2}});
  std::vector<std::pair<std::string_view, std::string>> bad{{"id", "\xc3\x28"}};
  CHECK_THROWS_WITH(build_call_data({data_source::params}, bad, "", ""),
                    "path parameter 'id' is not valid UTF-8");
  CHECK_THROWS_WITH(build_call_data({data_source::query}, {}, "name=%ff", ""),
                    "query parameter 'name' is not valid UTF-8");
  CHECK_THROWS_WITH(build_call_data({data_source::query}, {}, "%ff=1", ""),
                    "a query parameter name is not valid UTF-8");
}

TEST_CASE("service failures map to HTTP statuses") {
  upstream u{"users", {"h:1"}, std::chrono::milliseconds(250)};
  CHECK(error_for(tern::rpc_error(404, "user 1 not found"), u).status == 404);
  CHECK(error_for(tern::rpc_error(418, "teapot"), u).status == 418);
  CHECK(error_for(tern::rpc_error(7, "odd status"), u).status == 500);
  CHECK(error_for({tern::errc::internal, "x", 500}, u).status == 500);
  CHECK(error_for({tern::errc::timeout, "x"}, u).status == 504);
  CHECK(error_for({tern::errc::connection_refused, "x"}, u).status == 503);
  CHECK(error_for({tern::errc::connection_closed, "x"}, u).status == 503);
  CHECK(error_for({tern::errc::no_handler, "x"}, u).status == 502);
  auto r = error_for(tern::rpc_error(409, "taken"), u);
  CHECK(nlohmann::json::parse(r.body) ==
        nlohmann::json{{"statusCode", 409}, {"message", "taken"}, {"error", "Conflict"}});
}

TEST_CASE("the demo config is valid and routes as documented") {
  std::ifstream in(std::string(TERN_SOURCE_DIR) + "/gateway/routes.json");
  std::stringstream ss;
  ss << in.rdbuf();
  auto cfg = parse_config(ss.str());
  CHECK(cfg.upstreams.size() == 2);
  CHECK(cfg.routes.size() == 8);
  const auto& dash = cfg.routes.back();
  CHECK(dash.aggregate);
  REQUIRE(dash.calls.size() == 2);
  CHECK(dash.calls[0].first == "users");  // the file's order is kept
  CHECK(dash.calls[1].first == "products");
  CHECK(cfg.routes[2].status == 201);  // POST

  // Each documented route reaches its upstream (here: nothing listens, so
  // the answer names the upstream that was called), anything else is 404.
  asio::io_context io(1);
  for (auto& u : cfg.upstreams) {
    asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    u.endpoints = {"127.0.0.1:" +
                   std::to_string(a.local_endpoint().port())};  // free once `a` closes
  }
  ::setenv("TERN_JWT_SECRET", "a-test-secret-of-at-least-32-bytes", 1);
  test_gateway gw(io, cfg);
  auto admin = "Bearer " + jwt::verifier(nlohmann::json::parse(*cfg.section("auth")), "auth")
                               .sign({{"sub", "t"}, {"roles", {"admin"}}, {"iss", "tern-demo"}});
  auto answer = [&](std::string method, std::string path, std::string body = "",
                    std::string authorization = "") {
    tern::http::request req;
    req.method = std::move(method);
    req.path = req.target = std::move(path);
    req.body = std::move(body);
    if (!authorization.empty()) req.headers.emplace_back("authorization", authorization);
    tern::http::response r;
    bool done = false;
    asio::co_spawn(io, gw.handle(req), [&](std::exception_ptr e, tern::http::response got) {
      REQUIRE_FALSE(e);
      r = std::move(got);
      done = true;
    });
    run_until(io, [&] { return done; });
    return std::pair(r.status, nlohmann::json::parse(r.body)["message"].get<std::string>());
  };
  using route_answer = std::pair<int, std::string>;
  const route_answer users{503, "service users is unavailable"},
      products{503, "service products is unavailable"};
  CHECK(answer("GET", "/api-gateway/users") == users);
  CHECK(answer("GET", "/api-gateway/users/7") == users);
  CHECK(answer("HEAD", "/api-gateway/users/7") == users);  // HEAD is GET without a body
  CHECK(answer("POST", "/api-gateway/users", R"({"name":"a"})") ==
        route_answer{401, "missing bearer token"});  // admins only
  CHECK(answer("POST", "/api-gateway/users", R"({"name":"a"})", admin) == users);
  CHECK(answer("GET", "/api-gateway/products") == products);
  CHECK(answer("GET", "/api-gateway/products/1") == products);
  CHECK(answer("POST", "/api-gateway/products", R"({"name":"a"})", admin) == products);
  CHECK(answer("GET", "/api-gateway/dashboard") == users);  // the first call decides
  CHECK(answer("DELETE", "/api-gateway/users") ==
        route_answer{405, "Cannot DELETE /api-gateway/users"});  // GET and POST routes have it
  CHECK(answer("GET", "/api-gateway/users/7/x") ==
        route_answer{404, "Cannot GET /api-gateway/users/7/x"});
  CHECK(answer("GET", "/api-gateway/user") == route_answer{404, "Cannot GET /api-gateway/user"});
  CHECK(answer("POST", "/api-gateway/users", "[[", admin) ==
        route_answer{400, "malformed JSON body"});
}

TEST_CASE("bad configs are refused with the entry named") {
  CHECK_NOTHROW(parse_config(minimal));
  expect_config_error("{", "not valid JSON");
  expect_config_error(std::string(100000, '[') + std::string(100000, ']'),
                      "config nests deeper than 64 levels");
  expect_config_error(R"({"routes": []})", "upstreams");
  expect_config_error(R"({"upstreams": {"u": {"host": "h", "port": 0}}, "routes": []})",
                      "upstreams.u.port");
  auto with_route = [](const std::string& route) {
    return std::string(R"({"upstreams": {"users": {"host": "h", "port": 1}}, "routes": [)") +
           route + "]}";
  };
  expect_config_error(
      with_route(R"({"method": "GET", "path": "/x", "service": "nope", "pattern": "p"})"),
      "routes[0].service");
  expect_config_error(
      with_route(R"({"method": "FETCH", "path": "/x", "service": "users", "pattern": "p"})"),
      "routes[0].method");
  expect_config_error(
      with_route(R"({"method": "GET", "path": "x", "service": "users", "pattern": "p"})"),
      "routes[0].path");
  expect_config_error(with_route(R"({"method": "GET", "path": "/x", "service": "users"})"),
                      "routes[0].pattern");
  expect_config_error(
      with_route(
          R"({"method": "GET", "path": "/x", "service": "users", "pattern": "p", "data": "headers"})"),
      "routes[0].data");
  expect_config_error(with_route(R"({"method": "GET", "path": "/x"})"), "routes[0]");
  expect_config_error(
      with_route(
          R"({"method": "GET", "path": "/x", "aggregate": {"a": {"service": "zz", "pattern": "p"}}})"),
      "routes[0].aggregate.a.service");
  expect_config_error(
      with_route(R"({"method": "GET", "path": "/x", "service": "users", "pattern": "p"},
                                    {"method": "GET", "path": "/x", "service": "users", "pattern": "q"})"),
      "routes[1]");
}

TEST_CASE("an upstream is host and port or a list of endpoints, balanced as configured") {
  auto cfg = parse_config(R"({"upstreams": {
      "a": {"host": "users", "port": 3001},
      "b": {"endpoints": ["10.0.0.1:1", "[::1]:2", "users:3"], "balance": "round_robin",
            "resolve_interval_ms": 250, "wire": "nestjs"}},
    "dns": {"servers": ["127.0.0.1:5353", "::1", "[::1]:53"]}, "routes": []})");
  REQUIRE(cfg.upstreams.size() == 2);
  CHECK(cfg.upstreams[0].endpoints == std::vector<std::string>{"users:3001"});
  CHECK_FALSE(cfg.upstreams[0].round_robin);
  CHECK(cfg.upstreams[1].endpoints == std::vector<std::string>{"10.0.0.1:1", "[::1]:2", "users:3"});
  CHECK(cfg.upstreams[1].round_robin);
  CHECK(cfg.upstreams[1].resolve_interval == std::chrono::milliseconds(250));
  CHECK(cfg.upstreams[0].wire == tern::wire_format::tern);
  CHECK(cfg.upstreams[1].wire == tern::wire_format::nestjs);
  CHECK(cfg.dns_servers.size() == 3);

  auto upstream = [](const std::string& body) {
    return R"({"upstreams": {"u": )" + body + R"(}, "routes": []})";
  };
  expect_config_error(upstream(R"({"endpoints": []})"), "upstreams.u.endpoints");
  expect_config_error(upstream(R"({"endpoints": ["h:0"]})"), "upstreams.u.endpoints[0]");
  expect_config_error(upstream(R"({"endpoints": ["::1:80"]})"), "upstreams.u.endpoints[0]");
  expect_config_error(upstream(R"({"endpoints": ["h:1"], "host": "h"})"),
                      "host and port, or endpoints");
  expect_config_error(upstream(R"({"endpoints": ["h:1"], "balance": "random"})"),
                      "upstreams.u.balance");
  expect_config_error(upstream(R"({"endpoints": ["h:1"], "timeout": 5})"), "upstreams.u.timeout");
  expect_config_error(upstream(R"({"endpoints": ["h:1"], "wire": "json"})"), "upstreams.u.wire");
  expect_config_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
                          "dns": {"servers": ["dns.example"]}})",
                      "dns.servers[0]");
  expect_config_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
                          "dns": {"servers": ["10.0.0.1:53", "10.0.0.1:abc"]}})",
                      "dns.servers[1]");
}

TEST_CASE("an upstream's ejection, breaker and retry settings, and which routes are idempotent") {
  auto cfg = parse_config(R"({"upstreams": {
      "a": {"host": "h", "port": 1,
            "ejection": {"consecutive_failures": 3, "base_ms": 200, "max_ejected_percent": 30},
            "breaker": {"failure_rate": 0.25, "min_calls": 50, "open_ms": 1500},
            "retry": {"max_attempts": 2, "budget_ratio": 0.1}},
      "b": {"host": "h", "port": 2, "ejection": false, "breaker": false, "retry": false}},
    "routes": [
      {"method": "GET", "path": "/g", "service": "a", "pattern": "g"},
      {"method": "POST", "path": "/p", "service": "a", "pattern": "p"},
      {"method": "PUT", "path": "/u", "service": "a", "pattern": "u", "idempotent": true},
      {"method": "GET", "path": "/n", "service": "a", "pattern": "n", "idempotent": false}]})");
  const auto& a = cfg.upstreams[0];
  CHECK(a.ejection.consecutive_failures == 3);
  CHECK(a.ejection.base_time == std::chrono::milliseconds(200));
  CHECK(a.ejection.max_ejected_percent == 30);
  CHECK(a.breaker.failure_rate == doctest::Approx(0.25));
  CHECK(a.breaker.min_calls == 50);
  CHECK(a.breaker.open_time == std::chrono::milliseconds(1500));
  CHECK(a.breaker.consecutive_failures == tern::breaker_options{}.consecutive_failures);
  CHECK(a.retry.max_attempts == 2);
  CHECK(a.retry.budget_ratio == doctest::Approx(0.1));
  const auto& b = cfg.upstreams[1];
  CHECK(b.ejection.consecutive_failures == 0);
  CHECK(b.breaker.consecutive_failures == 0);
  CHECK(b.breaker.failure_rate == 0);
  CHECK(b.retry.max_attempts == 1);
  CHECK(cfg.routes[0].idempotent);
  CHECK_FALSE(cfg.routes[1].idempotent);
  CHECK(cfg.routes[2].idempotent);
  CHECK_FALSE(cfg.routes[3].idempotent);

  auto upstream = [](const std::string& extra) {
    return R"({"upstreams": {"u": {"host": "h", "port": 1, )" + extra + R"(}}, "routes": []})";
  };
  expect_config_error(upstream(R"("breaker": {"failure_rate": 2})"),
                      "upstreams.u.breaker.failure_rate");
  expect_config_error(upstream(R"("breaker": {"open": 5})"), "upstreams.u.breaker.open");
  expect_config_error(upstream(R"("retry": {"max_attempts": 0})"),
                      "upstreams.u.retry.max_attempts");
  expect_config_error(upstream(R"("retry": true)"), "upstreams.u.retry");
  expect_config_error(upstream(R"("ejection": {"max_ejected_percent": 101})"),
                      "upstreams.u.ejection.max_ejected_percent");
}

TEST_CASE("UPSTREAM_<NAME> overrides an upstream's address") {
  auto cfg = parse_config(minimal);
  setenv("UPSTREAM_USERS", "users:4001", 1);
  apply_env_overrides(cfg);
  CHECK(cfg.upstreams[0].endpoints == std::vector<std::string>{"users:4001"});
  setenv("UPSTREAM_USERS", "10.0.0.1:4001,[::1]:4002", 1);
  apply_env_overrides(cfg);
  CHECK(cfg.upstreams[0].endpoints == std::vector<std::string>{"10.0.0.1:4001", "[::1]:4002"});
  setenv("UPSTREAM_USERS", "nonsense", 1);
  CHECK_THROWS_AS(apply_env_overrides(cfg), config_error);
  unsetenv("UPSTREAM_USERS");
}

namespace {

// The config_error a gateway built from `text` throws (empty if none).
std::string chain_error(const std::string& text) {
  asio::io_context io(1);
  try {
    test_gateway gw(io, parse_config(text));
  } catch (const config_error& e) {
    return e.what();
  }
  return {};
}

std::string with_policies(const std::string& top, const std::string& route) {
  return R"({"upstreams": {"users": {"host": "127.0.0.1", "port": 1}},)" +
         (top.empty() ? std::string() : R"("policies": )" + top + ",") + R"("routes": [
    {"method": "GET", "path": "/a", "service": "users", "pattern": "a")" +
         (route.empty() ? std::string() : R"(, "policies": )" + route) + R"(},
    {"method": "GET", "path": "/b", "service": "users", "pattern": "b"}]})";
}

}  // namespace

TEST_CASE("each policy validates its own piece of the config, by name") {
  CHECK(chain_error(with_policies("", "")).empty());
  CHECK(chain_error(with_policies(R"({"access_log": false, "metrics": true})", "")).empty());
  auto e = chain_error(with_policies(R"({"rate": {}})", ""));
  CHECK(e ==
        "policies.rate: is not a policy (known: request_id, access_log, metrics, cors, auth, "
        "rate_limit, cache)");
  e = chain_error(with_policies("", R"({"acces_log": true})"));
  CHECK(e.find("routes[0].policies.acces_log: is not a policy") == 0);
  e = chain_error(with_policies("", R"({"access_log": {"format": "xml"}})"));
  CHECK(e == R"(routes[0].policies.access_log.format: must be "text" or "json")");
  e = chain_error(with_policies(R"({"access_log": {"format": "json", "colour": "red"}})", ""));
  CHECK(e.find("policies.access_log.colour: not a setting") == 0);
  e = chain_error(with_policies(R"({"metrics": 3})", ""));
  CHECK(e == "policies.metrics: must be true, false or {}");
  e = chain_error(with_policies(R"({"access_log": {"path": "/nonexistent-dir/x.log"}})", ""));
  CHECK(e.find("access log /nonexistent-dir/x.log: No such file or directory") == 0);
}

TEST_CASE("auth, rate_limit and cache pieces are checked, naming the setting") {
  CHECK(chain_error(with_policies("", R"({"auth": true})")) ==
        R"(routes[0].policies.auth: needs the top-level "auth" section (its keys))");
  CHECK(chain_error(with_policies("", R"({"auth": "yes"})")).find("must be true") !=
        std::string::npos);
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

TEST_CASE("a top-level section is parse_config's or a policy's: any other is refused") {
  CHECK(chain_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "caches": {"max_entries": 10}})") ==
        "caches: is not a section (known: upstreams, dns, server, policies, admin, routes, auth, "
        "cache)");
  // An auth section is read as the auth policy will read it, used or not.
  ::unsetenv("TERN_TEST_UNSET_SECRET");
  CHECK(chain_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "auth": {"keys": [{"algorithms": ["HS256"], "secret_env": "TERN_TEST_UNSET_SECRET"}]}})")
            .find("auth.keys[0]") == 0);
  CHECK(chain_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "auth": []})") == "auth: must be an object");
  expect_config_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "server": {"max_conections": 5}})",
                      "server.max_conections: unknown setting");
}

TEST_CASE("cors pieces are checked: any origin only for public routes, never with credentials") {
  auto cors = [](const std::string& top, const std::string& route) {
    return chain_error(with_policies(top, route));
  };
  CHECK(cors(R"({"cors": {"origins": ["https://app.example"]}})", "").empty());
  CHECK(cors(R"({"cors": {"origins": "*"}})", "").empty());
  CHECK(cors(R"({"cors": {"origins": "*", "credentials": true}})", "") ==
        R"(policies.cors.origins: "*" cannot go with credentials (list the origins))");
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  auto with_auth = with_policies(R"({"cors": {"origins": "*"}})", R"({"auth": true})");
  with_auth.insert(
      1, R"("auth": {"keys": [{"algorithms": ["HS256"], "secret_env": "TERN_TEST_LONG"}]},)");
  CHECK(
      chain_error(with_auth) ==
      R"(policies.cors.origins: "*" is for public routes only, and GET /a has auth (list the origins))");
  CHECK(cors("", R"({"cors": {"origins": ["localhost:8080"]}})").find("is not an origin") !=
        std::string::npos);
  CHECK(cors("", R"({"cors": {"origins": ["https://a.example/"]}})").find("is not an origin") !=
        std::string::npos);
  CHECK(cors("", R"({"cors": {"origins": ["https://a.example"], "maxage": 1}})")
            .find("routes[0].policies.cors.maxage: is not a cors setting") == 0);
  CHECK(cors("", R"({"cors": true})").find("must be {\"origins\"") != std::string::npos);
}

TEST_CASE("trusted proxies are addresses or ranges, IPv4 and IPv6") {
  auto list = nlohmann::ordered_json::parse(R"(["10.0.0.0/8", "::1", "fd00::/8", "192.168.1.7"])");
  auto proxies = trusted_proxies::read(list, "server.trusted_proxies");
  REQUIRE(proxies.size() == 4);
  auto trusted = [&](const char* text) {
    tern::ip_address a{};
    REQUIRE(tern::parse_ip(text, a));
    return proxies.contains(a);
  };
  CHECK(trusted("10.200.3.4"));
  CHECK_FALSE(trusted("11.0.0.1"));
  CHECK(trusted("::1"));
  CHECK_FALSE(trusted("::2"));
  CHECK(trusted("fd12:3456::1"));
  CHECK(trusted("192.168.1.7"));
  CHECK_FALSE(trusted("192.168.1.8"));
  tern::ip_address a{};
  CHECK_FALSE(tern::parse_ip("10.0.0.1:80", a));
  CHECK_FALSE(tern::parse_ip("", a));
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "host", "10.0.0.0/8x"}) {
    CHECK(chain_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
        "server": {"trusted_proxies": [")" +
                      std::string(bad) + R"("]}})")
              .find("server.trusted_proxies[0]: '") == 0);
  }
}

TEST_CASE("the client is the peer, or behind trusted proxies the last untrusted hop") {
  auto proxies = trusted_proxies::read(
      nlohmann::ordered_json::parse(R"(["127.0.0.1", "10.0.0.0/8"])"), "server.trusted_proxies");
  auto client = [&](const char* peer, std::vector<const char*> forwarded) {
    tern::http::request req;
    req.peer = tern::parse_ip_endpoint(peer, 0);
    for (const char* f : forwarded) req.headers.emplace_back("x-forwarded-for", f);
    return tern::to_string(proxies.client(req));
  };
  CHECK(client("203.0.113.9:5", {"198.51.100.1"}) == "203.0.113.9");  // an untrusted peer's word
  CHECK(client("127.0.0.1:5", {}) == "127.0.0.1");
  CHECK(client("127.0.0.1:5", {"198.51.100.1"}) == "198.51.100.1");
  CHECK(client("127.0.0.1:5", {"198.51.100.1, 10.1.2.3"}) == "198.51.100.1");
  CHECK(client("127.0.0.1:5", {"6.6.6.6, 198.51.100.1"}) == "198.51.100.1");  // a forged left
  CHECK(client("127.0.0.1:5", {"6.6.6.6", "198.51.100.1 ,10.0.0.1"}) == "198.51.100.1");
  CHECK(client("127.0.0.1:5", {"junk, 10.0.0.1"}) == "10.0.0.1");  // unreadable: stop there
  CHECK(client("[::1]:5", {"198.51.100.1"}) == "::1");             // ::1 is not trusted here
  CHECK(client("127.0.0.1:5", {"[2001:db8::1]"}) == "127.0.0.1");  // brackets: not an address
  CHECK(client("127.0.0.1:5", {"2001:db8::1"}) == "2001:db8::1");
}

TEST_CASE("a route's own policies piece overrides the default, one policy at a time") {
  auto path = std::filesystem::temp_directory_path() /
              ("tern-access-" + std::to_string(std::random_device{}()) + ".log");
  auto top = R"({"access_log": {"format": "json", "path": ")" + path.string() + R"("}})";
  {
    asio::io_context io(1);
    test_gateway gw(io, parse_config(with_policies(top, R"({"access_log": false})")));
    for (const char* p : {"/a", "/b", "/b"}) {
      tern::http::request req;
      req.method = "GET";
      req.path = req.target = p;
      req.peer = tern::parse_ip_endpoint("127.0.0.1:1", 0);
      bool done = false;
      asio::co_spawn(io, gw.handle(req), [&](std::exception_ptr e, tern::http::response r) {
        REQUIRE_FALSE(e);
        CHECK(r.status == 503);  // nothing listens on port 1
        done = true;
      });
      run_until(io, [&] { return done; });
    }
  }  // the gateway's end writes out what the log holds
  std::ifstream in(path);
  std::vector<std::string> routes;
  for (std::string line; std::getline(in, line);) {
    routes.push_back(nlohmann::json::parse(line)["route"].get<std::string>());
  }
  std::filesystem::remove(path);
  CHECK(routes == std::vector<std::string>{"/b", "/b"});
}

namespace {

// What constructing a verifier from `auth` throws ("" when it does not).
std::string auth_error(const nlohmann::json& auth) {
  try {
    jwt::verifier v(auth, "auth");
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

nlohmann::json hs_key(std::string env, nlohmann::json algorithms = {"HS256"}) {
  return {{"kid", "k"}, {"algorithms", std::move(algorithms)}, {"secret_env", std::move(env)}};
}

}  // namespace

TEST_CASE("auth keys are checked at start-up, naming the entry") {
  ::setenv("TERN_TEST_SHORT", "only-31-bytes-of-secret-here!!!", 1);
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  ::unsetenv("TERN_TEST_UNSET");
  using json = nlohmann::json;
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}}).empty());
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_UNSET")}}}) ==
        "auth.keys[0].secret_env: the environment variable TERN_TEST_UNSET is not set");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_SHORT")}}}) ==
        "auth.keys[0]: HS256 needs a secret of at least 32 bytes");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG", {"HS512"})}}}) ==
        "auth.keys[0]: HS512 needs a secret of at least 64 bytes");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG", {"none"})}}})
            .find("'none' is not a signature algorithm") != std::string::npos);
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG", json::array())}}})
            .find("auth.keys[0].algorithms: must list") == 0);
  CHECK(auth_error({{"keys", {{{"algorithms", {"HS256"}}}}}}) ==
        "auth.keys[0]: needs exactly one of secret_env, secret_file, public_key_file, jwks_file");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG"), hs_key("TERN_TEST_LONG")}}}) ==
        "auth.keys: two keys have the kid 'k'");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"leeway_s", 1000}})
            .find("auth.leeway_s") == 0);
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"audiense", "x"}})
            .find("auth.audiense: is not an auth setting") == 0);
  CHECK(auth_error({{"keys", json::array()}}) == "auth.keys: must list at least one key");
  CHECK(
      auth_error({{"keys", {{{"algorithms", {"RS256"}}, {"public_key_file", "/nonexistent"}}}}}) ==
      "auth.keys[0].public_key_file: cannot read '/nonexistent'");
}

TEST_CASE("exp and nbf are checked with the leeway, to the second") {
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  jwt::verifier v({{"keys", {hs_key("TERN_TEST_LONG")}}, {"leeway_s", 30}}, "auth");
  auto exp = v.sign({{"sub", "a"}, {"exp", 1000}});
  CHECK(v.verify(exp, 1029).ok);
  CHECK(v.verify(exp, 1030).reason == "expired");
  auto nbf = v.sign({{"sub", "a"}, {"nbf", 1000}});
  CHECK(v.verify(nbf, 970).ok);
  CHECK(v.verify(nbf, 969).reason == "not valid yet (nbf)");
  CHECK(v.verify(nbf, 969).claims.is_null());
  auto good = v.verify(v.sign({{"sub", "a"}, {"n", 1}}), 0);
  REQUIRE(good.ok);
  CHECK(good.claims == nlohmann::json{{"sub", "a"}, {"n", 1}});
}

TEST_CASE("base64url round-trips every length and refuses other alphabets") {
  std::string bytes, back;
  for (int n = 0; n < 64; ++n) {
    CHECK(jwt::base64url_decode(jwt::base64url_encode(bytes), back));
    CHECK(back == bytes);
    bytes += static_cast<char>(n * 37);
  }
  CHECK(jwt::base64url_encode("\xfb\xff") == "-_8");
  CHECK_FALSE(jwt::base64url_decode("ab+c", back));
  CHECK_FALSE(jwt::base64url_decode("abc=", back));
  CHECK_FALSE(jwt::base64url_decode("a", back));
}

TEST_CASE("the verified-token cache is keyed by the whole token and never outlives exp") {
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  jwt::token_cache cache(3, 30);
  nlohmann::json claims{{"sub", "a"}, {"exp", 1000}};
  cache.add("t1", claims, 900);
  REQUIRE(cache.find("t1", 900) != nullptr);
  CHECK(cache.find("t1", 1029)->claims == claims);
  CHECK(cache.find("t1x", 900) == nullptr);
  CHECK(cache.find("t", 900) == nullptr);
  CHECK(cache.find("t1", 1030) == nullptr);  // exp + leeway: gone, and stays gone
  CHECK(cache.find("t1", 900) == nullptr);
  // Without exp it lasts; over max_entries the table starts again.
  cache.add("a", {{"sub", "a"}}, 0);
  cache.add("b", {{"sub", "b"}}, 0);
  cache.add("c", {{"sub", "c"}}, 0);
  CHECK(cache.find("a", 1'000'000'000) != nullptr);
  cache.add("d", {{"sub", "d"}}, 0);
  CHECK(cache.find("a", 0) == nullptr);
  CHECK(cache.find("d", 0) != nullptr);
  jwt::token_cache off(0, 30);
  off.add("t1", claims, 900);
  CHECK(off.find("t1", 900) == nullptr);
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"token_cache", false}}).empty());
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"token_cache", {{"max_entries", 5}}}})
            .empty());
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"token_cache", true}})
            .find("auth.token_cache: must be false") == 0);
}

TEST_CASE("a default auth and rate limit leave health, metrics, 404s and parse errors alone") {
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  auto text = with_policies(
      R"({"auth": true, "rate_limit": {"limits": [{"requests": 1, "per_s": 60}]}})", "");
  text.insert(1,
              R"("auth": {"keys": [{"algorithms": ["HS256"], "secret_env": "TERN_TEST_LONG"}]},)");
  asio::io_context io(1);
  test_gateway gw(io, parse_config(text));
  auto status = [&](bool admin, std::string path) {
    tern::http::request req;
    req.method = "GET";
    req.path = req.target = std::move(path);
    req.peer = tern::parse_ip_endpoint("127.0.0.1:1", 0);
    int got = 0;
    asio::co_spawn(io, admin ? gw.handle_admin(req) : gw.handle(req),
                   [&](std::exception_ptr e, tern::http::response r) {
                     REQUIRE_FALSE(e);
                     got = r.status;
                   });
    run_until(io, [&] { return got != 0; });
    return got;
  };
  CHECK(status(false, "/a") == 401);  // a route: the default applies
  for (int i = 0; i < 3; ++i) {
    CHECK(status(true, "/health/live") == 200);
    CHECK(status(true, "/metrics") == 200);
  }
  CHECK(status(false, "/nope") == 404);  // not a 401
  tern::http::request bad;
  bad.method = "GET";
  bad.path = bad.target = "/a";
  int got = 0;
  asio::co_spawn(io, gw.render_error(431, "header fields too large", bad),
                 [&](std::exception_ptr, tern::http::response r) { got = r.status; });
  run_until(io, [&] { return got != 0; });
  CHECK(got == 431);
}

TEST_CASE("a path that exists with other methods is answered 405 naming them, others 404") {
  ::setenv("TERN_JWT_SECRET", "a-secret-of-thirty-two-bytes-ok!", 0);  // the demo config's key
  std::ifstream in(std::string(TERN_SOURCE_DIR) + "/gateway/routes.json");
  std::stringstream ss;
  ss << in.rdbuf();
  auto cfg = parse_config(ss.str());
  cfg.routes.erase(std::remove_if(cfg.routes.begin(), cfg.routes.end(),
                                  [](const route& r) { return r.method != "GET"; }),
                   cfg.routes.end());
  tern::test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    gateway gw(io, cfg);
    auto ask = [&](bool admin, std::string method,
                   std::string path) -> asio::awaitable<tern::http::response> {
      tern::http::request req;
      req.method = std::move(method);
      req.path = req.target = std::move(path);
      req.peer = tern::parse_ip_endpoint("127.0.0.1:1", 0);
      if (admin) co_return co_await gw.handle_admin(req);
      co_return co_await gw.handle(req);
    };
    auto allow = [](const tern::http::response& r) {
      for (const auto& [k, v] : r.headers) {
        if (k == "Allow") return v;
      }
      return std::string();
    };
    auto r = co_await ask(false, "POST", "/api-gateway/users");
    CHECK(r.status == 405);
    CHECK(allow(r) == "GET, HEAD");
    CHECK(
        r.body ==
        R"({"statusCode":405,"message":"Cannot POST /api-gateway/users","error":"Method Not Allowed"})");
    CHECK(allow(co_await ask(false, "DELETE", "/api-gateway/users/7")) == "GET, HEAD");
    r = co_await ask(false, "POST", "/api-gateway/nowhere");
    CHECK(r.status == 404);
    CHECK(allow(r).empty());
    CHECK((co_await ask(false, "GET", "/api-gateway/users/7/x")).status == 404);
    r = co_await ask(true, "POST", "/metrics");
    CHECK(r.status == 405);
    CHECK(allow(r) == "GET, HEAD");
    CHECK((co_await ask(true, "GET", "/nope")).status == 404);
    gw.close();
    CHECK(co_await gw.join(std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  });
}
