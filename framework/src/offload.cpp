#include "tern/offload.hpp"

#include "tern/log_limit.hpp"

#include <spdlog/spdlog.h>
#include <asio/thread_pool.hpp>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace tern {

namespace {
unsigned requested_threads = 0;
std::atomic<std::size_t> queued{0}, busy{0};

asio::thread_pool& workers() {
  static asio::thread_pool pool([] {
    if (requested_threads > 0) return requested_threads;
    if (const char* env = std::getenv("TERN_WORKERS")) {
      int n = std::atoi(env);
      if (n > 0) return static_cast<unsigned>(n);
    }
    return 4u;
  }());
  return pool;
}
}  // namespace

void set_worker_threads(unsigned n) {
  requested_threads = n;
}

offload_state offload_stats() noexcept {
  return {queued.load(std::memory_order_relaxed), busy.load(std::memory_order_relaxed)};
}

void detail::post_to_workers(transport::unique_function<void()> job) {
  queued.fetch_add(1, std::memory_order_relaxed);
  asio::post(workers(), [job = std::move(job)]() mutable {
    queued.fetch_sub(1, std::memory_order_relaxed);
    busy.fetch_add(1, std::memory_order_relaxed);
    struct done {
      ~done() { busy.fetch_sub(1, std::memory_order_relaxed); }
    } guard;
    job();
  });
}

std::chrono::microseconds detail::quick_limit_from_env() {
  static const std::chrono::microseconds limit = [] {
    if (const char* env = std::getenv("TERN_QUICK_LIMIT_US")) {
      char* end = nullptr;
      long long n = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && n >= 0) return std::chrono::microseconds(n);
      spdlog::warn("TERN_QUICK_LIMIT_US={} is not a number of microseconds; using 200", clip(env));
    }
    return std::chrono::microseconds(200);
  }();
  return limit;
}

void detail::warn_slow(const std::string& name, std::chrono::steady_clock::duration took,
                       std::chrono::microseconds limit) {
  static std::mutex m;
  static log_limiter limiter(std::chrono::seconds(10));
  std::size_t held = 0;
  {
    std::lock_guard lock(m);
    if (!limiter.allow(held)) return;
  }
  spdlog::info(
      "quick path {}: a run on the loop took {} us, over its {} us limit; its next runs go to "
      "the worker pool until they are quick again{}",
      clip(name), std::chrono::duration_cast<std::chrono::microseconds>(took).count(),
      limit.count(), held_back(held));
}

}  // namespace tern
