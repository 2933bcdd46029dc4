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

struct task_group::task {
  asio::cancellation_signal signal;
  bool cancelled = false;
  bool gone = false;  // its frame was destroyed unrun (see entry)
};

struct task_group::state {
  explicit state(asio::any_io_executor ex, std::string n) : name(std::move(n)), changed(ex) {}
  std::string name;
  std::list<task> tasks;  // one per running task; nodes stay put
  std::size_t running = 0;
  asio::steady_timer changed;  // cancelled when a task ends
  unique_function<void()> idle;
};

namespace {
// A task's place in its group, held by its completion handler. The task
// ends when the handler runs. A handler destroyed unrun means the event
// loop is being destroyed with the task's frame: the entry then only
// stops being cancelled (its operations are gone), and nothing runs.
class entry {
 public:
  using state = task_group::state;
  entry(std::shared_ptr<state> st, std::list<task_group::task>::iterator it)
      : st_(std::move(st)), it_(it) {}
  entry(entry&& o) noexcept : st_(std::move(o.st_)), it_(o.it_) {}
  entry& operator=(entry&&) = delete;
  ~entry() {
    if (!st_) return;
    it_->gone = true;
    --st_->running;
  }

  void ended(std::exception_ptr e) {
    auto st = std::move(st_);
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::system_error& ex) {
        if (!it_->cancelled || ex.code() != asio::error::operation_aborted) {
          spdlog::error("{}: task failed: {}", st->name, clip(ex.what()));
        }
      } catch (const std::exception& ex) {
        spdlog::error("{}: task failed: {}", st->name, clip(ex.what()));
      } catch (...) {
        spdlog::error("{}: task failed", st->name);
      }
    }
    st->tasks.erase(it_);
    --st->running;
    st->changed.cancel();
    if (st->running == 0 && st->idle) st->idle();
  }

 private:
  std::shared_ptr<state> st_;  // null once moved from or ended
  std::list<task_group::task>::iterator it_;
};
}  // namespace

task_group::task_group(asio::any_io_executor ex, std::string name)
    : executor_(ex), state_(std::make_shared<state>(ex, std::move(name))) {}

task_group::~task_group() = default;

task_group::task_ref task_group::spawn(asio::awaitable<void> task) {
  auto st = state_;
  auto it = st->tasks.emplace(st->tasks.end());
  ++st->running;
  auto& t = *it;
  asio::co_spawn(
      executor_, std::move(task),
      asio::bind_cancellation_slot(
          t.signal.slot(), [e = entry(st, it)](std::exception_ptr ex) mutable { e.ended(ex); }));
  return task_ref(&t);
}

void task_group::task_ref::cancel() {
  task_->cancelled = true;
  task_->signal.emit(asio::cancellation_type::terminal);
}

void task_group::cancel() {
  // A task may end (and leave the list) as it is cancelled: step first.
  for (auto it = state_->tasks.begin(); it != state_->tasks.end();) {
    auto& t = *it++;
    if (t.gone) continue;
    t.cancelled = true;
    t.signal.emit(asio::cancellation_type::terminal);
  }
}

asio::awaitable<bool> task_group::join(std::chrono::steady_clock::time_point deadline) {
  auto st = state_;
  while (st->running > 0 && std::chrono::steady_clock::now() < deadline) {
    st->changed.expires_at(deadline);
    co_await st->changed.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
  co_return st->running == 0;
}

void task_group::when_idle(unique_function<void()> f) {
  state_->idle = std::move(f);
}

std::size_t task_group::running() const noexcept {
  return state_->running;
}

}  // namespace tern::transport
