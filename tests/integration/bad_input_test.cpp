// Hostile and broken peers: each is cut off alone while a well-behaved
// client keeps getting answers.
#include "harness.hpp"
#include "tern/tern.hpp"
#include "tern/transport/frame_decoder.hpp"
#include "test_handlers.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/write.hpp>

using namespace std::chrono_literals;
using tern::test::run;
using tern::test::sleep_for;

namespace {

constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

struct service {
  explicit service(asio::io_context& io) : app(io, {.port = 0, .incomplete_frame_timeout = 200ms}) {
    tern::test::register_test_handlers(app);
    port = app.start();
  }
  tern::microservice app;
  std::uint16_t port;
};

// Pings the service every few ms until stopped; counts answers and failures.
struct bystander {
  bystander(asio::io_context& io, std::uint16_t port) : client(io, {.port = port}) {
    asio::co_spawn(
        io,
        [this]() -> asio::awaitable<void> {
          while (!stop) {
            try {
              if (co_await client.send<std::string>("ping") == "pong") ++answered;
            } catch (const std::exception&) {
              ++failed;
            }
            co_await sleep_for(5ms);
          }
          done = true;
        },
        asio::detached);
  }
  asio::awaitable<void> finish() {
    stop = true;
    while (!done) co_await sleep_for(5ms);
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
    co_await sleep_for(20ms);
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
    co_await sleep_for(20ms);
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
    co_await sleep_for(50ms);
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
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto s = co_await acceptor.async_accept(asio::use_awaitable);
          char buf[256];
          co_await s.async_read_some(asio::buffer(buf), asio::use_awaitable);
          co_await send_raw(s, header(2) + "\xc1\xc1");
          co_await sleep_for(500ms);
        },
        asio::detached);
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
