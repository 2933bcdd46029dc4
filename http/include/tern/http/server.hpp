// HTTP/1.1 on Asio: keep-alive, pipelining, limits, slow-client timeouts, drain.
#pragma once

#include "tern/http/request_parser.hpp"

#include <asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace asio {
class io_context;
}
namespace tern::transport {
class tls_context;
}

namespace tern::http {

struct response {
  int status = 200;
  std::string body;
  std::string_view content_type = "application/json; charset=utf-8";  ///< static storage
  std::vector<std::pair<std::string, std::string>> headers;           ///< extra headers
};

/// The reason phrase of a status code ("Not Found").
std::string_view reason_phrase(int status);
/// A plain-text response: `message` and a newline.
response text_response(int status, std::string_view message);

/// The limits of an admin port (metrics scrapes and health probes): its
/// own budget of `max_connections`, no request bodies, 8 KiB of headers,
/// and a request whole within 3 s, so peers that hold connections without
/// finishing a request are cut quickly (idle ones are reclaimed anyway).
limits admin_limits(std::size_t max_connections);

/// Serves HTTP/1.1 on one io_context (single-threaded), parsing with
/// request_parser. Requests on one connection are handled one after
/// another and answered in order, so pipelined requests get their
/// responses in order. A request the parser refuses gets its status (400,
/// 413, 417, 431, 501, 505) followed by close; a request that expects
/// `100-continue` gets `100 Continue` once its headers are accepted; a HEAD
/// response has no body. A client that does not complete a request within
/// read_timeout, or idles past idle_timeout, is disconnected. After a
/// response with `Connection: close` the server stops sending and reads
/// (and discards) what the client still sends, until it closes, for at most
/// min(read_timeout, 2 s), so the response is not lost to a reset.
///
/// At max_connections a new connection takes the place of the idle one
/// held longest (nginx reuses keep-alive connections so): first one that
/// has not sent a byte, then one between requests; it is closed at once
/// only when no connection is idle. A connection holds no read buffer
/// until its first byte arrives, so idle ones cost little.
///
/// Thread safety: none; every call on the io_context's thread. Each
/// connection's session is a task of the server's: stop() (and the
/// destructor) closes the sockets and cancels the sessions, whose handlers
/// see the cancellation; drain() awaits them. A session holds what it
/// needs of the server, so the server may be destroyed while the
/// io_context runs (the handler a session awaits must look after itself).
class server {
 public:
  using handler = std::function<asio::awaitable<response>(request&)>;
  /// Makes the response to a request the server answers itself: one the
  /// parser refused (`req` holds what was parsed of it, only characters the
  /// parser accepted), or one whose handler threw (500). A coroutine, so an
  /// owner may run it through its own machinery (the gateway's policies).
  using error_renderer = std::function<asio::awaitable<response>(
      int status, std::string_view message, const request& req)>;

  /// `render` defaults to text_response().
  server(asio::io_context& io, limits l, handler h, error_renderer render = {});
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Binds and starts accepting; returns the bound port. With `reuse_port`,
  /// servers on other event loops (other threads) may listen on the same
  /// address and port, and the kernel spreads new connections over them
  /// (SO_REUSEPORT). Throws std::system_error.
  std::uint16_t listen(const std::string& host, std::uint16_t port, bool reuse_port = false);
  /// Counts this server's connections in `open` too: servers given the
  /// same count (one per thread, on one port) share one max_connections.
  /// Call before listen().
  void share_connection_count(std::shared_ptr<std::atomic<std::size_t>> open);
  /// Serves HTTPS with `context` on connections accepted from now on
  /// (null: plain HTTP); open ones keep what they began with, so a reload
  /// hands a new context here. The handshake is timed as a request is
  /// (read_timeout), and a connection in it is reclaimable as an idle one.
  /// A plain HTTP request at a TLS port gets a plain 400 saying so.
  void use_tls(std::shared_ptr<const transport::tls_context> context);
  /// TLS handshakes completed and failed since listen().
  [[nodiscard]] std::uint64_t handshakes() const noexcept;
  [[nodiscard]] std::uint64_t failed_handshakes() const noexcept;

  /// Stops accepting, closes every connection at once and cancels the
  /// handlers still running (their responses are not sent).
  void stop();
  /// Graceful stop: accepts no new connection; connections idle between
  /// requests are closed at once; requests in flight (begun, or already in
  /// the socket's receive buffer) are finished and answered with
  /// `Connection: close`; pipelined requests after them are not started.
  /// Completes when every connection is gone, or after `bound`, when what
  /// is left is stopped as stop() does, and awaited (a handler that ignores
  /// its cancellation, for at most another 2 s). Never throws.
  asio::awaitable<void> drain(std::chrono::milliseconds bound);
  /// After stop() (or drain()): completes once every session, handler and
  /// loop of the server has ended (true), or at `deadline` (false). An
  /// owner whose handler borrows from it joins before it goes.
  asio::awaitable<bool> join(std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] std::size_t connections() const noexcept;
  /// Connections accepted and served since listen() (not those refused).
  [[nodiscard]] std::uint64_t accepted() const noexcept;
  /// Idle connections closed to admit new ones at max_connections.
  [[nodiscard]] std::uint64_t reclaimed() const noexcept;

 private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

}  // namespace tern::http
