// Deadlines on the wire: a request carries the time its caller still
// waits; the service drops it unrun once that has passed, a handler sees
// it, and the calls it makes inherit it.
#include "harness.hpp"
#include "tern/metrics.hpp"
#include "tern/tern.hpp"
#include "tern/transport/msgpack_codec.hpp"
#include "tern/transport/wire_error.hpp"
#include "test_handlers.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <map>
#include <thread>
#include <variant>

using namespace std::chrono_literals;
using tern::errc;
using tern::rpc_error;
using tern::test::run;
using tern::test::until;

namespace {

using fixture = tern::test::served_test_service;

std::string packed(const auto& v) {
  msgpack::sbuffer b;
  msgpack::pack(b, v);
  return {b.data(), b.size()};
}

using reply = std::variant<msgpack::object_handle, rpc_error>;

// Reads `n` reply frames from a raw connection: by id, the value or the error.
asio::awaitable<std::map<std::uint64_t, reply>> read_replies(asio::ip::tcp::socket& s,
                                                             std::size_t n) {
  tern::transport::msgpack_codec codec;
  std::map<std::uint64_t, reply> got;
  std::string buf;
  char chunk[4096];
  while (got.size() < n) {
    auto r = codec.next_frame(buf.data(), buf.size());
    if (r.status != tern::transport::frame_status::complete) {
      auto k = co_await s.async_read_some(asio::buffer(chunk), asio::use_awaitable);
      buf.append(chunk, k);
      continue;
    }
    msgpack::zone z;
    tern::transport::packet p;
    codec.decode(buf.data() + r.header, r.length, z, false, p);
    if (p.has_err) {
      got.emplace(p.id, tern::transport::to_rpc_error(p));
    } else if (p.has_response) {
      got.emplace(p.id, tern::transport::decode_owned(p.response));
    } else {
      got.emplace(p.id, msgpack::object_handle());  // {id, isDisposed: true}
    }
    buf.erase(0, r.total());
  }
  co_return got;
}

}  // namespace

TEST_CASE("a handler sees the time its caller still waits as its deadline") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto left = co_await f.client->send<long>({{"cmd", "deadline"}}, msgpack::type::nil_t{},
                                              {.timeout = 300ms});
    CHECK(left > 200);
    CHECK(left <= 300);
    // The client's default timeout travels too.
    left = co_await f.client->send<long>({{"cmd", "deadline"}});
    CHECK(left > 4000);
    CHECK(left <= 5000);
  });
}

TEST_CASE("calls made with ctx.forward() end when the request's caller stops waiting") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture backend(io);
    tern::client_proxy to_backend(io, {.port = backend.port, .timeout = 10s});
    tern::microservice front(io, {.port = 0});
    // Relays to the backend's {cmd:deadline}, with the options it is given.
    front.message_pattern(
        {{"cmd", "relay"}},
        [&](long shorter, const tern::message_context& ctx) -> asio::awaitable<long> {
          auto o = ctx.forward();
          if (shorter > 0) o.timeout = std::chrono::milliseconds(shorter);
          co_return co_await to_backend.send<long>({{"cmd", "deadline"}}, msgpack::type::nil_t{},
                                                   o);
        });
    std::optional<rpc_error> late_failure;
    int late_sent = 0;
    // Works (blocking, so no cancel is read meanwhile) past its deadline,
    // then calls: the call is not sent.
    front.message_pattern({{"cmd", "late"}},
                          [&](const tern::message_context& ctx) -> asio::awaitable<void> {
                            std::this_thread::sleep_for(150ms);
                            try {
                              ++late_sent;
                              co_await to_backend.send<long>({{"cmd", "deadline"}},
                                                             msgpack::type::nil_t{}, ctx.forward());
                            } catch (const rpc_error& e) {
                              late_failure = e;
                            }
                          });
    tern::client_proxy client(io, {.port = front.start(), .timeout = 5s});

    // The backend's call has what is left of the 400 ms (not its own 10 s).
    auto left = co_await client.send<long>({{"cmd", "relay"}}, 0, {.timeout = 400ms});
    CHECK(left > 250);
    CHECK(left <= 400);
    // A timeout shorter than what is left wins.
    left = co_await client.send<long>({{"cmd", "relay"}}, 100, {.timeout = 400ms});
    CHECK(left > 0);
    CHECK(left <= 100);

    try {
      co_await client.send<void>({{"cmd", "late"}}, msgpack::type::nil_t{}, {.timeout = 100ms});
      FAIL("the call outlived its 100 ms");
    } catch (const rpc_error& e) {
      CHECK(e.kind() == errc::timeout);
    }
    co_await until([&] { return late_failure.has_value(); });
    CHECK(late_sent == 1);
    CHECK(late_failure->kind() == errc::deadline_exceeded);
    CHECK(backend.app.metrics().scrape().find(
              "outcome=\"ok\",pattern=\"{\\\"cmd\\\":\\\"deadline\\\"}\"} 2\n") !=
          std::string::npos);  // the two relays, not the late call
  });
}

TEST_CASE("a request whose deadline passed while it waited in the service is dropped unrun") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    // Three requests in one write: the first blocks the loop for 200 ms;
    // the second allows 50 ms, spent before its turn comes; the third has
    // no deadline.
    tern::transport::msgpack_codec codec;
    tern::transport::byte_buffer out;
    auto nil = [](tern::transport::packer& pk) { pk.pack_nil(); };
    codec.encode_request(out, 1, packed(std::map<std::string, std::string>{{"cmd", "block"}}), {},
                         {}, [](tern::transport::packer& pk) { pk.pack(200); });
    codec.encode_request(out, 2, packed(std::map<std::string, std::string>{{"cmd", "echo"}}), {},
                         50ms, nil);
    codec.encode_request(out, 3, packed(std::map<std::string, std::string>{{"cmd", "deadline"}}),
                         {}, {}, nil);
    asio::ip::tcp::socket s(io);
    co_await s.async_connect({asio::ip::make_address("127.0.0.1"), f.port}, asio::use_awaitable);
    co_await asio::async_write(s, asio::buffer(out.data(), out.size()), asio::use_awaitable);

    auto got = co_await read_replies(s, 3);
    REQUIRE(std::holds_alternative<msgpack::object_handle>(got.at(1)));
    CHECK(std::get<msgpack::object_handle>(got.at(1)).get().as<int>() == 200);
    REQUIRE(std::holds_alternative<rpc_error>(got.at(2)));
    const auto& dropped = std::get<rpc_error>(got.at(2));
    CHECK(dropped.kind() == errc::deadline_exceeded);
    CHECK(dropped.status() == 504);
    CHECK(std::string(dropped.message()).find("before the handler could run") != std::string::npos);
    REQUIRE(std::holds_alternative<msgpack::object_handle>(got.at(3)));
    CHECK(std::get<msgpack::object_handle>(got.at(3)).get().as<long>() == -1);

    auto metrics = f.app.metrics().scrape();
    INFO(metrics);
    CHECK(
        metrics.find(
            R"(rpc_server_requests_total{outcome="deadline_exceeded",pattern="{\"cmd\":\"echo\"}"} 1)") !=
        std::string::npos);
    CHECK(
        metrics.find(R"(rpc_server_requests_total{outcome="ok",pattern="{\"cmd\":\"echo\"}"} 0)") !=
        std::string::npos);
  });
}

TEST_CASE("a call whose inherited deadline has passed fails at once, unsent") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto start = std::chrono::steady_clock::now();
    try {
      co_await f.client->send<std::string>("ping", msgpack::type::nil_t{},
                                           {.deadline = std::chrono::steady_clock::now() - 1ms});
      FAIL("a call past its deadline was sent");
    } catch (const rpc_error& e) {
      CHECK(e.kind() == errc::deadline_exceeded);
    }
    CHECK(std::chrono::steady_clock::now() - start < 100ms);
    CHECK(f.app.metrics().scrape().find(
              R"(rpc_server_requests_total{outcome="ok",pattern="ping"} 0)") != std::string::npos);
  });
}

namespace {

// A front service whose {cmd:relay_sleep} ms calls the backend's {cmd:sleep}
// with ctx.forward(), so cancelling the front's handler must reach the
// backend's too.
struct chain {
  explicit chain(asio::io_context& io)
      : backend(io),
        to_backend(io, {.port = backend.port, .timeout = 10s}),
        front(io, {.port = 0}) {
    front.message_pattern(
        {{"cmd", "relay_sleep"}},
        [this](int ms, const tern::message_context& ctx) -> asio::awaitable<int> {
          co_return co_await to_backend.send<int>({{"cmd", "sleep"}}, ms, ctx.forward());
        });
    client = std::make_unique<tern::client_proxy>(
        io, tern::client_options{.port = front.start(), .timeout = 10s});
  }
  [[nodiscard]] static std::string outcome(const std::string& pattern, const std::string& what,
                                           int n) {
    return "rpc_server_requests_total{outcome=\"" + what + "\",pattern=\"" + pattern + "\"} " +
           std::to_string(n) + "\n";
  }
  [[nodiscard]] static std::string cancelled(const std::string& pattern, int n) {
    return outcome(pattern, "cancelled", n);
  }
  fixture backend;
  tern::client_proxy to_backend;
  tern::microservice front;
  std::unique_ptr<tern::client_proxy> client;
};

const std::string sleep_key = R"({\"cmd\":\"sleep\"})";
const std::string relay_key = R"({\"cmd\":\"relay_sleep\"})";

}  // namespace

TEST_CASE("a caller that gives up cancels the coroutine handler, and the call it was making") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    chain c(io);
    SUBCASE("by its timeout") {
      auto start = std::chrono::steady_clock::now();
      try {
        co_await c.client->send<int>({{"cmd", "relay_sleep"}}, 3000, {.timeout = 150ms});
        FAIL("a 3 s handler answered within 150 ms");
      } catch (const rpc_error& e) {
        CHECK(e.kind() == errc::timeout);
      }
      // Both handlers stop long before their 3 s: the front's by the cancel
      // frame (or its own deadline), the backend's by the front's cancel.
      co_await until([&] { return c.backend.app.in_flight() == 0 && c.front.in_flight() == 0; });
      CHECK(std::chrono::steady_clock::now() - start < 1500ms);
      CHECK(c.front.in_flight() == 0);
      CHECK(c.backend.app.in_flight() == 0);
      // The front's call inherited the same deadline, so it may time out
      // there just before the client's cancel arrives (the front then
      // answers deadline_exceeded): either way it ended.
      auto front = c.front.metrics().scrape();
      CHECK((front.find(chain::cancelled(relay_key, 1)) != std::string::npos ||
             front.find(chain::outcome(relay_key, "deadline_exceeded", 1)) != std::string::npos));
      CHECK(c.backend.app.metrics().scrape().find(chain::cancelled(sleep_key, 1)) !=
            std::string::npos);
    }
    SUBCASE("by cancelling the awaiting coroutine (the losing side of ||)") {
      asio::steady_timer t(io, 150ms);
      auto start = std::chrono::steady_clock::now();
      auto won = co_await (c.client->send<int>({{"cmd", "relay_sleep"}}, 3000) ||
                           t.async_wait(asio::use_awaitable));
      CHECK(won.index() == 1);
      co_await until([&] { return c.backend.app.in_flight() == 0 && c.front.in_flight() == 0; });
      CHECK(std::chrono::steady_clock::now() - start < 1500ms);
      CHECK(c.front.metrics().scrape().find(chain::cancelled(relay_key, 1)) != std::string::npos);
      CHECK(c.backend.app.metrics().scrape().find(chain::cancelled(sleep_key, 1)) !=
            std::string::npos);
    }
    // The services go on serving.
    CHECK(co_await c.client->send<int>({{"cmd", "relay_sleep"}}, 1) == 1);
  });
}

TEST_CASE("a connection closed mid-request stops its coroutine handlers") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    tern::transport::msgpack_codec codec;
    tern::transport::byte_buffer out;
    codec.encode_request(out, 1, packed(std::map<std::string, std::string>{{"cmd", "sleep"}}), {},
                         {}, [](tern::transport::packer& pk) { pk.pack(3000); });
    {
      asio::ip::tcp::socket s(io);
      co_await s.async_connect({asio::ip::make_address("127.0.0.1"), f.port}, asio::use_awaitable);
      co_await asio::async_write(s, asio::buffer(out.data(), out.size()), asio::use_awaitable);
      co_await until([&] { return f.app.in_flight() == 1; });
      REQUIRE(f.app.in_flight() == 1);
    }  // closed
    auto closed_at = std::chrono::steady_clock::now();
    co_await until([&] { return f.app.in_flight() == 0; });
    CHECK(std::chrono::steady_clock::now() - closed_at < 1000ms);
    CHECK(f.app.metrics().scrape().find(chain::cancelled(sleep_key, 1)) != std::string::npos);
  });
}

TEST_CASE(
    "tern.ping is answered below the handlers, and a cancel for no such call changes nothing") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    tern::transport::msgpack_codec codec;
    tern::transport::byte_buffer out;
    codec.encode_cancel(out, 99);  // nothing has id 99
    codec.encode_request(out, 1, packed(std::string("tern.ping")), {}, {},
                         [](tern::transport::packer& pk) { pk.pack_nil(); });
    codec.encode_request(out, 2, packed(std::string("ping")), {}, {},
                         [](tern::transport::packer& pk) { pk.pack_nil(); });
    asio::ip::tcp::socket s(io);
    co_await s.async_connect({asio::ip::make_address("127.0.0.1"), f.port}, asio::use_awaitable);
    co_await asio::async_write(s, asio::buffer(out.data(), out.size()), asio::use_awaitable);
    auto got = co_await read_replies(s, 2);
    REQUIRE(std::holds_alternative<msgpack::object_handle>(got.at(1)));
    CHECK(std::get<msgpack::object_handle>(got.at(1)).get().is_nil());  // {id, isDisposed: true}
    REQUIRE(std::holds_alternative<msgpack::object_handle>(got.at(2)));
    CHECK(std::get<msgpack::object_handle>(got.at(2)).get().as<std::string>() == "pong");
    auto metrics = f.app.metrics().scrape();
    CHECK(metrics.find("tern.ping") == std::string::npos);
    CHECK(metrics.find("tern.cancel") == std::string::npos);
    CHECK_THROWS_AS(f.app.message_pattern("tern.ping", [] { return 1; }), std::invalid_argument);
    CHECK_THROWS_AS(f.app.event_pattern("tern.cancel", [](int) {}), std::invalid_argument);
  });
}

namespace {

// Accepts connections and reads whatever comes, answering nothing: a peer
// gone silent (a frozen process, or a link cut without a reset).
struct silent_peer {
  explicit silent_peer(asio::io_context& io)
      : acceptor(io, {asio::ip::make_address("127.0.0.1"), 0}) {
    tern::test::spawn([this]() -> asio::awaitable<void> {
      for (;;) {
        auto s = std::make_shared<asio::ip::tcp::socket>(
            co_await acceptor.async_accept(asio::use_awaitable));
        ++accepted;
        tern::test::spawn([s]() -> asio::awaitable<void> {
          char buf[4096];
          for (;;) co_await s->async_read_some(asio::buffer(buf), asio::use_awaitable);
        });
      }
    });
  }
  [[nodiscard]] std::uint16_t port() const { return acceptor.local_endpoint().port(); }
  asio::ip::tcp::acceptor acceptor;
  int accepted = 0;
};

}  // namespace

TEST_CASE("a silent peer is found by a keep-alive ping: its calls fail, its endpoint is ejected") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    silent_peer quiet(io);
    fixture alive(io);
    const tern::transport::connection_options keepalive{.keepalive_interval = 100ms,
                                                        .keepalive_timeout = 100ms};
    SUBCASE("a call pending on it fails with connection_closed, long before its own timeout") {
      tern::client_proxy c(io, {.port = quiet.port(), .timeout = 10s, .connection = keepalive});
      auto start = std::chrono::steady_clock::now();
      try {
        co_await c.send<std::string>("ping");
        FAIL("a silent peer answered");
      } catch (const rpc_error& e) {
        CHECK(e.kind() == errc::connection_closed);
        CHECK(std::string(e.message()).find("silent") != std::string::npos);
      }
      auto took = std::chrono::steady_clock::now() - start;
      CHECK(took >= 200ms);  // interval + timeout
      CHECK(took < 1500ms);
    }
    SUBCASE("of two endpoints, the silent one is ejected and calls go to the other") {
      tern::client_proxy c(io, {.endpoints = {"127.0.0.1:" + std::to_string(quiet.port()),
                                              "127.0.0.1:" + std::to_string(alive.port)},
                                .balance = tern::balancing::round_robin,
                                .timeout = 10s,
                                .connection = keepalive});
      co_await c.connect();  // one endpoint
      // Each endpoint gets connected by the calls (round robin); the silent
      // one's call fails, then nothing more goes there.
      int answered = 0, failed = 0;
      for (int i = 0; i < 6; ++i) {
        try {
          if (co_await c.send<std::string>("ping") == "pong") ++answered;
        } catch (const rpc_error& e) {
          CHECK(e.kind() == errc::connection_closed);
          ++failed;
        }
      }
      CHECK(failed == 1);
      CHECK(answered == 5);
      CHECK(c.stats().ejections == 1);
    }
  });
}

TEST_CASE("keep-alive pings keep an idle connection to a live service open, and go unseen by it") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    tern::client_proxy c(
        io,
        {.port = f.port, .connection = {.keepalive_interval = 50ms, .keepalive_timeout = 50ms}});
    CHECK(co_await c.send<std::string>("ping") == "pong");
    // Idle for a dozen pings' worth: what is checked is that nothing happens.
    co_await tern::test::sleep_for(600ms);
    CHECK(f.app.connections() == 1);
    CHECK(c.endpoints().at(0).state == tern::client_proxy::connection_state::connected);
    CHECK(co_await c.send<std::string>("ping") == "pong");
    CHECK(f.app.metrics().scrape().find(
              R"(rpc_server_requests_total{outcome="ok",pattern="ping"} 2)") != std::string::npos);
  });
}
