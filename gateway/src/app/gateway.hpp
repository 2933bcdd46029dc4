// The API gateway: HTTP requests to service patterns, through per-route
// chains of policies built from the config.
#pragma once

#include "app/upstreams.hpp"
#include "config/config.hpp"
#include "pipeline/registry.hpp"
#include "routing/route_table.hpp"

#include <tern/http/server.hpp>
#include <tern/metrics.hpp>

#include <asio/io_context.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace tern::gateway {

/// Routes HTTP requests to services (one pattern call, or an aggregate of
/// several made concurrently, each result under its key) through the
/// route's chain: request id, access log, metrics, ..., handler
/// (pipeline/registry.cpp has the order). Failures become NestJS-shaped
/// JSON errors (render/errors.hpp); 400 for a malformed JSON body; 404 for
/// no route. The admin paths (/metrics, /health/live, /health/ready) have
/// chains of their own, served by handle_admin() (and by handle() too with
/// admin.on_public_port).
///
/// Thread safety: single-threaded, on the io_context given.
class gateway {
 public:
  /// Builds every chain; throws config_error for a bad policies piece.
  gateway(asio::io_context& io, gateway_config cfg);

  /// The public port's requests.
  asio::awaitable<http::response> handle(http::request& req);
  /// The admin port's requests.
  asio::awaitable<http::response> handle_admin(http::request& req);
  /// The response to a request the HTTP server refuses itself (a parse
  /// error): NestJS's error body, through the top-level policies (request
  /// id, access log, metrics) as route "(rejected)".
  asio::awaitable<http::response> render_error(int status, std::string_view message,
                                               const http::request& req);

  /// Starts the upstreams' health probes (readiness).
  void start();
  /// From now on /health/ready answers 503 (a drain has begun).
  void set_draining() noexcept { draining_ = true; }
  /// Stops the probes and closes every upstream connection: calls still
  /// pending end with errc::connection_closed (the last step of a drain).
  void close_upstreams();

  [[nodiscard]] const gateway_config& config() const noexcept { return cfg_; }
  [[nodiscard]] metrics_registry& metrics() noexcept { return metrics_; }

 private:
  asio::awaitable<http::response> serve(const route_table& table, const chain& fallback,
                                        http::request& req);
  void add_admin_routes(route_table& t, const chain_env& env);

  asio::io_context& io_;
  gateway_config cfg_;
  metrics_registry metrics_;
  upstreams upstreams_;
  shared_state shared_;
  bool draining_ = false;
  route_table public_, admin_;
  std::unique_ptr<chain> unmatched_, admin_unmatched_, rejected_;
};

}  // namespace tern::gateway
