// Running blocking work (files, databases) off the event loop.
#pragma once

#include "tern/transport/unique_function.hpp"

#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/dispatch.hpp>
#include <asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>

namespace tern {

namespace detail {
/// Runs a job on the process-wide worker pool.
void post_to_workers(transport::unique_function<void()> job);
/// TERN_QUICK_LIMIT_US, read once (default 200; 0: quick paths never run
/// on the loop).
std::chrono::microseconds quick_limit_from_env();
/// Logs (rate-limited) that a quick path's run took `took`, over `limit`.
void warn_slow(std::chrono::steady_clock::duration took, std::chrono::microseconds limit);
}  // namespace detail

/// The worker pool right now: jobs waiting for a thread, and threads busy.
struct offload_state {
  std::size_t queued = 0;
  std::size_t busy = 0;
};
[[nodiscard]] offload_state offload_stats() noexcept;

/// Sets the worker pool's size; call before the first offload() (default:
/// the TERN_WORKERS environment variable, else 4).
void set_worker_threads(unsigned n);

/// Runs `f` on a worker thread and resumes the calling coroutine on its own
/// executor with f's result (or rethrows f's exception):
///
/// ```
/// app.message_pattern({{"cmd", "get_user"}}, [&](std::uint64_t id) -> asio::awaitable<user> {
///   co_return co_await tern::offload([&] { return db.find(id); });
/// });
/// ```
///
/// This is the way to do blocking I/O in a handler: the event loop keeps
/// serving other requests meanwhile. `f` runs concurrently with the loop,
/// so what it touches must be safe to use from another thread.
template <class F>
asio::awaitable<std::invoke_result_t<F&>> offload(F f) {
  using R = std::invoke_result_t<F&>;
  std::optional<std::conditional_t<std::is_void_v<R>, int, R>> result;
  std::exception_ptr error;
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&](auto handler) {
        detail::post_to_workers([&, h = std::move(handler)]() mutable {
          try {
            if constexpr (std::is_void_v<R>) {
              f();
              result.emplace(0);
            } else {
              result.emplace(f());
            }
          } catch (...) {
            error = std::current_exception();
          }
          // To the caller's executor (the handler's own): queued there, since
          // this is another thread, without the work-tracking wrapper that
          // asio::post(executor, h) adds.
          asio::dispatch(std::move(h));
        });
      },
      asio::use_awaitable);
  if (error) std::rethrow_exception(error);
  if constexpr (!std::is_void_v<R>) co_return std::move(*result);
}

/// Blocking work that is usually quick, such as a read of a local SQLite
/// file (microseconds): it runs on the event loop itself while it stays
/// quick, which saves the hand-off to a worker and back (a thread woken on
/// each side: on the demo, half a service's CPU a call), and on the worker
/// pool while it does not. One per call site:
///
/// ```
/// auto find = std::make_shared<tern::quick_path>();
/// app.message_pattern({{"cmd", "get_user"}}, [&db, find](std::int64_t id) -> asio::awaitable<user>
/// {
///   co_return co_await find->run([&] { return db.try_find(id); },  // nullopt: would wait
///                                [&] { return db.find(id); });
/// });
/// ```
///
/// `try_here()` runs on the loop and returns std::nullopt when it would
/// have to wait (its lock is taken, say by a write on a worker); `f()` is
/// the blocking form, run on the pool. Runs go to the pool until `proof`
/// runs in a row (on either side) took at most `limit`; one run over the
/// limit sends the next `proof` to the pool again. So a path that turns
/// slow costs the loop one slow run, not every run; what it cannot foresee
/// is one slow run of a path that has been quick, so keep it to work whose
/// cost is bounded (a key lookup, a page with a limit). `limit` defaults to
/// TERN_QUICK_LIMIT_US (200 µs; 0 keeps every run on the pool).
///
/// Thread safety: run() may be called from several threads at once.
class quick_path {
 public:
  explicit quick_path(std::chrono::microseconds limit = detail::quick_limit_from_env(),
                      unsigned proof = 8) noexcept
      : limit_(limit), proof_(proof) {}

  template <class Try, class F>
  asio::awaitable<std::invoke_result_t<F&>> run(Try try_here, F f) {
    using R = std::invoke_result_t<F&>;
    static_assert(std::is_same_v<std::invoke_result_t<Try&>, std::optional<R>>,
                  "try_here() returns std::optional of what f() returns");
    if (limit_.count() > 0 && streak_.load(std::memory_order_relaxed) >= proof_) {
      auto start = std::chrono::steady_clock::now();
      std::optional<R> got;
      try {
        got = try_here();
      } catch (...) {
        note(start);
        here_.fetch_add(1, std::memory_order_relaxed);
        throw;
      }
      if (got) {
        note(start);
        here_.fetch_add(1, std::memory_order_relaxed);
        co_return std::move(*got);
      }
    }
    pooled_.fetch_add(1, std::memory_order_relaxed);
    co_return co_await offload([this, &f]() -> R {
      struct timed {
        quick_path* self;
        std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
        ~timed() { self->note(start); }
      } t{this};
      return f();
    });
  }

  /// Runs so far on the loop (counting those that threw), and on the pool.
  [[nodiscard]] std::uint64_t ran_here() const noexcept {
    return here_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::uint64_t ran_on_pool() const noexcept {
    return pooled_.load(std::memory_order_relaxed);
  }

 private:
  void note(std::chrono::steady_clock::time_point start) noexcept {
    auto took = std::chrono::steady_clock::now() - start;
    if (took > limit_) {
      if (streak_.exchange(0, std::memory_order_relaxed) >= proof_) detail::warn_slow(took, limit_);
    } else if (streak_.load(std::memory_order_relaxed) < proof_) {
      streak_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::chrono::microseconds limit_;
  unsigned proof_;
  std::atomic<unsigned> streak_{0};
  std::atomic<std::uint64_t> here_{0}, pooled_{0};
};

}  // namespace tern
