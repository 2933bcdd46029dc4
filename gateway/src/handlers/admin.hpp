// The admin endpoints' handlers (/health/live, /health/ready, /metrics)
// and what they report on.
#pragma once

#include "pipeline/policy.hpp"

#include <asio/awaitable.hpp>

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tern::gateway {

/// What GET /health/ready reports.
struct readiness {
  bool draining = false;             ///< a drain has begun
  bool upstreams_ready = true;       ///< every watched upstream answers its probes
  std::vector<std::string> failing;  ///< the upstreams that do not
  [[nodiscard]] bool ok() const noexcept { return upstreams_ready && !draining; }
  /// Another worker's view: ready only if both are.
  void merge(readiness other);
};

/// What the admin endpoints report on: one gateway, or every worker of a
/// process (app/app.hpp), each read on its own thread.
class admin_view {
 public:
  virtual ~admin_view() = default;
  /// The /metrics text.
  virtual asio::awaitable<std::string> scrape() = 0;
  virtual asio::awaitable<readiness> ready() = 0;
  /// Re-reads the public port's certificate and key: empty when new
  /// handshakes use them, else why not (the old pair goes on serving);
  /// nullopt when the public port has no TLS.
  virtual std::optional<std::string> reload_tls() { return std::nullopt; }
};

/// GET /health/live: 200 while the process serves.
std::unique_ptr<handler> make_live_handler();
/// GET /health/ready: 200 while no drain has begun and every upstream the
/// routes use answers its health calls (in every worker); else 503 naming
/// the failing ones.
std::unique_ptr<handler> make_ready_handler(admin_view& view);
/// GET /metrics: the Prometheus text (admin_view::scrape()).
std::unique_ptr<handler> make_metrics_handler(admin_view& view);
/// POST /admin/tls/reload: 200 {"status":"reloaded"}, 500 with why the
/// files were refused (admin_view::reload_tls()), or 404 without TLS.
std::unique_ptr<handler> make_tls_reload_handler(admin_view& view);

}  // namespace tern::gateway
