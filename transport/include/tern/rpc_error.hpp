// The one error type of the framework: thrown by handlers to answer with an
// error, and thrown to callers for every way a call can fail.
#pragma once

#include <msgpack.hpp>

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tern {

/// What went wrong with a call, as the caller sees it.
enum class errc {
  remote = 1,          ///< the handler threw rpc_error: status, message and details as it sent them
  internal,            ///< the handler threw something else; the detail stays in the service's log
  no_handler,          ///< the service has no handler for the pattern
  timeout,             ///< no final reply before the call's deadline
  connection_refused,  ///< could not connect (or still backing off after failed connects)
  connection_closed,   ///< the connection was lost while the call was pending
  decode_error,        ///< the reply (or request data) does not decode as the expected type
  protocol_error,      ///< the peer sent a frame that breaks the protocol
  cancelled,           ///< the call was cancelled (client closed, or cancellation requested)
  circuit_open,        ///< the upstream's circuit breaker is open: the call was not sent
  deadline_exceeded,   ///< the request's deadline passed before its handler ran (or before it was sent)
  // (a new kind goes above this line, and errc_slots names it)
};

/// Slots for a table indexed by errc, with slot 0 (no errc) for "ok".
inline constexpr std::size_t errc_slots = static_cast<std::size_t>(errc::deadline_exceeded) + 1;

/// Stable lower-case name of an errc ("timeout", "no_handler", ...).
std::string_view to_string(errc e) noexcept;

/// An RPC error.
///
/// In a handler: `throw tern::rpc_error(404, "user 7 not found")` answers the
/// caller with that status and message (and optional details, any
/// msgpack-adaptable value), delivered as sent.
///
/// At a caller: every failure of `send` is an rpc_error; kind() tells them
/// apart, status() is the handler's status for errc::remote (500 for
/// errc::internal, 0 otherwise), message() is human-readable.
class rpc_error : public std::runtime_error {
 public:
  rpc_error(int status, std::string message)
      : std::runtime_error(std::move(message)), kind_(errc::remote), status_(status) {}

  template <class Details>
  rpc_error(int status, std::string message, const Details& details)
      : rpc_error(status, std::move(message)) {
    msgpack::sbuffer buf;
    msgpack::pack(buf, details);
    details_.assign(buf.data(), buf.size());
  }

  rpc_error(errc kind, std::string message, int status = 0)
      : std::runtime_error(std::move(message)), kind_(kind), status_(status) {}

  [[nodiscard]] errc kind() const noexcept { return kind_; }
  [[nodiscard]] int status() const noexcept { return status_; }
  [[nodiscard]] std::string_view message() const noexcept { return what(); }

  /// True when the error carries details.
  [[nodiscard]] bool has_details() const noexcept { return !details_.empty(); }
  /// The details as packed msgpack bytes (empty when none).
  [[nodiscard]] const std::string& packed_details() const noexcept { return details_; }
  void set_packed_details(std::string bytes) { details_ = std::move(bytes); }

  /// The details decoded as T; throws msgpack::type_error when they do not fit.
  template <class T>
  [[nodiscard]] T details() const {
    auto oh = msgpack::unpack(details_.data(), details_.size());
    return oh.get().as<T>();
  }

 private:
  errc kind_;
  int status_;
  std::string details_;
};

}  // namespace tern
