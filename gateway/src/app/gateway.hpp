// The API gateway: HTTP requests to service patterns, through per-route
// chains of policies built from the config.
#pragma once

#include "config/config.hpp"
#include "handlers/admin.hpp"
#include "pipeline/registry.hpp"
#include "routing/route_table.hpp"
#include "upstreams/upstreams.hpp"

#include <tern/http/server.hpp>
#include <tern/metrics.hpp>

#include <asio/io_context.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
struct MetricFamily;
}

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
/// One gateway serves one event loop. A process with several (the app's
/// workers, one per thread) gives each the same config and process_state:
/// each has its own upstream connections, chains, policies and metrics,
/// and shares only what process_state holds.
///
/// Thread safety: single-threaded, on the io_context given.
class gateway : public admin_view {
 public:
  /// A gateway alone in its process: it owns its config and process state.
  /// Builds every chain; throws config_error for a bad policies piece.
  gateway(asio::io_context& io, gateway_config cfg);
  /// One of several workers sharing `cfg` and `process`.
  gateway(asio::io_context& io, std::shared_ptr<const gateway_config> cfg,
          std::shared_ptr<process_state> process);

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
  /// Stops its tasks (the probes, the access log's flushes) and closes
  /// every upstream connection: calls still pending end with
  /// errc::connection_closed (the last step of a drain).
  void close();
  /// After close(): completes once every task has ended (true), or at
  /// `deadline` (false). The tasks borrow the gateway: its owner joins them
  /// before it destroys it (and stops the HTTP server whose handlers call
  /// handle() first).
  asio::awaitable<bool> join(std::chrono::steady_clock::time_point deadline);

  /// This gateway's metric families (its registry's and its collectors'),
  /// without the process_state's; on its thread.
  [[nodiscard]] std::vector<prometheus::MetricFamily> collect_metrics() const;
  /// This gateway's readiness; on its thread.
  [[nodiscard]] readiness local_readiness() const;
  /// Makes the admin endpoints report on `view` (every worker) instead of
  /// this gateway alone. Call before serving; `view` must outlive serving.
  void report_on(admin_view* view) noexcept { view_ = view; }
  /// What /metrics and /health/ready answer.
  asio::awaitable<std::string> scrape() override;
  asio::awaitable<readiness> ready() override;
  std::optional<std::string> reload_tls() override;

  [[nodiscard]] const gateway_config& config() const noexcept { return *cfg_; }
  /// This gateway's metrics (a worker's own; see process_state).
  [[nodiscard]] metrics_registry& metrics() noexcept { return metrics_; }
  [[nodiscard]] process_state& process() noexcept { return *process_; }

 private:
  asio::awaitable<http::response> serve(const route_table& table, const chain& fallback,
                                        http::request& req);
  void build();
  void add_admin_routes(route_table& t, const chain_env& env, std::string_view id_prefix);

  asio::io_context& io_;
  std::shared_ptr<const gateway_config> cfg_;
  std::shared_ptr<process_state> process_;  // outlives what the members below keep in it
  metrics_registry metrics_;
  upstreams upstreams_;
  shared_state shared_;
  bool draining_ = false;
  admin_view* view_ = nullptr;
  route_table public_, admin_;
  std::unique_ptr<chain> unmatched_, admin_unmatched_, rejected_;
  std::vector<reroute_fn> reroutes_;  // the registered policies' routes_by
  tern::task_group tasks_;            // the policies'; see chain_env
};

}  // namespace tern::gateway
