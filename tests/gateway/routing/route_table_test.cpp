// The route table: method and path template to a route, captures decoded,
// and the methods a path has (for 405's Allow).
#include "routing/route_table.hpp"

#include "config/config.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace tern::gateway;

namespace {

const char* routes = R"({
  "upstreams": {"users": {"host": "127.0.0.1", "port": 1}},
  "routes": [
    {"method": "GET", "path": "/u/me", "service": "users", "pattern": "me"},
    {"method": "GET", "path": "/u/:id", "service": "users", "pattern": "get", "data": "params"},
    {"method": "DELETE", "path": "/u/:id", "service": "users", "pattern": "del", "data": "params"},
    {"method": "GET", "path": "/u/:id/orders/:order", "service": "users", "pattern": "order",
     "data": "params"},
    {"method": "POST", "path": "/u", "service": "users", "pattern": "add", "data": "body"},
    {"method": "GET", "path": "/v/:id", "service": "users", "pattern": "v", "data": "params"},
    {"method": "GET", "path": "/v/me", "service": "users", "pattern": "never"},
    {"method": "PUT", "path": "/v/me", "service": "users", "pattern": "put_me"}
  ]})";

struct table_of_config {
  table_of_config() : config(parse_config(routes)) {
    for (const auto& r : config.routes) {
      table.add(route_entry{
          .method = r.method, .segments = r.segments, .label = r.path, .config = &r, .serve = {}});
    }
  }
  // The matched route's path template ("" for none), and the captures.
  std::string match(std::string_view method, std::string_view path) {
    const auto* e = table.match(method, path, captured);
    return e ? e->label : std::string();
  }
  gateway_config config;
  route_table table;
  route_table::params captured;
};

}  // namespace

TEST_CASE("a route matches by method and template, the first that fits winning") {
  table_of_config t;
  CHECK(t.match("GET", "/u/me") == "/u/me");  // listed before /u/:id
  CHECK(t.captured.empty());
  CHECK(t.match("GET", "/u/7") == "/u/:id");
  REQUIRE(t.captured.size() == 1);
  CHECK(t.captured[0].first == "id");
  CHECK(t.captured[0].second == "7");
  CHECK(t.match("HEAD", "/u/7") == "/u/:id");  // HEAD is answered as GET
  CHECK(t.match("DELETE", "/u/7") == "/u/:id");
  CHECK(t.match("PUT", "/u/7").empty());
  CHECK(t.match("GET", "/u/7/orders/9") == "/u/:id/orders/:order");
  REQUIRE(t.captured.size() == 2);
  CHECK(t.captured[1].first == "order");
  CHECK(t.captured[1].second == "9");
  CHECK(t.match("POST", "/u") == "/u");
  CHECK(t.match("GET", "/u").empty());
  // A capture listed first wins over a literal path listed after it.
  CHECK(t.match("GET", "/v/me") == "/v/:id");
  CHECK(t.match("PUT", "/v/me") == "/v/me");
  CHECK(t.captured.empty());
  CHECK(t.match("PUT", "/v/you").empty());
  CHECK(t.match("GET", "/u/m%65") == "/u/:id");  // a literal segment is compared undecoded
}

TEST_CASE("captures are percent-decoded, and an empty or missing segment fits nothing") {
  table_of_config t;
  CHECK(t.match("GET", "/u/a%20b+c%2Fd") == "/u/:id");
  REQUIRE(t.captured.size() == 1);
  CHECK(t.captured[0].second == "a b+c/d");  // '+' is itself in a path; %2F stays in the capture
  CHECK(t.match("GET", "/u/").empty());
  CHECK(t.captured.empty());
  CHECK(t.match("GET", "/u/7/orders/").empty());
  CHECK(t.match("GET", "u/7").empty());  // not a path
  CHECK(t.match("GET", "").empty());
  std::string deep;
  for (int i = 0; i < 17; ++i) deep += "/u";
  CHECK(t.match("GET", deep).empty());  // past the 16 segments a path is split into
}

TEST_CASE("the methods a path has, for Allow: HEAD beside GET, each once") {
  table_of_config t;
  CHECK(t.table.allowed("/u/7") == "GET, HEAD, DELETE");
  CHECK(t.table.allowed("/u/me") == "GET, HEAD, DELETE");  // /u/:id has it too
  CHECK(t.table.allowed("/u") == "POST");
  CHECK(t.table.allowed("/u/7/orders/1") == "GET, HEAD");
  CHECK(t.table.allowed("/nope").empty());
  CHECK(t.table.allowed("/v/me") == "GET, HEAD, PUT");
}
