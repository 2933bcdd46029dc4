#include "breaker.hpp"

#include <algorithm>

namespace tern::detail {

bool counts_as_failure(const rpc_error& e) noexcept {
  switch (e.kind()) {
    case errc::connection_refused:
    case errc::connection_closed:
    case errc::timeout:
    case errc::deadline_exceeded:
    case errc::protocol_error:
    case errc::internal:
      return true;
    case errc::remote:
      return e.status() >= 500 && e.status() <= 599;
    case errc::no_handler:
    case errc::decode_error:
    case errc::cancelled:
    case errc::circuit_open:
      break;
  }
  return false;
}

window_counter::window_counter(std::chrono::milliseconds window) noexcept
    : width_ms_(std::max<std::int64_t>(1, window.count() / 10)) {}

std::int64_t window_counter::slot_of(steady::time_point now) const noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() /
         width_ms_;
}

void window_counter::add(steady::time_point now, int a, int b) noexcept {
  auto slot = slot_of(now);
  auto& k = buckets_[static_cast<std::size_t>(slot % 10)];
  if (k.slot != slot) k = {slot, 0, 0};
  k.a += a;
  k.b += b;
}

std::pair<long, long> window_counter::totals(steady::time_point now) const noexcept {
  auto slot = slot_of(now);
  long a = 0, b = 0;
  for (const auto& k : buckets_) {
    if (k.slot > slot - 10 && k.slot <= slot) {
      a += k.a;
      b += k.b;
    }
  }
  return {a, b};
}

void window_counter::clear() noexcept {
  buckets_.fill({});
}

circuit_breaker::circuit_breaker(const breaker_options& o) noexcept
    : o_(o), enabled_(o.consecutive_failures > 0 || o.failure_rate > 0), window_(o.window) {}

bool circuit_breaker::admit(steady::time_point now) noexcept {
  if (state_ == state::closed) return true;
  if (state_ == state::open) {
    if (now < open_until_) return false;
    state_ = state::half_open;
    trials_ = 0;
    open_until_ = now;
  }
  if (trials_ >= std::max(1, o_.half_open_calls)) {
    // Trials that never reported (given up on) do not hold it half-open
    // for good: after another open_time, new ones go.
    if (now < open_until_ + o_.open_time) return false;
    trials_ = 0;
    open_until_ = now;
  }
  ++trials_;
  return true;
}

bool circuit_breaker::record(bool failed, steady::time_point now) noexcept {
  if (!enabled_) return false;
  switch (state_) {
    case state::open:
      return false;  // a call let through before it opened
    case state::half_open:
      if (failed) {
        open(now);
        return true;
      }
      state_ = state::closed;
      consecutive_ = 0;
      window_.clear();
      return false;
    case state::closed:
      break;
  }
  window_.add(now, 1, failed ? 1 : 0);
  consecutive_ = failed ? consecutive_ + 1 : 0;
  if (o_.consecutive_failures > 0 && consecutive_ >= o_.consecutive_failures) {
    open(now);
    return true;
  }
  if (failed && o_.failure_rate > 0) {
    auto [calls, failures] = window_.totals(now);
    if (calls >= o_.min_calls && static_cast<double>(failures) >= o_.failure_rate * calls) {
      open(now);
      return true;
    }
  }
  return false;
}

void circuit_breaker::open(steady::time_point now) noexcept {
  state_ = state::open;
  open_until_ = now + o_.open_time;
  consecutive_ = 0;
  trials_ = 0;
  window_.clear();
}

circuit_breaker::state circuit_breaker::current(steady::time_point now) const noexcept {
  if (state_ == state::open && now >= open_until_) return state::half_open;
  return state_;
}

std::chrono::milliseconds circuit_breaker::retry_after(steady::time_point now) const noexcept {
  if (state_ != state::open || now >= open_until_) return std::chrono::milliseconds(0);
  return std::chrono::ceil<std::chrono::milliseconds>(open_until_ - now);
}

retry_budget::retry_budget(const retry_options& o) noexcept
    : ratio_(o.budget_ratio), floor_(o.budget_min_retries), window_(o.budget_window) {}

bool retry_budget::take(steady::time_point now) noexcept {
  auto [calls, retries] = window_.totals(now);
  if (static_cast<double>(retries) >=
      ratio_ * static_cast<double>(calls) + static_cast<double>(floor_)) {
    return false;
  }
  window_.add(now, 0, 1);
  return true;
}

}  // namespace tern::detail
