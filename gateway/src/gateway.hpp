// The API gateway: HTTP requests to service patterns, by the config's routes.
#pragma once

#include "call_data.hpp"
#include "config.hpp"
#include "http_server.hpp"

#include <tern/client_proxy.hpp>

#include <asio/io_context.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tern::gateway {

/// Routes HTTP requests to services: one pattern call, or an aggregate of
/// several made concurrently with each result placed under its key.
/// Failures become NestJS-shaped JSON errors: the service's rpc_error
/// status (4xx/5xx) and message; 503 when the service is unreachable; 504
/// when it does not answer in time; 502 for a reply that makes no sense;
/// 400 for a malformed JSON body; 404 for no route. One client_proxy (one
/// connection) per upstream; a failing upstream affects only the routes
/// that use it, and is reconnected on the next request that needs it.
///
/// Thread safety: single-threaded, on the io_context given.
class gateway {
 public:
  gateway(asio::io_context& io, gateway_config cfg);

  asio::awaitable<http_response> handle(http_request& req);
  /// Closes every upstream connection: calls still pending end with
  /// errc::connection_closed (the last step of a drain). A later request
  /// connects again.
  void close_upstreams();

  [[nodiscard]] const gateway_config& config() const noexcept { return cfg_; }

 private:
  using params = std::vector<std::pair<std::string_view, std::string>>;
  const route* match(const http_request& req, params& captured, bool& path_known) const;
  asio::awaitable<http_response> run(const route& r, const http_request& req, const params& p);

  void warn_upstream_failure(std::size_t upstream, const http_request& req, const rpc_error& e);

  struct warning_state {
    std::chrono::steady_clock::time_point last{};
    std::size_t suppressed = 0;
  };
  asio::io_context& io_;
  gateway_config cfg_;
  std::vector<warning_state> warnings_;                       // per upstream
  std::vector<std::unique_ptr<tern::client_proxy>> clients_;  // one per upstream
};

/// The HTTP error for a failed call to `service`.
http_response error_for(const rpc_error& e, const upstream& service);

}  // namespace tern::gateway
