// The serving side: a listener that accepts connections and hands their
// requests and events to a sink.
#pragma once

#include "tern/transport/connection.hpp"
#include "tern/transport/control.hpp"
#include "tern/transport/task_group.hpp"

#include <asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace tern::transport {

class server;
class server_session;

/// Resolves host:port (passive; port 0 picks a free one), then opens, binds
/// (SO_REUSEADDR) and listens on `acceptor`. Returns the bound port. Throws
/// std::system_error.
///
/// With `reuse_port`, SO_REUSEPORT is set too: several acceptors (of this
/// process's threads, or of processes of the same user) may bind the same
/// address, and the kernel spreads new connections over them by a hash of
/// the client's address and port.
std::uint16_t open_acceptor(asio::ip::tcp::acceptor& acceptor, const std::string& host,
                            std::uint16_t port, bool reuse_port = false);

/// Receives what clients send. Called on the server's executor, one packet
/// at a time per connection; the packet's objects are valid during the call.
class request_sink {
 public:
  virtual ~request_sink() = default;
  virtual void on_request(const std::shared_ptr<server_session>& session, packet& p) = 0;
  virtual void on_event(const std::shared_ptr<server_session>& session, packet& p) = 0;
  /// A request that does not decode (`why` says how) but whose id was read:
  /// answer it with an error for that id; the connection stays open.
  virtual void on_bad_request(const std::shared_ptr<server_session>& session, reply_to to,
                              std::string_view why) = 0;
};

/// An accepted connection. Replies are encoded into out() with wire() and
/// sent with flush(); see connection.
class server_session final : public connection {
 public:
  server_session(asio::ip::tcp::socket socket, const codec& wire, const connection_options& o,
                 server& owner, std::shared_ptr<const tls_context> tls = {});
  ~server_session() override;

  /// Makes request `id`'s work stoppable: a cancel event for the id, or the
  /// connection's end, stops `c` (which must stay alive until untrack()).
  void track(std::uint64_t id, cancellable& c);
  /// Forgets it (once the request has been answered); safe if not tracked.
  void untrack(std::uint64_t id, const cancellable& c) noexcept;
  /// Requests being handled that a cancel could stop.
  [[nodiscard]] std::size_t cancellable_requests() const noexcept { return tracked_.size(); }

 protected:
  void on_packet_(packet& p) override;
  void on_closed_(std::string_view reason, bool protocol_error) override;
  void on_bad_packet_(const packet_error& e) override;

 private:
  friend class server;
  void stop(std::uint64_t id, cancellable::reason why);
  void answer_ping(reply_to to);
  server* owner_;
  std::unordered_multimap<std::uint64_t, cancellable*> tracked_;  // ids may be reused by a peer
};

/// Accepts connections on one address and keeps track of them, so shutdown
/// can stop accepting, stop reading, flush and close in stages.
///
/// Thread safety: none; use it from its executor's (single) thread.
/// Errors: listen() throws std::system_error when the address cannot be
/// bound; accept errors are logged and retried after a short pause. A
/// connection over `max_connections` is closed as soon as it is accepted,
/// with a (rate-limited) warning.
class server {
 public:
  server(asio::any_io_executor ex, request_sink& sink, const codec& wire,
         const connection_options& options, std::size_t max_connections = 4096);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Serves TLS with `context` on connections accepted from now on (none:
  /// plaintext); open ones keep what they began with. For a reload too.
  void use_tls(std::shared_ptr<const tls_context> context) { tls_ = std::move(context); }
  [[nodiscard]] const std::shared_ptr<const tls_context>& tls() const noexcept { return tls_; }

  /// Binds host:port (port 0 picks a free one) and starts accepting.
  /// Returns the bound port.
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  /// Closes the listening socket; open connections are untouched.
  void stop_accepting();
  /// Sends goaway on every connection, and on each one accepted from now
  /// on: callers send new calls elsewhere, pending ones still get replies.
  void goaway();
  /// Stops reading from every connection (in-flight work still replies).
  void stop_reading();
  /// Waits until every connection has written what is queued, or the deadline.
  asio::awaitable<void> flush(std::chrono::steady_clock::time_point deadline);
  /// Closes every connection at once.
  void close_all();

  [[nodiscard]] std::size_t connections() const noexcept { return sessions_.size(); }
  [[nodiscard]] std::string address() const;

 private:
  friend class server_session;
  asio::awaitable<void> accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor);
  void send_goaway(server_session& s);

  asio::any_io_executor executor_;
  request_sink& sink_;
  const codec& wire_;
  connection_options options_;
  std::size_t max_connections_;
  std::shared_ptr<const tls_context> tls_;
  std::shared_ptr<asio::ip::tcp::acceptor> acceptor_;  // and the accept loop's
  bool going_away_ = false;
  std::unordered_set<server_session*> sessions_;
  task_group tasks_;  // the accept loop
};

}  // namespace tern::transport
