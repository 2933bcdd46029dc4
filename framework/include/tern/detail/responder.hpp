// The way back from a handler to its caller: one request's reply channel.
#pragma once

#include "tern/rpc_error.hpp"
#include "tern/tls.hpp"
#include "tern/transport/codec.hpp"

#include <asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace tern::transport {
class server_session;
struct cancellable;
}  // namespace tern::transport

namespace tern {
class message_context;
}

namespace tern::detail {

class service_core;
struct call_stats;

/// Sends the replies of one request. Move-only; exactly one final reply
/// (reply, reply_void or a fail_*) goes out, and a responder destroyed
/// without one answers with an internal error, so a caller never hangs.
class responder {
 public:
  /// `deadline`: when the caller stops waiting (time_point::max(): never).
  /// `request`: the packet it answers (its id is copied).
  responder(std::shared_ptr<transport::server_session> session, const transport::packet& request,
            service_core* core, const std::string* pattern, call_stats* stats,
            std::chrono::steady_clock::time_point deadline);
  responder(responder&& o) noexcept;
  responder& operator=(responder&&) = delete;
  ~responder();

  void reply(transport::value_writer value);    ///< the final value
  void reply_void();                            ///< completion without a value
  void next(transport::value_writer value);     ///< one stream value, more to come
  void fail(const rpc_error& e);                ///< the handler's error, as sent
  void fail_internal(std::string_view detail);  ///< logged; the caller gets a generic error
  void fail_decode(const rpc_error& e);         ///< the request data does not fit the handler (400)
  /// If the deadline has passed, answers errc::deadline_exceeded (the
  /// handler is not run) and returns true.
  bool drop_if_expired();
  /// Makes the request stoppable by its caller (a coroutine handler's): a
  /// cancel frame or the connection's end emits the returned state's
  /// signal, which the task is bound to, and the reply is then dropped.
  std::shared_ptr<transport::cancellable> make_cancellable();

  /// Completes once the connection can take more (stream backpressure).
  asio::awaitable<void> wait_writable();
  [[nodiscard]] bool open() const noexcept;
  [[nodiscard]] const std::string& peer() const noexcept;
  [[nodiscard]] const tls_peer& peer_identity() const noexcept;
  [[nodiscard]] const std::string& pattern() const noexcept { return *pattern_; }
  [[nodiscard]] service_core* core() const noexcept { return core_; }
  [[nodiscard]] std::chrono::steady_clock::time_point deadline() const noexcept {
    return deadline_;
  }
  /// The handler's context, for log lines (request and trace id); the
  /// invocation that owns both sets it, and clears it before it goes.
  void set_context(const message_context* c) noexcept { context_ = c; }

 private:
  void finished(std::size_t outcome) noexcept;
  /// The caller stopped the request: counts and logs it (once) and
  /// returns true, so nothing is sent.
  bool stopped();
  void fail_as(const rpc_error& e, std::size_t outcome);
  [[nodiscard]] std::string log_tag() const;  // " request_id=… trace_id=…", or empty
  std::shared_ptr<transport::server_session> session_;
  [[nodiscard]] transport::reply_to to() const noexcept { return {id_, packed_id_}; }
  std::uint64_t id_;
  std::string packed_id_;  // on a wire whose ids are JSON values: the id to echo
  service_core* core_;
  const std::string* pattern_;
  call_stats* stats_;
  const message_context* context_ = nullptr;
  transport::cancellable* task_ = nullptr;  // make_cancellable()'s, kept alive by the task
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point deadline_;
  bool done_ = false;
};

/// Counts an event being handled by a coroutine as a request in hand of its
/// connection (the max_in_flight cap) and of the service (the drain), from
/// construction to destruction. Move-only.
class event_token {
 public:
  event_token(std::shared_ptr<transport::server_session> session, service_core* core);
  event_token(event_token&& o) noexcept;
  event_token& operator=(event_token&&) = delete;
  ~event_token();

 private:
  std::shared_ptr<transport::server_session> session_;
  service_core* core_;
};

}  // namespace tern::detail
