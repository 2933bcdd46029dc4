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
#include <string>
#include <type_traits>
#include <utility>

namespace tern {

namespace detail {
/// Runs a job on the process-wide worker pool.
void post_to_workers(transport::unique_function<void()> job);
/// TERN_QUICK_LIMIT_US, read once (default 200; 0: quick paths never run
/// on the loop).
std::chrono::microseconds quick_limit_from_env();
/// Logs (rate-limited) that quick path `name`'s run on the loop took
/// `took`, over `limit`.
void warn_slow(const std::string& name, std::chrono::steady_clock::duration took,
               std::chrono::microseconds limit);
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
/// auto find = std::make_shared<tern::quick_path>("get_user");
/// app.message_pattern({{"cmd", "get_user"}}, [&db, find](std::int64_t id) -> asio::awaitable<user>
/// {
///   co_return co_await find->run([&] { return db.try_find(id); },  // nullopt: would wait
///                                [&] { return db.find(id); });
/// });
/// ```
///
/// `try_here()` runs on the loop and returns std::nullopt, having done
/// nothing, when it would have to wait (its lock is taken, say by a write
/// on a worker); `f()` is the blocking form, run on the pool. Runs go to
/// the pool until `proof` of them in a row took at most `limit` there;
/// then they run on the loop. A run on the loop over the limit sends the
/// next ones back to the pool (logged at info, naming the path, at most
/// once in 10 s), and doubles the proof asked before the loop again (up to
/// 128 times `proof`), so a path that flaps costs the loop ever fewer slow
/// runs; each 1024 quick runs on the loop in a row halve it again, so a
/// rare slow run (the thread preempted mid-run counts too: the limit is on
/// wall time) does not keep a path on the pool for good. What it cannot foresee is one slow run of
/// a path that has been quick, so keep it to work whose cost is bounded (a key lookup, a page of
/// bounded depth). A run on the pool after `try_here()` declined is not
/// timed (its wait for the lock is not the work's cost). `limit` defaults
/// to TERN_QUICK_LIMIT_US (200 µs; 0 keeps every run on the pool).
///
/// Errors: what `try_here()` or `f()` throws reaches the awaiting caller.
/// A run is not cancelled with its caller: on the loop it is over before
/// the caller could be, and on the pool it finishes, as with offload().
///
/// Thread safety: run() may be called from several threads at once.
class quick_path final {
 public:
  explicit quick_path(std::string name,
                      std::chrono::microseconds limit = detail::quick_limit_from_env(),
                      unsigned proof = 8)
      : name_(std::move(name)),
        limit_(limit),
        base_proof_(proof > 0 ? proof : 1),
        proof_(base_proof_) {}

  template <class Try, class F>
  asio::awaitable<std::invoke_result_t<F&>> run(Try try_here, F f) {
    using R = std::invoke_result_t<F&>;
    static_assert(std::is_same_v<std::invoke_result_t<Try&>, std::optional<R>>,
                  "try_here() returns std::optional of what f() returns");
    bool timed = limit_.count() > 0;
    if (timed &&
        streak_.load(std::memory_order_relaxed) >= proof_.load(std::memory_order_relaxed)) {
      auto start = std::chrono::steady_clock::now();
      std::optional<R> got;
      try {
        got = try_here();
      } catch (...) {
        note(start, true);
        here_.fetch_add(1, std::memory_order_relaxed);
        throw;
      }
      if (got) {
        note(start, true);
        here_.fetch_add(1, std::memory_order_relaxed);
        co_return std::move(*got);
      }
      timed = false;  // declined: it would have waited
    }
    pooled_.fetch_add(1, std::memory_order_relaxed);
    co_return co_await offload([this, &f, timed]() -> R {
      struct timer {
        quick_path* self;
        bool on;
        std::chrono::steady_clock::time_point start =
            on ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        ~timer() {
          if (on) self->note(start, false);
        }
      } t{this, timed};
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
  void note(std::chrono::steady_clock::time_point start, bool here) noexcept {
    auto took = std::chrono::steady_clock::now() - start;
    if (took > limit_) {
      streak_.store(0, std::memory_order_relaxed);
      if (here) {
        calm_.store(0, std::memory_order_relaxed);
        auto p = proof_.load(std::memory_order_relaxed);
        if (p < base_proof_ * 128) proof_.store(p * 2, std::memory_order_relaxed);
        detail::warn_slow(name_, took, limit_);
      }
      return;
    }
    auto p = proof_.load(std::memory_order_relaxed);
    if (here) {
      if (p > base_proof_ && calm_.fetch_add(1, std::memory_order_relaxed) + 1 >= calm_runs) {
        calm_.store(0, std::memory_order_relaxed);
        proof_.store(p / 2, std::memory_order_relaxed);
      }
    } else if (streak_.load(std::memory_order_relaxed) < p) {
      streak_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  static constexpr unsigned calm_runs = 1024;

  std::string name_;
  std::chrono::microseconds limit_;
  unsigned base_proof_;
  std::atomic<unsigned> proof_;
  std::atomic<unsigned> streak_{0};
  std::atomic<unsigned> calm_{0};  ///< quick runs on the loop since the proof last moved
  std::atomic<std::uint64_t> here_{0}, pooled_{0};
};

}  // namespace tern
