// An HTTP request as the server hands it to a handler, and the limits it
// is read within.
#pragma once

#include "tern/transport/endpoint.hpp"
#include "tern/transport/tls.hpp"

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::http {

struct limits {
  /// Request line + header section, and the trailer section of a chunked
  /// body, counted together, every byte including CRLFs; over: 431.
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;  ///< over: 413
  std::size_t max_headers = 100;             ///< header + trailer field lines; over: 431
  /// A request must arrive whole within this time of its first byte, and a
  /// response must be taken by the client within it.
  std::chrono::milliseconds read_timeout{10000};
  /// A keep-alive connection with no request in progress is closed after this.
  std::chrono::milliseconds idle_timeout{60000};
  /// Open connections above which a new one is closed at once (with a
  /// rate-limited warning).
  std::size_t max_connections = 10000;
};

/// What a TLS connection's handshake settled, for policies and the log.
struct tls_facts {
  std::string negotiated;  ///< "TLSv1.3 TLS_AES_128_GCM_SHA256"
  std::string alpn;        ///< "http/1.1", or empty
  /// The client's certificate, verified against the server's CA; empty
  /// when it sent none (or the server asks for none).
  transport::tls_peer peer;
};

struct request {
  std::string method;  ///< "GET", as sent (methods are case-sensitive)
  std::string target;  ///< as sent: "/api-gateway/users?limit=2" or "http://host/users"
  std::string path;    ///< the target's path: "/api-gateway/users" ("*" for OPTIONS *)
  std::string query;   ///< after '?', undecoded
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased, values trimmed
  std::string body;                                          ///< de-chunked
  transport::ip_endpoint peer;                               ///< set by the server
  int version_minor = 1;                                     ///< HTTP/1.<version_minor>: 0 or 1
  /// The connection may stay open after the response: HTTP/1.1 unless
  /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
  bool keep_alive = true;
  /// Set by the server when the client went away (closed or reset its
  /// connection) while the handler was working on this request; the
  /// handler's awaited operations are then cancelled (docs/gateway.md).
  bool client_gone = false;
  /// Over TLS (set by the server): the connection's; null on plaintext.
  const tls_facts* tls = nullptr;

  /// The first header named `name` (lower-case), or empty.
  [[nodiscard]] std::string_view header(std::string_view name) const;
  /// Empties every field but `peer` and `tls`, keeping the storage for the next request
  /// (but not a body's over 64 KiB).
  void reset();
};

}  // namespace tern::http
