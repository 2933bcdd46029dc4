// A microservice and client_proxy in one process, on loopback sockets.
#include "harness.hpp"
#include "tern/tern.hpp"
#include "tern/transport/client_connection.hpp"
#include "tern/transport/msgpack_codec.hpp"
#include "test_handlers.hpp"

#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/write.hpp>

#include <numeric>
#include <sstream>

using namespace std::chrono_literals;
using tern::errc;
using tern::rpc_error;
using tern::test::error_of;
using tern::test::run;
using tern::test::sleep_for;
using tern::test::until;

namespace {

// A service with the test handlers on an ephemeral port, and a client of it.
struct fixture {
  explicit fixture(asio::io_context& io, tern::microservice_options o = {})
      : app(io, with_port0(o)) {
    tern::test::register_test_handlers(app);
    port = app.start();
    client = std::make_unique<tern::client_proxy>(
        io, tern::client_options{.host = "127.0.0.1", .port = port, .timeout = 5s});
  }
  static tern::microservice_options with_port0(tern::microservice_options o) {
    o.port = 0;
    return o;
  }
  tern::microservice app;
  std::uint16_t port = 0;
  std::unique_ptr<tern::client_proxy> client;
};

std::uint16_t unused_port(asio::io_context& io) {
  asio::ip::tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

}  // namespace

TEST_CASE("send gets the handler's reply") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    CHECK(co_await f.client->send<std::string>("ping") == std::string("pong"));
    // (GCC 12 cannot hold a braced container initializer across co_await:
    // values are named first.)
    const std::vector<long> xs{1, 2, 3};
    CHECK(co_await f.client->send<long>({{"cmd", "sum"}}, xs) == 6);
    const std::map<std::string, int> m{{"a", 1}, {"b", 2}};
    auto echoed = co_await f.client->send({{"cmd", "echo"}}, m);
    CHECK(echoed.get().as<std::map<std::string, int>>() == m);
  });
}

TEST_CASE("10,000 concurrent sends on one connection each get their own reply") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    constexpr int n = 10000;
    int right = 0, finished = 0;
    for (int i = 0; i < n; ++i) {
      asio::co_spawn(
          io,
          [&, i]() -> asio::awaitable<void> {
            const std::vector<long> xs{i, 1};
            auto r = co_await f.client->send<long>({{"cmd", "sum"}}, xs);
            if (r == i + 1) ++right;
          },
          [&](std::exception_ptr) { ++finished; });
    }
    co_await until([&] { return finished == n; });
    REQUIRE(finished == n);
    CHECK(right == n);
    CHECK(f.app.connections() == 1);
    CHECK(f.client->pending() == 0);
  });
}

TEST_CASE("a handler's rpc_error reaches the caller as sent") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto e = co_await error_of(f.client->send<int>({{"cmd", "fail"}}));
    CHECK(e.kind() == errc::remote);
    CHECK(e.status() == 418);
    CHECK(e.message() == "I am a teapot");
    REQUIRE(e.has_details());
    CHECK(e.details<std::map<std::string, int>>().at("spout") == 1);
  });
}

TEST_CASE("any other exception is a generic internal error without its detail") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto e = co_await error_of(f.client->send<int>({{"cmd", "crash"}}));
    CHECK(e.kind() == errc::internal);
    CHECK(e.status() == 500);
    CHECK(e.message() == "Internal server error");
    CHECK(std::string(e.what()).find("secret") == std::string::npos);
    // The service goes on serving.
    CHECK(co_await f.client->send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("an unknown pattern is errc::no_handler") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto e = co_await error_of(f.client->send<int>({{"cmd", "nope"}}));
    CHECK(e.kind() == errc::no_handler);
    CHECK(e.message() == "There is no matching message handler defined in the remote service.");
  });
}

TEST_CASE("object patterns match whatever the caller's key order") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    f.app.message_pattern({{"role", "math"}, {"cmd", "mul"}},
                          [](std::vector<int> v) { return v.at(0) * v.at(1); });
    const std::vector<int> xs{6, 7};
    CHECK(co_await f.client->send<int>({{"cmd", "mul"}, {"role", "math"}}, xs) == 42);
  });
}

TEST_CASE("every spelling of a pattern reaches its handler, however many there are") {
  // The service looks handlers up by a pattern's exact bytes after the first
  // time, for a bounded number of spellings; past that bound, and for
  // patterns it has no handler for, it still answers right.
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    f.app.message_pattern({{"cmd", "mul"}}, [](std::vector<int> v) { return v.at(0) * v.at(1); });
    const std::vector<int> xs{6, 7};
    for (int round = 0; round < 2; ++round) {
      for (int spaces = 0; spaces < 300; ++spaces) {
        // NestJS's JSON-text form, a different byte string each time.
        tern::pattern p("{" + std::string(static_cast<std::size_t>(spaces), ' ') +
                        R"("cmd":"mul"})");
        REQUIRE(co_await f.client->send<int>(p, xs) == 42);
      }
      auto e = co_await error_of(f.client->send<int>({{"cmd", "mul "}}, xs));
      CHECK(e.kind() == errc::no_handler);
      // Too long to be remembered by its bytes; found all the same.
      tern::pattern padded("{" + std::string(5000, ' ') + R"("cmd":"mul"})");
      CHECK(co_await f.client->send<int>(padded, xs) == 42);
    }
    CHECK(co_await f.client->send<int>({{"cmd", "mul"}}, xs) == 42);
  });
}

TEST_CASE("a reply that does not decode as T is errc::decode_error") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto e = co_await error_of(f.client->send<std::vector<std::string>>("ping"));
    CHECK(e.kind() == errc::decode_error);
  });
}

TEST_CASE("request data that does not fit the handler is a 400 from the service") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto e = co_await error_of(f.client->send<long>({{"cmd", "sum"}}, std::string("not a list")));
    CHECK(e.kind() == errc::remote);
    CHECK(e.status() == 400);
    CHECK(std::string(e.what()) == "data: expected an array, got a string");
    const std::vector<std::string> words{"a", "b"};
    e = co_await error_of(f.client->send<long>({{"cmd", "sum"}}, words));
    CHECK(std::string(e.what()) == "data[0]: expected an integer, got a string");
  });
}

TEST_CASE("a handler slower than the deadline times out, its late reply is dropped") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto start = std::chrono::steady_clock::now();
    auto e = co_await error_of(f.client->send<int>({{"cmd", "sleep"}}, 300, {.timeout = 50ms}));
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(e.kind() == errc::timeout);
    CHECK(took >= 50ms);
    CHECK(took < 250ms);
    CHECK(f.client->pending() == 0);
    // The late reply goes out when the handler ends; the next reply on the
    // connection comes after it, so it has been read (and dropped) by then.
    co_await until([&] { return f.app.in_flight() == 0; });
    CHECK(co_await f.client->send<int>({{"cmd", "sleep"}}, 1) == 1);
  });
}

TEST_CASE("events reach their handler and get no reply") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    for (int i = 0; i < 3; ++i) co_await f.client->emit("note", i);
    CHECK(co_await f.client->send<int>({{"cmd", "notes"}}) == 3);
    co_await f.client->emit("no such event", 1);  // logged by the service, nothing else
    CHECK(co_await f.client->send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("a streaming handler's values arrive one by one, send yields the last") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto s = co_await f.client->stream<int>({{"cmd", "count"}}, 5);
    std::vector<int> got;
    while (auto v = co_await s.next()) got.push_back(*v);
    CHECK(got == std::vector<int>{1, 2, 3, 4, 5});
    CHECK(co_await f.client->send<int>({{"cmd", "count"}}, 5) == 5);
    auto empty = co_await f.client->stream<int>({{"cmd", "count"}}, 0);
    CHECK_FALSE((co_await empty.next()).has_value());
  });
}

TEST_CASE("offload runs blocking work off the loop and resumes on it") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    CHECK(co_await f.client->send<bool>({{"cmd", "offload"}}));
  });
}

TEST_CASE("handlers see the caller's address and their pattern") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    auto who = co_await f.client->send<std::string>({{"cmd", "whoami"}});
    CHECK(who.rfind("127.0.0.1:", 0) == 0);
    CHECK(who.find(R"({"cmd":"whoami"})") != std::string::npos);
  });
}

TEST_CASE("nothing listening: connection_refused at once, then backoff") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::client_proxy c(io, {.port = unused_port(io), .backoff_initial = 1000ms});
    auto e = co_await error_of(c.send<int>("ping"));
    CHECK(e.kind() == errc::connection_refused);
    auto start = std::chrono::steady_clock::now();
    auto e2 = co_await error_of(c.send<int>("ping"));
    CHECK(e2.kind() == errc::connection_refused);
    CHECK(std::string(e2.what()).find("next attempt") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < 50ms);
  });
}

TEST_CASE("a cancelled send ends with errc::cancelled and leaves nothing pending") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    asio::cancellation_signal cancel;
    std::optional<rpc_error> failure;
    bool ended = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          try {
            co_await f.client->send<int>({{"cmd", "sleep"}}, 5000);
          } catch (const rpc_error& e) {
            failure = e;
          }
        },
        asio::bind_cancellation_slot(cancel.slot(), [&](std::exception_ptr) { ended = true; }));
    co_await until([&] { return f.app.in_flight() == 1; });  // the request is being handled
    cancel.emit(asio::cancellation_type::terminal);
    co_await until([&] { return ended; });
    REQUIRE(failure.has_value());
    CHECK(failure->kind() == errc::cancelled);
    CHECK(f.client->pending() == 0);
    CHECK(co_await f.client->send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("send_raw_all runs calls at once and keeps each one's outcome") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    fixture other(io);
    tern::client_proxy dead(io, {.port = unused_port(io)});
    auto packed = [](const auto& v) {
      msgpack::sbuffer b;
      msgpack::pack(b, v);
      return std::string(b.data(), b.size());
    };
    const tern::pattern sleep_p{{"cmd", "sleep"}}, sum_p{{"cmd", "sum"}}, fail_p{{"cmd", "fail"}},
        count_p{{"cmd", "count"}}, ping_p("ping");
    const std::vector<int> xs{1, 2, 3};
    const tern::pattern meet_p{{"cmd", "meet"}};
    const std::string d_sleep = packed(200), d_sum = packed(xs),
                      d_nil = packed(msgpack::type::nil_t()), d_count = packed(4),
                      d_meet = packed(std::tuple<std::string, int>("raw_all", 2));
    std::vector<std::string> got(6);
    auto keep = [&got](std::size_t i) {
      return [&out = got[i]](const tern::transport::value_view& v) {
        std::ostringstream os;
        os << v.object();
        out = os.str();
      };
    };
    std::vector<decltype(keep(0))> sinks;
    sinks.reserve(6);
    std::vector<tern::raw_call> calls;
    // Two calls to two services that each wait for the other to arrive.
    calls.push_back({.client = f.client.get(),
                     .p = &meet_p,
                     .packed_data = d_meet,
                     .on_value = sinks.emplace_back(keep(0))});
    calls.push_back({.client = other.client.get(),
                     .p = &meet_p,
                     .packed_data = d_meet,
                     .on_value = sinks.emplace_back(keep(1))});
    calls.push_back({.client = f.client.get(),
                     .p = &sum_p,
                     .packed_data = d_sum,
                     .on_value = sinks.emplace_back(keep(2))});
    calls.push_back({.client = other.client.get(),
                     .p = &fail_p,
                     .packed_data = d_nil,
                     .on_value = sinks.emplace_back(keep(3))});
    calls.push_back({.client = &dead,
                     .p = &ping_p,
                     .packed_data = d_nil,
                     .on_value = sinks.emplace_back(keep(4))});
    calls.push_back({.client = f.client.get(),
                     .p = &count_p,
                     .packed_data = d_count,
                     .on_value = sinks.emplace_back(keep(5))});
    co_await tern::send_raw_all(calls);
    CHECK(got[0] == "2");  // both were in flight at once
    CHECK(got[1] == "2");
    CHECK(got[2] == "6");
    CHECK(got[5] == "4");  // a stream's values each reach the sink; the last stays
    for (std::size_t i : {0, 1, 2, 5}) CHECK_FALSE(calls[i].error.has_value());
    REQUIRE(calls[3].error.has_value());
    CHECK(calls[3].error->status() == 418);
    REQUIRE(calls[4].error.has_value());
    CHECK(calls[4].error->kind() == errc::connection_refused);
    CHECK(f.client->pending() == 0);
    CHECK(other.client->pending() == 0);

    // A deadline ends its own call only; cancelling the waiter ends the rest.
    calls.erase(calls.begin() + 2, calls.end());
    for (auto& c : calls) {
      c.p = &sleep_p;
      c.packed_data = d_sleep;
    }
    calls[0].options.timeout = 50ms;
    co_await tern::send_raw_all(calls);
    REQUIRE(calls[0].error.has_value());
    CHECK(calls[0].error->kind() == errc::timeout);
    CHECK_FALSE(calls[1].error.has_value());
    using namespace asio::experimental::awaitable_operators;
    calls[0].options.timeout = 0ms;
    auto r = co_await (tern::send_raw_all(calls) || sleep_for(30ms));
    CHECK(r.index() == 1);
    CHECK(calls[0].error->kind() == errc::cancelled);
    CHECK(calls[1].error->kind() == errc::cancelled);
    CHECK(f.client->pending() == 0);
    CHECK(other.client->pending() == 0);
  });
}

TEST_CASE("closing the client fails its pending calls, and the next call reconnects") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    std::optional<rpc_error> failure;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      try {
        co_await f.client->send<int>({{"cmd", "sleep"}}, 1000);
      } catch (const rpc_error& e) {
        failure = e;
      }
    });
    co_await until([&] { return f.app.in_flight() == 1; });
    f.client->close();
    co_await until([&] { return failure.has_value(); });
    REQUIRE(failure.has_value());
    CHECK(failure->kind() == errc::connection_closed);
    CHECK(co_await f.client->send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("shutdown lets in-flight handlers finish and reply") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    fixture f(io);
    int replied = 0;
    tern::test::spawn([&]() -> asio::awaitable<void> {
      replied = co_await f.client->send<int>({{"cmd", "sleep"}}, 200);
    });
    co_await until([&] { return f.app.in_flight() == 1; });
    co_await f.app.shutdown();
    co_await until([&] { return replied != 0; });
    CHECK(replied == 200);
    CHECK(f.app.in_flight() == 0);
  });
}

namespace {

// A client_connection to a bare socket this test answers by hand, stepped
// one handler at a time, to reach the moment between a reply's arrival
// and its caller's resumption.
struct hand_answered {
  tern::transport::msgpack_codec wire;
  asio::io_context io{1};
  asio::ip::tcp::acceptor acceptor{io, {asio::ip::make_address("127.0.0.1"), 0}};
  asio::ip::tcp::socket peer{io};
  std::shared_ptr<tern::transport::client_connection> conn;

  hand_answered() {
    acceptor.async_accept(peer, [](std::error_code) {});
    asio::co_spawn(
        io,
        [this]() -> asio::awaitable<void> {
          conn = co_await tern::transport::client_connection::connect(
              "127.0.0.1", acceptor.local_endpoint().port(), wire, {}, 5s);
        },
        asio::detached);
    step_until([&] { return conn && peer.is_open(); });
  }
  // Runs handlers one by one until `done()` (at most 2,000).
  void step_until(const std::function<bool()>& done) {
    for (int i = 0; i < 2000 && !done(); ++i) io.run_one_for(100ms);
    REQUIRE(done());
  }
  // Writes the final replies to calls `ids` in one write (one read takes them).
  void answer(std::initializer_list<std::uint64_t> ids) { answer(std::vector(ids)); }
  void answer(const std::vector<std::uint64_t>& ids) {
    std::string frames;
    for (auto id : ids) {
      msgpack::sbuffer body;
      msgpack::packer<msgpack::sbuffer> pk(body);
      pk.pack_map(3);
      pk.pack(std::string("id"));
      pk.pack(id);
      pk.pack(std::string("response"));
      pk.pack(std::string("pong"));
      pk.pack(std::string("isDisposed"));
      pk.pack(true);
      auto n = static_cast<std::uint32_t>(body.size());
      for (int shift = 24; shift >= 0; shift -= 8) frames += static_cast<char>(n >> shift);
      frames.append(body.data(), body.size());
    }
    asio::write(peer, asio::buffer(frames));
  }
};

const std::string packed_ping = [] {
  msgpack::sbuffer b;
  msgpack::pack(b, std::string("ping"));
  return std::string(b.data(), b.size());
}();

}  // namespace

TEST_CASE("a call answered but not yet resumed when its loop is destroyed frees its connection") {
  std::weak_ptr<tern::transport::client_connection> watched;
  bool resumed = false;
  {
    hand_answered h;
    watched = h.conn;
    auto nil = [](tern::transport::packer& pk) { pk.pack_nil(); };
    auto ignore = [](const tern::transport::value_view&) {};
    asio::co_spawn(
        h.io,
        [&]() -> asio::awaitable<void> {
          co_await h.conn->call("ping", packed_ping, {}, nil, ignore, 5s);
          resumed = true;
        },
        asio::detached);
    h.step_until([&] { return h.conn->pending() == 1; });
    h.answer({1});
    h.step_until([&] { return h.conn->pending() == 0; });  // read: ended, not yet resumed
    h.conn.reset();
  }  // the loop goes with the caller's resumption still queued
  CHECK_FALSE(resumed);
  CHECK(watched.expired());  // nothing kept the connection and the caller's frame alive
}

TEST_CASE("a waiter that throws does not cost the calls woken with it their resumption") {
  hand_answered h;
  tern::transport::call_state first, second;
  bool second_ran = false;
  first.waiter = [] { throw std::runtime_error("a waiter's own failure"); };
  second.waiter = [&] { second_ran = true; };
  auto nil = [](tern::transport::packer& pk) { pk.pack_nil(); };
  auto ignore = [](const tern::transport::value_view&) {};
  first.label = second.label = "ping";
  tern::transport::value_sink sink = ignore;
  first.sink = second.sink = &sink;
  h.conn->start_call(first, packed_ping, {}, nil, 5s);
  h.conn->start_call(second, packed_ping, {}, nil, 5s);
  h.answer({1, 2});  // both end in one read: one batch
  CHECK_THROWS_WITH(h.step_until([&] { return second_ran; }), "a waiter's own failure");
  CHECK_FALSE(second_ran);
  h.step_until([&] { return second_ran; });  // the loop goes on: the rest of the batch runs
  CHECK(first.done);
  CHECK(second.done);
}

namespace {
// 64 calls on h.conn, answered in one read; each caller, woken, sends its
// next call and notes how many bytes of requests its peer holds unread.
std::vector<std::size_t> bytes_seen_by_woken_callers(hand_answered& h) {
  constexpr std::size_t n = 64;
  auto nil = [](tern::transport::packer& pk) { pk.pack_nil(); };
  static const tern::transport::value_sink sink = [](const tern::transport::value_view&) {};
  std::vector<tern::transport::call_state> first(n), next(n);
  std::vector<std::size_t> seen(n, 0);
  std::size_t woken = 0;
  for (std::size_t i = 0; i < n; ++i) {
    first[i].label = next[i].label = "ping";
    first[i].sink = next[i].sink = &sink;
    first[i].waiter = [&, i] {
      h.conn->start_call(next[i], packed_ping, {}, nil, 5s);
      seen[i] = h.peer.available();
      ++woken;
    };
    h.conn->start_call(first[i], packed_ping, {}, nil, 5s);
  }
  h.io.poll();  // the 64 requests written
  std::vector<char> taken(1 << 16);
  while (h.peer.available() > 0) h.peer.read_some(asio::buffer(taken));
  std::vector<std::uint64_t> ids(n);
  std::iota(ids.begin(), ids.end(), 1);  // the ids the connection gave them
  h.answer(ids);
  h.step_until([&] { return woken == n; });
  h.io.poll();
  for (auto& s : next) h.conn->abandon(s);
  return seen;
}
}  // namespace

TEST_CASE(
    "a connection alone on its loop writes what the first 32 woken callers sent before the "
    "rest of their batch runs") {
  hand_answered h;
  auto seen = bytes_seen_by_woken_callers(h);
  CHECK(seen[0] == 0);
  CHECK(seen[31] == 0);         // the first 32 callers' requests wait for the writer...
  CHECK(seen[32] > 0);          // ...which wrote them before the 33rd caller ran
  CHECK(seen[63] == seen[32]);  // and the rest's go out after the batch
}

TEST_CASE("with another connection of its loop busy, a batch of woken callers runs whole") {
  hand_answered other;
  hand_answered h;
  auto nil = [](tern::transport::packer& pk) { pk.pack_nil(); };
  const tern::transport::value_sink sink = [](const tern::transport::value_view&) {};
  tern::transport::call_state pending;
  pending.label = "ping";
  pending.sink = &sink;
  other.conn->start_call(pending, packed_ping, {}, nil, 5s);  // unanswered
  auto seen = bytes_seen_by_woken_callers(h);
  CHECK(seen[32] == 0);
  CHECK(seen[63] == 0);  // all 64 requests go out after the batch, in one write
  other.conn->abandon(pending);
}
