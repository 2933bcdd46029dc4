// The registry: policies' pieces by name, the sections policies own, and
// how a route's piece overrides the default.
#include "../gateway_fixture.hpp"

#include <tern/endpoint.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>

using namespace tern::gateway;
using namespace tern::gateway::test;

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
  // A nested setting's name is not a top-level key: it would stand in for
  // (and override) the one inside its section.
  expect_config_error(R"({"upstreams": {"u": {"host": "h", "port": 1}}, "routes": [],
      "server.trusted_proxies": ["0.0.0.0/0"]})",
                      "server.trusted_proxies: is not a section");
}

TEST_CASE("the admin chains have every policy off but the request id, by the registry's list") {
  auto off = nlohmann::json::parse(admin_policies());
  for (const auto& r : registered_policies()) {
    if (r.name == "request_id") {
      CHECK_FALSE(off.contains(std::string(r.name)));
    } else {
      CHECK(off[std::string(r.name)] == false);
    }
  }
  CHECK(off.size() == registered_policies().size() - 1);
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
