// The gateway's services: one client_proxy each, and their health.
#pragma once

#include "config/config.hpp"

#include <tern/client_proxy.hpp>
#include <tern/log_limit.hpp>
#include <tern/metrics.hpp>
#include <tern/task_group.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace prometheus {
struct MetricFamily;
}

namespace tern::gateway {

/// One client_proxy per upstream of the config (one connection per
/// endpoint of it); a failing upstream affects only the routes that use it,
/// and is reconnected on the next call that needs it.
///
/// Readiness: every `probe_interval` each watched upstream gets a call of
/// tern::health_pattern (each upstream on its own loop); ready() holds
/// while every one of them answered within the last `ready_window`, so a
/// readiness check costs no call.
///
/// Thread safety: the io_context's thread.
class upstreams {
 public:
  static constexpr std::chrono::milliseconds probe_interval{250};
  static constexpr std::chrono::milliseconds probe_timeout{750};
  static constexpr std::chrono::milliseconds ready_window{1000};

  upstreams(asio::io_context& io, const std::vector<upstream>& config,
            const std::vector<std::string>& dns_servers, metrics_registry& metrics);
  upstreams(const upstreams&) = delete;
  upstreams& operator=(const upstreams&) = delete;

  [[nodiscard]] tern::client_proxy& client(std::size_t i) { return *clients_[i]; }
  [[nodiscard]] const upstream& info(std::size_t i) const { return config_[i]; }
  [[nodiscard]] std::size_t size() const noexcept { return clients_.size(); }

  /// Starts probing the upstreams whose indexes are given.
  void watch(std::vector<std::size_t> used);
  /// True while every watched upstream answers; else the failing ones'
  /// names are appended to `failing`.
  [[nodiscard]] bool ready(std::vector<std::string>* failing = nullptr) const;
  /// Logs a failed call (at most one line per upstream per second).
  void warn_failure(std::size_t i, std::string_view method, std::string_view target,
                    const rpc_error& e);
  /// Stops probing and closes every connection: pending calls end with
  /// errc::connection_closed (the last step of a drain).
  void close();
  /// After close(): completes once every probe has ended (true), or at
  /// `deadline` (false). The probes borrow this object: it may go only
  /// after they are joined.
  asio::awaitable<bool> join(std::chrono::steady_clock::time_point deadline);

 private:
  void resilience_families(std::vector<prometheus::MetricFamily>& out) const;
  asio::awaitable<void> probe_rounds(std::size_t i);

  asio::io_context& io_;
  const std::vector<upstream>& config_;
  std::vector<std::unique_ptr<tern::client_proxy>> clients_;
  std::vector<std::size_t> watched_;
  std::vector<std::chrono::steady_clock::time_point> answered_;  // per upstream
  std::vector<bool> reported_;               // per upstream: ready, as last logged
  std::vector<tern::log_limiter> warnings_;  // per upstream
  bool closed_ = false;
  tern::task_group tasks_;
};

}  // namespace tern::gateway
