// A microservice's own metrics: requests and events by pattern and outcome.
#pragma once

#include "tern/metrics.hpp"
#include "tern/rpc_error.hpp"

#include <array>
#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

namespace prometheus {
class Counter;
template <typename T>
class Family;
}  // namespace prometheus

namespace tern::detail {

/// Outcome slots: 0 is "ok", then one per errc value.
inline constexpr std::size_t outcome_slots = errc_slots;
inline constexpr std::size_t outcome_ok = 0;
[[nodiscard]] inline std::size_t outcome_of(errc e) noexcept {
  return static_cast<std::size_t>(e);
}
[[nodiscard]] std::string_view outcome_name(std::size_t slot) noexcept;

/// One pattern's counters, created when its handler is registered; each
/// outcome's counter is made on its first use and kept.
struct call_stats {
  std::string pattern;
  prometheus::Family<prometheus::Counter>* family = nullptr;
  std::array<prometheus::Counter*, outcome_slots> by_outcome{};
  local_histograms::histogram* duration = nullptr;  // requests only
  void count(std::size_t outcome);
};

/// rpc_server_requests_total{pattern,outcome},
/// rpc_server_request_duration_seconds{pattern} and
/// rpc_server_events_total{pattern,outcome}, in the service's registry.
/// Patterns are the registered ones (bounded label values): a request for
/// no handler counts under "(unknown)", a malformed one under "(malformed)".
///
/// Thread safety: the service's event-loop thread.
class service_metrics {
 public:
  explicit service_metrics(metrics_registry& m);
  ~service_metrics();

  /// `timed`: with a duration histogram (not for "(unknown)" and
  /// "(malformed)", answered at once).
  call_stats* request_stats(const std::string& pattern, bool timed = true);
  /// Made on the first call for a pattern (at registration), found after.
  call_stats* event_stats(const std::string& pattern);
  [[nodiscard]] call_stats* unknown() noexcept { return unknown_; }
  [[nodiscard]] call_stats* malformed() noexcept { return malformed_; }

  static void record(call_stats& s, std::size_t outcome, std::chrono::steady_clock::duration d);

 private:
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* events_;
  local_histograms durations_;  // recorded and read on the loop's thread
  std::unordered_map<std::string, std::unique_ptr<call_stats>> by_request_, by_event_;
  call_stats* unknown_;
  call_stats* malformed_;
};

}  // namespace tern::detail
