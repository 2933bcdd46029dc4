#include "endpoint_set.hpp"

#include "../dns.hpp"
#include "tern/endpoint.hpp"

#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>
#include <random>

namespace tern::detail {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

std::string address_text(const asio::ip::tcp::endpoint& a) {
  return to_string(endpoint_address{a.address().to_string(), a.port()});
}
}  // namespace

endpoint_set::endpoint_set(const asio::any_io_executor& ex, const client_options& o)
    : executor_(ex),
      balance_(o.balance),
      resolve_interval_(o.resolve_interval),
      rng_(std::random_device{}() | 1),
      resolved_signal_(ex, clock::time_point::max()),
      wake_(ex) {
  auto entries = o.endpoints;
  if (entries.empty()) entries.push_back(to_string(endpoint_address{o.host, o.port}));
  bool names = false;
  for (const auto& text : entries) {
    auto e = parse_endpoint(text);
    bool literal = is_address_literal(e.host);
    sources_.push_back({std::move(e.host), e.port, literal});
    if (!where_.empty()) where_ += ',';
    where_ += text;
    names = names || !literal;
  }
  if (names) {
    dns_ = std::make_unique<dns_resolver>(executor_, o.dns_servers);
    return;
  }
  // Addresses only: the endpoints are known now, for good.
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    add(asio::ip::tcp::endpoint(asio::ip::make_address(sources_[i].host), sources_[i].port), i);
  }
  resolved_ = true;
}

endpoint_set::~endpoint_set() = default;

void endpoint_set::add(const asio::ip::tcp::endpoint& a, std::size_t from) {
  endpoints_.push_back(
      std::make_shared<endpoint>(executor_, a, address_text(a), from, sources_[from].host));
}

// ---- picking ----

std::uint64_t endpoint_set::random() noexcept {
  rng_ ^= rng_ >> 12;
  rng_ ^= rng_ << 25;
  rng_ ^= rng_ >> 27;
  return rng_ * 2685821657736338717ULL;
}

std::size_t endpoint_set::pick(const endpoint* avoid) {
  const auto& eps = endpoints_;
  const std::size_t n = eps.size();
  if (n == 1) {
    const auto& ep = *eps[0];
    return ep.usable() || ep.last_resort() ? 0 : none;
  }
  if (n == 0) return none;
  if (avoid) {
    std::size_t best = none;
    for (std::size_t i = 0; i < n; ++i) {
      const auto& ep = *eps[i];
      if (&ep == avoid || !ep.usable()) continue;
      if (best == none || ep.load() < eps[best]->load()) best = i;
    }
    if (best != none) return best;
  }
  if (balance_ == balancing::round_robin) {
    for (std::size_t k = 0; k < n; ++k) {
      auto i = next_turn_++ % n;
      if (eps[i]->usable()) return i;
    }
    return last_resort();
  }
  auto r = random();
  auto a = r % n;
  auto b = (a + 1 + (r >> 32) % (n - 1)) % n;  // another one
  bool ua = eps[a]->usable(), ub = eps[b]->usable();
  if (ua && ub) return eps[b]->load() < eps[a]->load() ? b : a;
  if (ua || ub) return ua ? a : b;
  for (std::size_t k = 0; k < n; ++k) {  // both unusable: any that is
    auto i = (r + k) % n;
    if (eps[i]->usable()) return i;
  }
  return last_resort();
}

// With every endpoint draining, ejected or backing off: one whose
// connection is still open (a draining service answers until it closes).
std::size_t endpoint_set::last_resort() const {
  for (std::size_t i = 0; i < endpoints_.size(); ++i) {
    if (endpoints_[i]->last_resort()) return i;
  }
  return none;
}

rpc_error endpoint_set::unavailable() const {
  if (endpoints_.empty()) {
    return rpc_error(errc::connection_refused,
                     "cannot connect to " + where_ + ": " +
                         (lookup_error_.empty() ? std::string("no endpoints") : lookup_error_));
  }
  const endpoint* soonest = nullptr;
  for (const auto& ep : endpoints_) {
    if (ep->last_error && (!soonest || ep->retry_at < soonest->retry_at)) soonest = ep.get();
  }
  if (!soonest) return rpc_error(errc::connection_refused, "cannot connect to " + where_);
  auto wait =
      std::chrono::duration_cast<std::chrono::milliseconds>(soonest->retry_at - clock::now());
  return rpc_error(errc::connection_refused,
                   std::string(soonest->last_error->message()) + " (next attempt in " +
                       std::to_string(std::max<long long>(wait.count(), 0)) + " ms)");
}

// ---- discovery ----

asio::awaitable<void> endpoint_set::discover() {
  for (;;) {
    if (clock::now() >= next_lookup_) co_await lookup();
    wake_.expires_at(next_lookup_);
    co_await wake_.async_wait(nothrow);
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return;
  }
}

asio::awaitable<void> endpoint_set::wait_resolved() {
  if (resolved_) co_return;
  ++resolve_waiters_;
  struct leave {  // also when the waiter is cancelled
    int& n;
    ~leave() { --n; }
  } l{resolve_waiters_};
  co_await resolved_signal_.async_wait(nothrow);
}

void endpoint_set::wake_waiters() {
  if (resolve_waiters_ > 0) resolved_signal_.cancel();
}

void endpoint_set::lookup_soon() {
  auto soon = last_lookup_ + std::chrono::seconds(1);
  if (soon < next_lookup_) {
    next_lookup_ = soon;
    wake_.cancel();
  }
}

asio::awaitable<void> endpoint_set::lookup() {
  std::vector<std::pair<asio::ip::tcp::endpoint, std::size_t>> found;
  std::vector<bool> failed(sources_.size(), false);
  std::string errors;
  for (std::size_t i = 0; i < sources_.size(); ++i) {
    const auto& src = sources_[i];
    if (src.literal) {
      found.emplace_back(asio::ip::tcp::endpoint(asio::ip::make_address(src.host), src.port), i);
      continue;
    }
    auto answer = co_await dns_->resolve(src.host);
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
  if (!errors.empty() && errors != lookup_error_) spdlog::warn("{}: {}", where_, errors);
  lookup_error_ = std::move(errors);
  last_lookup_ = clock::now();
  next_lookup_ = last_lookup_ + resolve_interval_;
  if (!resolved_) {
    resolved_ = true;
    wake_waiters();
  }
}

// The endpoints become `found`; a name whose lookup failed keeps the ones it had.
void endpoint_set::update(const std::vector<std::pair<asio::ip::tcp::endpoint, std::size_t>>& found,
                          const std::vector<bool>& failed) {
  std::vector<endpoint_ptr> next;
  auto has = [&](const asio::ip::tcp::endpoint& a) {
    return std::any_of(next.begin(), next.end(), [&](const auto& e) { return e->address == a; });
  };
  for (auto& ep : endpoints_) {
    bool keep = failed[ep->source] || std::any_of(found.begin(), found.end(), [&](const auto& f) {
                  return f.first == ep->address && f.second == ep->source;
                });
    if (keep && !has(ep->address)) {
      next.push_back(ep);
      continue;
    }
    ep->removed = true;
    spdlog::info("{}: endpoint {} is gone; draining it", where_, ep->text);
    if (ep->conn) ep->conn->close_when_idle("endpoint gone from " + where_);
  }
  for (const auto& [a, from] : found) {
    if (has(a)) continue;
    next.push_back(
        std::make_shared<endpoint>(executor_, a, address_text(a), from, sources_[from].host));
    if (resolved_) spdlog::info("{}: new endpoint {}", where_, next.back()->text);
  }
  endpoints_ = std::move(next);
}

}  // namespace tern::detail
