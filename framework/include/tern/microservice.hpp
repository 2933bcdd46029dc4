// A service: pattern handlers served over TCP.
#pragma once

#include "tern/detail/handler.hpp"
#include "tern/pattern.hpp"
#include "tern/tls.hpp"
#include "tern/transport/connection_options.hpp"
#include "tern/wire.hpp"

#include <asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace asio {
class io_context;
}

namespace tern {

class metrics_registry;

/// The process-wide event loop that microservice and client_proxy use
/// unless given another; microservice::listen() runs it. One thread runs it,
/// and what is on it (sockets, timers, the services and clients) is used on
/// that thread alone: Asio is told so (ASIO_CONCURRENCY_HINT_UNSAFE_IO) and
/// takes no lock per I/O operation. Other threads may post to it.
asio::io_context& default_io_context();

struct microservice_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 3000;  ///< 0 picks a free port (see start())
  /// Largest frame accepted or sent; a bigger one closes the connection.
  /// (With a `codec` given, that codec's own limit applies.)
  std::uint32_t max_frame = transport::default_max_frame;
  /// Each client connection's limits: queued reply bytes above which it
  /// stops reading new requests (write_high_water), the time a frame has
  /// to arrive whole (incomplete_frame_timeout), and the requests it may
  /// have in hand at once (max_in_flight).
  transport::connection_options connection{};
  /// Open client connections above which a new one is closed at once.
  std::size_t max_connections = 4096;
  /// On shutdown, how long the service goes on accepting and reading after
  /// it has sent goaway, for callers that have not seen it yet.
  std::chrono::milliseconds drain_grace{500};
  /// Then how long in-flight handlers may take to finish.
  std::chrono::milliseconds drain_timeout{10000};
  /// The wire format: tern's msgpack frames (docs/protocol.md), or
  /// NestJS's JSON ones, to speak with NestJS (docs/nestjs-migration.md).
  wire_format wire = wire_format::tern;
  /// A codec of one's own, in place of `wire`'s.
  std::shared_ptr<const transport::codec> codec{};
  /// TLS on the service's port (docs/security.md): its certificate and key
  /// (cert_file, key_file), and to ask callers for theirs, `check` with the
  /// CA that signs them (ca_file). With peer_check::require a caller
  /// without a valid certificate is refused in the handshake, before any
  /// frame is read; handlers see the caller's through
  /// message_context::peer_identity(). A bad file throws tls_error from
  /// start(). None: plaintext.
  std::optional<tls_options> tls{};
  /// The admin HTTP listener (GET /metrics, /health/live, /health/ready;
  /// docs/observability.md): none unless a port is given (0 picks one).
  std::optional<std::uint16_t> admin_port{};
  /// Its address; empty means `host`.
  std::string admin_host{};
};

/// The pattern every microservice answers with {"status":"ok"} (an error
/// with status 503 once it drains): what the gateway's readiness calls.
inline constexpr const char* health_pattern = "tern.health";

/// A microservice: register handlers for message patterns (request/reply)
/// and event patterns (fire-and-forget), then listen().
///
/// ```
/// tern::microservice app({.port = 3001});
/// app.message_pattern({{"cmd", "get_user"}}, [&](std::uint64_t id) { return store.get(id); });
/// app.event_pattern("user_created", [&](const user& u) { audit.log(u); });
/// return app.listen();
/// ```
///
/// Handlers are any callable (not generic lambdas) taking at most one data
/// argument (any msgpack-adaptable type, msgpack::object_handle for the
/// raw value, or nothing), optionally a `const message_context&`, and for
/// streams a `stream_writer<T>&`. They return a value (or void), or are
/// coroutines returning `asio::awaitable<T>`. Plain handlers run on the
/// event loop and must not block: hand blocking work to tern::offload().
/// A handler throws rpc_error to answer with an error; any other exception
/// becomes a generic "Internal server error" for the caller and is logged
/// here with its detail. Registering a pattern again replaces its message
/// handler; several event handlers on one pattern all run.
///
/// Every service counts its requests and events by pattern and outcome
/// (Prometheus, served on the admin port), answers health_pattern, and
/// logs each request at debug level with its request and trace id.
///
/// Thread safety: register handlers before start(); everything else runs
/// on the io_context, which must be run by one thread.
class microservice {
 public:
  /// On default_io_context().
  explicit microservice(microservice_options options = {});
  microservice(asio::io_context& io, microservice_options options);
  ~microservice();
  microservice(const microservice&) = delete;
  microservice& operator=(const microservice&) = delete;

  template <class F>
  microservice& message_pattern(const pattern& p, F handler) {
    add_message_handler(p, std::make_unique<detail::typed_message_handler<F>>(std::move(handler)));
    return *this;
  }

  template <class F>
  microservice& event_pattern(const pattern& p, F handler) {
    add_event_handler(p, std::make_unique<detail::typed_event_handler<F>>(std::move(handler)));
    return *this;
  }

  /// Starts serving and runs the io_context until SIGINT or SIGTERM; then
  /// drains: readiness fails (health_pattern and /health/ready answer 503),
  /// every connection gets a goaway frame (tern callers send new calls to
  /// other instances), the service goes on accepting and serving for
  /// drain_grace, then stops accepting and reading, lets in-flight handlers finish (up
  /// to drain_timeout), sends their replies, closes, and returns 0. A
  /// second signal exits at once with status 1. Throws std::system_error
  /// when the address cannot be bound. `ready`, if given, is called with
  /// the bound port once signals are being handled.
  int listen(const std::function<void(std::uint16_t port)>& ready = {});

  /// Binds and starts accepting on the io_context without running it;
  /// returns the bound port. For embedding and tests.
  std::uint16_t start();
  /// The graceful stop of listen(), as a coroutine on the io_context.
  asio::awaitable<void> shutdown();

  /// Requests being handled now.
  [[nodiscard]] std::size_t in_flight() const noexcept;
  /// Open client connections.
  [[nodiscard]] std::size_t connections() const noexcept;
  /// The admin listener's bound port once started, or 0 if there is none.
  [[nodiscard]] std::uint16_t admin_port() const noexcept;
  /// The service's metrics, for a service's own families (register them
  /// before start()).
  [[nodiscard]] metrics_registry& metrics() noexcept;
  /// A condition readiness also waits on (a database connected): while
  /// `check` returns false, health_pattern and /health/ready answer 503
  /// "not ready", as they do once the service drains. Called on the loop at
  /// each probe: it must be cheap and never block. Set before start().
  microservice& ready_when(std::function<bool()> check);

 private:
  void add_message_handler(const pattern& p, std::unique_ptr<detail::message_handler> h);
  void add_event_handler(const pattern& p, std::unique_ptr<detail::event_handler> h);
  std::shared_ptr<detail::service_core> core_;
};

}  // namespace tern
