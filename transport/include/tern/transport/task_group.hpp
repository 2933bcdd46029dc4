// Coroutines an object starts and must see finished: tracked, cancelled
// together, joined with a bound, and their failures logged in one place.
#pragma once

#include <asio/any_io_executor.hpp>
#include "tern/transport/unique_function.hpp"

#include <asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace tern::transport {

/// A small task group (after Beast's): spawn() starts a coroutine bound to
/// the group's cancellation; cancel() sends every running one a terminal
/// cancellation; join() waits until all have finished (or a deadline), and
/// when_idle() is told each time the last one does. An exception that
/// escapes a task is logged with the group's name, never rethrown into the
/// event loop; a task that ends with operation_aborted after cancel() has
/// simply stopped.
///
/// The destructor cancels nothing: the owner cancels and joins first, or
/// its tasks hold it (so it goes only once none runs). Emitting to tasks
/// whose frames an event loop's destruction is tearing down would reach
/// freed memory. There is no third way: a task never checks whether its
/// owner still exists.
///
/// Thread safety: none; use it from its executor's (single) thread.
class task_group {
 public:
  task_group(asio::any_io_executor ex, std::string name);
  ~task_group();
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  struct state;
  struct task;
  /// One running task, to cancel it alone (as cancel() does all): valid
  /// until the task ends.
  class task_ref {
   public:
    task_ref() = default;
    void cancel();

   private:
    friend class task_group;
    explicit task_ref(task* t) : task_(t) {}
    task* task_ = nullptr;
  };

  /// Starts `task` on the group's executor.
  task_ref spawn(asio::awaitable<void> task);
  /// Requests every running task to stop (asio::cancellation_type::terminal).
  void cancel();
  /// Completes once no task runs (true), or when `deadline` passes (false).
  asio::awaitable<bool> join(std::chrono::steady_clock::time_point deadline);
  /// Called (from the ending task's completion) each time the last
  /// running task ends.
  void when_idle(unique_function<void()> f);
  /// Tasks running now.
  [[nodiscard]] std::size_t running() const noexcept;

 private:
  asio::any_io_executor executor_;
  std::shared_ptr<state> state_;
};

}  // namespace tern::transport
