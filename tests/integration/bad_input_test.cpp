// Hostile and broken peers: each is cut off alone while a well-behaved
// client keeps getting answers.
#include "harness.hpp"
#include "tern/tern.hpp"
#include "tern/transport/frame_decoder.hpp"
#include "test_handlers.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <span>
#include <sstream>

using namespace std::chrono_literals;
using tern::test::run;
using tern::test::sleep_for;
using tern::test::until;

namespace {

constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

struct service {
  explicit service(asio::io_context& io)
      : app(io, {.port = 0, .connection = {.incomplete_frame_timeout = 200ms}}) {
    tern::test::register_test_handlers(app);
    port = app.start();
  }
  tern::microservice app;
  std::uint16_t port;
};

// Pings the service every few ms until stopped; counts answers and failures.
struct bystander {
  bystander(asio::io_context& io, std::uint16_t port) : client(io, {.port = port}) {
    tern::test::spawn([this]() -> asio::awaitable<void> {
      while (!stop) {
        try {
          if (co_await client.send<std::string>("ping") == "pong") ++answered;
        } catch (const std::exception&) {
          ++failed;
        }
        co_await sleep_for(5ms);
      }
      done = true;
    });
  }
  asio::awaitable<void> finish() {
    stop = true;
    co_await until([this] { return done; });
    REQUIRE(done);
    CHECK(failed == 0);
    CHECK(answered > 0);
  }
  tern::client_proxy client;
  int answered = 0, failed = 0;
  bool stop = false, done = false;
};

asio::awaitable<asio::ip::tcp::socket> raw_connect(std::uint16_t port) {
  asio::ip::tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  co_return s;
}

asio::awaitable<void> send_raw(asio::ip::tcp::socket& s, const std::string& bytes) {
  co_await asio::async_write(s, asio::buffer(bytes), asio::use_awaitable);
}

// Reads until the server closes the connection; returns how long that took,
// or `limit` if it stayed open.
asio::awaitable<std::chrono::milliseconds> time_until_closed(asio::ip::tcp::socket& s,
                                                             std::chrono::milliseconds limit) {
  using namespace asio::experimental::awaitable_operators;
  auto start = std::chrono::steady_clock::now();
  auto drain = [&]() -> asio::awaitable<void> {
    char buf[4096];
    for (;;) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(buf), nothrow);
      if (ec) co_return;
    }
  };
  auto r = co_await (drain() || sleep_for(limit));
  if (r.index() == 1) co_return limit;
  co_return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                  start);
}

std::string header(std::uint32_t len) {
  std::string h(4, '\0');
  tern::transport::write_frame_header(h.data(), len);
  return h;
}

}  // namespace

TEST_CASE("garbage bytes close only the offending connection") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    bystander b(io, svc.port);
    co_await until([&] { return b.answered > 0; });  // served before the attack
    auto s = co_await raw_connect(svc.port);
    co_await send_raw(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");  // "GET " is a 1.2 GB length
    CHECK(co_await time_until_closed(s, 2000ms) < 2000ms);
    auto s2 = co_await raw_connect(svc.port);
    co_await send_raw(s2, header(5) + "\xc1\xc1\xc1\xc1\xc1");  // a frame that is not msgpack
    CHECK(co_await time_until_closed(s2, 2000ms) < 2000ms);
    auto s3 = co_await raw_connect(svc.port);
    co_await send_raw(s3, header(3) + "\x93\x01\x02");  // msgpack, but not a packet map
    CHECK(co_await time_until_closed(s3, 2000ms) < 2000ms);
    co_await b.finish();
  });
}

TEST_CASE("a length of 0xFFFFFFFF is refused at once") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    bystander b(io, svc.port);
    auto s = co_await raw_connect(svc.port);
    co_await send_raw(s, header(0xFFFFFFFF) + "abc");
    CHECK(co_await time_until_closed(s, 2000ms) < 150ms);  // before the stall timeout
    auto before = b.answered;                              // others are served after it
    co_await until([&] { return b.answered > before; });
    CHECK(b.answered > before);
    co_await b.finish();
  });
}

TEST_CASE("a truncated frame followed by close disturbs no one") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    bystander b(io, svc.port);
    {
      auto s = co_await raw_connect(svc.port);
      co_await send_raw(s, header(100) + "0123456789");
      s.close();
    }
    co_await until([&] { return svc.app.connections() == 1; });
    CHECK(svc.app.connections() == 1);  // only the bystander's
    co_await b.finish();
  });
}

TEST_CASE("a frame that stalls half-way is dropped after the idle timeout") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    bystander b(io, svc.port);
    auto s = co_await raw_connect(svc.port);
    co_await send_raw(s, header(100) + "0123456789");
    auto took = co_await time_until_closed(s, 3000ms);
    CHECK(took >= 150ms);
    CHECK(took < 1000ms);
    co_await b.finish();
  });
}

TEST_CASE("an idle connection between frames is left open") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    auto s = co_await raw_connect(svc.port);
    CHECK(co_await time_until_closed(s, 500ms) == 500ms);
  });
}

TEST_CASE("a server that sends garbage fails the client's pending calls with protocol_error") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tern::test::spawn([&]() -> asio::awaitable<void> {
      auto s = co_await acceptor.async_accept(asio::use_awaitable);
      char buf[256];
      co_await s.async_read_some(asio::buffer(buf), asio::use_awaitable);
      co_await send_raw(s, header(2) + "\xc1\xc1");
      co_await sleep_for(500ms);
    });
    tern::client_proxy c(io, {.port = acceptor.local_endpoint().port()});
    try {
      co_await c.send<int>("ping");
      FAIL("expected a protocol error");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::protocol_error);
    }
  });
}

TEST_CASE("a request over the client's frame limit is refused before sending") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    tern::client_proxy c(io, {.port = svc.port, .max_frame = 1024});
    try {
      co_await c.send<std::string>({{"cmd", "echo"}}, std::string(4096, 'x'));
      FAIL("expected a protocol error");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::protocol_error);
    }
    CHECK(co_await c.send<std::string>("ping") == std::string("pong"));
  });
}

namespace {

std::string packed_of(const auto& v) {
  msgpack::sbuffer b;
  msgpack::pack(b, v);
  return {b.data(), b.size()};
}

std::string nested(int levels) {
  return std::string(static_cast<std::size_t>(levels), '\x91') + '\xc0';  // [[[...nil]]]
}

// A whole frame holding the map of the given keys and packed values.
std::string frame_of(std::initializer_list<std::pair<std::string, std::string>> fields) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(static_cast<std::uint32_t>(fields.size()));
  for (const auto& [k, v] : fields) {
    pk.pack(k);
    b.write(v.data(), v.size());
  }
  return header(static_cast<std::uint32_t>(b.size())) + std::string(b.data(), b.size());
}

// Reads one frame and returns its packet map.
asio::awaitable<msgpack::object_handle> read_packet(asio::ip::tcp::socket& s) {
  char h[4];
  co_await asio::async_read(s, asio::buffer(h), asio::use_awaitable);
  std::uint32_t len = (std::uint32_t(std::uint8_t(h[0])) << 24) |
                      (std::uint32_t(std::uint8_t(h[1])) << 16) |
                      (std::uint32_t(std::uint8_t(h[2])) << 8) | std::uint32_t(std::uint8_t(h[3]));
  std::string body(len, '\0');
  co_await asio::async_read(s, asio::buffer(body), asio::use_awaitable);
  co_return msgpack::unpack(body.data(), body.size());
}

const msgpack::object* field(const msgpack::object& map, std::string_view name) {
  for (const auto& kv : std::span(map.via.map.ptr, map.via.map.size)) {
    if (kv.key.type == msgpack::type::STR && kv.key.as<std::string>() == name) return &kv.val;
  }
  return nullptr;
}

const std::string echo_p = packed_of(std::map<std::string, std::string>{{"cmd", "echo"}});

}  // namespace

TEST_CASE("a request that cannot be taken is answered for its id, the connection stays open") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    bystander b(io, svc.port);
    auto s = co_await raw_connect(svc.port);
    // Too deep (100 levels, under the frame limit), then malformed inside,
    // then a field of the wrong type: each refused for its own id.
    {
      auto f = frame_of({{"id", packed_of(1)}, {"pattern", echo_p}, {"data", nested(100)}});
      co_await send_raw(s, f);
    }
    {
      auto f = frame_of({{"id", packed_of(2)}, {"pattern", echo_p}, {"data", "\xc1"}});
      co_await send_raw(s, f);
    }
    {
      auto f = frame_of({{"id", packed_of(3)}, {"pattern", echo_p}, {"meta", packed_of(5)}});
      co_await send_raw(s, f);
    }
    for (std::uint64_t id = 1; id <= 3; ++id) {
      auto reply = co_await read_packet(s);
      CHECK(field(reply.get(), "id")->as<std::uint64_t>() == id);
      const auto* err = field(reply.get(), "err");
      REQUIRE(err);
      CHECK(field(*err, "status")->as<int>() == 400);
      CHECK(field(*err, "message")->as<std::string>().starts_with("malformed request: "));
    }
    // 64 levels are still data; and the connection still serves.
    {
      auto f = frame_of({{"id", packed_of(4)}, {"pattern", echo_p}, {"data", nested(64)}});
      co_await send_raw(s, f);
    }
    {
      auto f = frame_of({{"id", packed_of(5)}, {"pattern", packed_of(std::string("ping"))}});
      co_await send_raw(s, f);
    }
    auto echoed = co_await read_packet(s);
    CHECK(field(echoed.get(), "id")->as<int>() == 4);
    CHECK(field(echoed.get(), "response"));
    auto pong = co_await read_packet(s);
    CHECK(field(pong.get(), "response")->as<std::string>() == "pong");
    co_await b.finish();
  });
}

TEST_CASE("an event that cannot be taken is dropped, the connection stays open") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    auto s = co_await raw_connect(svc.port);
    {
      auto f = frame_of({{"pattern", packed_of(std::string("note"))}, {"data", nested(100)}});
      co_await send_raw(s, f);
    }
    {
      auto f = frame_of({{"pattern", packed_of(std::string("note"))}, {"data", packed_of(1)}});
      co_await send_raw(s, f);
    }
    auto notes = packed_of(std::map<std::string, std::string>{{"cmd", "notes"}});
    {
      auto f = frame_of({{"id", packed_of(1)}, {"pattern", notes}});
      co_await send_raw(s, f);
    }
    auto reply = co_await read_packet(s);
    CHECK(field(reply.get(), "response")->as<int>() == 1);  // only the good one
  });
}

TEST_CASE("a pattern string holding deeply nested JSON gets no_handler, not a crash") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    tern::client_proxy c(io, {.port = svc.port});
    std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
    try {
      co_await c.send<int>(tern::pattern(deep));
      FAIL("expected no_handler");
    } catch (const tern::rpc_error& e) {
      CHECK(e.kind() == tern::errc::no_handler);
    }
    CHECK(co_await c.send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("a frame must arrive whole within its time of its first byte, trickle or not") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    service svc(io);  // 200 ms per frame
    auto s = co_await raw_connect(svc.port);
    auto start = std::chrono::steady_clock::now();
    auto trickle = [&]() -> asio::awaitable<void> {
      co_await send_raw(s, header(100));
      for (int i = 0; i < 60; ++i) {  // a byte every 25 ms for 1.5 s
        co_await sleep_for(25ms);
        auto [ec, n] = co_await asio::async_write(s, asio::buffer("x", 1), nothrow);
        if (ec) co_return;
      }
    };
    auto closed = [&]() -> asio::awaitable<void> {
      char buf[16];
      co_await s.async_read_some(asio::buffer(buf), nothrow);
    };
    co_await (trickle() && closed());
    auto took = std::chrono::steady_clock::now() - start;
    CHECK(took >= 150ms);
    CHECK(took < 1000ms);
  });
}

TEST_CASE("connections over max_connections are closed at once, others are served") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::microservice app(io, {.port = 0, .max_connections = 2});
    tern::test::register_test_handlers(app);
    auto port = app.start();
    auto ping = frame_of({{"id", packed_of(1)}, {"pattern", packed_of(std::string("ping"))}});
    auto a = co_await raw_connect(port);
    auto b = co_await raw_connect(port);
    std::vector<asio::ip::tcp::socket*> both{&a, &b};
    for (auto* s : both) {  // both accepted and served
      co_await send_raw(*s, ping);
      CHECK(field((co_await read_packet(*s)).get(), "response")->as<std::string>() == "pong");
    }
    auto c = co_await raw_connect(port);
    CHECK(co_await time_until_closed(c, 2000ms) < 500ms);
    CHECK(app.connections() == 2);
    a.close();
    // Once the server has seen the close, a new connection is served.
    co_await until([&] { return app.connections() < 2; });
    auto d = co_await raw_connect(port);
    co_await send_raw(d, ping);
    CHECK(field((co_await read_packet(d)).get(), "response")->as<std::string>() == "pong");
  });
}

TEST_CASE("a client with max_in_flight requests in hand is read no further until one ends") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::microservice app(io, {.port = 0, .connection = {.max_in_flight = 2}});
    int now = 0, most = 0;
    app.message_pattern("busy", [&](int ms) -> asio::awaitable<int> {
      most = std::max(most, ++now);
      co_await sleep_for(std::chrono::milliseconds(ms));
      --now;
      co_return ms;
    });
    auto port = app.start();
    tern::client_proxy c(io, {.port = port});
    int done = 0;
    for (int i = 0; i < 6; ++i) {
      tern::test::spawn([&]() -> asio::awaitable<void> {
        if (co_await c.send<int>("busy", 30) == 30) ++done;
      });
    }
    co_await until([&] { return done == 6; });
    CHECK(done == 6);
    CHECK(most == 2);
  });
}

TEST_CASE("a reply sink that throws fails only its own call") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    service svc(io);
    tern::client_proxy c(io, {.port = svc.port});
    auto throwing = [](const tern::transport::value_view&) { throw std::runtime_error("full"); };
    auto data = packed_of(20);
    auto bad = [&]() -> asio::awaitable<tern::errc> {
      try {
        co_await c.send_raw({{"cmd", "sleep"}}, data, throwing);
      } catch (const tern::rpc_error& e) {
        co_return e.kind();
      }
      co_return tern::errc::remote;
    };
    // A slower call on the same connection is in flight meanwhile.
    auto [kind, slow] = co_await (bad() && c.send<int>({{"cmd", "sleep"}}, 150));
    CHECK(kind == tern::errc::decode_error);
    CHECK(slow == 150);
    CHECK(svc.app.connections() == 1);  // never reconnected
  });
}

TEST_CASE("a reply nested too deep fails only its own call") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tern::test::spawn([&]() -> asio::awaitable<void> {
      auto s = co_await acceptor.async_accept(asio::use_awaitable);
      auto first = co_await read_packet(s);
      auto second = co_await read_packet(s);
      auto id1 = field(first.get(), "id")->as<std::uint64_t>();
      auto id2 = field(second.get(), "id")->as<std::uint64_t>();
      {
        auto f = frame_of(
            {{"id", packed_of(id1)}, {"response", nested(100)}, {"isDisposed", packed_of(true)}});
        co_await send_raw(s, f);
      }
      {
        auto f = frame_of(
            {{"id", packed_of(id2)}, {"response", packed_of(7)}, {"isDisposed", packed_of(true)}});
        co_await send_raw(s, f);
      }
      co_await sleep_for(500ms);
    });
    using namespace asio::experimental::awaitable_operators;
    tern::client_proxy c(io, {.port = acceptor.local_endpoint().port()});
    auto first = [&]() -> asio::awaitable<tern::errc> {
      try {
        co_await c.send<int>("a");
      } catch (const tern::rpc_error& e) {
        co_return e.kind();
      }
      co_return tern::errc::remote;
    };
    auto [kind, value] = co_await (first() && c.send<int>("b"));
    CHECK(kind == tern::errc::decode_error);
    CHECK(value == 7);
  });
}

TEST_CASE("a request written a byte at a time is answered once, whole") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service svc(io);
    auto s = co_await raw_connect(svc.port);
    s.set_option(asio::ip::tcp::no_delay(true));
    auto sum = packed_of(std::map<std::string, std::string>{{"cmd", "sum"}});
    const std::vector<int> xs{2, 3};
    auto f = frame_of({{"id", packed_of(9)}, {"pattern", sum}, {"data", packed_of(xs)}});
    for (char c : f) {
      co_await asio::async_write(s, asio::buffer(&c, 1), asio::use_awaitable);
      co_await sleep_for(1ms);  // apart, so the service reads them apart
    }
    auto reply = co_await read_packet(s);
    CHECK(field(reply.get(), "id")->as<int>() == 9);
    CHECK(field(reply.get(), "response")->as<int>() == 5);
    auto ping = frame_of({{"id", packed_of(10)}, {"pattern", packed_of(std::string("ping"))}});
    co_await send_raw(s, ping);
    auto next = co_await read_packet(s);  // the next reply is for the next request
    CHECK(field(next.get(), "id")->as<int>() == 10);
  });
}

TEST_CASE("events with unknown patterns cannot amplify the log") {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(log)));
  run([](asio::io_context& io) -> asio::awaitable<void> {
    // The default frame timeout: 10 MiB under a loaded sanitizer build can
    // take longer than the 200 ms the other cases' service allows a frame.
    tern::microservice app(io, {.port = 0});
    tern::test::register_test_handlers(app);
    tern::client_proxy c(io, {.port = app.start()});
    const tern::pattern big(std::string(1 << 20, 'x'));  // 1 MiB of pattern
    for (int i = 0; i < 10; ++i) co_await c.emit(big, i);
    // Answered after the events on the same connection were handled.
    CHECK(co_await c.send<std::string>("ping") == std::string("pong"));
  });
  spdlog::set_default_logger(previous);
  MESSAGE("log: ", log.str().size(), " bytes for 10 MiB of unknown patterns");
  CHECK(log.str().find("no event handler for (a pattern of 1048") != std::string::npos);
  CHECK(log.str().size() < 4096);  // one clipped line, the rest counted
}

TEST_CASE("a client that stops reading its replies is cut off after write_timeout") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::microservice app(io, {.port = 0, .connection = {.write_timeout = 300ms}});
    tern::test::register_test_handlers(app);
    auto port = app.start();
    bystander b(io, port);
    auto s = co_await raw_connect(port);
    // 40 echoes of 1 MiB each are asked for, and none is read.
    const std::string mib(1 << 20, 'x');
    auto f = frame_of({{"id", packed_of(1)}, {"pattern", echo_p}, {"data", packed_of(mib)}});
    for (int i = 0; i < 40; ++i) {  // the service stops reading, then cuts us off
      auto [ec, n] = co_await asio::async_write(s, asio::buffer(f), nothrow);
      if (ec) break;
    }
    co_await until([&] { return app.connections() == 1; });  // only the bystander's left
    CHECK(app.connections() == 1);
    co_await b.finish();
  });
}

TEST_CASE("coroutine event handlers count against max_in_flight") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::microservice app(io, {.port = 0, .connection = {.max_in_flight = 2}});
    int now = 0, most = 0, done = 0;
    app.event_pattern("slow", [&](int ms) -> asio::awaitable<void> {
      most = std::max(most, ++now);
      co_await sleep_for(std::chrono::milliseconds(ms));
      --now;
      ++done;
    });
    auto port = app.start();
    tern::client_proxy c(io, {.port = port});
    for (int i = 0; i < 8; ++i) co_await c.emit("slow", 20);
    co_await until([&] { return done == 8; });
    CHECK(done == 8);
    CHECK(most == 2);
  });
}
