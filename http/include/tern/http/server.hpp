// HTTP/1.1 on Asio: keep-alive, pipelining, limits, slow-client timeouts, drain.
#pragma once

#include "tern/http/request_parser.hpp"

#include "tern/transport/task_group.hpp"

#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

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
/// Thread safety: none; every call on the io_context's thread. The server
/// may be destroyed while the io_context runs: its sessions' sockets are
/// closed, and each session, when it resumes, touches nothing of the
/// server again (the handler it may be awaiting must look after itself).
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
  void share_connection_count(std::shared_ptr<std::atomic<std::size_t>> open) {
    open_ = std::move(open);
  }
  /// Stops accepting and closes every connection at once.
  void stop();
  /// Graceful stop: accepts no new connection; connections idle between
  /// requests are closed at once; requests in flight (begun, or already in
  /// the socket's receive buffer) are finished and answered with
  /// `Connection: close`; pipelined requests after them are not started.
  /// Completes when every connection is gone, or after `bound`, when what
  /// is left is closed as stop() does (handlers still running then finish
  /// on their own, their responses discarded). Never throws.
  asio::awaitable<void> drain(std::chrono::milliseconds bound);
  [[nodiscard]] std::size_t connections() const noexcept { return sessions_.size(); }
  /// Connections accepted and served since listen() (not those refused).
  [[nodiscard]] std::uint64_t accepted() const noexcept { return accepted_; }
  /// Idle connections closed to admit new ones at max_connections.
  [[nodiscard]] std::uint64_t reclaimed() const noexcept { return reclaimed_; }

 private:
  struct session_info;
  struct client_watch;
  // A connection counted in open_: released when the session's frame goes,
  // or at once when the connection is reclaimed.
  class connection_slot {
   public:
    explicit connection_slot(std::shared_ptr<std::atomic<std::size_t>> open)
        : open_(std::move(open)) {}
    connection_slot(connection_slot&&) noexcept = default;
    connection_slot& operator=(connection_slot&&) = delete;
    ~connection_slot() { release(); }
    void release() noexcept {
      if (open_) open_->fetch_sub(1, std::memory_order_relaxed);
      open_.reset();
    }

   private:
    std::shared_ptr<std::atomic<std::size_t>> open_;
  };
  // Idle sessions in the order they became idle (an intrusive list).
  struct idle_list {
    session_info* head = nullptr;
    session_info* tail = nullptr;
  };
  // `counted`: the connection is in open_ already (the accept loop's check).
  void start_session(asio::ip::tcp::socket socket, bool counted = false);
  asio::awaitable<void> accept_loop();
  asio::awaitable<void> sweep_loop();
  asio::awaitable<void> session(asio::ip::tcp::socket socket, std::shared_ptr<client_watch> watch,
                                connection_slot slot);
  static void watch_client(const std::shared_ptr<client_watch>& w);
  // Files `s` under the idle list its state calls for (none while it is
  // reading a request, handling, writing or closing). Called before each of
  // the session's waits: reclaim() runs only while sessions wait.
  void track(session_info& s) noexcept;
  void untrack(session_info& s) noexcept;
  // Closes the idle connection held longest, one that never sent a byte
  // before one between requests, and frees its slot; false if none is idle.
  bool reclaim();

  asio::io_context& io_;
  limits limits_;
  handler handler_;
  error_renderer render_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer sweeper_;
  asio::steady_timer drained_;  // drain() waits on it; the last session to end cancels it
  bool running_ = false;
  bool draining_ = false;
  std::size_t starting_ = 0;  // sessions spawned that have not registered yet
  std::uint64_t accepted_ = 0;
  std::uint64_t reclaimed_ = 0;
  std::unordered_set<session_info*> sessions_;
  idle_list fresh_;                                 // connected, not a byte received yet
  idle_list between_;                               // keep-alive, between requests
  std::shared_ptr<std::atomic<std::size_t>> open_;  // connections, maybe other servers' too
  transport::task_group tasks_;                     // the accept and sweep loops
};

}  // namespace tern::http
