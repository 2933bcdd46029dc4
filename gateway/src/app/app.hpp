// The gateway process: one event loop per thread, each with its own gateway
// and HTTP server on the shared public port; the admin port on the first;
// staged start and drain.
#pragma once

#include "app/gateway.hpp"

#include <tern/tls.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tern::gateway {

struct app_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 3000;  ///< 0 picks a free one
  std::string admin_host = "127.0.0.1";
  std::uint16_t admin_port = 9100;  ///< 0 picks a free one
  std::size_t threads = 1;          ///< workers, at least 1
  std::chrono::milliseconds drain_timeout{10000};
};

/// Runs `threads` workers. Each is an io_context on a thread of its own
/// (the first on the thread that calls run()), with its own gateway
/// (upstream connections, chains, policies, metrics) and its own HTTP
/// server on the public port, which they all bind with SO_REUSEPORT: the
/// kernel spreads new connections over them, and a connection stays on the
/// worker that accepted it. Nothing on the request path is shared between
/// workers but what process_state holds (rate-limit buckets, the response
/// cache, access-log destinations; docs/gateway.md, "Threads").
///
/// The admin listener (/metrics, /health/*) runs on the first worker and
/// reports on all of them: each worker's metrics and readiness are read on
/// its own thread and merged (counts summed).
///
/// SIGINT/SIGTERM drain every worker at once (drain_timeout), then stop; a
/// second signal stops at once. Either way each worker's connections,
/// handlers, probes and flushes are then cancelled and joined before any
/// part of it goes.
///
/// Thread safety: construct and run() on one thread.
class app final : public admin_view {
 public:
  /// Builds every worker's gateway; throws config_error.
  app(gateway_config cfg, app_options options);
  ~app() override;
  app(const app&) = delete;
  app& operator=(const app&) = delete;

  /// Binds the ports (throws std::system_error when one cannot be bound),
  /// serves until a signal has drained the workers, and returns the exit
  /// status (0; 1 if a worker failed).
  int run();

  asio::awaitable<std::string> scrape() override;
  asio::awaitable<readiness> ready() override;
  /// Re-reads server.tls's files (SIGHUP, POST /admin/tls/reload): new
  /// handshakes on every worker use the new pair, open connections keep
  /// theirs; a file that cannot be used is refused and logged, and the old
  /// pair goes on. Call on the first worker's thread.
  std::optional<std::string> reload_tls() override;

  [[nodiscard]] const gateway_config& config() const noexcept { return *cfg_; }

 private:
  struct worker;
  template <class T, class F>
  asio::awaitable<std::vector<T>> on_each(F f);
  std::uint16_t bind();
  void on_signal();
  asio::awaitable<void> drain();
  void stop_all();
  bool finish();
  asio::awaitable<bool> stop_and_join(worker& w, bool first,
                                      std::chrono::steady_clock::time_point deadline);

  std::shared_ptr<const gateway_config> cfg_;
  std::shared_ptr<process_state> process_;  // outlives the workers
  app_options options_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::unique_ptr<http::server> admin_;     // on workers_[0]'s loop
  std::shared_ptr<const tls_context> tls_;  // the public port's, if HTTPS (workers_[0]'s thread)
  std::atomic<bool> failed_ = false;        // a worker's loop threw
  std::atomic<bool> finishing_ = false;     // finish() has begun: stop_all() does nothing
};

}  // namespace tern::gateway
