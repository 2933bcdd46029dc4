#include "tern/offload.hpp"

#include <asio/thread_pool.hpp>

#include <atomic>
#include <cstdlib>

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

}  // namespace tern
