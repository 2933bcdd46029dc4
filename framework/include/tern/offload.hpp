// Running blocking work (files, databases) off the event loop.
#pragma once

#include "tern/transport/unique_function.hpp"

#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/dispatch.hpp>
#include <asio/use_awaitable.hpp>

#include <exception>
#include <optional>
#include <type_traits>

namespace tern {

namespace detail {
/// Runs a job on the process-wide worker pool.
void post_to_workers(transport::unique_function<void()> job);
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

}  // namespace tern
