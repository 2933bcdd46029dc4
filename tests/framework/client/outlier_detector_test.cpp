// The client's outlier detector: consecutive failures eject an endpoint,
// longer each time, within the share that may be out; a probe brings it
// back when it answers.
#include "client/outlier_detector.hpp"

#include "../../support/harness.hpp"

#include <doctest/doctest.h>
#include <asio/io_context.hpp>

#include <vector>

using namespace std::chrono_literals;
using tern::detail::endpoint;
using tern::detail::endpoint_ptr;
using tern::detail::outlier_detector;

namespace {

std::vector<endpoint_ptr> endpoints(asio::io_context& io, int n) {
  std::vector<endpoint_ptr> out;
  for (int i = 0; i < n; ++i) {
    asio::ip::tcp::endpoint a(asio::ip::make_address("127.0.0.1"),
                              static_cast<std::uint16_t>(1000 + i));
    out.push_back(std::make_shared<endpoint>(io.get_executor(), a,
                                             "127.0.0.1:" + std::to_string(1000 + i), 0));
  }
  return out;
}

const std::string where = "users";

}  // namespace

TEST_CASE("outlier_detector: failures in a row eject, a success between them does not") {
  asio::io_context io;
  auto eps = endpoints(io, 4);
  outlier_detector d({.consecutive_failures = 3,
                      .base_time = 1s,
                      .max_time = 3s,
                      .max_ejected_percent = 50,
                      .probe_interval = 100ms},
                     where);
  auto now = std::chrono::steady_clock::now();
  CHECK_FALSE(d.outcome(*eps[0], true, now, eps));
  CHECK_FALSE(d.outcome(*eps[0], true, now, eps));
  CHECK_FALSE(d.outcome(*eps[0], false, now, eps));  // resets the count
  CHECK_FALSE(d.outcome(*eps[0], true, now, eps));
  CHECK_FALSE(d.outcome(*eps[0], true, now, eps));
  CHECK_FALSE(eps[0]->ejected());
  CHECK(d.outcome(*eps[0], true, now, eps));  // the third in a row: out, probe it
  CHECK(eps[0]->ejected());
  CHECK(eps[0]->outlier.ejected_until == now + 1s);
  CHECK(d.ejections() == 1);
  // The second ejection lasts twice as long, the fourth no more than max_time.
  eps[0]->outlier.ejected_until = {};
  CHECK(d.eject(*eps[0], "test", now, eps));
  CHECK(eps[0]->outlier.ejected_until == now + 2s);
  eps[0]->outlier.ejected_until = {};
  d.eject(*eps[0], "test", now, eps);
  eps[0]->outlier.ejected_until = {};
  d.eject(*eps[0], "test", now, eps);
  CHECK(eps[0]->outlier.ejected_until == now + 3s);
  CHECK(d.ejections() == 4);
}

TEST_CASE("outlier_detector: no more than max_ejected_percent out, and never the only endpoint") {
  asio::io_context io;
  auto now = std::chrono::steady_clock::now();
  outlier_detector d({.consecutive_failures = 1, .max_ejected_percent = 50}, where);
  auto four = endpoints(io, 4);
  CHECK(d.eject(*four[0], "test", now, four));
  CHECK(d.eject(*four[1], "test", now, four));
  CHECK_FALSE(d.eject(*four[2], "test", now, four));  // half are out already
  CHECK_FALSE(four[2]->ejected());
  auto two = endpoints(io, 2);
  outlier_detector none_allowed({.consecutive_failures = 1, .max_ejected_percent = 0}, where);
  CHECK(none_allowed.eject(*two[0], "test", now, two));  // with two, one may always be out
  auto one = endpoints(io, 1);
  CHECK_FALSE(d.eject(*one[0], "test", now, one));
  outlier_detector off({.consecutive_failures = 0}, where);
  for (int i = 0; i < 100; ++i) CHECK_FALSE(off.outcome(*four[3], true, now, four));
}

TEST_CASE("outlier_detector: a probe brings back an endpoint that answers, before its time") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto eps = endpoints(io, 2);
    outlier_detector d({.consecutive_failures = 1, .base_time = 10s, .probe_interval = 5ms}, where);
    REQUIRE(d.eject(*eps[0], "test", std::chrono::steady_clock::now(), eps));
    int asked = 0;
    co_await d.probe(eps[0], [&](const endpoint_ptr&) -> asio::awaitable<bool> {
      co_return ++asked == 3;  // answers the third time
    });
    CHECK(asked == 3);
    CHECK_FALSE(eps[0]->ejected());
    CHECK_FALSE(eps[0]->outlier.probing);
  });
}

TEST_CASE("outlier_detector: a probe ends when the endpoint's time is up or it leaves") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto eps = endpoints(io, 2);
    outlier_detector d({.consecutive_failures = 1, .base_time = 300ms, .probe_interval = 5ms},
                       where);
    REQUIRE(d.eject(*eps[0], "test", std::chrono::steady_clock::now(), eps));
    int asked = 0;
    co_await d.probe(eps[0], [&](const endpoint_ptr&) -> asio::awaitable<bool> {
      ++asked;
      co_return false;
    });
    CHECK(asked >= 1);
    CHECK_FALSE(eps[0]->ejected());  // back in: its 300 ms are over
    REQUIRE(d.eject(*eps[1], "test", std::chrono::steady_clock::now(), eps));
    eps[1]->removed = true;
    asked = 0;
    co_await d.probe(eps[1], [&](const endpoint_ptr&) -> asio::awaitable<bool> {
      ++asked;
      co_return false;
    });
    CHECK(asked == 0);  // gone from the upstream: nothing to ask
  });
}
