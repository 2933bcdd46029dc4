#include "tern/client_proxy.hpp"

#include "breaker.hpp"
#include "dns.hpp"
#include "tern/endpoint.hpp"
#include "tern/microservice.hpp"
#include "tern/transport/client_connection.hpp"
#include "tern/transport/msgpack_codec.hpp"

#include <spdlog/spdlog.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <unordered_set>

namespace tern {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
using clock = std::chrono::steady_clock;

// One entry of client_options::endpoints: "host:port", "[v6]:port".
struct source {
  std::string host;
  std::uint16_t port = 0;
  bool literal = false;  // an address: no lookup
};

source parse_source(std::string_view text) {
  auto e = parse_endpoint(text);
  bool literal = detail::is_address_literal(e.host);
  return {std::move(e.host), e.port, literal};
}

std::string address_text(const asio::ip::tcp::endpoint& a) {
  return to_string(endpoint_address{a.address().to_string(), a.port()});
}
}  // namespace

endpoint_address parse_endpoint(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::invalid_argument("endpoint \"" + std::string(text) + "\": " + std::string(why));
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) throw bad("expected host:port");
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw bad("an IPv6 address is written [address]:port");
  }
  if (host.empty()) throw bad("empty host");
  auto digits = text.substr(colon + 1);
  unsigned long port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9' || (port = port * 10 + static_cast<unsigned long>(c - '0')) > 65535) {
      throw bad("the port must be 1-65535");
    }
  }
  if (port == 0) throw bad("the port must be 1-65535");
  return {std::string(host), static_cast<std::uint16_t>(port)};
}

std::string to_string(const endpoint_address& e) {
  // Appended piece by piece: GCC 12's -Wrestrict misfires at -O3 on
  // "[" + host + "]:" + port.
  std::string out;
  bool v6 = e.host.find(':') != std::string::npos;
  if (v6) out += '[';
  out += e.host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(e.port);
  return out;
}

// One instance of the service: its address and its connection.
struct client_proxy::endpoint {
  endpoint(const asio::any_io_executor& ex, asio::ip::tcp::endpoint a, std::size_t from)
      : address(a), text(address_text(a)), source(from), connected(ex, clock::time_point::max()) {}

  asio::ip::tcp::endpoint address;
  std::string text;
  std::size_t source;  // index into impl::sources
  std::shared_ptr<transport::client_connection> conn;
  bool connecting = false;
  bool removed = false;  // no longer in the upstream: takes no new calls
  int waiters = 0;
  asio::steady_timer connected;
  int failures = 0;
  clock::time_point retry_at{};
  std::optional<rpc_error> last_error;
  // Outlier detection.
  int consecutive_failures = 0;
  int times_ejected = 0;
  clock::time_point ejected_until{};  // epoch: not ejected
  bool probing = false;
  const void* lost = nullptr;  // the last connection whose loss the breaker heard of

  [[nodiscard]] bool open() const noexcept { return conn && conn->is_open(); }
  [[nodiscard]] bool ejected() const {
    return ejected_until != clock::time_point{} && clock::now() < ejected_until;
  }
  [[nodiscard]] std::size_t load() const noexcept {
    return (conn ? conn->pending() : 0) + static_cast<std::size_t>(waiters) + (connecting ? 1 : 0);
  }
  // Backing off after a failed connect: calls go elsewhere, or fail at once.
  [[nodiscard]] bool backing_off() const { return last_error && clock::now() < retry_at; }
  // Draining after a goaway: new calls go elsewhere while another endpoint can take them.
  [[nodiscard]] bool going_away() const noexcept { return open() && conn->going_away(); }
  [[nodiscard]] bool usable() const {
    return !removed && !going_away() && !backing_off() && !ejected();
  }
  // Still open though draining: the last resort, when no endpoint is usable.
  [[nodiscard]] bool last_resort() const noexcept { return !removed && open(); }
  [[nodiscard]] connection_state state() const noexcept {
    if (open()) return connection_state::connected;
    return connecting ? connection_state::connecting : connection_state::disconnected;
  }
};

struct client_proxy::impl : std::enable_shared_from_this<client_proxy::impl> {
  impl(asio::io_context& io, client_options o)
      : options(std::move(o)),
        wire(options.codec ? options.codec : make_codec(options.wire, options.max_frame)),
        executor(io.get_executor()),
        resolved_signal(io.get_executor(), clock::time_point::max()),
        wake(std::make_shared<asio::steady_timer>(io.get_executor())),
        rng(std::random_device{}() | 1),
        breaker(options.breaker),
        budget(options.retry) {
    if (options.endpoints.empty()) {
      options.endpoints.push_back(to_string(endpoint_address{options.host, options.port}));
    }
    for (const auto& e : options.endpoints) {
      sources.push_back(parse_source(e));
      if (!where.empty()) where += ',';
      where += e;
      if (!sources.back().literal) needs_dns = true;
    }
    if (needs_dns) {
      dns = std::make_unique<detail::dns_resolver>(executor, options.dns_servers);
    } else {
      // Addresses only: the endpoints are known now, for good.
      for (std::size_t i = 0; i < sources.size(); ++i) {
        add(asio::ip::tcp::endpoint(asio::ip::make_address(sources[i].host), sources[i].port), i);
      }
      resolved = true;
    }
  }

  ~impl() {
    wake->cancel();
    for (auto& ep : endpoints) {
      if (ep->conn) ep->conn->close("client destroyed");
    }
  }

  void add(const asio::ip::tcp::endpoint& a, std::size_t from) {
    endpoints.push_back(std::make_shared<endpoint>(executor, a, from));
  }

  // ---- picking ----

  std::uint64_t random() noexcept {  // xorshift64*
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 2685821657736338717ULL;
  }

  static constexpr std::size_t none = static_cast<std::size_t>(-1);

  // The index of the endpoint for the next call, or `none` if none can
  // take one now. `avoid` (a retry's last endpoint) is passed over while
  // another can take the call.
  std::size_t pick(const endpoint* avoid = nullptr) {
    const std::size_t n = endpoints.size();
    if (n == 1) {
      const auto& ep = *endpoints[0];
      return ep.usable() || ep.last_resort() ? 0 : none;
    }
    if (n == 0) return none;
    if (avoid) {
      std::size_t best = none;
      for (std::size_t i = 0; i < n; ++i) {
        const auto& ep = *endpoints[i];
        if (&ep == avoid || !ep.usable()) continue;
        if (best == none || ep.load() < endpoints[best]->load()) best = i;
      }
      if (best != none) return best;
    }
    if (options.balance == balancing::round_robin) {
      for (std::size_t k = 0; k < n; ++k) {
        auto i = next_turn++ % n;
        if (endpoints[i]->usable()) return i;
      }
      return last_resort();
    }
    auto r = random();
    auto a = r % n;
    auto b = (a + 1 + (r >> 32) % (n - 1)) % n;  // another one
    bool ua = endpoints[a]->usable(), ub = endpoints[b]->usable();
    if (ua && ub) return endpoints[b]->load() < endpoints[a]->load() ? b : a;
    if (ua || ub) return ua ? a : b;
    for (std::size_t k = 0; k < n; ++k) {  // both unusable: any that is
      auto i = (r + k) % n;
      if (endpoints[i]->usable()) return i;
    }
    return last_resort();
  }

  // With every endpoint draining, ejected or backing off: one whose
  // connection is still open (a draining service answers until it closes).
  std::size_t last_resort() {
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      if (endpoints[i]->last_resort()) return i;
    }
    return none;
  }

  // An endpoint with an open connection for one call, connecting first if
  // needed; `picked` is the fast path's pick, if it made one. A failed
  // connect moves on to another endpoint. Throws rpc_error.
  asio::awaitable<std::shared_ptr<endpoint>> acquire(std::shared_ptr<endpoint> picked = {},
                                                     const endpoint* avoid = nullptr) {
    auto self = shared_from_this();
    if (needs_dns && !looking_up) start_lookups();
    if (!resolved) co_await first_lookup();
    std::optional<rpc_error> failure;
    for (std::size_t attempt = 0; attempt <= endpoints.size(); ++attempt) {
      if (attempt > 0 || !picked) {
        auto i = pick(attempt == 0 ? avoid : nullptr);
        if (i == none) break;
        picked = endpoints[i];  // held across the connect (discovery may drop it meanwhile)
      }
      try {
        co_await connect(picked);
        co_return picked;
      } catch (const rpc_error& e) {
        failure = e;
      }
      picked.reset();
    }
    if (failure) throw *failure;
    throw unavailable();
  }

  // Why no endpoint can take a call.
  rpc_error unavailable() const {
    if (endpoints.empty()) {
      return rpc_error(errc::connection_refused,
                       "cannot connect to " + where + ": " +
                           (lookup_error.empty() ? std::string("no endpoints") : lookup_error));
    }
    const endpoint* soonest = nullptr;
    for (const auto& ep : endpoints) {
      if (ep->last_error && (!soonest || ep->retry_at < soonest->retry_at)) soonest = ep.get();
    }
    if (!soonest) return rpc_error(errc::connection_refused, "cannot connect to " + where);
    auto wait =
        std::chrono::duration_cast<std::chrono::milliseconds>(soonest->retry_at - clock::now());
    return rpc_error(errc::connection_refused,
                     std::string(soonest->last_error->message()) + " (next attempt in " +
                         std::to_string(std::max<long long>(wait.count(), 0)) + " ms)");
  }

  // The endpoint's open connection, connecting first if needed. Concurrent
  // callers share one attempt; during backoff after failures they fail at once.
  asio::awaitable<std::shared_ptr<transport::client_connection>> connect(
      std::shared_ptr<endpoint> ep) {
    for (;;) {
      if (ep->open()) co_return ep->conn;
      if (ep->connecting) {
        {
          ++ep->waiters;
          struct leave {  // also when this coroutine is cancelled while it waits
            endpoint& e;
            ~leave() { --e.waiters; }
          } l{*ep};
          co_await ep->connected.async_wait(nothrow);
        }
        if (ep->open()) co_return ep->conn;
        if (ep->last_error) throw *ep->last_error;
        continue;
      }
      if (ep->backing_off()) throw unavailable();
      ep->connecting = true;
      // Whatever ends the attempt (a cancelled caller too), the waiters
      // wake: they find the connection, the failure, or make the next attempt.
      struct attempt_over {
        explicit attempt_over(endpoint& ep) : e(ep) {}
        attempt_over(const attempt_over&) = delete;
        attempt_over& operator=(const attempt_over&) = delete;
        endpoint& e;
        ~attempt_over() {
          e.connecting = false;
          if (e.waiters > 0) e.connected.cancel();
        }
      };
      std::optional<attempt_over> over(std::in_place, *ep);
      try {
        ep->conn = co_await transport::client_connection::connect(
            ep->address, ep->text, *wire, options.connection, options.connect_timeout);
        // A peer gone silent (a cut link, a frozen process) is out at once.
        ep->conn->on_silent([weak = weak_from_this(), e = std::weak_ptr<endpoint>(ep)] {
          auto self = weak.lock();
          auto live = e.lock();
          if (self && live && self->options.ejection.consecutive_failures > 0) {
            self->eject(*live, "it went silent", clock::now());
          }
        });
        ep->failures = 0;
        ep->last_error.reset();

      } catch (const rpc_error& e) {
        ++ep->failures;
        auto backoff = options.backoff_initial * (1LL << std::min(ep->failures - 1, 16));
        ep->retry_at =
            clock::now() + std::min<std::chrono::milliseconds>(backoff, options.backoff_max);
        ep->last_error = e;
        spdlog::warn("{}", e.what());
        if (!sources[ep->source].literal) lookup_soon();
        outcome(*ep, true, clock::now());
      }
      over.reset();
      if (ep->last_error) throw *ep->last_error;
      if (ep->removed) {  // gone from the upstream while connecting
        ep->conn->close_when_idle("endpoint removed");
        throw rpc_error(errc::connection_refused, ep->text + " left " + where);
      }
    }
  }

  // ---- discovery ----

  // Waits for the first lookup of every name (started here if need be).
  void start_lookups() {
    looking_up = true;
    asio::co_spawn(executor, lookup_loop(weak_from_this(), wake, generation), asio::detached);
  }
  // close(): the loop ends (a later call starts it again).
  void stop_lookups() {
    ++generation;
    looking_up = false;
    wake->cancel();
  }

  asio::awaitable<void> first_lookup() {
    while (!resolved) {
      ++lookup_waiters;
      co_await resolved_signal.async_wait(nothrow);
      --lookup_waiters;
    }
  }

  // Looks the names up again now, unless a lookup ended under a second ago.
  void lookup_soon() {
    auto soon = last_lookup + std::chrono::seconds(1);
    if (soon < next_lookup) {
      next_lookup = soon;
      wake->cancel();
    }
  }

  // Holds the impl only while a lookup runs, so a client that goes away
  // ends the loop (its destructor cancels `wake`).
  static asio::awaitable<void> lookup_loop(std::weak_ptr<impl> weak,
                                           std::shared_ptr<asio::steady_timer> wake,
                                           std::uint64_t generation) {
    for (;;) {
      {
        auto self = weak.lock();
        if (!self || self->generation != generation) co_return;
        if (clock::now() >= self->next_lookup) co_await self->lookup();
        wake->expires_at(self->next_lookup);
      }
      co_await wake->async_wait(nothrow);
    }
  }

  asio::awaitable<void> lookup() {
    std::vector<std::pair<asio::ip::tcp::endpoint, std::size_t>> found;
    std::vector<bool> failed(sources.size(), false);
    std::string errors;
    for (std::size_t i = 0; i < sources.size(); ++i) {
      const auto& src = sources[i];
      if (src.literal) {
        found.emplace_back(asio::ip::tcp::endpoint(asio::ip::make_address(src.host), src.port), i);
        continue;
      }
      auto answer = co_await dns->resolve(src.host);
      if (!answer.error.empty()) {
        failed[i] = true;
        if (!errors.empty()) errors += "; ";
        errors += "cannot resolve " + src.host + ": " + answer.error;
        continue;
      }
      for (const auto& a : answer.addresses)
        found.emplace_back(asio::ip::tcp::endpoint(a, src.port), i);
    }
    update(found, failed);
    if (!errors.empty() && errors != lookup_error) spdlog::warn("{}: {}", where, errors);
    lookup_error = std::move(errors);
    last_lookup = clock::now();
    next_lookup = last_lookup + options.resolve_interval;
    if (!resolved) {
      resolved = true;
      if (lookup_waiters > 0) resolved_signal.cancel();
    }
  }

  // The endpoints become `found`; a name whose lookup failed keeps the ones it had.
  void update(const std::vector<std::pair<asio::ip::tcp::endpoint, std::size_t>>& found,
              const std::vector<bool>& failed) {
    std::vector<std::shared_ptr<endpoint>> next;
    auto has = [&](const asio::ip::tcp::endpoint& a) {
      return std::any_of(next.begin(), next.end(), [&](const auto& e) { return e->address == a; });
    };
    for (auto& ep : endpoints) {
      bool keep = failed[ep->source] || std::any_of(found.begin(), found.end(), [&](const auto& f) {
                    return f.first == ep->address && f.second == ep->source;
                  });
      if (keep && !has(ep->address)) {
        next.push_back(ep);
        continue;
      }
      ep->removed = true;
      spdlog::info("{}: endpoint {} is gone; draining it", where, ep->text);
      if (ep->conn) ep->conn->close_when_idle("endpoint gone from " + where);
    }
    for (const auto& [a, from] : found) {
      if (has(a)) continue;
      next.push_back(std::make_shared<endpoint>(executor, a, from));
      if (resolved) spdlog::info("{}: new endpoint {}", where, next.back()->text);
    }
    endpoints = std::move(next);
  }

  client_options options;
  std::shared_ptr<const transport::codec> wire;
  asio::any_io_executor executor;
  std::string where;  // the endpoints as configured, for errors
  std::vector<source> sources;
  bool needs_dns = false;
  std::vector<std::shared_ptr<endpoint>> endpoints;
  std::size_t next_turn = 0;  // round robin

  std::unique_ptr<detail::dns_resolver> dns;
  bool resolved = false;         // the endpoints are known (the first lookup has ended)
  bool looking_up = false;       // the lookup loop runs
  std::uint64_t generation = 0;  // of the lookup loop; close() ends the running one
  int lookup_waiters = 0;
  asio::steady_timer resolved_signal;
  std::shared_ptr<asio::steady_timer> wake;  // the lookup loop's sleep
  clock::time_point last_lookup{};
  clock::time_point next_lookup{};  // now: the first lookup runs at once
  std::string lookup_error;
  std::uint64_t rng;

  detail::circuit_breaker breaker;
  detail::retry_budget budget;
  counters stats{};
  std::uint64_t closes = 0;  // close() calls: a call begun before one is not retried
  std::unordered_set<call_slot*> backing_off;  // calls waiting to retry

  // ---- outcomes: ejection and the breaker ----

  // One endpoint's outcome (a call's, a connect's): enough failures in a
  // row eject it, within the share that may be out at once.
  void outcome(endpoint& ep, bool failed, clock::time_point now) {
    const auto& o = options.ejection;
    if (!failed) {
      ep.consecutive_failures = 0;
      if (ep.times_ejected > 0 && now > ep.ejected_until + o.max_time) ep.times_ejected = 0;
      return;
    }
    if (o.consecutive_failures <= 0 || ++ep.consecutive_failures < o.consecutive_failures) return;
    eject(ep, std::to_string(o.consecutive_failures) + " failures in a row", now);
  }

  // Takes an endpoint out for a while (longer each time), unless as many
  // are out as may be at once.
  void eject(endpoint& ep, const std::string& why, clock::time_point now) {
    const auto& o = options.ejection;
    if (ep.ejected() || ep.removed) return;
    std::size_t out = 0;
    for (const auto& e : endpoints) out += e->ejected() ? 1 : 0;
    const std::size_t n = endpoints.size();
    std::size_t may =
        n < 2 ? 0
              : std::max<std::size_t>(
                    1, n * static_cast<std::size_t>(std::max(0, o.max_ejected_percent)) / 100);
    if (out >= may) return;
    ++ep.times_ejected;
    auto length = std::min<std::chrono::milliseconds>(o.base_time * ep.times_ejected, o.max_time);
    ep.ejected_until = now + length;
    ep.consecutive_failures = 0;
    ++stats.ejections;
    spdlog::warn("{}: endpoint {} ejected for {} ms after {}", where, ep.text, length.count(), why);
    if (!ep.probing) {
      for (const auto& e : endpoints) {
        if (e.get() == &ep) asio::co_spawn(executor, probe(weak_from_this(), e), asio::detached);
      }
    }
  }

  // While an endpoint is out, asks it tern.health now and then; an answer
  // brings it back before its time is up.
  static asio::awaitable<void> probe(std::weak_ptr<impl> weak, std::shared_ptr<endpoint> ep) {
    static const pattern health(health_pattern);
    static constexpr char nil = '\xc0';
    ep->probing = true;
    struct done {
      endpoint& e;
      ~done() { e.probing = false; }
    } guard{*ep};
    asio::steady_timer tick(co_await asio::this_coro::executor);
    for (;;) {
      {
        auto self = weak.lock();
        if (!self || ep->removed || !ep->ejected()) co_return;
        tick.expires_after(std::min<clock::duration>(self->options.ejection.probe_interval,
                                                     ep->ejected_until - clock::now()));
      }
      co_await tick.async_wait(nothrow);
      auto self = weak.lock();
      if (!self || ep->removed || !ep->ejected()) co_return;
      try {
        co_await self->connect(ep);
        auto conn = ep->conn;
        auto ignore = [](const transport::value_view&) {};
        auto write = [](transport::packer& pk) { pk.pack_packed(std::string_view(&nil, 1)); };
        co_await conn->call(
            health.canonical(), health.packed(), {}, write, ignore,
            std::min<std::chrono::milliseconds>(self->options.timeout, std::chrono::seconds(1)));
        ep->ejected_until = {};
        spdlog::info("{}: endpoint {} answers {}: back in", self->where, ep->text, health_pattern);
        co_return;
      } catch (const rpc_error&) {
        // still out; asked again at the next tick
      }
    }
  }

  // Fails at once while the breaker is open (a half-open one lets trials through).
  void admit(clock::time_point now) {
    if (breaker.admit(now)) return;
    ++stats.breaker_refused;
    throw rpc_error(errc::circuit_open,
                    "circuit breaker for " + where + " is open (next trial in " +
                        std::to_string(breaker.retry_after(now).count()) + " ms)");
  }

  void breaker_outcome(bool failed, clock::time_point now) {
    if (breaker.record(failed, now)) {
      ++stats.breaker_opened;
      spdlog::warn("{}: circuit breaker open for {} ms: calls fail at once", where,
                   options.breaker.open_time.count());
    }
  }

  // ---- calls: picking, sending, retries ----

  struct join;
  void send(call_slot& sl, std::shared_ptr<endpoint> ep);
  bool try_send(call_slot& sl);
  asio::awaitable<std::shared_ptr<endpoint>> connect_for(call_slot& sl);
  void ended(call_slot& sl);
  void not_sent(call_slot& sl, const rpc_error& e);
  bool may_retry(call_slot& sl, const rpc_error& e, bool sent, clock::time_point now);
  void retry_later(call_slot& sl, clock::time_point now);
  void finish(call_slot& sl, clock::time_point now);
  static asio::awaitable<void> retry(std::shared_ptr<impl> self, call_slot& sl,
                                     std::shared_ptr<bool> alive, std::chrono::milliseconds wait);
  static asio::awaitable<void> run(std::span<call_slot> slots);
  void wake_backoffs();
};

client_proxy::client_proxy(client_options options)
    : client_proxy(default_io_context(), std::move(options)) {}

client_proxy::client_proxy(asio::io_context& io, client_options options)
    : impl_(std::make_shared<impl>(io, std::move(options))) {}

client_proxy::~client_proxy() = default;

asio::awaitable<void> client_proxy::connect() {
  auto self = impl_;
  co_await self->acquire();
}

void client_proxy::close() {
  ++impl_->closes;  // the calls it ends are not retried, and those waiting to be end now
  impl_->wake_backoffs();
  impl_->stop_lookups();
  for (auto& ep : impl_->endpoints) {
    if (ep->conn) ep->conn->close("client closed");
    ep->conn.reset();
  }
}

std::size_t client_proxy::pending() const noexcept {
  std::size_t n = 0;
  for (const auto& ep : impl_->endpoints) n += ep->conn ? ep->conn->pending() : 0;
  return n;
}

client_proxy::connection_state client_proxy::state() const noexcept {
  auto best = connection_state::disconnected;
  for (const auto& ep : impl_->endpoints) {
    auto s = ep->state();
    if (s == connection_state::connected) return s;
    if (s == connection_state::connecting) best = s;
  }
  return best;
}

std::vector<client_proxy::endpoint_status> client_proxy::endpoints() const {
  std::vector<endpoint_status> out;
  for (const auto& ep : impl_->endpoints) {
    out.push_back({ep->text, ep->state(), ep->conn ? ep->conn->pending() : 0, ep->ejected()});
  }
  return out;
}

client_proxy::breaker_state client_proxy::breaker() const noexcept {
  switch (impl_->breaker.current(clock::now())) {
    case detail::circuit_breaker::state::open:
      return breaker_state::open;
    case detail::circuit_breaker::state::half_open:
      return breaker_state::half_open;
    case detail::circuit_breaker::state::closed:
      break;
  }
  return breaker_state::closed;
}

std::chrono::milliseconds client_proxy::retry_after() const noexcept {
  return impl_->breaker.retry_after(clock::now());
}

client_proxy::counters client_proxy::stats() const noexcept {
  return impl_->stats;
}

namespace {
// When a call ends: its timeout from now, or the deadline it inherited if sooner.
clock::time_point deadline_of(const call_options& o, const client_options& defaults,
                              clock::time_point now) {
  auto timeout = o.timeout.count() > 0 ? o.timeout : defaults.timeout;
  return now + timeout < o.deadline ? now + timeout : o.deadline;
}

rpc_error past_deadline(const pattern& p) {
  return {errc::deadline_exceeded, p.canonical() + " not sent: its deadline has passed"};
}
}  // namespace

// One call on its way (send, send_raw, a call of send_raw_all): its
// attempts and its outcome. Lives in the awaiting frame until it ends.
struct client_proxy::call_slot {
  transport::call_state state;
  impl* owner = nullptr;
  impl::join* all = nullptr;
  std::shared_ptr<endpoint> ep;  // of the attempt in flight, or of the last one
  std::shared_ptr<transport::client_connection> conn;
  std::shared_ptr<endpoint> picked;  // the fast path's pick, for connect_for()
  const pattern* p = nullptr;
  std::string_view packed;                          // the data, packed (raw calls)
  const transport::value_writer* writer = nullptr;  // or written by this
  const transport::value_sink* sink = nullptr;
  std::string_view meta;
  clock::time_point deadline{};
  bool idempotent = false;
  bool cancelled = false;
  int tries = 0;                          // attempts begun
  int retries = 0;                        // of them, after the first
  std::uint64_t closes = 0;               // the client's close() count when the call began
  int breaker_vote = -1;                  // the last attempt's: -1 none, 0 success, 1 failure
  asio::steady_timer* backoff = nullptr;  // while waiting to retry
  std::optional<rpc_error> error;
  clock::time_point ended{};
};

// The calls of one run(): how many are still going, and who to wake.
struct client_proxy::impl::join {
  std::size_t remaining = 0;
  transport::unique_function<void()> resume;
  std::shared_ptr<bool> alive;  // made on the first retry; false once the frame is gone
};

void client_proxy::impl::send(call_slot& sl, std::shared_ptr<endpoint> ep) {
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
  sl.state.waiter = [&sl] { sl.owner->ended(sl); };
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
// Else returns false (connect_for() goes on). Throws rpc_error.
bool client_proxy::impl::try_send(call_slot& sl) {
  // The breaker decides once per call: a retry of an admitted call (a
  // half-open trial among them) goes on, within the budget.
  if (++sl.tries == 1) admit(clock::now());
  sl.picked.reset();
  if (!resolved) return false;
  auto i = pick(sl.retries > 0 ? sl.ep.get() : nullptr);
  if (i == none) return false;
  const auto& ep = endpoints[i];
  if (!ep->open() || ep->conn->congested()) {
    sl.picked = ep;
    return false;
  }
  send(sl, ep);
  return true;
}

asio::awaitable<std::shared_ptr<client_proxy::endpoint>> client_proxy::impl::connect_for(
    call_slot& sl) {
  auto avoid = sl.retries > 0 ? sl.ep.get() : nullptr;
  auto ep = co_await acquire(std::move(sl.picked), avoid);
  auto conn = ep->conn;
  if (conn->congested()) co_await conn->wait_writable();
  if (!conn->is_open()) {
    throw rpc_error(errc::connection_closed, "connection to " + ep->text + " lost while waiting");
  }
  co_return ep;
}

void client_proxy::impl::ended(call_slot& sl) {
  auto now = clock::now();
  std::optional<rpc_error> error = std::move(sl.state.error);
  bool failed = error && detail::counts_as_failure(*error);
  if (error &&
      error->kind() == errc::cancelled) {  // the caller gave up: says nothing of the service
    sl.conn.reset();
    sl.error = std::move(error);
    finish(sl, now);
    return;
  }
  if (sl.ep) outcome(*sl.ep, failed, now);
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

void client_proxy::impl::not_sent(call_slot& sl, const rpc_error& e) {
  auto now = clock::now();
  if (e.kind() != errc::circuit_open && e.kind() != errc::cancelled &&
      e.kind() != errc::deadline_exceeded) {
    sl.breaker_vote = detail::counts_as_failure(e) ? 1 : 0;
  }
  if (may_retry(sl, e, false, now)) {
    retry_later(sl, now);
    return;
  }
  sl.error = e;
  finish(sl, now);
}

bool client_proxy::impl::may_retry(call_slot& sl, const rpc_error& e, bool sent,
                                   clock::time_point now) {
  if (sl.cancelled || sl.closes != closes || sl.tries >= options.retry.max_attempts) return false;
  // A call that was sent runs again only if it may; one that never left
  // (no endpoint would connect) may always be sent.
  bool retryable = sent ? sl.idempotent && detail::counts_as_failure(e) &&
                              e.kind() != errc::timeout && e.kind() != errc::deadline_exceeded
                        : e.kind() == errc::connection_refused;
  if (!retryable || now >= sl.deadline) return false;
  if (!budget.take(now)) {
    ++stats.retries_refused;
    return false;
  }
  return true;
}

void client_proxy::impl::retry_later(call_slot& sl, clock::time_point now) {
  ++sl.retries;
  ++stats.retries;
  const auto& o = options.retry;
  auto cap = std::min<std::chrono::milliseconds>(
      o.max_backoff, o.base_backoff * (1LL << std::min(sl.tries - 1, 16)));
  auto wait = std::chrono::milliseconds(cap.count() > 0 ? random() % (cap.count() + 1) : 0);
  wait = std::min(wait, std::chrono::floor<std::chrono::milliseconds>(sl.deadline - now));
  if (!sl.all->alive) sl.all->alive = std::make_shared<bool>(true);
  asio::co_spawn(executor, retry(shared_from_this(), sl, sl.all->alive, wait), asio::detached);
}

asio::awaitable<void> client_proxy::impl::retry(std::shared_ptr<impl> self, call_slot& sl,
                                                std::shared_ptr<bool> alive,
                                                std::chrono::milliseconds wait) {
  // wait < 0: the first attempt, which try_send() could not start at once.
  const bool first = wait.count() < 0;
  if (!first) {
    asio::steady_timer t(self->executor, wait);
    sl.backoff = &t;
    self->backing_off.insert(&sl);
    co_await t.async_wait(nothrow);
    if (!*alive) co_return;  // the awaiting frame is gone, and the slot with it
    self->backing_off.erase(&sl);
    sl.backoff = nullptr;
  }
  try {
    if (sl.cancelled)
      throw rpc_error(errc::cancelled, std::string(sl.p->canonical()) + " cancelled");
    if (sl.closes != self->closes) {
      throw rpc_error(errc::connection_closed, std::string(sl.p->canonical()) + ": client closed");
    }
    if (!first && self->try_send(sl)) co_return;
    auto ep = co_await self->connect_for(sl);
    if (!*alive) co_return;
    if (sl.cancelled)
      throw rpc_error(errc::cancelled, std::string(sl.p->canonical()) + " cancelled");
    if (sl.closes != self->closes) {
      throw rpc_error(errc::connection_closed, std::string(sl.p->canonical()) + ": client closed");
    }
    self->send(sl, std::move(ep));
  } catch (const rpc_error& e) {
    // Not from inside this coroutine: finishing the last call resumes the awaiting one.
    asio::post(self->executor, [self, &sl, alive, e] {
      if (*alive) self->not_sent(sl, e);
    });
  } catch (const std::exception& e) {  // (never left to the event loop)
    rpc_error failure(errc::connection_refused, std::string(sl.p->canonical()) + ": " + e.what());
    asio::post(self->executor, [self, &sl, alive, failure] {
      if (*alive) self->not_sent(sl, failure);
    });
  }
}

// close(): calls waiting to retry wake now, and end (they began before it).
void client_proxy::impl::wake_backoffs() {
  for (auto* sl : backing_off) sl->backoff->cancel();
}

void client_proxy::impl::finish(call_slot& sl, clock::time_point now) {
  sl.ended = now;
  budget.count_call(now);
  if (sl.breaker_vote >= 0) breaker_outcome(sl.breaker_vote == 1, now);
  auto& all = *sl.all;
  if (--all.remaining > 0 || !all.resume) return;
  auto resume = std::move(all.resume);  // the frame holding `all` ends inside
  resume();
}

// Sends every slot's call at once and completes when all have ended. A
// call whose endpoint is connected starts without a coroutine.
asio::awaitable<void> client_proxy::impl::run(std::span<call_slot> slots) {
  join all;
  all.remaining = slots.size();
  struct forget {  // if this frame goes away early, the calls must not reach it
    std::span<call_slot> slots;
    join& all;
    ~forget() {
      if (all.alive) *all.alive = false;
      for (auto& sl : slots) {
        if (sl.conn) sl.conn->abandon(sl.state);
        if (sl.backoff) {
          sl.owner->backing_off.erase(&sl);
          sl.backoff->cancel();
        }
      }
    }
  } guard{slots, all};
  // Nothing here suspends before the join below, whose cancellation
  // handler reaches every call: a call that must connect first does so in
  // a coroutine of its own (retry() without the wait).
  for (auto& sl : slots) {
    sl.all = &all;
    auto& self = *sl.owner;
    sl.closes = self.closes;
    try {
      if (!self.try_send(sl)) {
        if (!all.alive) all.alive = std::make_shared<bool>(true);
        asio::co_spawn(self.executor,
                       retry(self.shared_from_this(), sl, all.alive, std::chrono::milliseconds(-1)),
                       asio::detached);
      }
    } catch (const rpc_error& e) {
      self.not_sent(sl, e);
    }
  }
  if (all.remaining > 0) {
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
}

asio::awaitable<void> client_proxy::call_(const pattern& p, transport::value_writer data,
                                          transport::value_sink on_value, call_options o) {
  auto self = impl_;
  call_slot sl;
  sl.owner = self.get();
  sl.p = &p;
  sl.writer = &data;
  sl.sink = &on_value;
  sl.meta = o.meta;
  sl.idempotent = o.idempotent;
  auto now = clock::now();
  sl.deadline = deadline_of(o, self->options, now);
  if (sl.deadline <= now) throw past_deadline(p);
  co_await impl::run(std::span(&sl, 1));
  if (sl.error) throw *sl.error;
}

asio::awaitable<void> client_proxy::send_raw(const pattern& p, std::string_view packed_data,
                                             transport::value_sink on_value, call_options o) {
  // A coroutine, so the writer lives until the request is encoded.
  auto write = [packed_data](transport::packer& pk) { pk.pack_packed(packed_data); };
  co_await call_(p, write, on_value, o);
}

asio::awaitable<void> send_raw_all(std::span<raw_call> calls) {
  if (calls.empty()) co_return;
  // The calls' states live here, in this one frame, until every call ends.
  std::unique_ptr<client_proxy::call_slot[]> slots(new client_proxy::call_slot[calls.size()]);
  auto now = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto& c = calls[i];
    auto& sl = slots[i];
    auto& owner = c.client->impl_;
    sl.owner = owner.get();
    sl.p = c.p;
    sl.packed = c.packed_data;
    sl.sink = &c.on_value;
    sl.meta = c.options.meta;
    sl.idempotent = c.options.idempotent;
    sl.deadline = deadline_of(c.options, owner->options, now);
  }
  co_await client_proxy::impl::run(std::span(slots.get(), calls.size()));
  for (std::size_t i = 0; i < calls.size(); ++i) {
    calls[i].error = std::move(slots[i].error);
    calls[i].ended = slots[i].ended;
    calls[i].retries = slots[i].retries;
  }
}

asio::awaitable<void> client_proxy::emit_packed(const pattern& p, transport::value_writer data) {
  auto self = impl_;
  auto ep = co_await self->acquire();
  auto conn = ep->conn;
  co_await conn->emit(p.canonical(), p.packed(), {}, data);
}

// ---- streams ----

struct detail::raw_stream::impl {
  std::shared_ptr<transport::client_connection> conn;
  transport::call_state state;
  ~impl() {
    if (conn) conn->abandon(state);
  }
};

detail::raw_stream::raw_stream(std::unique_ptr<impl> p) : p_(std::move(p)) {}
detail::raw_stream::raw_stream(raw_stream&&) noexcept = default;
detail::raw_stream& detail::raw_stream::operator=(raw_stream&&) noexcept = default;
detail::raw_stream::~raw_stream() = default;

asio::awaitable<std::optional<msgpack::object_handle>> detail::raw_stream::next() {
  return p_->conn->next(p_->state);
}

asio::awaitable<detail::raw_stream> client_proxy::stream_packed(const pattern& p,
                                                                transport::value_writer data,
                                                                call_options o) {
  auto self = impl_;
  auto deadline = deadline_of(o, self->options, clock::now());
  if (deadline <= clock::now()) throw past_deadline(p);
  auto s = std::make_unique<detail::raw_stream::impl>();
  s->conn = (co_await self->acquire())->conn;
  if (deadline <= clock::now()) throw past_deadline(p);  // spent connecting
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
  co_await s->conn->open_stream(s->state, p.canonical(), p.packed(), o.meta, data,
                                std::max(left, std::chrono::milliseconds(1)));
  co_return detail::raw_stream(std::move(s));
}

}  // namespace tern
