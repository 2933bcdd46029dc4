// The cors policy, in process: preflights routed by the method they ask
// about and answered by the gateway, and the fields on other answers.
#include "../gateway_fixture.hpp"
#include "../policy_fixture.hpp"

#include "app/gateway.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>

using namespace tern::gateway;
using namespace tern::gateway::test;

namespace {

const std::string with_cors = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "policies": {"cors": {"origins": ["https://app.example"]}},
  "routes": [
    {"method": "GET", "path": "/u/:id", "service": "users", "pattern": "u", "data": "params"},
    {"method": "DELETE", "path": "/u/:id", "service": "users", "pattern": "d", "data": "params",
     "policies": {"cors": false}},
    {"method": "POST", "path": "/u", "service": "users", "pattern": "c", "data": "body",
     "policies": {"cors": {"origins": ["https://app.example"], "credentials": true,
                           "headers": ["Content-Type"]}}}
  ]})";

using fields = std::vector<std::pair<std::string, std::string>>;

// A request with these fields, made outside the co_await that sends it
// (GCC 12 cannot keep a braced list of literals across a suspension).
tern::http::request request(std::string method, std::string path, fields f) {
  tern::http::request req;
  req.method = std::move(method);
  req.path = req.target = std::move(path);
  req.headers = std::move(f);
  req.peer = tern::parse_ip_endpoint("192.0.2.1:40000", 0);
  return req;
}

}  // namespace

TEST_CASE("a preflight is answered for the route of the method it asks about") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    gateway gw(io, parse_config(with_cors));
    auto send = [&](tern::http::request& req) { return gw.handle(req); };
    tern::http::request q;
    const std::string app = "https://app.example";

    q = request("OPTIONS", "/u/7", {{"origin", app}, {"access-control-request-method", "GET"}});
    auto r = co_await send(q);
    CHECK(r.status == 204);
    CHECK(r.body.empty());
    CHECK(field(r, "Access-Control-Allow-Origin") == app);
    CHECK(field(r, "Access-Control-Allow-Methods") == "GET, HEAD");
    CHECK(field(r, "Access-Control-Max-Age") == "600");
    CHECK(field(r, "Access-Control-Allow-Credentials").empty());
    CHECK(field(r, "Vary") ==
          "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
    CHECK_FALSE(field(r, "X-Request-Id").empty());  // the policies before cors ran

    // Asked headers are matched without case; one not allowed refuses all.
    q = request("OPTIONS", "/u/7",
                {{"origin", app},
                 {"access-control-request-method", "GET"},
                 {"access-control-request-headers", "authorization, x-request-id"}});
    r = co_await send(q);
    CHECK(r.status == 204);
    q = request("OPTIONS", "/u/7",
                {{"origin", app},
                 {"access-control-request-method", "GET"},
                 {"access-control-request-headers", "content-type, x-secret"}});
    r = co_await send(q);
    CHECK(r.status == 403);
    CHECK(field(r, "Access-Control-Allow-Origin").empty());

    // Another origin, or two Origin fields: refused.
    q = request("OPTIONS", "/u/7",
                {{"origin", "https://evil.example"}, {"access-control-request-method", "GET"}});
    r = co_await send(q);
    CHECK(r.status == 403);
    CHECK(field(r, "Access-Control-Allow-Origin").empty());
    q = request("OPTIONS", "/u/7",
                {{"origin", app}, {"origin", app}, {"access-control-request-method", "GET"}});
    r = co_await send(q);
    CHECK(r.status == 403);

    // The route's own settings: credentials and its header list.
    q = request("OPTIONS", "/u",
                {{"origin", app},
                 {"access-control-request-method", "POST"},
                 {"access-control-request-headers", "Content-Type"}});
    r = co_await send(q);
    CHECK(r.status == 204);
    CHECK(field(r, "Access-Control-Allow-Credentials") == "true");
    CHECK(field(r, "Access-Control-Allow-Headers") == "Content-Type");
    CHECK(field(r, "Access-Control-Allow-Methods") == "POST");

    // A method whose route has CORS off, or no route at all: not a
    // preflight the gateway answers; OPTIONS itself has no route.
    const std::vector<std::string> others{"DELETE", "PATCH"};
    for (const auto& method : others) {
      q = request("OPTIONS", "/u/7", {{"origin", app}, {"access-control-request-method", method}});
      r = co_await send(q);
      CHECK(r.status == 405);
      CHECK(field(r, "Allow") == "GET, HEAD, DELETE");
      CHECK(field(r, "Access-Control-Allow-Methods").empty());
    }
    // Without Access-Control-Request-Method an OPTIONS is an ordinary one.
    q = request("OPTIONS", "/u/7", {{"origin", app}});
    r = co_await send(q);
    CHECK(r.status == 405);
    gw.close();
    CHECK(co_await gw.join(std::chrono::steady_clock::now() + std::chrono::seconds(10)));
  });
}

TEST_CASE("answers to an allowed origin carry its fields, others only Vary") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    policy_fixture f(io, with_cors, [](request_context& ctx) -> asio::awaitable<void> {
      ctx.response.status = ctx.request.method == "POST" ? 401 : 200;  // a refusal too
      co_return;
    });
    auto allowed = request("GET", "/u/7", {{"origin", "https://app.example"}});
    auto r = co_await f.ask(allowed);
    CHECK(r.status == 200);
    CHECK(field(r, "Access-Control-Allow-Origin") == "https://app.example");
    CHECK(field(r, "Access-Control-Expose-Headers") ==
          "X-Request-Id, X-Cache, Age, Retry-After, RateLimit, RateLimit-Policy");
    CHECK(field(r, "Vary") == "Origin");
    auto other = request("GET", "/u/7", {{"origin", "https://evil.example"}});
    r = co_await f.ask(other);
    CHECK(field(r, "Access-Control-Allow-Origin").empty());
    CHECK(field(r, "Vary") == "Origin");  // the answer still depends on Origin
    r = co_await f.get("/u/7");
    CHECK(field(r, "Access-Control-Allow-Origin").empty());
    tern::http::request post;
    post.method = "POST";
    post.path = "/u";
    post.headers = {{"origin", "https://app.example"}};
    r = co_await f.ask(post);
    CHECK(r.status == 401);
    CHECK(field(r, "Access-Control-Allow-Origin") == "https://app.example");
    CHECK(field(r, "Access-Control-Allow-Credentials") == "true");
    CHECK(f.handled() == 4);
    co_await f.close();
  });
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
