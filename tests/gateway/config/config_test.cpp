// parse_config: the core sections, one reader each, and the overrides.
#include "../gateway_fixture.hpp"

#include <doctest/doctest.h>

#include <cstdlib>

using namespace tern::gateway;
using namespace tern::gateway::test;

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

TEST_CASE("an upstream's tls: Node's names, the passphrase from the environment, flags' defaults") {
  auto upstream = [](const std::string& name, const std::string& tls) {
    return R"(")" + name + R"(": {"host": "h", "port": 1, "tls": )" + tls + "}";
  };
  setenv("TERN_TEST_UPSTREAM_PASS", "correct horse", 1);
  auto cfg = parse_config(
      R"({"upstreams": {)" + upstream("a", R"({"ca": "ca.pem", "cert": "gw.pem", "key": "gw.key",
                        "key_passphrase_env": "TERN_TEST_UPSTREAM_PASS", "server_name": "users"})") +
      ", " + upstream("b", R"({"trust_system_store": true})") + ", " + upstream("c", "false") +
      R"(, "d": {"host": "h", "port": 1}}, "routes": []})");
  unsetenv("TERN_TEST_UPSTREAM_PASS");
  REQUIRE(cfg.upstreams.size() == 4);
  const auto& a = *cfg.upstreams[0].tls;
  CHECK(a.ca_file == "ca.pem");
  CHECK(a.cert_file == "gw.pem");
  CHECK(a.key_file == "gw.key");
  CHECK(a.key_passphrase == "correct horse");
  CHECK(a.server_name == "users");
  CHECK(cfg.upstreams[1].tls->trust_system_store);
  CHECK_FALSE(cfg.upstreams[2].tls.has_value());
  CHECK_FALSE(cfg.upstreams[3].tls.has_value());
  // --upstream-tls-*: upstreams without a "tls" take them; "false" stays plaintext.
  tern::tls_options defaults;
  defaults.ca_file = "flags-ca.pem";
  apply_upstream_tls(cfg, defaults);
  CHECK(cfg.upstreams[0].tls->ca_file == "ca.pem");
  CHECK_FALSE(cfg.upstreams[2].tls.has_value());
  REQUIRE(cfg.upstreams[3].tls.has_value());
  CHECK(cfg.upstreams[3].tls->ca_file == "flags-ca.pem");

  auto one = [&](const std::string& tls) {
    return R"({"upstreams": {)" + upstream("u", tls) + R"(}, "routes": []})";
  };
  expect_config_error(one(R"({"cert": "gw.pem", "key": "gw.key"})"), "upstreams.u.tls.ca");
  expect_config_error(one(R"({"ca": "ca.pem", "cert": "gw.pem"})"), "cert and key go together");
  expect_config_error(one(R"({"ca": "ca.pem", "verify": false})"), "upstreams.u.tls");
  expect_config_error(one(R"({"ca": ""})"), "upstreams.u.tls.ca");
  expect_config_error(one("true"), "upstreams.u.tls");
  expect_config_error(
      one(R"({"ca": "ca.pem", "key_passphrase_env": "TERN_TEST_NOT_SET_ANYWHERE"})"),
      "TERN_TEST_NOT_SET_ANYWHERE, which is not set");
}
