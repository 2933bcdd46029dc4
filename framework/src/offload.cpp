#include "tern/offload.hpp"

#include <asio/thread_pool.hpp>

#include <cstdlib>
#include <mutex>

namespace tern {

namespace {
unsigned requested_threads = 0;

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

void detail::post_to_workers(transport::unique_function<void()> job) {
  asio::post(workers(), std::move(job));
}

}  // namespace tern
