// One TCP connection carrying frames both ways: a reader, a writer and a
// stall watchdog around a codec.
#pragma once

#include "tern/transport/endpoint.hpp"

#include "tern/transport/byte_buffer.hpp"
#include "tern/transport/codec.hpp"
#include "tern/transport/connection_options.hpp"
#include "tern/transport/tls.hpp"

#include <asio/awaitable.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tern::transport {

class tls_stream;

/// A connection: the reader decodes frames and hands each packet to
/// on_packet_; one writer coroutine sends everything queued in out() in one
/// write per wake-up; a watchdog drops a peer whose frame does not arrive
/// whole in time. The receive buffer grows with the bytes that arrive (at
/// most doubling per read), never to a length a header merely announces.
///
/// Thread safety: none; every member runs on the connection's executor,
/// which must be single-threaded (an io_context run by one thread).
/// Lifetime: start() keeps the object alive (shared_from_this) until the
/// socket is closed and its coroutines have finished.
/// Errors: I/O errors and protocol violations close the connection, are
/// logged with the peer address, and reach the subclass once through
/// on_closed_.
///
/// TLS: given a context, every byte goes through a TLS session. An
/// accepted connection's reader does the handshake before it reads a frame
/// (within incomplete_frame_timeout; nothing is written before it is
/// done); a client's is done by its connect, before start().
class connection : public std::enable_shared_from_this<connection> {
 public:
  enum class side { client, server };
  connection(asio::ip::tcp::socket socket, const codec& wire, const connection_options& options,
             side s = side::client, std::shared_ptr<const tls_context> tls = {});
  virtual ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Starts the reader, writer and watchdog. Call once.
  void start();
  /// Closes the socket at once (queued bytes are dropped); idempotent.
  void close(std::string_view reason, bool protocol_error = false);
  /// Stops reading new frames; queued and later writes still go out.
  void stop_reading();

  [[nodiscard]] bool is_open() const noexcept { return open_; }
  [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
  [[nodiscard]] const codec& wire() const noexcept { return wire_; }
  [[nodiscard]] asio::any_io_executor executor() const { return executor_; }
  [[nodiscard]] const connection_options& options() const noexcept { return options_; }
  /// Whether it runs over TLS.
  [[nodiscard]] bool secure() const noexcept { return tls_ != nullptr; }
  /// Its TLS peer once the handshake is done: the subject and names of the
  /// certificate the peer sent, verified against the context's CAs; empty
  /// without TLS, or when the peer sent none.
  [[nodiscard]] const tls_peer& peer_identity() const noexcept { return identity_; }

  /// The write queue: encode frames into it with wire(), then flush().
  [[nodiscard]] byte_buffer& out() noexcept { return out_; }
  /// Wakes the writer if it is idle.
  void flush();
  /// More than write_high_water bytes are waiting to be written.
  [[nodiscard]] bool congested() const noexcept {
    return out_.size() + writing_bytes_ > options_.write_high_water;
  }
  /// Completes once the queue is below the high-water mark or the connection closed.
  asio::awaitable<void> wait_writable();
  /// Completes once everything queued is written, the connection closed, or the deadline passed.
  asio::awaitable<void> wait_flushed(std::chrono::steady_clock::time_point deadline);

  /// Counts a request of the peer's as being handled (see max_in_flight).
  void request_started() noexcept { ++in_flight_; }
  /// Counts it as finished; the reader resumes if it was held by the cap.
  void request_finished() noexcept;
  /// When the last read from the socket completed: for a packet being
  /// delivered, when its last bytes arrived (time it then waited, held by
  /// backpressure or behind other frames, counts from there).
  [[nodiscard]] std::chrono::steady_clock::time_point last_read() const noexcept {
    return last_read_;
  }
  /// The peer's requests being handled now.
  [[nodiscard]] std::size_t in_flight() const noexcept { return in_flight_; }

 protected:
  /// Called for each packet received. The packet's objects point into the
  /// receive buffer and a reused zone: valid during the call only.
  virtual void on_packet_(packet& p) = 0;
  /// Called once when the connection closes.
  virtual void on_closed_(std::string_view reason, bool protocol_error) = 0;
  /// Called for a whole frame whose packet does not decode. The default
  /// rethrows it, which closes the connection as a protocol error.
  virtual void on_bad_packet_(const packet_error& e) { throw e; }

  /// A client's TLS handshake, before start(): `server_name` is what its
  /// certificate must name. Empty when done; why it failed otherwise.
  asio::awaitable<std::string> client_handshake(std::string_view server_name);

 private:
  asio::awaitable<bool> server_handshake();
  asio::awaitable<void> reader();
  /// Hands every whole frame at the front of [data, data + size) to
  /// on_packet_ while the connection may take more; returns the bytes used.
  std::size_t deliver(const char* data, std::size_t size);
  [[nodiscard]] bool held() const noexcept {
    return congested() || (options_.max_in_flight > 0 && in_flight_ >= options_.max_in_flight);
  }
  asio::awaitable<void> writer();
  asio::awaitable<void> watchdog();
  void notify_state();

  asio::ip::tcp::socket socket_;
  std::unique_ptr<tls_stream> tls_;  // over socket_, when it runs TLS
  tls_peer identity_;
  bool handshaking_ = false;  // an accepted TLS connection's reader has yet to do the handshake
  bool first_read_ = true;
  bool tls_hello_ = false;  // plaintext, and the first bytes looked like a TLS hello
  asio::any_io_executor executor_;
  const codec& wire_;
  connection_options options_;
  std::string peer_;
  bool open_ = true;
  bool reading_ = true;
  bool partial_ = false;  // the receive buffer holds part of a frame
  std::chrono::steady_clock::time_point frame_started_{};  // when that part began to arrive
  std::chrono::steady_clock::time_point write_started_{};  // when the write in progress began
  std::chrono::steady_clock::time_point last_read_{};      // when the last read completed
  std::size_t in_flight_ = 0;
  std::size_t wanted_ = 0;  // bytes the frame at the front of the receive buffer needs at least
  byte_buffer out_;
  byte_buffer writing_;
  std::size_t writing_bytes_ = 0;
  bool writer_idle_ = false;
  asio::steady_timer writer_wake_;
  asio::steady_timer state_changed_;  // fires (cancel) when the queue drains or the socket closes
  int state_waiters_ = 0;
  asio::steady_timer watchdog_timer_;
  asio::cancellation_signal stop_read_;
  msgpack::zone zone_{2048};  // decoded packets' objects, cleared per frame
};

/// "host:port" of an endpoint, for logs ("[::1]:80" for IPv6).
std::string to_string(const asio::ip::tcp::endpoint& ep);
/// The endpoint as endpoint.hpp keeps a peer.
ip_endpoint to_ip_endpoint(const asio::ip::tcp::endpoint& ep);

}  // namespace tern::transport
