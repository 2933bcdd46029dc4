// Trusted proxies and the client behind them.
#include "policies/client_address.hpp"

#include "../gateway_fixture.hpp"

#include <tern/endpoint.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace tern::gateway;
using namespace tern::gateway::test;

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
