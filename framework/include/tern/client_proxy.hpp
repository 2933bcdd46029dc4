// The calling side: send requests and events to a service.
#pragma once

#include "tern/call_options.hpp"
#include "tern/pattern.hpp"
#include "tern/resilience.hpp"
#include "tern/rpc_error.hpp"
#include "tern/stream.hpp"
#include "tern/tls.hpp"
#include "tern/transport/codec.hpp"
#include "tern/transport/connection_options.hpp"
#include "tern/transport/function_ref.hpp"
#include "tern/wire.hpp"

#include <asio/awaitable.hpp>
#include <msgpack.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace asio {
class io_context;
}

namespace tern {

struct raw_call;

/// How a call picks one of a service's endpoints.
enum class balancing {
  /// Two endpoints at random, the one with fewer calls pending (the
  /// default: "power of two choices", which follows load without herding).
  least_outstanding,
  /// Each endpoint in turn.
  round_robin,
};

struct client_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 3000;
  /// The service's instances, "host:port" each ("[::1]:3001" for IPv6);
  /// empty means host:port alone. A host that is a name stands for every A
  /// and AAAA address it has (compose replicas, a Kubernetes headless
  /// Service), looked up again every resolve_interval and soon after a
  /// connect fails. New addresses take calls at once; an address that is
  /// gone takes no new ones and is closed once its pending calls end.
  std::vector<std::string> endpoints{};
  balancing balance = balancing::least_outstanding;
  std::chrono::milliseconds resolve_interval{5000};
  /// DNS servers ("10.96.0.10", "127.0.0.1:5353", "[::1]:53"); empty means
  /// the system's (/etc/resolv.conf, after /etc/hosts).
  std::vector<std::string> dns_servers{};
  /// Deadline of a call unless the call says otherwise.
  std::chrono::milliseconds timeout{5000};
  std::chrono::milliseconds connect_timeout{3000};
  /// After a failed connect, calls fail at once (errc::connection_refused)
  /// for this long before the next attempt; doubles per failure up to
  /// backoff_max, and resets on success.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5000};
  /// Largest frame accepted or sent (with a `codec` given, that codec's).
  std::uint32_t max_frame = transport::default_max_frame;
  /// The connection's limits: queued request bytes above which send()
  /// waits for the writer (write_high_water), and the time a reply frame
  /// has to arrive whole (incomplete_frame_timeout).
  transport::connection_options connection{};
  /// The wire format: tern's msgpack frames (docs/protocol.md), or
  /// NestJS's JSON ones, to speak with NestJS (docs/nestjs-migration.md).
  wire_format wire = wire_format::tern;
  /// A codec of one's own, in place of `wire`'s.
  std::shared_ptr<const transport::codec> codec{};
  /// TLS to the service (docs/security.md): the CA that signs its
  /// certificate (ca_file, or trust_system_store), and this client's own
  /// certificate and key for a service that asks for one (mutual TLS).
  /// The service's certificate must name the host each endpoint was given
  /// as (or tls->server_name); the handshake is part of the connect and of
  /// connect_timeout, and a refused one fails the call with
  /// errc::connection_refused saying why. A bad file throws tls_error from
  /// the constructor. None: plaintext.
  std::optional<tls_options> tls{};
  ejection_options ejection{};
  breaker_options breaker{};
  retry_options retry{};
};

/// A client of one service, NestJS's ClientProxy:
///
/// ```
/// tern::client_proxy users({.host = "users", .port = 3001});
/// auto list = co_await users.send<std::vector<user>>({{"cmd", "get_users"}}, query);
/// co_await users.emit("user_created", u);
/// ```
///
/// The service may run as several instances (client_options::endpoints, or
/// a name with several addresses); each call picks one (see balancing).
/// One TCP connection per endpoint carries every call to it, many at once,
/// correlated by id. It is made on first use (or by connect()); when it is
/// lost, every call pending on it fails at once with
/// errc::connection_closed and the next call connects again, with backoff
/// after failed attempts. A call whose connect fails is sent to another
/// endpoint (nothing was sent yet); with none left it fails with
/// errc::connection_refused.
///
/// Errors: every failure is an rpc_error; see errc for the kinds.
/// Cancellation: a send() whose awaiting coroutine is cancelled (for
/// example the losing side of `||`) ends with errc::cancelled.
/// Thread safety: use it from the io_context's thread only. Copies share
/// the connection.
class client_proxy {
 public:
  /// On default_io_context(). Throws std::invalid_argument for a malformed
  /// endpoint or DNS server.
  explicit client_proxy(client_options options = {});
  client_proxy(asio::io_context& io, client_options options);
  ~client_proxy();
  client_proxy(const client_proxy&) = default;
  client_proxy& operator=(const client_proxy&) = default;
  client_proxy(client_proxy&&) noexcept = default;
  client_proxy& operator=(client_proxy&&) noexcept = default;

  /// Connects (to one endpoint) now instead of on the first call. Throws rpc_error.
  asio::awaitable<void> connect();
  /// Closes every connection; pending calls fail with errc::connection_closed.
  /// A later call connects again. With names to look up, the client keeps
  /// a timer on the loop for its lookups until close() or its destruction.
  void close();

  /// Sends `data` to the handler of `p` and returns its reply decoded as T
  /// (for a stream, the last value). T may be void, msgpack::object_handle
  /// (the raw value) or any msgpack-adaptable type.
  template <class T = msgpack::object_handle, class D = msgpack::type::nil_t>
  asio::awaitable<T> send(const pattern& p, const D& data = {}, call_options o = {}) {
    if constexpr (std::is_void_v<T>) {
      co_await call_(
          p, [&](transport::packer& pk) { pk.pack(data); }, [](const transport::value_view&) {}, o);
    } else {
      // Values are converted as their frames are read; the last one wins.
      std::optional<T> result;
      std::string failure;
      auto keep = [&](const msgpack::object& v) {
        try {
          if constexpr (std::is_same_v<T, msgpack::object_handle>) {
            result.emplace(msgpack::clone(v));
          } else {
            result.emplace(v.as<T>());
          }
        } catch (const std::exception& e) {
          failure = e.what();
        }
      };
      co_await call_(
          p, [&](transport::packer& pk) { pk.pack(data); },
          [&](const transport::value_view& v) {
            try {
              keep(v.object());
            } catch (const std::exception& e) {
              failure = e.what();
            }
          },
          o);
      if (!result && failure.empty()) keep(msgpack::object());  // a reply without a value
      if (!result) {
        throw rpc_error(
            errc::decode_error,
            "reply to " + p.canonical() + " does not decode as the expected type: " + failure);
      }
      co_return std::move(*result);
    }
  }

  /// Sends a request whose handler streams values; take them with next().
  template <class T, class D = msgpack::type::nil_t>
  asio::awaitable<reply_stream<T>> stream(const pattern& p, const D& data = {},
                                          call_options o = {}) {
    co_return reply_stream<T>(co_await stream_packed(
        p, [&](transport::packer& pk) { pk.pack(data); }, o));
  }

  /// Sends an event (no reply); completes once it is queued for sending.
  template <class D = msgpack::type::nil_t>
  asio::awaitable<void> emit(const pattern& p, const D& data = {}) {
    co_await emit_packed(p, [&](transport::packer& pk) { pk.pack(data); });
  }

  /// send() for data that is already msgpack (exactly one value), for
  /// relays such as the gateway that never decode into C++ types: each
  /// value of the reply is handed to `on_value` as it is read, as packed
  /// bytes and, on demand, as an object (valid during that call only).
  /// Throws rpc_error like send().
  asio::awaitable<void> send_raw(const pattern& p, std::string_view packed_data,
                                 transport::value_sink on_value, call_options o = {});

  /// Calls waiting for replies right now, on every endpoint.
  [[nodiscard]] std::size_t pending() const noexcept;

  /// A connection's state: open, being made, or neither (never made, lost,
  /// or backing off after a failed attempt).
  enum class connection_state { connected, connecting, disconnected };
  /// connected if any endpoint is, else connecting if any is, else disconnected.
  [[nodiscard]] connection_state state() const noexcept;

  /// One endpoint as it is now.
  struct endpoint_status {
    std::string address;  ///< "10.0.0.5:3001", "[::1]:3001"
    connection_state state = connection_state::disconnected;
    std::size_t pending = 0;  ///< calls waiting for replies on it
    bool ejected = false;     ///< left out after consecutive failures
  };
  /// The endpoints calls are picked from now (after discovery, if any).
  [[nodiscard]] std::vector<endpoint_status> endpoints() const;

  enum class breaker_state { closed, open, half_open };
  [[nodiscard]] breaker_state breaker() const noexcept;
  /// While the breaker is open, the time until it lets a trial call
  /// through (what a gateway puts in Retry-After); else zero.
  [[nodiscard]] std::chrono::milliseconds retry_after() const noexcept;

  /// Counts since the client was made.
  struct counters {
    std::uint64_t retries = 0;          ///< attempts after the first
    std::uint64_t retries_refused = 0;  ///< retries the budget did not allow
    std::uint64_t ejections = 0;        ///< endpoints left out
    std::uint64_t breaker_opened = 0;   ///< times the breaker opened
    std::uint64_t breaker_refused = 0;  ///< calls failed at once while it was open
  };
  [[nodiscard]] counters stats() const noexcept;

  friend asio::awaitable<void> send_raw_all(std::span<raw_call> calls);

 private:
  struct impl;
  asio::awaitable<void> call_(const pattern& p, transport::value_writer data,
                              transport::value_sink on_value, call_options o);
  asio::awaitable<detail::raw_stream> stream_packed(const pattern& p, transport::value_writer data,
                                                    call_options o);
  asio::awaitable<void> emit_packed(const pattern& p, transport::value_writer data);
  std::shared_ptr<impl> impl_;
};

/// One call of send_raw_all(): send_raw()'s arguments, and its outcome.
struct raw_call {
  /// Must outlive the call (send_raw_all holds no copy of it).
  client_proxy* client = nullptr;
  const pattern* p = nullptr;
  std::string_view packed_data;    ///< exactly one msgpack value
  transport::value_sink on_value;  ///< each value of the reply, as it is read
  call_options options{};
  std::optional<rpc_error> error{};  ///< set if the call failed
  int retries = 0;                   ///< attempts after the first (see retry_options)
  /// When the call ended (its final reply, or its failure): for timing each
  /// call of a scatter on its own.
  std::chrono::steady_clock::time_point ended{};
};

/// Sends every call at once (to one service or several) and completes when
/// all have ended: the scatter-gather of an aggregating gateway, without a
/// coroutine per call. A call's failure does not throw; it is left in that
/// call's `error` while the others run to their end. Cancelling the
/// awaiting coroutine ends the calls still pending with errc::cancelled.
asio::awaitable<void> send_raw_all(std::span<raw_call> calls);

}  // namespace tern
