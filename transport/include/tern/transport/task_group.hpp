// Coroutines an object starts and must see finished: tracked, cancelled
// together, joined with a bound, and their failures logged in one place.
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

namespace tern::transport {

/// A small task group (after Beast's): spawn() starts a coroutine bound to
/// the group's cancellation; cancel() sends every running one a terminal
/// cancellation; join() waits until all have finished (or a deadline). An
/// exception that escapes a task is logged with the group's name, never
/// rethrown into the event loop.
///
/// A task that borrows its owner (`this`) must stop touching it once the
/// group is gone: it keeps alive() on its frame and checks it after each
/// co_await (the destructor cancels the tasks, which resume later).
///
/// Thread safety: none; use it from its executor's (single) thread.
class task_group {
 public:
  task_group(asio::any_io_executor ex, std::string name);
  ~task_group();
  task_group(const task_group&) = delete;
  task_group& operator=(const task_group&) = delete;

  /// Starts `task` on the group's executor.
  void spawn(asio::awaitable<void> task);
  /// Requests every running task to stop (asio::cancellation_type::terminal).
  void cancel();
  /// Completes once no task runs (true), or when `deadline` passes (false).
  asio::awaitable<bool> join(std::chrono::steady_clock::time_point deadline);
  /// Tasks running now.
  [[nodiscard]] std::size_t running() const noexcept;
  /// True until the group is destroyed.
  [[nodiscard]] std::shared_ptr<const bool> alive() const noexcept { return alive_; }

 private:
  struct state;
  asio::any_io_executor executor_;
  std::shared_ptr<state> state_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tern::transport
