// http::server over TLS: what the session's reads must get right when the
// TLS session, not the socket, holds the bytes (pipelined requests in one
// record, a request split over many), drain, and handshakes that stall at
// max_connections. The certificates are the tls_certs fixture's.
#include "tern/http/server.hpp"
#include "tern/transport/tls.hpp"
#include "tern/transport/tls_stream.hpp"

#include "../support/harness.hpp"
#include "../support/test_certs.hpp"

#include <doctest/doctest.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstdlib>
#include <memory>
#include <string>

using tern::transport::tls_context;
using tern::transport::tls_options;
using tern::transport::tls_stream;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

std::string certs(const std::string& file) {
  return tern::test::cert_file(file);
}

std::shared_ptr<const tls_context> server_tls() {
  tls_options o;
  o.cert_file = certs("server.pem");
  o.key_file = certs("server.key");
  o.alpn = {"http/1.1"};
  return tls_context::server(o);
}

// A TLS client connection to the server: its socket and session.
struct client {
  explicit client(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  std::unique_ptr<tls_stream> tls;
  std::string buf;  // received, not yet taken

  static asio::awaitable<std::unique_ptr<client>> open(asio::io_context& io, std::uint16_t port) {
    static const auto context = [] {
      tls_options o;
      o.ca_file = certs("ca.pem");
      o.alpn = {"http/1.1"};
      return tls_context::client(o);
    }();
    auto c = std::make_unique<client>(io);
    co_await c->socket.async_connect({asio::ip::make_address("127.0.0.1"), port},
                                     asio::use_awaitable);
    c->tls = std::make_unique<tls_stream>(c->socket, context, tls_stream::side::client);
    c->tls->expect_name("localhost");
    auto why = co_await c->tls->handshake();
    REQUIRE_MESSAGE(why.empty(), why);
    co_return c;
  }
  asio::awaitable<void> send(std::string_view bytes) {
    auto [ec, n] = co_await tls->write(bytes.data(), bytes.size());
    REQUIRE_FALSE(ec);
  }
  // The next response's body (its head checked for `status`), or throws
  // if the server closes first.
  asio::awaitable<std::string> response(int status = 200) {
    for (;;) {
      if (auto end = buf.find("\r\n\r\n"); end != std::string::npos) {
        auto head = buf.substr(0, end);
        auto at = head.find("Content-Length: ");
        REQUIRE(at != std::string::npos);
        auto length = std::stoul(head.substr(at + 16));
        if (buf.size() >= end + 4 + length) {
          CHECK(head.rfind("HTTP/1.1 " + std::to_string(status), 0) == 0);
          auto body = buf.substr(end + 4, length);
          buf.erase(0, end + 4 + length);
          co_return body;
        }
      }
      char chunk[4096];
      auto [ec, n] = co_await tls->read_some(chunk, sizeof chunk, {});
      if (ec) throw std::runtime_error("closed before a whole response; got: " + buf);
      buf.append(chunk, n);
    }
  }
  // What arrives until the server closes (a hang fails the test's run()).
  asio::awaitable<std::string> rest() {
    std::string got = std::move(buf);
    char chunk[4096];
    for (;;) {
      auto [ec, n] = co_await tls->read_some(chunk, sizeof chunk, {});
      if (ec) co_return got;
      got.append(chunk, n);
    }
  }
};

// Answers "METHOD path"; "/slow" waits until `release` is set.
struct app {
  bool release = false;
  bool started = false;
  tern::http::server::handler handler() {
    return [this](tern::http::request& r) -> asio::awaitable<tern::http::response> {
      if (r.path == "/slow") {
        started = true;
        co_await tern::test::until([this] { return release; }, 10s);
      }
      tern::http::response resp;
      resp.body = r.method + " " + r.path + (r.tls ? " tls " + r.tls->alpn : "");
      co_return resp;
    };
  }
};

// A TLS server with the app's handler on an ephemeral loopback port.
struct https_server {
  explicit https_server(asio::io_context& io, const tern::http::limits& l = {})
      : server(io, l, a.handler()) {
    server.use_tls(server_tls());
    port = server.listen("127.0.0.1", 0);
  }
  app a;
  tern::http::server server;
  std::uint16_t port = 0;
};

}  // namespace

TEST_CASE("https: pipelined requests in one TLS write are answered in order, then more") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    https_server s(io);
    auto& server = s.server;
    auto port = s.port;
    auto c = co_await client::open(io, port);
    // 100 requests in one write: the server's TLS session holds what its
    // first read does not return, and the session must not wait on the
    // socket for bytes it already has.
    std::string all;
    for (int i = 0; i < 100; ++i)
      all += "GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
    co_await c->send(all);
    for (int i = 0; i < 100; ++i) {
      CHECK(co_await c->response() == "GET /r" + std::to_string(i) + " tls http/1.1");
    }
    // A request split over many writes (many records), on the same connection.
    const std::string split = "GET /split HTTP/1.1\r\nHost: x\r\n\r\n";
    for (char ch : split) co_await c->send(std::string_view(&ch, 1));
    CHECK(co_await c->response() == "GET /split tls http/1.1");
    CHECK(server.handshakes() == 1);
    CHECK(server.failed_handshakes() == 0);
  });
}

TEST_CASE("https: drain finishes a request in flight and closes idle TLS connections") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    https_server s(io);
    auto& a = s.a;
    auto& server = s.server;
    auto port = s.port;
    auto idle = co_await client::open(io, port);
    co_await idle->send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await idle->response();
    auto busy = co_await client::open(io, port);
    co_await busy->send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await tern::test::until([&] { return a.started; });
    bool drained = false;
    asio::co_spawn(io, server.drain(10s), [&](std::exception_ptr) { drained = true; });
    CHECK((co_await idle->rest()).empty());
    CHECK_FALSE(drained);
    a.release = true;
    CHECK(co_await busy->response() == "GET /slow tls http/1.1");
    CHECK((co_await busy->rest()).empty());
    busy->socket.close();  // (else the server lingers for it, reading, up to 2 s)
    co_await tern::test::until([&] { return drained; });
    CHECK(drained);
    CHECK(server.connections() == 0);
  });
}

TEST_CASE("https: handshakes that stall are reclaimed at max_connections and counted as failed") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::http::limits l;
    l.max_connections = 2;
    https_server s(io, l);
    auto& server = s.server;
    auto port = s.port;
    std::vector<tcp::socket> stalled;
    for (int i = 0; i < 2; ++i) {
      stalled.emplace_back(io);
      co_await stalled.back().async_connect({asio::ip::make_address("127.0.0.1"), port},
                                            asio::use_awaitable);
      co_await asio::async_write(stalled.back(), asio::buffer("\x16\x03\x01", 3),
                                 asio::use_awaitable);
    }
    co_await tern::test::until([&] { return server.connections() == 2; });
    // A third client at the limit takes a stalled one's place, and is served.
    auto c = co_await client::open(io, port);
    co_await c->send("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(co_await c->response() == "GET /ok tls http/1.1");
    CHECK(server.reclaimed() == 1);
    co_await tern::test::until([&] { return server.failed_handshakes() == 1; });
    CHECK(server.failed_handshakes() == 1);
    CHECK(server.handshakes() == 1);
  });
}

TEST_CASE("https: requests sent as separate records before any response are all answered") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    https_server s(io);
    auto port = s.port;
    auto c = co_await client::open(io, port);
    // Each a record of its own, all before the server reads: one socket
    // read takes them all, one TLS read returns one record, and the rest
    // wait in the session, where a wait on the socket would never see them.
    for (int i = 0; i < 20; ++i) {
      co_await c->send("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    for (int i = 0; i < 20; ++i) {
      CHECK(co_await c->response() == "GET /r" + std::to_string(i) + " tls http/1.1");
    }
  });
}

TEST_CASE("https: at drain, a connection whose handshake is done gets its first request served") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    https_server s(io);
    auto& a = s.a;
    auto& server = s.server;
    auto port = s.port;
    // One between requests (drain closes it), one with a request in
    // flight, and one past its handshake that has sent nothing yet.
    auto idle = co_await client::open(io, port);
    co_await idle->send("GET /warm HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await idle->response();
    auto busy = co_await client::open(io, port);
    co_await busy->send(
        "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    co_await tern::test::until([&] { return a.started; });
    auto fresh = co_await client::open(io, port);
    co_await tern::test::until([&] { return server.handshakes() == 3; });
    bool drained = false;
    asio::co_spawn(io, server.drain(10s), [&](std::exception_ptr) { drained = true; });
    // The idle one closing shows drain has woken every idle session.
    CHECK((co_await idle->rest()).empty());
    co_await fresh->send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(co_await fresh->response() == "GET /first tls http/1.1");
    a.release = true;
    CHECK(co_await busy->response() == "GET /slow tls http/1.1");
    // A request queued behind one in flight is not begun at drain (as on plain HTTP).
    CHECK((co_await busy->rest()).empty());
    CHECK((co_await fresh->rest()).empty());
    busy->socket.close();
    fresh->socket.close();
    co_await tern::test::until([&] { return drained; });
    CHECK(drained);
  });
}

TEST_CASE(
    "https: a keep-alive HTTPS connection between requests is reclaimable at max_connections") {
  tern::test::run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::http::limits l;
    l.max_connections = 1;
    https_server s(io, l);
    auto& server = s.server;
    auto port = s.port;
    auto first = co_await client::open(io, port);
    co_await first->send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(co_await first->response() == "GET /a tls http/1.1");
    // Idle between requests, it is reclaimable: a second client takes its place.
    auto second = co_await client::open(io, port);
    co_await second->send("GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(co_await second->response() == "GET /b tls http/1.1");
    CHECK(server.reclaimed() == 1);
    CHECK((co_await first->rest()).empty());
  });
}
