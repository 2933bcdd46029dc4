// HTTP/1.1 on Asio: keep-alive, pipelining, limits, slow-client timeouts.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

namespace tern::gateway {

struct http_request {
  std::string_view method;  ///< "GET" (static storage)
  std::string target;       ///< as sent: "/api-gateway/users?limit=2"
  std::string path;         ///< target before '?'
  std::string query;        ///< target after '?', undecoded
  std::vector<std::pair<std::string, std::string>> headers;  ///< names lower-cased
  std::string body;
  std::string peer;

  /// The first header named `name` (lower-case), or empty.
  [[nodiscard]] std::string_view header(std::string_view name) const;
  /// Empties every field but `peer`, keeping the storage for the next request.
  void reset();
};

struct http_response {
  int status = 200;
  std::string body;
  std::string_view content_type = "application/json; charset=utf-8";  ///< static storage
  std::vector<std::pair<std::string, std::string>> headers;           ///< extra headers
};

struct http_limits {
  std::size_t max_header_bytes = 16 * 1024;  ///< request line + headers; over: 431
  std::size_t max_body_bytes = 1024 * 1024;  ///< over: 413
  /// A request must arrive whole within this time of its first byte.
  std::chrono::milliseconds read_timeout{10000};
  /// A keep-alive connection with no request in progress is closed after this.
  std::chrono::milliseconds idle_timeout{60000};
};

/// JSON error body in NestJS's shape: {"statusCode","message","error"}.
http_response error_response(int status, std::string_view message);
/// The reason phrase of a status code ("Not Found").
std::string_view reason_phrase(int status);

/// Serves HTTP/1.1 on one io_context (single-threaded). Requests on one
/// connection are handled one after another and answered in order, so
/// pipelined requests get their responses in order. A malformed request
/// gets 400, oversized headers 431, an oversized body 413, each followed by
/// close; a client that does not complete a request within read_timeout,
/// or idles past idle_timeout, is disconnected.
class http_server {
 public:
  using handler = std::function<asio::awaitable<http_response>(http_request&)>;

  http_server(asio::io_context& io, http_limits limits, handler h);
  ~http_server();
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Binds and starts accepting; returns the bound port. Throws std::system_error.
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  /// Stops accepting and closes every connection.
  void stop();
  [[nodiscard]] std::size_t connections() const noexcept { return sessions_.size(); }

 private:
  struct session_info;
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> sweep_loop();
  asio::awaitable<void> session(asio::ip::tcp::socket socket);

  asio::io_context& io_;
  http_limits limits_;
  handler handler_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer sweeper_;
  bool running_ = false;
  std::unordered_set<session_info*> sessions_;
};

}  // namespace tern::gateway
