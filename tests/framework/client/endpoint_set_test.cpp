// The client's endpoint set with literal entries (no DNS): the pick, round
// robin or the less loaded of two, and what cannot take a call.
#include "client/endpoint_set.hpp"

#include <doctest/doctest.h>
#include <asio/io_context.hpp>

#include <array>
#include <stdexcept>

using tern::detail::endpoint_set;

namespace {

tern::client_options entries(std::vector<std::string> list, tern::balancing b) {
  tern::client_options o;
  o.endpoints = std::move(list);
  o.balance = b;
  return o;
}

void eject(const tern::detail::endpoint_ptr& ep) {
  ep->outlier.ejected_until = std::chrono::steady_clock::now() + std::chrono::hours(1);
}

}  // namespace

TEST_CASE("endpoint_set: round robin takes each usable endpoint in turn") {
  asio::io_context io;
  endpoint_set s(io.get_executor(),
                 entries({"127.0.0.1:1", "127.0.0.1:2", "[::1]:3"}, tern::balancing::round_robin));
  REQUIRE(s.resolved());
  CHECK_FALSE(s.discovers());
  REQUIRE(s.list().size() == 3);
  CHECK(s.list()[2]->text == "[::1]:3");
  std::vector<std::size_t> picks;
  for (int i = 0; i < 6; ++i) picks.push_back(s.pick());
  CHECK(picks == std::vector<std::size_t>{0, 1, 2, 0, 1, 2});
  eject(s.list()[1]);  // passed over while out
  for (int i = 0; i < 6; ++i) CHECK(s.pick() != 1);
  s.list()[2]->removed = true;  // left the upstream
  for (int i = 0; i < 3; ++i) CHECK(s.pick() == 0);
  eject(s.list()[0]);
  CHECK(s.pick() == endpoint_set::none);
  CHECK(s.unavailable().kind() == tern::errc::connection_refused);
}

TEST_CASE("endpoint_set: the less loaded of two at random, the most loaded never") {
  asio::io_context io;
  endpoint_set s(io.get_executor(), entries({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"},
                                            tern::balancing::least_outstanding));
  s.list()[1]->waiters = 10;
  s.list()[2]->waiters = 20;
  std::array<int, 3> count{};
  for (int i = 0; i < 300; ++i) ++count.at(s.pick());
  CHECK(count[2] == 0);        // it loses to either other
  CHECK(count[0] > count[1]);  // in two of the three pairs
  CHECK(count[1] > 0);         // chosen against the busiest: the pairs are random
}

TEST_CASE("endpoint_set: a retry avoids its last endpoint while another can take the call") {
  asio::io_context io;
  endpoint_set s(io.get_executor(),
                 entries({"127.0.0.1:1", "127.0.0.1:2"}, tern::balancing::least_outstanding));
  s.list()[1]->waiters = 50;  // busier, but not the one that failed
  for (int i = 0; i < 20; ++i) CHECK(s.pick(s.list()[0].get()) == 1);
  eject(s.list()[1]);
  CHECK(s.pick(s.list()[0].get()) == 0);  // nothing else can: the same one again
}

TEST_CASE("endpoint_set: one endpoint is picked while usable, and a bad entry is refused") {
  asio::io_context io;
  endpoint_set s(io.get_executor(), entries({"127.0.0.1:1"}, tern::balancing::round_robin));
  CHECK(s.pick() == 0);
  eject(s.list()[0]);
  CHECK(s.pick() == endpoint_set::none);
  CHECK_THROWS_AS(
      endpoint_set(io.get_executor(), entries({"127.0.0.1:0"}, tern::balancing::round_robin)),
      std::invalid_argument);
  CHECK_THROWS_AS(
      endpoint_set(io.get_executor(), entries({"::1:80"}, tern::balancing::round_robin)),
      std::invalid_argument);
}
