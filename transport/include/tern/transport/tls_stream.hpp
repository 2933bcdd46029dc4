// TLS over a connection's socket: the handshake, then reads and writes,
// for transport's connections and http's sessions. Light: its .cpp is,
// with tls.cpp, the only unit that sees Asio's SSL headers.
#pragma once

#include "tern/transport/tls.hpp"

#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/ip/tcp.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

namespace tern::transport {

/// One connection's TLS session over a socket it borrows (the connection
/// owns both; closing the socket ends every operation). One read and one
/// write may be in progress at once, as on the socket.
class tls_stream {
 public:
  enum class side { client, server };
  tls_stream(asio::ip::tcp::socket& socket, std::shared_ptr<const tls_context> context, side s);
  ~tls_stream();
  tls_stream(const tls_stream&) = delete;
  tls_stream& operator=(const tls_stream&) = delete;

  /// A client's: the server name to send (SNI) and to find in its
  /// certificate (tls_context::prepare_client). Throws tls_error.
  void expect_name(std::string_view server_name);
  /// Empty once the handshake is done; why it failed otherwise (OpenSSL's
  /// reason, with the certificate check's when that is what refused).
  asio::awaitable<std::string> handshake();
  /// As the socket's async_read_some (stopped by `slot` if connected,
  /// else by the awaiting coroutine's cancellation) and async_write (all).
  asio::awaitable<std::pair<std::error_code, std::size_t>> read_some(char* data, std::size_t size,
                                                                     asio::cancellation_slot slot);
  asio::awaitable<std::pair<std::error_code, std::size_t>> write(const char* data,
                                                                 std::size_t size);

  /// Whether the session holds received bytes not yet returned (decrypted
  /// data, or records taken from the socket): a read may complete without
  /// the socket becoming readable.
  [[nodiscard]] bool buffered() const noexcept;

  /// Once the handshake is done: the verified peer, the protocol and suite.
  [[nodiscard]] tls_peer peer() const;
  [[nodiscard]] std::string negotiated() const;
  /// The ALPN protocol agreed, or empty.
  [[nodiscard]] std::string alpn() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace tern::transport
