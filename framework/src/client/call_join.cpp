#include "call_join.hpp"

#include "tern/transport/client_connection.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

namespace tern::detail {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}

/// The calls of one run(): how many are still going, who to wake, and the
/// attempts that had to suspend (connect first, back off before a retry).
struct call_join {
  std::size_t remaining = 0;
  transport::unique_function<void()> resume;
  std::optional<task_group> tasks;  // made for the first attempt that needs one
};

clock::time_point deadline_of(const call_options& o, const client_options& defaults,
                              clock::time_point now) {
  auto timeout = o.timeout.count() > 0 ? o.timeout : defaults.timeout;
  return now + timeout < o.deadline ? now + timeout : o.deadline;
}

rpc_error past_deadline(const pattern& p) {
  return {errc::deadline_exceeded, p.canonical() + " not sent: its deadline has passed"};
}

namespace {

void ended(call_slot& sl);

// Wakes run() once every call has ended and every task has finished. With
// tasks, from a handler of its own: a task's end may be what calls this.
void maybe_resume(call_join& all, const asio::any_io_executor& ex) {
  if (all.remaining > 0 || !all.resume) return;
  if (!all.tasks) {
    auto resume = std::move(all.resume);  // the frame holding `all` ends inside
    resume();
    return;
  }
  if (all.tasks->running() > 0) return;
  asio::post(ex, std::move(all.resume));
}

void finish(call_slot& sl, clock::time_point now) {
  sl.ended = now;
  auto& core = *sl.owner;
  core.budget.count_call(now);
  if (sl.breaker_vote >= 0) core.breaker_outcome(sl.breaker_vote == 1, now);
  --sl.all->remaining;
  maybe_resume(*sl.all, core.executor);
}

void send(call_slot& sl, endpoint_ptr ep) {
  auto now = clock::now();
  if (sl.deadline <= now) throw past_deadline(*sl.p);  // spent connecting or backing off
  sl.ep = std::move(ep);
  sl.conn = sl.ep->conn;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(sl.deadline - now);
  auto timeout = std::max(left, std::chrono::milliseconds(1));
  sl.state.done = false;
  sl.state.error.reset();
  sl.state.label = sl.p->canonical();
  sl.state.sink = sl.sink;
  sl.state.waiter = [&sl] { ended(sl); };
  try {
    if (sl.writer) {
      sl.conn->start_call(sl.state, sl.p->packed(), sl.meta, *sl.writer, timeout);
    } else {
      auto write = [&sl](transport::packer& pk) { pk.pack_packed(sl.packed); };
      sl.conn->start_call(sl.state, sl.p->packed(), sl.meta, write, timeout);
    }
  } catch (...) {  // not started: nothing to cancel or wait for
    sl.conn.reset();
    sl.state.waiter = {};
    throw;
  }
}

// Begins an attempt without suspending if it can: the breaker lets it
// through and the picked endpoint's connection is open and not congested.
// Else returns false (an attempt task goes on). Throws rpc_error.
bool try_send(call_slot& sl) {
  auto& core = *sl.owner;
  // The breaker decides once per call: a retry of an admitted call (a
  // half-open trial among them) goes on, within the budget.
  if (++sl.tries == 1) {
    auto now = clock::now();
    core.admit(now);
    sl.trial = core.breaker.current(now) == circuit_breaker::state::half_open;
  }
  sl.picked.reset();
  if (!core.endpoints.resolved()) return false;
  auto i = core.endpoints.pick(sl.retries > 0 ? sl.ep.get() : nullptr);
  if (i == endpoint_set::none) return false;
  const auto& ep = core.endpoints.list()[i];
  if (!ep->open() || ep->conn->congested()) {
    sl.picked = ep;
    return false;
  }
  send(sl, ep);
  return true;
}

asio::awaitable<endpoint_ptr> connect_for(call_slot& sl) {
  auto avoid = sl.retries > 0 ? sl.ep.get() : nullptr;
  auto ep = co_await sl.owner->acquire(std::move(sl.picked), avoid);
  auto conn = ep->conn;
  if (conn->congested()) co_await conn->wait_writable();
  if (!conn->is_open()) {
    throw rpc_error(errc::connection_closed, "connection to " + ep->text + " lost while waiting");
  }
  co_return ep;
}

bool may_retry(call_slot& sl, const rpc_error& e, bool sent, clock::time_point now) {
  auto& core = *sl.owner;
  if (sl.cancelled || sl.closes != core.closes || sl.tries >= core.options.retry.max_attempts) {
    return false;
  }
  // A call that was sent runs again only if it may; one that never left
  // (no endpoint would connect) may always be sent.
  bool retryable = sent ? sl.idempotent && counts_as_failure(e) && e.kind() != errc::timeout &&
                              e.kind() != errc::deadline_exceeded
                        : e.kind() == errc::connection_refused;
  if (!retryable || now >= sl.deadline) return false;
  if (!core.budget.take(now)) {
    ++core.stats.retries_refused;
    return false;
  }
  return true;
}

void not_sent(call_slot& sl, const rpc_error& e, bool backing_off = false);

// Why an attempt task stopped before sending: its caller gave up, or the
// client was closed.
void check_still_wanted(const call_slot& sl) {
  if (sl.cancelled) throw rpc_error(errc::cancelled, sl.p->canonical() + " cancelled");
  if (sl.closes != sl.owner->closes) {
    throw rpc_error(errc::connection_closed, sl.p->canonical() + ": client closed");
  }
}

// An attempt that must suspend: after `wait` (a retry's backoff; none for
// a first attempt that try_send() could not start at once), connecting
// first if need be. run() joins it; it borrows the slot and the client.
asio::awaitable<void> attempt(call_slot& sl, std::chrono::milliseconds wait) {
  auto& core = *sl.owner;
  const bool first = wait.count() < 0;
  std::optional<rpc_error> failure;
  bool backing_off = false;
  try {
    if (!first) {
      asio::steady_timer t(core.executor, wait);
      sl.backoff = &t;
      core.backing_off.insert(&t);
      co_await t.async_wait(nothrow);
      core.backing_off.erase(&t);
      sl.backoff = nullptr;
    }
    check_still_wanted(sl);
    if (!first && try_send(sl)) co_return;
    auto ep = co_await connect_for(sl);
    check_still_wanted(sl);
    send(sl, std::move(ep));
    co_return;
  } catch (const refused_while_backing_off& e) {
    failure = e;
    backing_off = true;
  } catch (const rpc_error& e) {
    failure = e;
  } catch (const std::exception& e) {  // the task's cancellation, say
    failure = sl.cancelled
                  ? rpc_error(errc::cancelled, sl.p->canonical() + " cancelled")
                  : rpc_error(errc::connection_refused, sl.p->canonical() + ": " + e.what());
  }
  // Not from inside this coroutine: finishing the last call resumes the awaiting one.
  asio::post(core.executor,
             [&sl, f = std::move(*failure), backing_off] { not_sent(sl, f, backing_off); });
}

void start_attempt(call_slot& sl, std::chrono::milliseconds wait) {
  auto& all = *sl.all;
  if (!all.tasks) {
    auto& core = *sl.owner;
    all.tasks.emplace(core.executor, "calls to " + core.endpoints.where());
    all.tasks->when_idle([&all, ex = core.executor] { maybe_resume(all, ex); });
  }
  all.tasks->spawn(attempt(sl, wait));
}

void retry_later(call_slot& sl, clock::time_point now) {
  auto& core = *sl.owner;
  ++sl.retries;
  ++core.stats.retries;
  const auto& o = core.options.retry;
  auto cap = std::min<std::chrono::milliseconds>(
      o.max_backoff, o.base_backoff * (1LL << std::min(sl.tries - 1, 16)));
  auto wait =
      std::chrono::milliseconds(cap.count() > 0 ? core.endpoints.random() % (cap.count() + 1) : 0);
  wait = std::min(wait, std::chrono::floor<std::chrono::milliseconds>(sl.deadline - now));
  start_attempt(sl, std::max(wait, std::chrono::milliseconds(0)));
}

void not_sent(call_slot& sl, const rpc_error& e, bool backing_off) {
  auto now = clock::now();
  // A call refused while its endpoints back off says nothing new (the
  // calls that waited on the failed connect counted it), unless it is a
  // half-open breaker's trial, which must report.
  if (e.kind() != errc::circuit_open && e.kind() != errc::cancelled &&
      e.kind() != errc::deadline_exceeded && (!backing_off || sl.trial)) {
    sl.breaker_vote = counts_as_failure(e) ? 1 : 0;
  }
  if (may_retry(sl, e, false, now)) {
    retry_later(sl, now);
    return;
  }
  sl.error = e;
  finish(sl, now);
}

void ended(call_slot& sl) {
  auto now = clock::now();
  auto& core = *sl.owner;
  std::optional<rpc_error> error = std::move(sl.state.error);
  bool failed = error && counts_as_failure(*error);
  if (error &&
      error->kind() == errc::cancelled) {  // the caller gave up: says nothing of the service
    sl.conn.reset();
    sl.error = std::move(error);
    finish(sl, now);
    return;
  }
  if (sl.ep) core.outcome(*sl.ep, failed, now);
  // The breaker hears the call's last attempt. The calls a lost connection
  // fails all at once are one failure: one dropped connection with many
  // calls in flight says no more about the service than one call would.
  sl.breaker_vote = failed ? 1 : 0;
  if (failed && sl.ep &&
      (error->kind() == errc::connection_closed || error->kind() == errc::protocol_error)) {
    if (sl.ep->lost == sl.conn.get()) sl.breaker_vote = -1;
    sl.ep->lost = sl.conn.get();
  }
  sl.conn.reset();
  if (error && may_retry(sl, *error, true, now)) {
    retry_later(sl, now);
    return;
  }
  sl.error = std::move(error);
  finish(sl, now);
}

}  // namespace

asio::awaitable<void> run(std::span<call_slot> slots) {
  call_join all;
  all.remaining = slots.size();
  struct forget {  // if this frame goes away early, the calls must not reach it
    std::span<call_slot> slots;
    ~forget() {
      for (auto& sl : slots) {
        if (sl.conn) sl.conn->abandon(sl.state);
        if (sl.backoff) {
          sl.owner->backing_off.erase(sl.backoff);
          sl.backoff->cancel();
        }
      }
    }
  } guard{slots};
  // Nothing here suspends before the join below, whose cancellation
  // handler reaches every call: a call that must connect first does so in
  // a task of the join's (attempt() without the wait).
  for (auto& sl : slots) {
    sl.all = &all;
    auto& core = *sl.owner;
    sl.closes = core.closes;
    try {
      if (!try_send(sl)) start_attempt(sl, std::chrono::milliseconds(-1));
    } catch (const rpc_error& e) {
      not_sent(sl, e);
    }
  }
  if (all.remaining == 0 && (!all.tasks || all.tasks->running() == 0)) co_return;
  // Nothing above suspends, so no cancellation can have reached this
  // coroutine yet and the co_await below cannot throw before it waits:
  // the frame, whose slots the attempts borrow, goes only after the join.
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&](auto handler) {
        auto cancel = asio::get_associated_cancellation_slot(handler);
        if (cancel.is_connected()) {
          cancel.assign([&](asio::cancellation_type) {
            for (auto& sl : slots) {
              sl.cancelled = true;
              if (sl.conn) sl.conn->cancel(sl.state);
              if (sl.backoff) sl.backoff->cancel();
            }
            if (all.tasks) all.tasks->cancel();
          });
        }
        all.resume = [h = std::move(handler), cancel]() mutable {
          if (cancel.is_connected()) cancel.clear();
          auto resume = std::move(h);  // off the frame, which the coroutine ends
          std::move(resume)();
        };
      },
      asio::use_awaitable);
}

}  // namespace tern::detail
