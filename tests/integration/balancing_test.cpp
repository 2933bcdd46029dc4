// A client_proxy over several instances of a service: endpoints from a
// list and from DNS, picked per call, drained when they leave.
#include "dns_server.hpp"
#include "harness.hpp"
#include "tern/tern.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/ip/udp.hpp>
#include <asio/steady_timer.hpp>

using namespace std::chrono_literals;
using tern::test::run;
using tern::test::until;

namespace {

constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// One instance: answers "who" with its number; "hold" answers only once
// release() is called; "slow" after `slow_for`.
struct instance {
  instance(asio::io_context& io, int id, std::string host, std::uint16_t port = 0,
           std::chrono::milliseconds slow_for = 0ms)
      : app(io, {.host = std::move(host), .port = port}),
        gate(io, std::chrono::steady_clock::time_point::max()) {
    app.message_pattern("who", [id] { return id; });
    app.message_pattern("work", [this, id] {
      ++worked;
      if (fail_status) throw tern::rpc_error(fail_status, "failing on purpose");
      return id;
    });
    app.message_pattern("hold", [this, id]() -> asio::awaitable<int> {
      ++held;
      co_await gate.async_wait(nothrow);
      co_return id;
    });
    app.message_pattern("slow", [id, slow_for]() -> asio::awaitable<int> {
      asio::steady_timer t(co_await asio::this_coro::executor, slow_for);
      co_await t.async_wait(nothrow);
      co_return id;
    });
    this->port = app.start();
  }
  void release() { gate.cancel(); }
  tern::microservice app;
  asio::steady_timer gate;
  int held = 0;
  int worked = 0;       // "work" calls received
  int fail_status = 0;  // "work" fails with it when not 0
  std::uint16_t port = 0;
};

std::string at(const instance& i, const char* host = "127.0.0.1") {
  return std::string(host) + ":" + std::to_string(i.port);
}

// `n` calls of "who" one after another: how many each instance answered.
asio::awaitable<std::map<int, int>> who_answers(tern::client_proxy& c, int n) {
  std::map<int, int> seen;
  for (int i = 0; i < n; ++i) ++seen[co_await c.send<int>("who")];
  co_return seen;
}

std::vector<std::string> addresses(const tern::client_proxy& c) {
  std::vector<std::string> out;
  for (const auto& e : c.endpoints()) out.push_back(e.address);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("round robin takes each endpoint in turn") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance a(io, 1, "127.0.0.1"), b(io, 2, "127.0.0.1"), c(io, 3, "127.0.0.1");
    tern::client_proxy client(
        io, {.endpoints = {at(a), at(b), at(c)}, .balance = tern::balancing::round_robin});
    auto seen = co_await who_answers(client, 30);
    CHECK(seen == std::map<int, int>{{1, 10}, {2, 10}, {3, 10}});
    CHECK(client.endpoints().size() == 3);
  });
}

TEST_CASE("least outstanding sends most calls to the endpoint that answers faster") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance slow(io, 1, "127.0.0.1", 0, 40ms), fast(io, 2, "127.0.0.1", 0, 1ms);
    tern::client_proxy client(io, {.endpoints = {at(slow), at(fast)}});
    // Eight callers, 25 calls each: the slow instance keeps calls pending
    // longer, so the picks lean to the fast one.
    std::map<int, int> seen;
    int finished = 0;
    for (int w = 0; w < 8; ++w) {
      tern::test::spawn([&]() -> asio::awaitable<void> {
        for (int i = 0; i < 25; ++i) ++seen[co_await client.send<int>("slow")];
        ++finished;
      });
    }
    co_await until([&] { return finished == 8; }, 15s);
    REQUIRE(finished == 8);
    CHECK(seen[1] + seen[2] == 200);
    CHECK(seen[2] > 150);  // round robin would give each 100
    MESSAGE("slow: ", seen[1], ", fast: ", seen[2]);
  });
}

TEST_CASE("a call whose endpoint refuses the connect is sent to another") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance a(io, 1, "127.0.0.1");
    std::uint16_t dead;
    {
      asio::ip::tcp::acceptor gone(io, {asio::ip::make_address("127.0.0.1"), 0});
      dead = gone.local_endpoint().port();
    }
    tern::client_proxy client(io, {.endpoints = {"127.0.0.1:" + std::to_string(dead), at(a)},
                                   .balance = tern::balancing::round_robin});
    auto seen = co_await who_answers(client, 10);
    CHECK(seen == std::map<int, int>{{1, 10}});  // none failed
  });
}

TEST_CASE("a malformed endpoint is refused when the client is made") {
  asio::io_context io;
  for (const char* bad : {"nohost", "h:", "h:0", "h:65536", "::1:80", ":80", "h:8x"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(tern::client_proxy(io, {.endpoints = {bad}}), std::invalid_argument);
  }
  CHECK_NOTHROW(tern::client_proxy(io, {.endpoints = {"[::1]:80", "name.example:1"}}));
}

TEST_CASE(
    "DNS discovery: every address of a name takes calls, one that leaves is drained, one "
    "that joins takes calls") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::test::dns_server dns(io);
    instance two(io, 2, "127.0.0.2");
    instance three(io, 3, "127.0.0.3", two.port);
    instance four(io, 4, "127.0.0.4", two.port);
    auto a = [](const char* s) { return asio::ip::make_address(s); };
    dns.set("svc.tern.test", {a("127.0.0.2"), a("127.0.0.3")});
    tern::client_proxy client(io, {.endpoints = {"svc.tern.test:" + std::to_string(two.port)},
                                   .balance = tern::balancing::round_robin,
                                   .resolve_interval = 50ms,
                                   .dns_servers = {dns.address()}});
    auto seen = co_await who_answers(client, 10);
    CHECK(seen == std::map<int, int>{{2, 5}, {3, 5}});
    CHECK(addresses(client) ==
          std::vector<std::string>{at(two, "127.0.0.2"), at(three, "127.0.0.3")});

    // A call in flight on .3 when .3 leaves the name still gets its answer.
    std::vector<int> held_answers;
    for (int i = 0; i < 2; ++i) {
      tern::test::spawn([&]() -> asio::awaitable<void> {
        held_answers.push_back(co_await client.send<int>("hold"));
      });
    }
    co_await until([&] { return two.held == 1 && three.held == 1; });
    REQUIRE(three.held == 1);
    dns.set("svc.tern.test", {a("127.0.0.2")});
    co_await until([&] { return client.endpoints().size() == 1; });
    CHECK(addresses(client) == std::vector<std::string>{at(two, "127.0.0.2")});
    seen = co_await who_answers(client, 10);
    CHECK(seen == std::map<int, int>{{2, 10}});
    CHECK(three.app.connections() == 1);  // kept while its call is pending
    three.release();
    two.release();
    co_await until([&] { return held_answers.size() == 2 && three.app.connections() == 0; });
    std::sort(held_answers.begin(), held_answers.end());
    CHECK(held_answers == std::vector<int>{2, 3});
    CHECK(three.app.connections() == 0);  // closed once idle

    // An instance that joins the name takes calls.
    dns.set("svc.tern.test", {a("127.0.0.2"), a("127.0.0.4")});
    co_await until([&] { return client.endpoints().size() == 2; });
    seen = co_await who_answers(client, 10);
    CHECK(seen == std::map<int, int>{{2, 5}, {4, 5}});
    client.close();
  });
}

TEST_CASE("a name that does not resolve fails calls with connection_refused naming it") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::test::dns_server dns(io);
    tern::client_proxy client(
        io, {.endpoints = {"nowhere.tern.test:1"}, .dns_servers = {dns.address()}});
    try {
      (void)co_await client.send<int>("who");
      FAIL("the call succeeded");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::connection_refused);
      CHECK(std::string(e.what()).find("nowhere.tern.test") != std::string::npos);
    }
    client.close();
  });
}

TEST_CASE("a call given up while its endpoints are being looked up ends at once") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    // A DNS server that never answers: c-ares gives up after its timeouts
    // and retries; a caller that gives up first does not wait for that.
    asio::ip::udp::socket silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto dns = "127.0.0.1:" + std::to_string(silent.local_endpoint().port());
    tern::client_proxy client(io, {.endpoints = {"silent.tern.test:1"}, .dns_servers = {dns}});
    auto first = co_await (client.send<int>("who") || tern::test::sleep_for(50ms));
    CHECK(first.index() == 1);  // the timer won; the call was cancelled
    auto given_up = std::chrono::steady_clock::now();
    // A call that waits for the lookup fails when c-ares gives up.
    try {
      (void)co_await client.send<int>("who", msgpack::type::nil_t{}, {.timeout = 10s});
      FAIL("the call succeeded");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::connection_refused);
    }
    CHECK(std::chrono::steady_clock::now() - given_up > 500ms);  // long after
  });
}

namespace {
// Ejection, breaker and retries off unless a test turns them on.
tern::client_options quiet(std::vector<std::string> endpoints) {
  tern::client_options o;
  o.endpoints = std::move(endpoints);
  o.balance = tern::balancing::round_robin;
  o.ejection.consecutive_failures = 0;
  o.breaker.consecutive_failures = 0;
  o.breaker.failure_rate = 0;
  return o;
}

// `n` calls of "work": how many succeeded.
asio::awaitable<int> work(tern::client_proxy& c, int n, bool idempotent = false) {
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    try {
      co_await c.send<int>("work", msgpack::type::nil_t{}, {.idempotent = idempotent});
      ++ok;
    } catch (const tern::rpc_error&) {
    }
  }
  co_return ok;
}
}  // namespace

TEST_CASE(
    "an endpoint failing every call is ejected after consecutive failures, and calls avoid it") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance sick(io, 1, "127.0.0.1"), well(io, 2, "127.0.0.1");
    sick.fail_status = 500;
    auto o = quiet({at(sick), at(well)});
    o.ejection = {.consecutive_failures = 3, .base_time = 10s, .probe_interval = 10s};
    tern::client_proxy client(io, o);
    int ok = co_await work(client, 40);
    CHECK(sick.worked == 3);  // then ejected: the other 37 went to the well one
    CHECK(ok == 37);
    CHECK(client.stats().ejections == 1);
    auto eps = client.endpoints();
    REQUIRE(eps.size() == 2);
    CHECK(eps[0].ejected);
    CHECK_FALSE(eps[1].ejected);
    client.close();
  });
}

TEST_CASE("an ejected endpoint that answers tern.health comes back before its time is up") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance sick(io, 1, "127.0.0.1"), well(io, 2, "127.0.0.1");
    sick.fail_status = 503;
    auto o = quiet({at(sick), at(well)});
    o.ejection = {.consecutive_failures = 2, .base_time = 30s, .probe_interval = 20ms};
    tern::client_proxy client(io, o);
    (void)co_await work(client, 4);
    REQUIRE(client.stats().ejections == 1);
    auto ejected_at = std::chrono::steady_clock::now();
    sick.fail_status = 0;  // (its health answer never depended on it)
    co_await until([&] { return !client.endpoints()[0].ejected; });
    CHECK_FALSE(client.endpoints()[0].ejected);
    CHECK(std::chrono::steady_clock::now() - ejected_at < 5s);  // not the 30 s
    int before = sick.worked;
    (void)co_await work(client, 4);
    CHECK(sick.worked == before + 2);  // its turns again
    client.close();
  });
}

TEST_CASE("the only endpoint is never ejected, and at most the configured share is") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance a(io, 1, "127.0.0.1"), b(io, 2, "127.0.0.1");
    a.fail_status = b.fail_status = 500;
    auto lone = quiet({at(a)});
    lone.ejection.consecutive_failures = 2;
    tern::client_proxy one(io, lone);
    (void)co_await work(one, 10);
    CHECK(one.stats().ejections == 0);
    CHECK(a.worked == 10);
    auto both = quiet({at(a), at(b)});
    both.ejection = {.consecutive_failures = 2,
                     .base_time = 10s,
                     .max_ejected_percent = 50,
                     .probe_interval = 10s};
    tern::client_proxy two(io, both);
    (void)co_await work(two, 20);
    CHECK(two.stats().ejections == 1);  // one of the two, never both
    one.close();
    two.close();
  });
}

TEST_CASE(
    "breaker: a service that times out opens it; calls then fail at once; a half-open "
    "trial closes it on recovery") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance svc(io, 1, "127.0.0.1");
    auto o = quiet({at(svc)});
    o.timeout = 200ms;
    o.breaker = {.consecutive_failures = 3, .failure_rate = 0, .open_time = 300ms};
    tern::client_proxy client(io, o);
    for (int i = 0; i < 3; ++i) {
      try {
        (void)co_await client.send<int>("hold");
      } catch (const tern::rpc_error& e) {
        CHECK(e.kind() == tern::errc::timeout);
      }
    }
    CHECK(client.breaker() == tern::client_proxy::breaker_state::open);
    CHECK(client.stats().breaker_opened == 1);
    auto started = std::chrono::steady_clock::now();
    std::optional<tern::rpc_error> fast;
    try {
      (void)co_await client.send<int>("who");
    } catch (const tern::rpc_error& e) {
      fast = e;
    }
    auto took = std::chrono::steady_clock::now() - started;
    REQUIRE(fast.has_value());
    CHECK(fast->kind() == tern::errc::circuit_open);
    CHECK(took < 20ms);  // the timeout is 200 ms
    CHECK(client.retry_after() > 0ms);
    svc.release();  // the service recovers
    co_await until(
        [&] { return client.breaker() == tern::client_proxy::breaker_state::half_open; });
    CHECK(co_await client.send<int>("who") == 1);  // the trial
    CHECK(client.breaker() == tern::client_proxy::breaker_state::closed);
    CHECK(co_await client.send<int>("who") == 1);
    client.close();
  });
}

TEST_CASE("idempotent calls are retried on the other endpoint, others are not") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance sick(io, 1, "127.0.0.1"), well(io, 2, "127.0.0.1");
    sick.fail_status = 503;
    tern::client_proxy client(io, quiet({at(sick), at(well)}));
    CHECK(co_await work(client, 20, true) == 20);  // every one answered
    CHECK(client.stats().retries == 10);           // the 10 that first went to the sick one
    CHECK(co_await work(client, 20, false) == 10);
    CHECK(client.stats().retries == 10);
    client.close();
  });
}

TEST_CASE("retry budget: with one of two endpoints failing every call, retries stay within it") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance sick(io, 1, "127.0.0.1"), well(io, 2, "127.0.0.1");
    sick.fail_status = 500;
    auto o = quiet({at(sick), at(well)});
    o.retry = {.max_attempts = 3,
               .base_backoff = 0ms,
               .budget_ratio = 0.2,
               .budget_min_retries = 5,
               .budget_window = 60s};
    tern::client_proxy client(io, o);
    int ok = co_await work(client, 200, true);
    auto st = client.stats();
    MESSAGE("retries ", st.retries, ", refused by the budget ", st.retries_refused, ", ok ", ok);
    CHECK(st.retries <= 45);  // 0.2 x 200 + 5
    CHECK(st.retries >= 30);  // and it is used
    CHECK(st.retries_refused > 0);
    CHECK(ok == 100 + static_cast<int>(st.retries));  // a retry lands on the well one
    client.close();
  });
}

TEST_CASE("close() ends idempotent calls in flight without retrying them") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    instance a(io, 1, "127.0.0.1"), b(io, 2, "127.0.0.1");
    tern::client_proxy client(io, quiet({at(a), at(b)}));
    std::optional<tern::rpc_error> failure;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      try {
        (void)co_await client.send<int>("hold", msgpack::type::nil_t{}, {.idempotent = true});
      } catch (const tern::rpc_error& e) {
        failure = e;
      }
    });
    co_await until([&] { return a.held + b.held == 1; });
    client.close();
    co_await until([&] { return failure.has_value(); });
    REQUIRE(failure.has_value());
    CHECK(failure->kind() == tern::errc::connection_closed);
    CHECK(client.stats().retries == 0);
    CHECK(a.held + b.held == 1);  // not sent again
    a.release();
    b.release();
    client.close();
  });
}

TEST_CASE(
    "breaker: calls refused while a failed connect backs off do not count, so a client that "
    "starts a moment before its service finds it closed") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    std::uint16_t port = 0;
    {
      instance gone(io, 0, "127.0.0.1");
      port = gone.port;
      co_await gone.app.shutdown();
    }  // nothing listens there yet
    auto o = quiet({"127.0.0.1:" + std::to_string(port)});
    o.backoff_initial = 100ms;
    o.backoff_max = 100ms;
    o.retry.max_attempts = 1;
    o.breaker = {.consecutive_failures = 3, .failure_rate = 0, .open_time = 60s};
    tern::client_proxy client(io, o);
    // The connect fails (as a gateway's first one does when it starts with
    // its services): one failure.
    try {
      (void)co_await client.send<int>("who");
      FAIL("a call reached nothing");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::connection_refused);
    }
    constexpr int callers = 20;  // then a burst, as a gateway's clients come
    int refused = 0, ended = 0;
    for (int i = 0; i < callers; ++i) {
      asio::co_spawn(
          io,
          [&]() -> asio::awaitable<void> {
            try {
              (void)co_await client.send<int>("who");
            } catch (const tern::rpc_error& e) {
              if (e.kind() == tern::errc::connection_refused &&
                  std::string(e.what()).find("next attempt in") != std::string::npos) {
                ++refused;
              }
            }
            ++ended;
          },
          asio::detached);
    }
    co_await until([&] { return ended == callers; });
    REQUIRE(ended == callers);
    CHECK(refused == callers);  // at once, during the connect's backoff
    CHECK(client.breaker() == tern::client_proxy::breaker_state::closed);
    CHECK(client.stats().breaker_opened == 0);
    instance svc(io, 7, "127.0.0.1", port);      // the service comes up
    asio::steady_timer backoff_over(io, 110ms);  // the failed connect's backoff (100 ms)
    co_await backoff_over.async_wait(asio::use_awaitable);
    CHECK(co_await client.send<int>("who") == 7);
    client.close();
  });
}

TEST_CASE("breaker: a half-open trial refused while the connect backs off opens it again") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    std::uint16_t port = 0;
    {
      instance gone(io, 0, "127.0.0.1");
      port = gone.port;
      co_await gone.app.shutdown();
    }
    auto o = quiet({"127.0.0.1:" + std::to_string(port)});
    o.backoff_initial = 60s;  // the trial comes long before the next connect
    o.backoff_max = 60s;
    o.retry.max_attempts = 1;
    o.breaker = {.consecutive_failures = 1, .failure_rate = 0, .open_time = 200ms};
    tern::client_proxy client(io, o);
    auto state = [&] { return client.breaker(); };
    try {
      (void)co_await client.send<int>("who");  // the connect fails: open
    } catch (const tern::rpc_error&) {
    }
    REQUIRE(client.stats().breaker_opened == 1);
    co_await until([&] { return state() == tern::client_proxy::breaker_state::half_open; });
    try {
      (void)co_await client.send<int>("who");  // the trial, refused during the backoff
      FAIL("the trial reached nothing");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::connection_refused);
    }
    CHECK(client.stats().breaker_opened == 2);  // it reported: not held half-open
    CHECK(state() != tern::client_proxy::breaker_state::closed);
    client.close();
  });
}

TEST_CASE(
    "breaker: a service that is down opens it, a trial whose connect fails opens it again, "
    "and the service back closes it") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    auto svc = std::make_unique<instance>(io, 1, "127.0.0.1");
    auto port = svc->port;
    auto o = quiet({at(*svc)});
    o.backoff_initial = 1ms;
    o.backoff_max = 1ms;
    o.breaker = {.consecutive_failures = 2, .failure_rate = 0, .open_time = 100ms};
    tern::client_proxy client(io, o);
    CHECK(co_await client.send<int>("who") == 1);
    co_await svc->app.shutdown();
    svc.reset();  // nothing listens now
    auto state = [&] { return client.breaker(); };
    for (int i = 0; i < 50 && state() != tern::client_proxy::breaker_state::open; ++i) {
      try {
        (void)co_await client.send<int>("who");
      } catch (const tern::rpc_error&) {
      }
    }
    REQUIRE(state() == tern::client_proxy::breaker_state::open);
    co_await until([&] { return state() == tern::client_proxy::breaker_state::half_open; });
    try {
      (void)co_await client.send<int>("who");  // the trial: still nothing there
      FAIL("the trial succeeded");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::connection_refused);
    }
    CHECK(state() == tern::client_proxy::breaker_state::open);  // not stuck half-open
    svc = std::make_unique<instance>(io, 1, "127.0.0.1", port);
    co_await until([&] { return state() == tern::client_proxy::breaker_state::half_open; });
    CHECK(co_await client.send<int>("who") == 1);
    CHECK(state() == tern::client_proxy::breaker_state::closed);
    client.close();
  });
}
