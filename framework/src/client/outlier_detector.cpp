#include "outlier_detector.hpp"

#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>

namespace tern::detail {

bool outlier_detector::outcome(endpoint& ep, bool failed, clock::time_point now,
                               std::span<const endpoint_ptr> all) {
  auto& s = ep.outlier;
  if (!failed) {
    s.consecutive_failures = 0;
    if (s.times_ejected > 0 && now > s.ejected_until + o_.max_time) s.times_ejected = 0;
    return false;
  }
  if (!enabled() || ++s.consecutive_failures < o_.consecutive_failures) return false;
  return eject(ep, std::to_string(o_.consecutive_failures) + " failures in a row", now, all);
}

bool outlier_detector::eject(endpoint& ep, const std::string& why, clock::time_point now,
                             std::span<const endpoint_ptr> all) {
  if (ep.ejected() || ep.removed) return false;
  std::size_t out = 0;
  for (const auto& e : all) out += e->ejected() ? 1 : 0;
  const std::size_t n = all.size();
  std::size_t may =
      n < 2 ? 0
            : std::max<std::size_t>(
                  1, n * static_cast<std::size_t>(std::max(0, o_.max_ejected_percent)) / 100);
  if (out >= may) return false;
  auto& s = ep.outlier;
  ++s.times_ejected;
  auto length = std::min<std::chrono::milliseconds>(o_.base_time * s.times_ejected, o_.max_time);
  s.ejected_until = now + length;
  s.consecutive_failures = 0;
  ++ejections_;
  spdlog::warn("{}: endpoint {} ejected for {} ms after {}", where_, ep.text, length.count(), why);
  return !s.probing;
}

asio::awaitable<void> outlier_detector::probe(endpoint_ptr ep, asker ask) {
  constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
  ep->outlier.probing = true;
  struct done {
    endpoint& e;
    ~done() { e.outlier.probing = false; }
  } guard{*ep};
  asio::steady_timer tick(co_await asio::this_coro::executor);
  while (!ep->removed && ep->ejected()) {
    tick.expires_after(
        std::min<clock::duration>(o_.probe_interval, ep->outlier.ejected_until - clock::now()));
    co_await tick.async_wait(nothrow);
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return;
    if (ep->removed || !ep->ejected()) co_return;
    if (co_await ask(ep)) {
      ep->outlier.ejected_until = {};
      spdlog::info("{}: endpoint {} answers {}: back in", where_, ep->text, "tern.health");
      co_return;
    }
  }
}

}  // namespace tern::detail
