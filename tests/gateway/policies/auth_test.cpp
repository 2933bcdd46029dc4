// The auth policy: its piece, and its verdicts through its chain (the keys
// and tokens themselves: auth/jwt_test.cpp).
#include "../gateway_fixture.hpp"
#include "../policy_fixture.hpp"

#include "auth/jwt.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <vector>

#include <string>

using namespace tern::gateway;
using namespace tern::gateway::test;

TEST_CASE("an auth piece needs the auth section, and is checked") {
  CHECK(chain_error(with_policies("", R"({"auth": true})")) ==
        R"(routes[0].policies.auth: needs the top-level "auth" section (its keys))");
  CHECK(chain_error(with_policies("", R"({"auth": "yes"})")).find("must be true") !=
        std::string::npos);
}

namespace {

const std::string guarded = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "auth": {"keys": [{"kid": "k", "algorithms": ["HS256"], "secret_env": "TERN_TEST_LONG"}],
           "issuer": "tern-test"},
  "routes": [
    {"method": "GET", "path": "/me", "service": "users", "pattern": "me",
     "policies": {"auth": {"propagate": ["email"]}}},
    {"method": "POST", "path": "/admin", "service": "users", "pattern": "a", "data": "body",
     "policies": {"auth": {"roles": ["admin"]}}}
  ]})";

tern::http::request with_token(std::string method, std::string path, const std::string& token) {
  tern::http::request req;
  req.method = std::move(method);
  req.path = std::move(path);
  req.headers.emplace_back("authorization", "Bearer " + token);
  return req;
}

}  // namespace

TEST_CASE("auth through its chain: 401 without a valid token, 403 without the role, identity") {
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    std::string subject;
    nlohmann::json identity;
    policy_fixture f(io, guarded, [&](request_context& ctx) -> asio::awaitable<void> {
      subject = ctx.subject;
      identity = nlohmann::json::from_msgpack(ctx.identity);
      ctx.response.status = 200;
      co_return;
    });
    auto section = nlohmann::json::parse(R"({"keys": [{"kid": "k", "algorithms": ["HS256"],
        "secret_env": "TERN_TEST_LONG"}], "issuer": "tern-test"})");
    jwt::verifier keys(section, "auth");
    auto user = keys.sign(
        {{"sub", "ann"}, {"iss", "tern-test"}, {"roles", {"user"}}, {"email", "ann@example.com"}});
    auto admin = keys.sign({{"sub", "bob"}, {"iss", "tern-test"}, {"roles", {"admin"}}});
    auto expired = keys.sign({{"sub", "ann"}, {"iss", "tern-test"}, {"exp", 1000}});
    auto other_issuer = keys.sign({{"sub", "eve"}, {"iss", "elsewhere"}});

    auto r = co_await f.get("/me");
    CHECK(r.status == 401);
    CHECK(field(r, "WWW-Authenticate") == R"(Bearer realm="tern")");
    const std::vector<std::string> refused{expired, other_issuer};
    for (const auto& token : refused) {
      auto req = with_token("GET", "/me", token);
      r = co_await f.ask(req);
      CHECK(r.status == 401);
      CHECK(field(r, "WWW-Authenticate") == R"(Bearer error="invalid_token")");
    }
    auto garbage = with_token("GET", "/me", "not.a.token");
    CHECK((co_await f.ask(garbage)).status == 401);
    CHECK(f.handled() == 0);

    for (int i = 0; i < 2; ++i) {  // again: the same verdict when the token was seen before
      auto req = with_token("GET", "/me", user);
      r = co_await f.ask(req);
      CHECK(r.status == 200);
      CHECK(subject == "ann");
      CHECK(identity["sub"] == "ann");
      CHECK(identity["roles"] == nlohmann::json{"user"});
      CHECK(identity["claims"]["email"] == "ann@example.com");
    }
    auto forbidden = with_token("POST", "/admin", user);
    r = co_await f.ask(forbidden);
    CHECK(r.status == 403);
    CHECK(field(r, "WWW-Authenticate") == R"(Bearer error="insufficient_scope")");
    auto allowed = with_token("POST", "/admin", admin);
    CHECK((co_await f.ask(allowed)).status == 200);
    CHECK(subject == "bob");
    CHECK(f.handled() == 3);
    co_await f.close();
  });
}
