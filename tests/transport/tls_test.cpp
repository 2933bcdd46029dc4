// transport::tls_context: PEM files in, a clear error for each bad one, and
// the handshakes its settings allow or refuse, over real loopback sockets.
// The certificates are made once per test run (tests/support/make_certs.py,
// the tls_certs fixture) into TERN_TEST_CERTS.
#include "tern/transport/tls.hpp"
#include "../support/test_certs.hpp"

#include <doctest/doctest.h>
#include <openssl/ssl.h>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/ssl.hpp>
#include <asio/write.hpp>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <string>

using namespace std::chrono_literals;
using tern::transport::peer_check;
using tern::transport::tls_context;
using tern::transport::tls_error;
using tern::transport::tls_options;
using tern::transport::tls_peer;

namespace {

std::string certs(const std::string& file) {
  return tern::test::cert_file(file);
}

tls_options server_opts(const std::string& name = "server") {
  tls_options o;
  o.cert_file = certs(name + ".pem");
  o.key_file = certs(name + ".key");
  return o;
}

tls_options client_opts() {
  tls_options o;
  o.ca_file = certs("ca.pem");
  return o;
}

// The error a context's making throws, or "" when it is made.
template <class F>
std::string error_of(F make) {
  try {
    make();
  } catch (const tls_error& e) {
    return e.what();
  }
  return "";
}

struct outcome {
  // Until a side's last step has run: what a handshake that never ends
  // leaves (and the helper then fails the test).
  asio::error_code server = asio::error::timed_out, client = asio::error::timed_out;
  tls_peer peer;           // as the server saw the client
  tls_peer server_peer;    // as the client saw the server
  std::string negotiated;  // as the client saw it
  std::string alpn;
};

// One handshake between the two contexts on a loopback socket pair, then
// a byte each way: the client counts as let in only when the server's byte
// arrives (TLS 1.3 checks a client's certificate after the client's side
// of the handshake is done, and refuses it with an alert then). A side
// whose handshake fails closes its socket, so the other side ends too.
outcome handshake(const tls_context& server, const tls_context& client,
                  const std::string& name = "localhost",
                  const std::function<void(SSL*)>& tweak_client = {}) {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  asio::ssl::stream<asio::ip::tcp::socket> s(io, server.asio()), c(io, client.asio());
  if (!name.empty()) client.prepare_client(c.native_handle(), name);  // "": skipped
  if (tweak_client) tweak_client(c.native_handle());
  outcome out;
  char server_byte = 0, client_byte = 0;
  acceptor.async_accept(s.lowest_layer(), [&](asio::error_code ec) {
    if (ec) {
      out.server = ec;
      return;
    }
    s.async_handshake(asio::ssl::stream_base::server, [&](asio::error_code ec2) {
      out.server = ec2;
      if (ec2) {
        s.lowest_layer().close();
        return;
      }
      out.peer = tern::transport::peer_of(s.native_handle());
      s.async_read_some(asio::buffer(&server_byte, 1), [&](asio::error_code ec3, std::size_t) {
        if (!ec3) asio::async_write(s, asio::buffer("y", 1), [](asio::error_code, std::size_t) {});
      });
    });
  });
  c.lowest_layer().async_connect(acceptor.local_endpoint(), [&](asio::error_code ec) {
    if (ec) {
      out.client = ec;
      return;
    }
    c.async_handshake(asio::ssl::stream_base::client, [&](asio::error_code ec2) {
      out.client = ec2;
      if (ec2) {
        c.lowest_layer().close();
        return;
      }
      out.negotiated = tern::transport::negotiated(c.native_handle());
      out.alpn = tern::transport::alpn_of(c.native_handle());
      out.server_peer = tern::transport::peer_of(c.native_handle());
      asio::async_write(c, asio::buffer("x", 1), [&](asio::error_code, std::size_t) {
        asio::async_read(c, asio::buffer(&client_byte, 1), [&](asio::error_code ec3, std::size_t) {
          out.client = ec3;  // an alert, or the connection closed: refused
          s.lowest_layer().close();
          c.lowest_layer().close();
        });
      });
    });
  });
  io.run_for(5s);
  REQUIRE_MESSAGE(out.server != asio::error::timed_out, "the server's handshake did not end");
  REQUIRE_MESSAGE(out.client != asio::error::timed_out, "the client's handshake did not end");
  return out;
}

bool refused(const asio::error_code& ec) {
  return ec && ec != asio::error::operation_aborted;
}

}  // namespace

TEST_CASE("tls: a server's chain and key load, with the certificate's expiry and subject") {
  auto ctx = tls_context::server(server_opts());
  CHECK(ctx->subject() == "O=tern tests,CN=localhost");
  auto left = ctx->not_after() - std::chrono::system_clock::now();
  CHECK(left > std::chrono::hours(24 * 29));
  CHECK(left < std::chrono::hours(24 * 31));
}

TEST_CASE("tls: bad files are refused when the context is made, each naming its file") {
  auto o = server_opts();
  o.key_file = certs("client.key");
  auto e = error_of([&] { tls_context::server(o); });
  CHECK(e.find("does not match the certificate") != std::string::npos);
  CHECK(e.find("client.key") != std::string::npos);
  CHECK(e.find("server.pem") != std::string::npos);

  o = server_opts();
  o.cert_file = certs("garbage.pem");
  e = error_of([&] { tls_context::server(o); });
  CHECK(e.find("cannot read the certificate chain") != std::string::npos);
  CHECK(e.find("garbage.pem") != std::string::npos);

  o = server_opts();
  o.cert_file = certs("no-such.pem");
  CHECK(error_of([&] { tls_context::server(o); }).find("no-such.pem") != std::string::npos);

  o = client_opts();
  o.ca_file = certs("garbage.pem");
  e = error_of([&] { tls_context::client(o); });
  CHECK(e.find("cannot read the CA file") != std::string::npos);

  CHECK(error_of([] { tls_context::server({}); }).find("a server needs a certificate") !=
        std::string::npos);
  o = server_opts();
  o.key_file.clear();
  CHECK(error_of([&] { tls_context::server(o); }).find("key_file missing") != std::string::npos);
  o = server_opts();
  o.check = peer_check::require;
  CHECK(error_of([&] { tls_context::server(o); }).find("needs the CA file") != std::string::npos);
  o = server_opts();
  o.ciphers = "NO-SUCH-SUITE";
  CHECK(error_of([&] { tls_context::server(o); }).find("no cipher suite") != std::string::npos);
  o = server_opts();
  o.alpn = {std::string(256, 'x')};
  CHECK(error_of([&] { tls_context::server(o); }).find("ALPN") != std::string::npos);
}

TEST_CASE("tls: an encrypted key opens with its passphrase only") {
  auto o = server_opts();
  o.key_file = certs("server_encrypted.key");
  auto e = error_of([&] { tls_context::server(o); });
  CHECK(e.find("its passphrase is missing") != std::string::npos);
  o.key_passphrase = "wrong";
  CHECK(error_of([&] { tls_context::server(o); }).find("passphrase is wrong") != std::string::npos);
  o.key_passphrase = "correct horse";
  CHECK(error_of([&] { tls_context::server(o); }).empty());
}

TEST_CASE("tls: a client checks the server's chain and name, and speaks TLS 1.3 by default") {
  auto server = tls_context::server(server_opts());
  auto client = tls_context::client(client_opts());
  auto ok = handshake(*server, *client, "localhost");
  CHECK_FALSE(ok.server);
  CHECK_FALSE(ok.client);
  CHECK(ok.negotiated.rfind("TLSv1.3 ", 0) == 0);
  CHECK_FALSE(ok.peer.identified());  // the server asked for no certificate
  CHECK(ok.server_peer.names ==
        std::vector<std::string>{"DNS:localhost", "IP:127.0.0.1", "IP:::1"});

  CHECK_FALSE(handshake(*server, *client, "127.0.0.1").client);  // an IP SAN
  auto wrong_name = handshake(*server, *client, "elsewhere.example");
  CHECK(refused(wrong_name.client));
  CHECK(wrong_name.client.message().find("certificate verify failed") != std::string::npos);
  CHECK(refused(wrong_name.server));
  CHECK(refused(handshake(*server, *client, "127.0.0.2").client));

  for (const char* bad : {"expired", "not_yet", "self_signed", "other_server", "elsewhere"}) {
    CAPTURE(bad);
    auto r = handshake(*tls_context::server(server_opts(bad)), *client, "localhost");
    CHECK(refused(r.client));
    CHECK(r.client.message().find("certificate verify failed") != std::string::npos);
  }
  auto name_required = error_of([&] {
    asio::io_context io;
    asio::ssl::stream<asio::ip::tcp::socket> c(io, client->asio());
    client->prepare_client(c.native_handle(), "");
  });
  CHECK(name_required.find("needs the server's name") != std::string::npos);
}

TEST_CASE("tls: a server that requires client certificates refuses those without one from its CA") {
  auto o = server_opts();
  o.ca_file = certs("ca.pem");
  o.check = peer_check::require;
  auto server = tls_context::server(o);

  auto anonymous = handshake(*server, *tls_context::client(client_opts()));
  CHECK(refused(anonymous.server));
  CHECK(refused(anonymous.client));
  CAPTURE(anonymous.server.message());
  CHECK(anonymous.server.message().find("peer did not return a certificate") != std::string::npos);

  auto other = client_opts();
  other.cert_file = certs("other_client.pem");
  other.key_file = certs("other_client.key");
  auto foreign = handshake(*server, *tls_context::client(other));
  CHECK(refused(foreign.server));
  CHECK(refused(foreign.client));
  CHECK(foreign.server.message().find("certificate verify failed") != std::string::npos);

  auto mine = client_opts();
  mine.cert_file = certs("client.pem");
  mine.key_file = certs("client.key");
  auto ok = handshake(*server, *tls_context::client(mine));
  CHECK_FALSE(ok.server);
  CHECK_FALSE(ok.client);
  CHECK(ok.peer.identified());
  CHECK(ok.peer.subject == "O=tern tests,CN=gateway");
  CHECK(ok.peer.names == std::vector<std::string>{"DNS:gateway"});
}

TEST_CASE("tls: with optional client certificates, a client without one is let in unidentified") {
  auto o = server_opts();
  o.ca_file = certs("ca.pem");
  o.check = peer_check::optional;
  auto server = tls_context::server(o);
  auto anonymous = handshake(*server, *tls_context::client(client_opts()));
  CHECK_FALSE(anonymous.server);
  CHECK_FALSE(anonymous.client);
  CHECK_FALSE(anonymous.peer.identified());
  auto other = client_opts();
  other.cert_file = certs("other_client.pem");
  other.key_file = certs("other_client.key");
  CHECK(refused(handshake(*server, *tls_context::client(other)).server));
}

TEST_CASE("tls: TLS 1.1 and weak suites are refused by the server") {
  auto server = tls_context::server(server_opts());
  auto client = tls_context::client(client_opts());
  // The client allows what the server must refuse (security level 0 lets
  // OpenSSL offer it at all).
  auto old = handshake(*server, *client, "localhost", [](SSL* ssl) {
    SSL_set_security_level(ssl, 0);
    SSL_set_min_proto_version(ssl, TLS1_VERSION);
    SSL_set_max_proto_version(ssl, TLS1_1_VERSION);
    SSL_set_cipher_list(ssl, "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA");
  });
  CAPTURE(old.server.message());
  CAPTURE(old.client.message());
  CHECK(refused(old.server));
  CHECK(old.server.message().find("unsupported protocol") != std::string::npos);
  auto weak = handshake(*server, *client, "localhost", [](SSL* ssl) {
    SSL_set_security_level(ssl, 0);
    SSL_set_max_proto_version(ssl, TLS1_2_VERSION);
    // ECDSA suites OpenSSL would take but the server's list leaves out
    // (CBC, no AEAD): the certificates are ECDSA, so these are the ones
    // only the list can refuse.
    SSL_set_cipher_list(ssl, "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA");
  });
  CAPTURE(weak.server.message());
  CHECK(refused(weak.server));
  CHECK(weak.server.message().find("no shared cipher") != std::string::npos);
  auto tls12 = handshake(*server, *client, "localhost",
                         [](SSL* ssl) { SSL_set_max_proto_version(ssl, TLS1_2_VERSION); });
  CHECK_FALSE(tls12.client);
  CHECK(tls12.negotiated.rfind("TLSv1.2 ECDHE-ECDSA-", 0) == 0);
}

TEST_CASE("tls: ALPN: the server picks its protocol, and refuses a client offering only others") {
  auto o = server_opts();
  o.alpn = {"http/1.1"};
  auto server = tls_context::server(o);
  auto c = client_opts();
  c.alpn = {"h2", "http/1.1"};
  auto ok = handshake(*server, *tls_context::client(c));
  CHECK_FALSE(ok.client);
  CHECK(ok.alpn == "http/1.1");
  c.alpn = {"h2"};
  auto other = handshake(*server, *tls_context::client(c));
  CHECK(refused(other.server));
  CHECK(refused(other.client));
  CHECK(handshake(*server, *tls_context::client(client_opts())).alpn.empty());  // none offered
}

TEST_CASE("tls: a client refuses servers when it has no name to check or no CA to trust") {
  auto server = tls_context::server(server_opts());
  auto client = tls_context::client(client_opts());
  auto unnamed = handshake(*server, *client, "");  // prepare_client skipped
  CHECK(refused(unnamed.client));
  CAPTURE(unnamed.client.message());
  CAPTURE(unnamed.server.message());
  CHECK(unnamed.client.message().find("certificate verify failed") != std::string::npos);

  CHECK(error_of([] { tls_context::client({}); }).find("needs the CA file") != std::string::npos);
  tls_options system;
  system.trust_system_store = true;
  auto public_only = handshake(*server, *tls_context::client(system));  // our CA is not in it
  CHECK(refused(public_only.client));
  CHECK(public_only.client.message().find("certificate verify failed") != std::string::npos);
  CHECK_FALSE(handshake(*server, *client, "[::1]").client);  // an IPv6 SAN, brackets taken off
}
