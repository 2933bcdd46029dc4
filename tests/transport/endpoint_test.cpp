// Endpoints as text and as sockets report them (tern/transport/endpoint.hpp):
// the one unit that reads and writes "host:port", IPv6 in brackets.
#include "tern/transport/endpoint.hpp"
#include "tern/transport/connection.hpp"

#include <doctest/doctest.h>
#include <asio/ip/tcp.hpp>

#include <stdexcept>
#include <string>

using namespace tern::transport;

TEST_CASE("host:port is read with IPv6 in brackets, and written back the same way") {
  auto a = parse_endpoint("users:3001");
  CHECK(a.host == "users");
  CHECK(a.port == 3001);
  auto b = parse_endpoint("[::1]:3001");
  CHECK(b.host == "::1");
  CHECK(to_string(b) == "[::1]:3001");
  CHECK(to_string(parse_endpoint("10.0.0.5:80")) == "10.0.0.5:80");
  for (const char* bad :
       {"users", "::1:3001", ":3001", "[]:1", "users:0", "users:65536", "users:30a1", "users:"}) {
    CAPTURE(bad);
    try {
      (void)parse_endpoint(bad);
      FAIL("accepted");
    } catch (const std::invalid_argument& e) {
      CHECK(std::string(e.what()).find(bad) != std::string::npos);  // names the text
    }
  }
}

TEST_CASE("an address with an optional port: the DNS servers' form") {
  auto v4 = parse_ip_endpoint("127.0.0.1:5353", 53);
  CHECK(to_string(v4) == "127.0.0.1:5353");
  CHECK(is_v4(v4.address));
  CHECK(to_string(parse_ip_endpoint("10.0.0.2", 53)) == "10.0.0.2:53");
  CHECK(to_string(parse_ip_endpoint("::1", 53)) == "[::1]:53");
  CHECK(to_string(parse_ip_endpoint("[fe80::1]:54", 53)) == "[fe80::1]:54");
  for (const char* bad : {"dns.example:53", "", "1.2.3", "[::1]", "::1:53:x", "[::1]:0"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS((void)parse_ip_endpoint(bad, 53), std::invalid_argument);
  }
}

TEST_CASE("a peer is kept in binary and written with brackets for IPv6") {
  asio::ip::tcp::endpoint v6(asio::ip::make_address("2001:db8::7"), 443);
  auto p = to_ip_endpoint(v6);
  CHECK(p.known);
  CHECK_FALSE(is_v4(p.address));
  CHECK(to_string(p) == "[2001:db8::7]:443");
  CHECK(to_string(v6) == "[2001:db8::7]:443");
  asio::ip::tcp::endpoint v4(asio::ip::make_address("192.0.2.1"), 80);
  auto q = to_ip_endpoint(v4);
  CHECK(is_v4(q.address));
  CHECK(to_string(q.address) == "192.0.2.1");
  CHECK(to_string(q) == "192.0.2.1:80");
  ip_address parsed{};
  REQUIRE(parse_ip("192.0.2.1", parsed));
  CHECK(parsed == q.address);  // text and socket agree on the bytes
  CHECK(to_string(ip_endpoint{}) == "(unknown)");
}
