#include "core.hpp"

#include "tern/microservice.hpp"
#include "tern/transport/client_connection.hpp"

#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

namespace tern::detail {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

// A task of the client's: it holds the core, so the core outlives it.
asio::awaitable<void> holding(std::shared_ptr<client_core>, asio::awaitable<void> task) {
  co_await std::move(task);
}

bool cancelled(const asio::cancellation_state& cs) {
  return cs.cancelled() != asio::cancellation_type::none;
}
}  // namespace

client_core::client_core(asio::io_context& io, client_options o)
    : options(std::move(o)),
      executor(io.get_executor()),
      endpoints(executor, options),
      outliers(options.ejection, endpoints.where()),
      breaker(options.breaker),
      budget(options.retry),
      connector_(tcp_connector(options)),
      lookups_(executor, "lookups of " + endpoints.where()),
      tasks_(executor, "client of " + endpoints.where()) {}

client_core::~client_core() = default;

template <class Task>
void client_core::spawn(task_group& group, Task task) {
  group.spawn(holding(shared_from_this(), std::move(task)));
}

void client_core::ensure_discovery() {
  if (!endpoints.discovers() || discovering_) return;
  discovering_ = true;
  spawn(lookups_, endpoints.discover());
}

asio::awaitable<endpoint_ptr> client_core::acquire(endpoint_ptr picked, const endpoint* avoid) {
  ensure_discovery();
  while (!endpoints.resolved()) {
    co_await endpoints.wait_resolved();
    if (cancelled(co_await asio::this_coro::cancellation_state)) {
      throw rpc_error(errc::cancelled, "cancelled while looking up " + endpoints.where());
    }
    ensure_discovery();  // close() stopped it meanwhile
  }
  std::optional<rpc_error> failure;
  const auto& list = endpoints.list();
  for (std::size_t attempt = 0; attempt <= list.size(); ++attempt) {
    if (attempt > 0 || !picked) {
      auto i = endpoints.pick(attempt == 0 ? avoid : nullptr);
      if (i == endpoint_set::none) break;
      picked = list[i];  // held across the connect (discovery may drop it meanwhile)
    }
    try {
      co_await connect(picked);
      co_return picked;
    } catch (const refused_while_backing_off&) {
      // backing off since it was picked: another, or the refusal below
    } catch (const rpc_error& e) {
      if (e.kind() == errc::cancelled) throw;
      failure = e;
    }
    picked.reset();
  }
  if (failure) throw *failure;
  if (list.empty()) throw endpoints.unavailable();  // nothing resolved: that counts
  throw refused_while_backing_off(endpoints.unavailable());
}

// The endpoint's connection, open. Concurrent callers share one attempt,
// which is the client's task, not theirs: a caller that gives up leaves
// it running for the others. During backoff after failures, callers fail
// at once.
asio::awaitable<void> client_core::connect(endpoint_ptr ep) {
  for (;;) {
    if (ep->open()) co_return;
    if (ep->removed)
      throw rpc_error(errc::connection_refused, ep->text + " left " + endpoints.where());
    if (!ep->connecting) {
      if (ep->backing_off()) throw refused_while_backing_off(endpoints.unavailable());
      start_attempt(ep);
      continue;
    }
    {
      ++ep->waiters;
      struct leave {  // also when this coroutine is cancelled while it waits
        endpoint& e;
        ~leave() { --e.waiters; }
      } l{*ep};
      co_await ep->connected.async_wait(nothrow);
    }
    // (Read, not awaited: an awaitable would throw operation_aborted.)
    if (cancelled(co_await asio::this_coro::cancellation_state)) {
      throw rpc_error(errc::cancelled, "cancelled while connecting to " + ep->text);
    }
    if (ep->open()) co_return;
    if (ep->last_error) throw *ep->last_error;
  }
}

void client_core::start_attempt(const endpoint_ptr& ep) {
  if (stopped_) throw rpc_error(errc::connection_closed, "client closed");
  ep->connecting = true;
  spawn(tasks_, attempt(ep));
}

asio::awaitable<void> client_core::attempt(endpoint_ptr ep) {
  // However the attempt ends, the waiters wake: they find the connection,
  // the failure, or make the next attempt.
  struct over {
    endpoint& e;
    ~over() {
      e.connecting = false;
      if (e.waiters > 0) e.connected.cancel();
    }
  } guard{*ep};
  std::optional<rpc_error> failure;
  try {
    auto conn = co_await connector_->connect(ep->address, ep->text, ep->host);
    if (stopped_) {  // the client went meanwhile
      conn->close("client destroyed");
      co_return;
    }
    // A peer gone silent (a cut link, a frozen process) is out at once.
    conn->on_silent([weak = weak_from_this(), e = std::weak_ptr<endpoint>(ep)] {
      auto self = weak.lock();
      auto live = e.lock();
      if (!self || !live || !self->outliers.enabled()) return;
      if (self->outliers.eject(*live, "it went silent", clock::now(), self->endpoints.list())) {
        self->start_probe(live);
      }
    });
    ep->conn = std::move(conn);
    ep->failures = 0;
    ep->last_error.reset();
    if (ep->removed)
      ep->conn->close_when_idle("endpoint removed");  // gone from the upstream meanwhile
    co_return;
  } catch (const rpc_error& e) {
    failure = e;
  } catch (const std::exception& e) {
    failure.emplace(errc::connection_refused, "cannot connect to " + ep->text + ": " + e.what());
  }
  if (stopped_) co_return;  // cancelled by shutdown(): says nothing of the endpoint
  ++ep->failures;
  auto backoff = options.backoff_initial * (1LL << std::min(ep->failures - 1, 16));
  ep->retry_at = clock::now() + std::min<std::chrono::milliseconds>(backoff, options.backoff_max);
  ep->last_error = *failure;
  spdlog::warn("{}", failure->what());
  if (endpoints.named(*ep)) endpoints.lookup_soon();
  outcome(*ep, true, clock::now());
}

void client_core::outcome(endpoint& ep, bool failed, clock::time_point now) {
  if (!outliers.outcome(ep, failed, now, endpoints.list())) return;
  for (const auto& e : endpoints.list()) {
    if (e.get() == &ep) start_probe(e);
  }
}

void client_core::start_probe(const endpoint_ptr& ep) {
  if (stopped_) return;
  spawn(tasks_, outliers.probe(ep, [this](const endpoint_ptr& e) { return ask_health(e); }));
}

asio::awaitable<bool> client_core::ask_health(const endpoint_ptr& ep) {
  static const pattern health(health_pattern);
  static constexpr char nil = '\xc0';
  try {
    co_await connect(ep);
    auto conn = ep->conn;
    auto ignore = [](const transport::value_view&) {};
    auto write = [](transport::packer& pk) { pk.pack_packed(std::string_view(&nil, 1)); };
    co_await conn->call(
        health.canonical(), health.packed(), {}, write, ignore,
        std::min<std::chrono::milliseconds>(options.timeout, std::chrono::seconds(1)));
    co_return true;
  } catch (const rpc_error&) {
    co_return false;  // still out; asked again at the next tick
  }
}

void client_core::admit(clock::time_point now) {
  if (breaker.admit(now)) return;
  ++stats.breaker_refused;
  throw rpc_error(errc::circuit_open,
                  "circuit breaker for " + endpoints.where() + " is open (next trial in " +
                      std::to_string(breaker.retry_after(now).count()) + " ms)");
}

void client_core::breaker_outcome(bool failed, clock::time_point now) {
  if (breaker.record(failed, now)) {
    ++stats.breaker_opened;
    spdlog::warn("{}: circuit breaker open for {} ms: calls fail at once", endpoints.where(),
                 options.breaker.open_time.count());
  }
}

void client_core::close() {
  ++closes;  // the calls it ends are not retried, and those waiting to be end now
  for (auto* t : backing_off) t->cancel();
  lookups_.cancel();
  discovering_ = false;
  endpoints.wake_waiters();
  for (const auto& ep : endpoints.list()) {
    if (ep->conn) ep->conn->close("client closed");
    ep->conn.reset();
  }
}

void client_core::shutdown() {
  stopped_ = true;
  close();
  tasks_.cancel();
}

}  // namespace tern::detail
