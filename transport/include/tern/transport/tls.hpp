// TLS contexts from PEM files: what a listener (the gateway's edge, a
// service) and a caller (a client_proxy, the gateway's upstreams) hand to
// their connections. Light: no Asio or OpenSSL headers here.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace asio::ssl {
class context;
}
struct ssl_st;  // OpenSSL's SSL

namespace tern::transport {

/// A configuration or certificate problem, naming the file and OpenSSL's
/// reason. Thrown when a context is made, so a bad file is refused before
/// anything listens or connects with it.
class tls_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Whether a side asks its peer for a certificate, and what it does
/// without one. A peer's certificate, when sent, is always checked against
/// `ca_file` (a bad one is refused whatever the mode).
enum class peer_check {
  none,      ///< not asked (a server's default)
  optional,  ///< asked; a peer without one is let in, unidentified
  require,   ///< a peer without a valid one is refused in the handshake
};

struct tls_options {
  /// This side's certificate chain (PEM, leaf first) and key (PEM). A
  /// server needs them; a client sends them when its peer asks (mutual TLS).
  std::string cert_file;
  std::string key_file;
  /// The key's passphrase, when the key file is encrypted (the caller reads
  /// it from an environment variable, never from a config file).
  std::string key_passphrase;
  /// The CAs that sign the peers' certificates (PEM). A client needs one,
  /// unless it trusts the system's store instead (below).
  std::string ca_file;
  /// A client without ca_file trusts the system's store (Debian's
  /// ca-certificates) only when this says so: an unset CA must not widen
  /// trust from one's own CA to every public one.
  bool trust_system_store = false;
  /// A server's: whether it asks clients for a certificate (default none).
  /// A client ignores it: it always checks the server's chain and name.
  peer_check check = peer_check::none;
  /// TLS 1.2's suites (OpenSSL's syntax); empty: ECDHE with AES-GCM or
  /// ChaCha20-Poly1305 only. TLS 1.3's are OpenSSL's defaults (all strong).
  std::string ciphers;
  /// ALPN protocols: a server picks the first of these the client offers
  /// (refusing a client that offers only others), a client offers them.
  std::vector<std::string> alpn;
  /// A client's: the name the server's certificate must carry (and SNI)
  /// when it is not the host it connects to (an address, or a name the
  /// certificate was not made for). Empty: that host.
  std::string server_name;
};

/// The verified peer of a connection: its certificate's subject (RFC 2253,
/// UTF-8) and subject alternative names ("DNS:…", "IP:…", "URI:…",
/// "email:…"); empty when it sent no certificate.
struct tls_peer {
  std::string subject;
  std::vector<std::string> names;
  [[nodiscard]] bool identified() const noexcept { return !subject.empty(); }
};

/// One side's settings, shared by all its connections (an SSL_CTX:
/// connections may be made from several threads at once). Immutable once
/// made; a reload makes a new one, and open connections keep theirs.
class tls_context {
 public:
  /// TLS 1.2 and 1.3 only, no renegotiation, no compression. Throws
  /// tls_error.
  static std::shared_ptr<const tls_context> server(const tls_options& o);
  static std::shared_ptr<const tls_context> client(tls_options o);
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  /// For an asio::ssl::stream (transport internals and tests). A stream
  /// made from it must hold this context's shared_ptr for its lifetime (the
  /// ALPN choice reads this object). Never change the context through it:
  /// several threads' connections share it. Nor set its app data or its
  /// passphrase callback's user data: Asio's context deletes both as its own.
  [[nodiscard]] asio::ssl::context& asio() const noexcept;

  /// A client connection's set-up before its handshake: `server_name` is
  /// sent as SNI (unless it is an IP address, as RFC 6066 asks) and must be
  /// among the server certificate's names (a DNS or an IP SAN). A client
  /// connection not set up so is refused in its handshake (no name to
  /// check: it would take any certificate its CAs signed).
  void prepare_client(ssl_st* ssl, std::string_view server_name) const;

  /// This side's certificate: when it expires (for an expiry metric) and
  /// its subject; the epoch and empty without one.
  [[nodiscard]] std::chrono::system_clock::time_point not_after() const noexcept;
  [[nodiscard]] const std::string& subject() const noexcept;

 private:
  struct impl;
  explicit tls_context(std::unique_ptr<impl> i);
  static std::unique_ptr<impl> make(bool server, const tls_options& o);
  std::unique_ptr<impl> impl_;
};

/// The peer of a connection whose handshake is done.
[[nodiscard]] tls_peer peer_of(const ssl_st* ssl);
/// "TLSv1.3 TLS_AES_128_GCM_SHA256": the protocol and suite negotiated.
[[nodiscard]] std::string negotiated(const ssl_st* ssl);
/// The ALPN protocol chosen, or empty.
[[nodiscard]] std::string alpn_of(const ssl_st* ssl);

}  // namespace tern::transport
