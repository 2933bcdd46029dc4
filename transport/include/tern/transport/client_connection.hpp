// The calling side of a connection: request ids, reply correlation,
// deadlines, streams.
#pragma once

#include "tern/rpc_error.hpp"
#include "tern/transport/connection.hpp"
#include "tern/transport/unique_function.hpp"

#include <asio/cancellation_signal.hpp>

#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

namespace tern::transport {

class client_connection;

/// One outstanding request. Lives in the frame of the coroutine that waits
/// for it (or in a reply stream); the connection only points to it.
struct call_state {
  call_state() = default;
  call_state(const call_state&) = delete;
  call_state& operator=(const call_state&) = delete;

  std::uint64_t id = 0;
  std::string_view label;  // the pattern, for error messages
  bool stream = false;     // keep every value (stream) or only the last
  bool done = false;       // the final reply (or an error) has arrived
  std::optional<rpc_error> error;
  const value_sink* sink = nullptr;            // call: where the values go
  std::vector<msgpack::object_handle> values;  // stream: values read so far
  std::size_t taken = 0;                       // stream: how many next() has returned
  unique_function<void()> waiter;  // run (posted) when the call ends; streams: per value
  asio::cancellation_slot slot;
  std::chrono::milliseconds timeout{};
  std::chrono::steady_clock::time_point deadline{};
  call_state* prev = nullptr;  // links in the connection's deadline list
  call_state* next = nullptr;
  client_connection* owner = nullptr;  // set while registered
};

/// A connection that sends requests and events and correlates replies by
/// id; many requests are in flight at once and replies may come in any
/// order. Every call ends exactly once: with its final reply, its handler's
/// error, its deadline (errc::timeout), cancellation (errc::cancelled), or
/// the connection's loss (errc::connection_closed / errc::protocol_error),
/// which fails every pending call at once. Replies to calls that already
/// ended are dropped. A call that ends by its deadline or by cancellation
/// sends a cancel frame, so the service stops working on it. A reply whose value does not decode,
/// or that the call's sink throws on, fails that call alone with errc::decode_error.
///
/// Thread safety: none; use it from its executor's (single) thread.
class client_connection final : public connection {
 public:
  client_connection(asio::ip::tcp::socket socket, const codec& wire,
                    const connection_options& options, std::shared_ptr<const tls_context> tls = {});
  ~client_connection() override;

  /// Resolves and connects within `timeout`, then starts the connection.
  /// With a TLS context, the handshake is part of the connect (and of its
  /// time): the server's certificate must name `host`. Throws
  /// rpc_error(errc::connection_refused) on failure, saying why.
  static asio::awaitable<std::shared_ptr<client_connection>> connect(
      std::string host, std::uint16_t port, const codec& wire, const connection_options& options,
      std::chrono::milliseconds timeout, std::shared_ptr<const tls_context> tls = {});
  /// connect() to one address, without a lookup (`name` labels it in
  /// errors); over TLS, the server's certificate must name `server_name`.
  static asio::awaitable<std::shared_ptr<client_connection>> connect(
      const asio::ip::tcp::endpoint& address, const std::string& name, const codec& wire,
      const connection_options& options, std::chrono::milliseconds timeout,
      std::shared_ptr<const tls_context> tls = {}, std::string_view server_name = {});

  /// Sends a request and waits for its final reply; each value of the
  /// reply is handed to `on_value` as its frame is read (no copy is kept).
  /// Throws rpc_error. `pattern`/`meta` are packed msgpack; `label` names
  /// the call in errors. All must stay valid until the call completes.
  asio::awaitable<void> call(std::string_view label, std::string_view pattern,
                             std::string_view meta, value_writer data, value_sink on_value,
                             std::chrono::milliseconds timeout);

  /// Sends a request without waiting: `s.waiter` (set by the caller) is
  /// posted once the call has ended (s.done; s.error says how), and each
  /// value goes to `*s.sink` as it is read. `s` must stay at one address
  /// until then, or be abandon()ed. Throws rpc_error if it cannot be sent.
  void start_call(call_state& s, std::string_view pattern, std::string_view meta, value_writer data,
                  std::chrono::milliseconds timeout) {
    send_request(s, pattern, meta, data, timeout);
  }
  /// Ends a started call with errc::cancelled, unless it has ended, and
  /// tells the service (a cancel frame), which stops the work.
  void cancel(call_state& s);

  /// Sends a request whose values are taken one by one with next(). The
  /// state must stay at one address until the stream ends or is dropped.
  asio::awaitable<void> open_stream(call_state& state, std::string_view label,
                                    std::string_view pattern, std::string_view meta,
                                    value_writer data, std::chrono::milliseconds timeout);
  /// The next value of a stream, or nullopt after the last. Throws rpc_error.
  asio::awaitable<std::optional<msgpack::object_handle>> next(call_state& state);
  /// Forgets a call (its later replies are dropped; the service is told
  /// to stop one still going). Safe on ended calls.
  void abandon(call_state& state) noexcept;

  /// Sends an event; completes once it is queued. Throws rpc_error.
  asio::awaitable<void> emit(std::string_view label, std::string_view pattern,
                             std::string_view meta, value_writer data);

  /// Calls waiting for replies.
  [[nodiscard]] std::size_t pending() const noexcept { return calls_.size() - (pinging() ? 1 : 0); }

  /// Called once if the connection is closed because its peer went silent
  /// (a keep-alive ping unanswered), after the pending calls have failed.
  void on_silent(unique_function<void()> f) { on_silent_ = std::move(f); }

  /// Closes the connection once no call is pending (at once if none is):
  /// for an endpoint that takes no new calls but finishes the ones it has.
  void close_when_idle(std::string_view reason);

  /// Runs the waiters of the calls that ended since the last batch (from
  /// the one handler posted for them), or drops them unrun (that handler
  /// destroyed without running: the loop stopped).
  void run_woken();
  void drop_woken() noexcept;

  /// The service sent goaway: it is draining, so new calls belong on
  /// another connection; pending ones still get their replies.
  [[nodiscard]] bool going_away() const noexcept { return going_away_; }

 protected:
  void on_packet_(packet& p) override;
  void on_closed_(std::string_view reason, bool protocol_error) override;
  void on_bad_packet_(const packet_error& e) override;

 private:
  /// A connected socket's connection, its TLS handshake done (within
  /// `timeout` of `began`), started. Throws as connect() does.
  static asio::awaitable<std::shared_ptr<client_connection>> started(
      asio::ip::tcp::socket sock, const codec& wire, const connection_options& options,
      std::shared_ptr<const tls_context> tls, std::string_view server_name,
      const std::string& where, std::chrono::steady_clock::time_point deadline,
      std::chrono::milliseconds timeout);
  struct deadline_list {
    call_state* head = nullptr;
    call_state* tail = nullptr;
  };
  void send_request(call_state& s, std::string_view pattern, std::string_view meta,
                    value_writer data, std::chrono::milliseconds timeout);
  asio::awaitable<void> wait(call_state& s);
  void finish(call_state& s, std::optional<rpc_error> error);
  void wake(call_state& s);
  void post_woken();
  void unlink(call_state& s) noexcept;
  void tell_cancelled(std::uint64_t id) noexcept;
  void send_ping();
  void silent();
  /// The keep-alive ping is registered (sent, not yet ended).
  [[nodiscard]] bool pinging() const noexcept { return ping_.owner == this; }
  [[nodiscard]] std::chrono::steady_clock::time_point heard_from() const noexcept {
    return std::max(last_read(), started_at_);
  }
  asio::awaitable<void> expirer();

  std::uint64_t next_id_ = 0;
  using call_map = std::unordered_map<std::uint64_t, call_state*>;
  call_map calls_;
  // Nodes of ended calls, reused by the next ones (as many as were in flight
  // at once, up to a bound), so a call allocates nothing here.
  static constexpr std::size_t max_spare_nodes = 256;
  std::vector<call_map::node_type> spare_;
  std::map<std::chrono::milliseconds, deadline_list> deadlines_;  // one FIFO per timeout value
  asio::steady_timer expiry_;
  std::chrono::steady_clock::time_point armed_for_ = std::chrono::steady_clock::time_point::max();
  std::string closed_reason_;
  std::string idle_close_reason_;  // set by close_when_idle()
  bool going_away_ = false;
  value_sink ping_sink_;
  call_state ping_;  // the keep-alive ping, in flight while pinging()
  unique_function<void()> on_silent_;
  static constexpr std::size_t woken_slice = 32;  // waiters run a turn (run_woken)
  std::vector<unique_function<void()>> woken_;    // waiters to run, one post for all
  bool woken_posted_ = false;                     // a handler to run woken_ is queued
  bool woken_rest_ = false;                       // woken_ begins with a split batch's rest
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
};

}  // namespace tern::transport
