// One worker's gateway, in process: the demo's routes, the admin chains,
// 404 and 405.
#include "../gateway_fixture.hpp"

#include "auth/jwt.hpp"

#include "../../support/harness.hpp"
#include "source_dir.hpp"

#include <tern/endpoint.hpp>

#include <doctest/doctest.h>
#include <asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

using namespace tern::gateway;
using namespace tern::gateway::test;

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
  REQUIRE(cfg.section("auth"));
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
