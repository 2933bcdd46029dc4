#include "tern/client_proxy.hpp"

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
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <random>
#include <stdexcept>

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
  return a.address().is_v6() ? "[" + a.address().to_string() + "]:" + std::to_string(a.port())
                             : a.address().to_string() + ":" + std::to_string(a.port());
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
  bool v6 = e.host.find(':') != std::string::npos;
  return (v6 ? "[" + e.host + "]" : e.host) + ":" + std::to_string(e.port);
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

  [[nodiscard]] bool open() const noexcept { return conn && conn->is_open(); }
  [[nodiscard]] std::size_t load() const noexcept {
    return (conn ? conn->pending() : 0) + static_cast<std::size_t>(waiters) + (connecting ? 1 : 0);
  }
  // Backing off after a failed connect: calls go elsewhere, or fail at once.
  [[nodiscard]] bool backing_off() const { return last_error && clock::now() < retry_at; }
  // Draining after a goaway: new calls go elsewhere while another endpoint can take them.
  [[nodiscard]] bool going_away() const noexcept { return open() && conn->going_away(); }
  [[nodiscard]] bool usable() const { return !removed && !going_away() && !backing_off(); }
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
        wire(options.codec ? options.codec
                           : std::make_shared<transport::msgpack_codec>(options.max_frame)),
        executor(io.get_executor()),
        resolved_signal(io.get_executor(), clock::time_point::max()),
        wake(std::make_shared<asio::steady_timer>(io.get_executor())),
        rng(std::random_device{}() | 1) {
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

  // The endpoint for the next call, or null if none can take one now.
  endpoint* pick() {
    const std::size_t n = endpoints.size();
    if (n == 1) {
      auto* ep = endpoints[0].get();
      return ep->usable() || ep->last_resort() ? ep : nullptr;
    }
    if (n == 0) return nullptr;
    if (options.balance == balancing::round_robin) {
      for (std::size_t k = 0; k < n; ++k) {
        auto* ep = endpoints[next_turn++ % n].get();
        if (ep->usable()) return ep;
      }
      return last_resort();
    }
    auto r = random();
    auto* a = endpoints[r % n].get();
    auto* b = endpoints[(r % n + 1 + (r >> 32) % (n - 1)) % n].get();  // another one
    bool ua = a->usable(), ub = b->usable();
    if (ua && ub) return b->load() < a->load() ? b : a;
    if (ua || ub) return ua ? a : b;
    for (std::size_t k = 0; k < n; ++k) {  // both unusable: any that is
      auto* ep = endpoints[(r + k) % n].get();
      if (ep->usable()) return ep;
    }
    return last_resort();
  }

  // With every endpoint draining or backing off: one whose connection is
  // still open (a draining service answers until it closes).
  endpoint* last_resort() {
    for (auto& ep : endpoints) {
      if (ep->last_resort()) return ep.get();
    }
    return nullptr;
  }

  // The fast path: the endpoint for the next call, picked without a
  // coroutine. If its connection is not open (or nothing was picked), the
  // call goes through acquire(), given that pick.
  endpoint* pick_now() { return resolved ? pick() : nullptr; }

  // An open connection for one call, connecting first if needed. A failed
  // connect moves on to another endpoint. Throws rpc_error.
  asio::awaitable<std::shared_ptr<transport::client_connection>> acquire(
      endpoint* picked = nullptr) {
    auto self = shared_from_this();
    if (needs_dns && !looking_up) start_lookups();
    if (!resolved) co_await first_lookup();
    std::optional<rpc_error> failure;
    for (std::size_t attempt = 0; attempt <= endpoints.size(); ++attempt) {
      if (attempt > 0 || !picked) picked = pick();
      if (!picked) break;
      std::shared_ptr<endpoint> ep;  // held across the connect (discovery may drop it meanwhile)
      for (auto& e : endpoints) {
        if (e.get() == picked) ep = e;
      }
      try {
        co_return co_await connect(ep);
      } catch (const rpc_error& e) {
        failure = e;
      }
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
        ++ep->waiters;
        co_await ep->connected.async_wait(nothrow);
        --ep->waiters;
        if (ep->open()) co_return ep->conn;
        if (ep->last_error) throw *ep->last_error;
        continue;
      }
      if (ep->backing_off()) throw unavailable();
      ep->connecting = true;
      try {
        ep->conn = co_await transport::client_connection::connect(
            ep->address, ep->text, *wire, options.connection, options.connect_timeout);
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
      }
      ep->connecting = false;
      if (ep->waiters > 0) ep->connected.cancel();
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
    out.push_back({ep->text, ep->state(), ep->conn ? ep->conn->pending() : 0});
  }
  return out;
}

asio::awaitable<void> client_proxy::call_(const pattern& p, transport::value_writer data,
                                          transport::value_sink on_value, call_options o) {
  auto self = impl_;
  auto timeout = o.timeout.count() > 0 ? o.timeout : self->options.timeout;
  auto* ep = self->pick_now();
  if (ep && ep->open()) {
    auto hold = ep->conn;  // the endpoint may reconnect meanwhile
    co_await hold->call(p.canonical(), p.packed(), o.meta, data, on_value, timeout);
  } else {
    auto acquired = co_await self->acquire(ep);
    co_await acquired->call(p.canonical(), p.packed(), o.meta, data, on_value, timeout);
  }
}

asio::awaitable<void> client_proxy::send_raw(const pattern& p, std::string_view packed_data,
                                             transport::value_sink on_value, call_options o) {
  // A coroutine, so the writer lives until the request is encoded.
  auto write = [packed_data](transport::packer& pk) { pk.pack_packed(packed_data); };
  co_await call_(p, write, on_value, o);
}

asio::awaitable<void> send_raw_all(std::span<raw_call> calls) {
  struct slot {
    transport::call_state state;
    std::shared_ptr<transport::client_connection> conn;
  };
  // The calls' states live here, in this one frame, until every call ends.
  std::unique_ptr<slot[]> slots(new slot[calls.size()]);
  struct abandon_all {  // if this frame goes away early, forget the calls
    slot* s;
    std::size_t n;
    ~abandon_all() {
      for (std::size_t i = 0; i < n; ++i) {
        if (s[i].conn) s[i].conn->abandon(s[i].state);
      }
    }
  } guard{slots.get(), calls.size()};

  struct join {
    std::size_t remaining = 0;
    transport::unique_function<void()> resume;
  } all;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto& c = calls[i];
    auto& sl = slots[i];
    c.error.reset();
    try {
      auto& self = *c.client->impl_;
      auto* ep = self.pick_now();
      if (ep && ep->open()) {
        sl.conn = ep->conn;
      } else {
        sl.conn = co_await self.acquire(ep);  // (GCC 12 mis-compiles co_await inside ?:)
      }
      if (sl.conn->congested()) co_await sl.conn->wait_writable();
      auto timeout = c.options.timeout.count() > 0 ? c.options.timeout : self.options.timeout;
      sl.state.label = c.p->canonical();
      sl.state.sink = &c.on_value;
      sl.state.waiter = [&all, &c] {
        c.ended = std::chrono::steady_clock::now();
        if (--all.remaining > 0 || !all.resume) return;
        auto resume = std::move(all.resume);  // the frame holding `all` ends inside
        resume();
      };
      auto write = [&c](transport::packer& pk) { pk.pack_packed(c.packed_data); };
      sl.conn->start_call(sl.state, c.p->packed(), c.options.meta, write, timeout);
      ++all.remaining;
    } catch (const rpc_error& e) {
      c.error = e;
      c.ended = std::chrono::steady_clock::now();
      sl.state.waiter = {};
    }
  }
  if (all.remaining > 0) {
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [&](auto handler) {
          auto cancel = asio::get_associated_cancellation_slot(handler);
          if (cancel.is_connected()) {
            cancel.assign([&](asio::cancellation_type) {
              for (std::size_t i = 0; i < calls.size(); ++i) {
                if (slots[i].conn) slots[i].conn->cancel(slots[i].state);
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
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (slots[i].state.error) calls[i].error = std::move(slots[i].state.error);
  }
}

asio::awaitable<void> client_proxy::emit_packed(const pattern& p, transport::value_writer data) {
  auto self = impl_;
  auto conn = co_await self->acquire();
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
  auto s = std::make_unique<detail::raw_stream::impl>();
  s->conn = co_await self->acquire();
  co_await s->conn->open_stream(s->state, p.canonical(), p.packed(), o.meta, data,
                                o.timeout.count() > 0 ? o.timeout : self->options.timeout);
  co_return detail::raw_stream(std::move(s));
}

}  // namespace tern
