// TLS and mutual TLS between client_proxy and microservice, on loopback:
// what a handler learns of its caller, and each refusal a user would meet
// (an untrusted, expired or misnamed certificate, a caller without one,
// plaintext at a TLS port and the reverse, a stalled handshake), each with
// the service going on serving the others. The certificates are the
// tls_certs fixture's (tests/support/make_certs.py).
#include "harness.hpp"
#include "tern/tern.hpp"
#include "test_certs.hpp"
#include "test_handlers.hpp"

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/read.hpp>
#include <asio/write.hpp>

#include <cstdlib>
#include <string>

using namespace std::chrono_literals;
using tern::errc;
using tern::peer_check;
using tern::rpc_error;
using tern::tls_options;
using tern::test::error_of;
using tern::test::run;

namespace {

std::string certs(const std::string& file) {
  return tern::test::cert_file(file);
}

tls_options service_tls(const std::string& name = "server", peer_check check = peer_check::none) {
  tls_options o;
  o.cert_file = certs(name + ".pem");
  o.key_file = certs(name + ".key");
  o.check = check;
  if (check != peer_check::none) o.ca_file = certs("ca.pem");
  return o;
}

tls_options client_tls(const std::string& cert = "") {
  tls_options o;
  o.ca_file = certs("ca.pem");
  if (!cert.empty()) {
    o.cert_file = certs(cert + ".pem");
    o.key_file = certs(cert + ".key");
  }
  return o;
}

// The caller's certificate as the handler saw it: subject, then names.
std::string describe(const tern::tls_peer& p) {
  std::string s = p.subject;
  for (const auto& n : p.names) s += " " + n;
  return s;
}

// A service with the test handlers (and "certificate", which answers with
// its caller's) on an ephemeral loopback port.
struct service {
  service(asio::io_context& io, std::optional<tls_options> tls, tern::microservice_options o = {})
      : app(io, with(std::move(o), std::move(tls))) {
    tern::test::register_test_handlers(app);
    app.message_pattern({{"cmd", "certificate"}}, [](const tern::message_context& ctx) {
      return describe(ctx.peer_identity());
    });
    port = app.start();
  }
  static tern::microservice_options with(tern::microservice_options o,
                                         std::optional<tls_options> tls) {
    o.port = 0;
    o.tls = std::move(tls);
    return o;
  }
  // A client of it: over TLS when `tls` is given, to `host` (the name its
  // certificate must carry) at this port's loopback address.
  [[nodiscard]] std::unique_ptr<tern::client_proxy> client(
      asio::io_context& io, std::optional<tls_options> tls, const std::string& host = "127.0.0.1",
      std::chrono::milliseconds connect_timeout = 3s) const {
    tern::client_options o{.host = host, .port = port, .timeout = 5s};
    o.connect_timeout = connect_timeout;
    o.backoff_initial = 1ms;  // a refused connect is tried again at once by the next call
    o.tls = std::move(tls);
    return std::make_unique<tern::client_proxy>(io, std::move(o));
  }
  tern::microservice app;
  std::uint16_t port = 0;
};

// A raw socket to the port, for bytes no client_proxy would send.
asio::awaitable<asio::ip::tcp::socket> raw_connect(std::uint16_t port) {
  asio::ip::tcp::socket s(co_await asio::this_coro::executor);
  co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
  co_return s;
}

// Reads until the peer closes; returns what arrived before that.
asio::awaitable<std::string> read_to_close(asio::ip::tcp::socket& s) {
  std::string got;
  char buf[512];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(buf),
                                              asio::experimental::as_tuple(asio::use_awaitable));
    got.append(buf, n);
    if (ec) co_return got;
  }
}

}  // namespace

TEST_CASE("tls: a client_proxy calls a service over TLS, and its handler sees no certificate") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service s(io, service_tls());
    auto client = s.client(io, client_tls());
    CHECK(co_await client->send<std::string>("ping") == std::string("pong"));
    // A certificate's DNS name, as well as its address.
    auto by_name = s.client(io, client_tls(), "localhost");
    CHECK(co_await by_name->send<std::string>("ping") == std::string("pong"));
    CHECK(co_await client->send<std::string>({{"cmd", "certificate"}}) == std::string());
  });
}

TEST_CASE("tls: with client certificates required, a handler sees its caller's verified one") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service s(io, service_tls("server", peer_check::require));
    auto client = s.client(io, client_tls("client"));
    CHECK(co_await client->send<std::string>({{"cmd", "certificate"}}) ==
          std::string("O=tern tests,CN=gateway DNS:gateway"));
    // Events carry it too: "note" counts, "notes" reads the count.
    co_await client->emit("note", 1);
    CHECK(co_await client->send<int>({{"cmd", "notes"}}) == 1);
  });
}

TEST_CASE("tls: a service that requires certificates refuses callers without a good one") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service s(io, service_tls("server", peer_check::require));
    auto good = s.client(io, client_tls("client"));
    // No certificate, then one from another CA: refused in the handshake
    // (TLS 1.3 tells the client with an alert after its side is done, so
    // the first call on the connection fails), whatever the call was.
    for (const std::string& cert : {std::string(), std::string("other_client")}) {
      CAPTURE(cert);
      auto bad = s.client(io, client_tls(cert));
      auto e = co_await error_of(bad->send<std::string>("ping"));
      CHECK((e.kind() == errc::connection_closed || e.kind() == errc::connection_refused));
      CHECK(std::string(e.what()).find("alert") != std::string::npos);
      // The service goes on serving a caller with a good certificate.
      CHECK(co_await good->send<std::string>("ping") == std::string("pong"));
    }
    CHECK(s.app.connections() == 1);
  });
}

TEST_CASE("tls: a client refuses a service whose certificate it cannot trust, saying why") {
  struct refusal {
    std::string cert, host, why;
  };
  for (const auto& r : {refusal{"other_server", "127.0.0.1", "unable to get local issuer"},
                        refusal{"expired", "127.0.0.1", "certificate has expired"},
                        refusal{"not_yet", "127.0.0.1", "certificate is not yet valid"},
                        refusal{"self_signed", "127.0.0.1", "self-signed certificate"},
                        refusal{"elsewhere", "127.0.0.1", "IP address mismatch"},
                        refusal{"server", "elsewhere.example", "hostname mismatch"}}) {
    CAPTURE(r.cert);
    run([&r](asio::io_context& io) -> asio::awaitable<void> {
      service s(io, service_tls(r.cert));
      auto opts = client_tls();
      if (r.host != "127.0.0.1") opts.server_name = r.host;
      auto client = s.client(io, opts);
      auto e = co_await error_of(client->send<std::string>("ping"));
      CHECK(e.kind() == errc::connection_refused);
      CHECK(std::string(e.what()).find("TLS handshake failed") != std::string::npos);
      CHECK(std::string(e.what()).find(r.why) != std::string::npos);
      // No connection is left behind on the service's side.
      co_await tern::test::until([&] { return s.app.connections() == 0; });
      CHECK(s.app.connections() == 0);
    });
  }
}

TEST_CASE("tls: plaintext at a TLS port and TLS at a plaintext port are refused clearly") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service secure(io, service_tls());
    service plain(io, std::nullopt);
    // A TLS caller at a plaintext port: closed before its handshake ends,
    // and the service's log says what it was (first: the log's rate limit
    // lets one protocol error a second through, per thread: ctest runs
    // each case in a process of its own).
    auto seen = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
    auto level = spdlog::get_level();
    spdlog::default_logger()->sinks().push_back(seen);
    spdlog::set_level(spdlog::level::warn);
    auto e = co_await error_of(plain.client(io, client_tls())->send<std::string>("ping"));
    spdlog::set_level(level);
    spdlog::default_logger()->sinks().pop_back();
    CHECK(e.kind() == errc::connection_refused);
    CHECK(std::string(e.what()).find("TLS handshake failed") != std::string::npos);
    bool said = false;
    for (const auto& line : seen->last_formatted()) {
      said = said || line.find("the peer began a TLS handshake; this port speaks plaintext") !=
                         std::string::npos;
    }
    CHECK(said);
    // A plaintext caller: its frame is no TLS hello; the connection closes.
    e = co_await error_of(secure.client(io, std::nullopt)->send<std::string>("ping"));
    CHECK((e.kind() == errc::connection_closed || e.kind() == errc::protocol_error));
    // Both ports serve their own kind throughout.
    CHECK(co_await secure.client(io, client_tls())->send<std::string>("ping") ==
          std::string("pong"));
    CHECK(co_await plain.client(io, std::nullopt)->send<std::string>("ping") ==
          std::string("pong"));
  });
}

TEST_CASE("tls: a handshake that stalls is cut off at the frame timeout, others served meanwhile") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    tern::microservice_options o;
    o.connection.incomplete_frame_timeout = 300ms;
    service s(io, service_tls(), o);
    auto stalled = co_await raw_connect(s.port);
    const std::string opening("\x16\x03\x01", 3);  // a record header, then nothing
    co_await asio::async_write(stalled, asio::buffer(opening), asio::use_awaitable);
    auto began = std::chrono::steady_clock::now();
    auto client = s.client(io, client_tls());
    CHECK(co_await client->send<std::string>("ping") == std::string("pong"));
    auto got = co_await read_to_close(stalled);
    CHECK(std::chrono::steady_clock::now() - began >= 250ms);
    CHECK(got.empty());  // no handshake answer to a header alone, then closed
    CHECK(co_await client->send<std::string>("ping") == std::string("pong"));
  });
}

TEST_CASE("tls: a service that never answers the handshake fails the connect at its timeout") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    asio::ip::tcp::acceptor silent(io, {asio::ip::make_address("127.0.0.1"), 0});
    std::uint16_t port = silent.local_endpoint().port();
    asio::ip::tcp::socket held(io);
    silent.async_accept(held, [](std::error_code) {});  // accepted, never read
    tern::client_options o{.host = "127.0.0.1", .port = port, .timeout = 5s};
    o.connect_timeout = 300ms;
    o.tls = client_tls();
    tern::client_proxy client(io, o);
    auto began = std::chrono::steady_clock::now();
    auto e = co_await error_of(client.send<std::string>("ping"));
    CHECK(e.kind() == errc::connection_refused);
    CHECK(std::string(e.what()).find(
              "the TLS handshake did not finish within the connect's 300 ms") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - began < 3s);
  });
}

TEST_CASE("tls: large frames and many calls at once cross a TLS connection whole") {
  run([](asio::io_context& io) -> asio::awaitable<void> {
    service s(io, service_tls("server", peer_check::require));
    auto client = s.client(io, client_tls("client"));
    std::string big(3 * 1024 * 1024 + 7, 'x');  // many TLS records each way
    for (std::size_t i = 0; i < big.size(); i += 4093) big[i] = static_cast<char>('a' + i % 26);
    auto echoed = co_await client->send({{"cmd", "echo"}}, big);
    CHECK(echoed.get().as<std::string>() == big);
    constexpr int n = 2000;
    int right = 0, finished = 0;
    for (int i = 0; i < n; ++i) {
      tern::test::spawn([&, i]() -> asio::awaitable<void> {
        const std::vector<long> xs{i, 1};
        if (co_await client->send<long>({{"cmd", "sum"}}, xs) == i + 1) ++right;
        ++finished;
      });
    }
    co_await tern::test::until([&] { return finished == n; });
    CHECK(right == n);
  });
}

TEST_CASE("tls: a bad certificate, key or CA file is refused before anything listens or connects") {
  asio::io_context io;
  auto garbage = service_tls();
  garbage.cert_file = certs("garbage.pem");
  tern::microservice app(io, {.port = 0, .tls = garbage});
  try {
    app.start();
    FAIL("start() took a garbage certificate");
  } catch (const tern::tls_error& e) {
    CHECK(std::string(e.what()).find("garbage.pem") != std::string::npos);
  }
  auto bad_ca = client_tls();
  bad_ca.ca_file = certs("garbage.pem");
  CHECK_THROWS_AS(tern::client_proxy(io, {.port = 1, .tls = bad_ca}), tern::tls_error);
  auto no_ca = client_tls();
  no_ca.ca_file.clear();
  CHECK_THROWS_AS(tern::client_proxy(io, {.port = 1, .tls = no_ca}), tern::tls_error);
}
