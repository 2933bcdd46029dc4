// The circuit breaker and the retry budget, with time passed in.
#include "breaker.hpp"

#include <doctest/doctest.h>

using namespace std::chrono_literals;
using tern::detail::circuit_breaker;
using tern::detail::retry_budget;
using state = circuit_breaker::state;

namespace {
const auto t0 = std::chrono::steady_clock::time_point{} + 1000h;
}

TEST_CASE("breaker: consecutive failures open it, after open_time one trial, a success closes it") {
  circuit_breaker b({.consecutive_failures = 3, .failure_rate = 0, .open_time = 5s});
  for (int i = 0; i < 2; ++i) CHECK_FALSE(b.record(true, t0));
  CHECK(b.record(false, t0) == false);  // a success resets the count
  CHECK_FALSE(b.record(true, t0));
  CHECK_FALSE(b.record(true, t0));
  CHECK(b.record(true, t0));  // the third in a row
  CHECK(b.current(t0) == state::open);
  CHECK_FALSE(b.admit(t0 + 1s));
  CHECK(b.retry_after(t0 + 1s) == 4000ms);
  CHECK(b.current(t0 + 5s) == state::half_open);
  CHECK(b.admit(t0 + 5s));        // the trial
  CHECK_FALSE(b.admit(t0 + 5s));  // only one at a time
  CHECK_FALSE(b.record(false, t0 + 5s));
  CHECK(b.current(t0 + 5s) == state::closed);
  CHECK(b.admit(t0 + 5s));
}

TEST_CASE("breaker: a failed trial opens it again for open_time") {
  circuit_breaker b({.consecutive_failures = 1, .failure_rate = 0, .open_time = 2s});
  CHECK(b.record(true, t0));
  CHECK(b.admit(t0 + 2s));
  CHECK(b.record(true, t0 + 2s));
  CHECK(b.current(t0 + 3s) == state::open);
  CHECK(b.retry_after(t0 + 3s) == 1000ms);
  CHECK(b.admit(t0 + 4s));
}

TEST_CASE("breaker: a trial that never reports (its caller gave up) does not hold it half-open") {
  circuit_breaker b({.consecutive_failures = 1, .failure_rate = 0, .open_time = 2s});
  CHECK(b.record(true, t0));
  CHECK(b.admit(t0 + 2s));  // the trial, which never ends
  CHECK_FALSE(b.admit(t0 + 3s));
  CHECK(b.admit(t0 + 4s));  // another open_time later, a new trial
  CHECK_FALSE(b.record(false, t0 + 4s));
  CHECK(b.current(t0 + 4s) == state::closed);
}

TEST_CASE("breaker: a failure rate over the window opens it once enough calls were made") {
  circuit_breaker b({.consecutive_failures = 0,
                     .failure_rate = 0.5,
                     .window = 10s,
                     .min_calls = 10,
                     .open_time = 1s});
  // Alternating: never two failures in a row, but half of all calls.
  bool opened = false;
  int calls = 0;
  for (; calls < 20 && !opened; ++calls) opened = b.record(calls % 2 == 1, t0 + calls * 10ms);
  CHECK(opened);
  CHECK(calls == 10);  // not before min_calls
  // Failures spread out over more than the window never add up.
  circuit_breaker slow({.consecutive_failures = 0,
                        .failure_rate = 0.5,
                        .window = 10s,
                        .min_calls = 10,
                        .open_time = 1s});
  for (int i = 0; i < 100; ++i) {
    CHECK_FALSE(slow.record(i % 4 == 0, t0 + i * 3s));
  }
}

TEST_CASE("breaker: with both thresholds 0 it never opens") {
  circuit_breaker b({.consecutive_failures = 0, .failure_rate = 0});
  CHECK_FALSE(b.enabled());
  for (int i = 0; i < 1000; ++i) CHECK_FALSE(b.record(true, t0));
  CHECK(b.admit(t0));
}

TEST_CASE("retry budget: retries stay under ratio x calls + floor over the window") {
  retry_budget budget({.budget_ratio = 0.2, .budget_min_retries = 3, .budget_window = 10s});
  for (int i = 0; i < 100; ++i) budget.count_call(t0);
  int granted = 0;
  for (int i = 0; i < 100; ++i) granted += budget.take(t0) ? 1 : 0;
  CHECK(granted == 23);  // 0.2 x 100 + 3
  // A window later, the old calls and retries no longer count.
  int later = 0;
  for (int i = 0; i < 100; ++i) later += budget.take(t0 + 11s) ? 1 : 0;
  CHECK(later == 3);
}
