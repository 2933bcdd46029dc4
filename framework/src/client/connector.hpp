// The seam between a client and its wire: something that opens a call
// channel to one endpoint. TCP today; TLS and the brokers plug in beside
// it, and nothing else in the client changes. Internal to framework/.
#pragma once

#include "tern/client_proxy.hpp"

#include <asio/awaitable.hpp>
#include <asio/ip/tcp.hpp>

#include <memory>
#include <string>

namespace tern::transport {
class client_connection;
}

namespace tern::detail {

class connector {
 public:
  virtual ~connector() = default;
  /// A started connection to `address` (`label` names it in errors),
  /// ready for calls; `host` is the name it was found by, which a TLS
  /// server's certificate must carry. Throws
  /// rpc_error(errc::connection_refused).
  virtual asio::awaitable<std::shared_ptr<transport::client_connection>> connect(
      const asio::ip::tcp::endpoint& address, const std::string& label,
      const std::string& host) = 0;
};

/// Length-prefixed frames on a TCP socket, in the options' wire format
/// (or codec), within their connect_timeout and connection limits; over
/// TLS when the options say so. Throws tls_error for a bad TLS file.
std::unique_ptr<connector> tcp_connector(const client_options& o);

}  // namespace tern::detail
