#include "tern/transport/task_group.hpp"

#include "tern/transport/log_limit.hpp"

#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/error.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <list>

namespace tern::transport {

struct task_group::state {
  explicit state(asio::any_io_executor ex, std::string n) : name(std::move(n)), changed(ex) {}
  std::string name;
  struct task {
    asio::cancellation_signal signal;
    bool cancelled = false;
  };
  std::list<task> tasks;       // one per running task; nodes stay put
  asio::steady_timer changed;  // cancelled when a task ends
  unique_function<void()> idle;
};

task_group::task_group(asio::any_io_executor ex, std::string name)
    : executor_(ex), state_(std::make_shared<state>(ex, std::move(name))) {}

task_group::~task_group() {
  *alive_ = false;
}

void task_group::spawn(asio::awaitable<void> task) {
  auto st = state_;
  auto it = st->tasks.emplace(st->tasks.end());
  asio::co_spawn(executor_, std::move(task),
                 asio::bind_cancellation_slot(it->signal.slot(), [st, it](std::exception_ptr e) {
                   if (e) {
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::system_error& ex) {
                       if (!it->cancelled || ex.code() != asio::error::operation_aborted) {
                         spdlog::error("{}: task failed: {}", st->name, clip(ex.what()));
                       }
                     } catch (const std::exception& ex) {
                       spdlog::error("{}: task failed: {}", st->name, clip(ex.what()));
                     } catch (...) {
                       spdlog::error("{}: task failed", st->name);
                     }
                   }
                   st->tasks.erase(it);
                   st->changed.cancel();
                   if (st->tasks.empty() && st->idle) st->idle();
                 }));
}

void task_group::cancel() {
  // A task may end (and leave the list) as it is cancelled: step first.
  for (auto it = state_->tasks.begin(); it != state_->tasks.end();) {
    auto& t = *it++;
    t.cancelled = true;
    t.signal.emit(asio::cancellation_type::terminal);
  }
}

asio::awaitable<bool> task_group::join(std::chrono::steady_clock::time_point deadline) {
  auto st = state_;
  while (!st->tasks.empty() && std::chrono::steady_clock::now() < deadline) {
    st->changed.expires_at(deadline);
    co_await st->changed.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_return st->tasks.empty();
}

void task_group::when_idle(unique_function<void()> f) {
  state_->idle = std::move(f);
}

std::size_t task_group::running() const noexcept {
  return state_->tasks.size();
}

}  // namespace tern::transport
