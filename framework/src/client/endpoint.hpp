// One instance of a service as a client sees it: its address, its
// connection, and what the units around it keep of it. Internal to
// framework/ (docs/architecture.md, "The client").
#pragma once

#include "tern/client_proxy.hpp"
#include "tern/transport/client_connection.hpp"

#include <asio/any_io_executor.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace tern::detail {

using clock = std::chrono::steady_clock;

/// An endpoint's outlier state (outlier_detector's).
struct outlier_state {
  int consecutive_failures = 0;
  int times_ejected = 0;
  clock::time_point ejected_until{};  // epoch: not ejected
  bool probing = false;
};

struct endpoint {
  endpoint(const asio::any_io_executor& ex, asio::ip::tcp::endpoint a, std::string text,
           std::size_t from, std::string host = {})
      : address(a),
        text(std::move(text)),
        host(std::move(host)),
        source(from),
        connected(ex, clock::time_point::max()) {}

  asio::ip::tcp::endpoint address;
  std::string text;  // "10.0.0.5:3001", "[::1]:3001"
  std::string
      host;  // as configured ("users", "10.0.0.5"): what TLS expects the certificate to name
  std::size_t source;  // which configured entry it came from (endpoint_set's)
  std::shared_ptr<transport::client_connection> conn;
  bool connecting = false;       // an attempt runs (connection_pool's)
  bool removed = false;          // no longer in the upstream: takes no new calls
  int waiters = 0;               // callers waiting for the attempt
  asio::steady_timer connected;  // cancelled when the attempt ends
  int failures = 0;              // failed attempts in a row
  clock::time_point retry_at{};
  std::optional<rpc_error> last_error;
  outlier_state outlier;
  const void* lost = nullptr;  // the last connection whose loss the breaker heard of

  [[nodiscard]] bool open() const noexcept { return conn && conn->is_open(); }
  [[nodiscard]] bool ejected() const {
    return outlier.ejected_until != clock::time_point{} && clock::now() < outlier.ejected_until;
  }
  [[nodiscard]] std::size_t load() const noexcept {
    return (conn ? conn->pending() : 0) + static_cast<std::size_t>(waiters) + (connecting ? 1 : 0);
  }
  // Backing off after a failed connect: calls go elsewhere, or fail at once.
  [[nodiscard]] bool backing_off() const { return last_error && clock::now() < retry_at; }
  // Draining after a goaway: new calls go elsewhere while another endpoint can take them.
  [[nodiscard]] bool going_away() const noexcept { return open() && conn->going_away(); }
  [[nodiscard]] bool usable() const {
    return !removed && !going_away() && !backing_off() && !ejected();
  }
  // Still open though draining: the last resort, when no endpoint is usable.
  [[nodiscard]] bool last_resort() const noexcept { return !removed && open(); }
  [[nodiscard]] client_proxy::connection_state state() const noexcept {
    using s = client_proxy::connection_state;
    if (open()) return s::connected;
    return connecting ? s::connecting : s::disconnected;
  }
};

using endpoint_ptr = std::shared_ptr<endpoint>;

}  // namespace tern::detail
