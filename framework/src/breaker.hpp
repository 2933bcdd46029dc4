// The circuit breaker and the retry budget of a client_proxy, apart from
// sockets and time sources: each step takes `now`. Internal to framework/.
#pragma once

#include "tern/resilience.hpp"
#include "tern/rpc_error.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <utility>

namespace tern::detail {

using steady = std::chrono::steady_clock;

/// Whether an outcome says the instance is unwell: failed connects,
/// timeouts, lost connections, protocol errors, 5xx-class errors. Remote
/// 4xx, no_handler, decode errors, cancellation and an open breaker are not.
bool counts_as_failure(const rpc_error& e) noexcept;

/// Two counts over a sliding window, in ten buckets of a tenth each.
class window_counter {
 public:
  explicit window_counter(std::chrono::milliseconds window) noexcept;
  void add(steady::time_point now, int a, int b) noexcept;
  /// The sums of a and b over the last window.
  [[nodiscard]] std::pair<long, long> totals(steady::time_point now) const noexcept;
  void clear() noexcept;

 private:
  struct bucket {
    std::int64_t slot = -1;
    long a = 0, b = 0;
  };
  [[nodiscard]] std::int64_t slot_of(steady::time_point now) const noexcept;
  std::int64_t width_ms_;
  std::array<bucket, 10> buckets_{};
};

/// closed → open (on consecutive failures, or a failure rate over the
/// window with enough calls) → half-open after open_time (trial calls) →
/// closed on a trial's success, open again on its failure.
class circuit_breaker {
 public:
  enum class state { closed, open, half_open };
  explicit circuit_breaker(const breaker_options& o) noexcept;

  /// Whether a call may be sent now; a half-open breaker counts it as a trial.
  bool admit(steady::time_point now) noexcept;
  /// A call's outcome. Returns true if this outcome opened the breaker.
  bool record(bool failed, steady::time_point now) noexcept;

  [[nodiscard]] state current(steady::time_point now) const noexcept;
  /// Until the next trial, while open; else zero.
  [[nodiscard]] std::chrono::milliseconds retry_after(steady::time_point now) const noexcept;
  [[nodiscard]] bool enabled() const noexcept { return enabled_; }

 private:
  void open(steady::time_point now) noexcept;
  breaker_options o_;
  bool enabled_;
  state state_ = state::closed;
  int consecutive_ = 0;
  int trials_ = 0;
  steady::time_point open_until_{};  // open: until then; half-open: when it began
  window_counter window_;  // a: calls, b: failures
};

/// Retries allowed over a window: at most ratio × calls + a floor.
class retry_budget {
 public:
  explicit retry_budget(const retry_options& o) noexcept;
  /// A call ended (counted once, whatever its attempts).
  void count_call(steady::time_point now) noexcept { window_.add(now, 1, 0); }
  /// Takes one retry from the budget, if there is one left.
  bool take(steady::time_point now) noexcept;

 private:
  double ratio_;
  long floor_;
  window_counter window_;  // a: calls, b: retries
};

}  // namespace tern::detail
