// What a client_proxy and its copies share: the units of the client
// (endpoint set, outlier detector, breaker and retry budget, connector)
// and the tasks they run. Internal to framework/ (docs/architecture.md,
// "The client").
#pragma once

#include "../breaker.hpp"
#include "connector.hpp"
#include "endpoint_set.hpp"
#include "outlier_detector.hpp"

#include "tern/task_group.hpp"

#include <asio/io_context.hpp>

#include <cstdint>
#include <memory>
#include <unordered_set>

namespace tern::detail {

/// connection_refused for a call that found its endpoints backing off after
/// failed connects (or ejected): no attempt was made for it. The calls that
/// waited on those connects counted their failure for the breaker; this one
/// does not count again, or one refused connect would open it for a burst
/// of callers (a gateway started a moment before its services).
struct refused_while_backing_off : rpc_error {
  explicit refused_while_backing_off(rpc_error e) : rpc_error(std::move(e)) {}
};

class client_core : public std::enable_shared_from_this<client_core> {
 public:
  client_core(asio::io_context& io, client_options o);
  /// Its tasks hold it: by the time it goes, none runs.
  ~client_core();
  client_core(const client_core&) = delete;
  client_core& operator=(const client_core&) = delete;

  /// An endpoint with an open connection for one call, connecting first if
  /// needed; `picked` is the caller's pick, if it made one. A failed
  /// connect moves on to another endpoint. Throws rpc_error.
  asio::awaitable<endpoint_ptr> acquire(endpoint_ptr picked = {}, const endpoint* avoid = nullptr);
  /// Fails at once (errc::circuit_open) while the breaker is open; a
  /// half-open one lets trials through.
  void admit(clock::time_point now);
  /// A call's outcome for the breaker (once per call).
  void breaker_outcome(bool failed, clock::time_point now);
  /// An endpoint's outcome for the outlier detector.
  void outcome(endpoint& ep, bool failed, clock::time_point now);

  /// Closes every connection and stops the lookups; calls waiting to
  /// retry end. A later call connects (and looks up) again.
  void close();
  /// The last client_proxy is gone: close(), and the tasks end; an attempt
  /// that connects meanwhile closes what it got, and nothing starts again.
  void shutdown();

  const client_options options;
  asio::any_io_executor executor;
  endpoint_set endpoints;
  outlier_detector outliers;
  circuit_breaker breaker;
  retry_budget budget;
  client_proxy::counters stats{};
  std::uint64_t closes = 0;  // close() calls: a call begun before one is not retried
  std::unordered_set<asio::steady_timer*> backing_off;  // timers of calls waiting to retry

 private:
  asio::awaitable<void> connect(endpoint_ptr ep);
  void start_attempt(const endpoint_ptr& ep);
  asio::awaitable<void> attempt(endpoint_ptr ep);
  asio::awaitable<bool> ask_health(const endpoint_ptr& ep);
  void ensure_discovery();
  void start_probe(const endpoint_ptr& ep);
  template <class Task>
  void spawn(task_group& group, Task task);

  std::unique_ptr<connector> connector_;
  bool stopped_ = false;  // shutdown(): no connection or probe is started again
  bool discovering_ = false;
  task_group lookups_;  // discover(), while it runs
  task_group tasks_;    // connect attempts and probes
};

}  // namespace tern::detail
