// Response caching for GET routes: one LRU store bounded by entries and
// bytes, keyed by method, route, the request data the route uses and the
// caller's identity; concurrent misses for one key make one upstream call
// (single flight), whichever workers they reach. POST routes may invalidate
// the reads they affect.
#include "config/config.hpp"
#include "pipeline/registry.hpp"
#include "render/call_data.hpp"
#include "render/errors.hpp"

#include <tern/http/url.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace tern::gateway {

namespace {

using json = nlohmann::ordered_json;
using clock = std::chrono::steady_clock;
using prometheus::Counter;

// The store's bounds: the top-level "cache" section.
struct cache_limits {
  std::size_t max_entries = 10000;
  std::size_t max_bytes = 64 * 1024 * 1024;
  std::size_t max_entry_bytes = 1024 * 1024;  // larger responses are not cached
};

cache_limits read_cache_limits(const json& c, const std::string& where) {
  cache_limits l;
  if (c.is_null()) return l;
  if (!c.is_object()) throw config_error(where + ": must be an object");
  for (const auto& [key, v] : c.items()) {
    std::size_t* field = key == "max_entries"       ? &l.max_entries
                         : key == "max_bytes"       ? &l.max_bytes
                         : key == "max_entry_bytes" ? &l.max_entry_bytes
                                                    : nullptr;
    if (!field) {
      throw config_error(where + "." + key +
                         ": is not a cache setting (max_entries, max_bytes, max_entry_bytes)");
    }
    if (!v.is_number_integer() || v.get<long>() <= 0) {
      throw config_error(where + "." + key + ": must be a positive integer");
    }
    *field = v.get<std::size_t>();
  }
  return l;
}

// The store every cached route shares, in every worker: entries, their
// metrics, and the calls in flight for missing keys. One lock guards it,
// held for a lookup or an insertion, never across an await.
class store {
 public:
  store(const cache_limits& limits, metrics_registry& m, clock::time_point (*now)() noexcept)
      : now(now),
        limits_(limits),
        evictions_(prometheus::BuildCounter()
                       .Name("gateway_cache_evictions_total")
                       .Help("Entries dropped, by reason (lru, expired, invalidated).")
                       .Register(m.registry())),
        lru_evictions_(&evictions_.Add({{"reason", "lru"}})),
        expired_(&evictions_.Add({{"reason", "expired"}})),
        invalidated_(&evictions_.Add({{"reason", "invalidated"}})) {
    m.add_gauge("gateway_cache_entries", "Responses in the cache.", [this] {
      std::lock_guard lock(mutex_);
      return static_cast<double>(index_.size());
    });
    m.add_gauge("gateway_cache_bytes", "Bytes the cached responses hold (keys, headers, bodies).",
                [this] {
                  std::lock_guard lock(mutex_);
                  return static_cast<double>(bytes_);
                });
  }

  struct entry {
    std::string key;
    std::string_view route;  // the route's label, the config's (outlives the store)
    clock::time_point stored, expires;
    std::shared_ptr<const http::response> response;  // copied by a hit after the lock
    std::size_t bytes = 0;
  };

  // A miss being answered: later requests for its key, in any worker, wait
  // for it. Guarded by the store's lock.
  struct flight {
    // A request waiting on the flight: its timer, on its own worker's loop,
    // is cancelled there when the answer is in.
    struct waiter {
      explicit waiter(asio::io_context& io) : done(io, clock::time_point::max()) {}
      asio::steady_timer done;
    };
    std::shared_ptr<const http::response> answer;  // set before landing, copied after the lock
    bool landed = false;
    bool cacheable = false;
    bool leader_left = false;      // the leading request's client went away
    std::uint64_t generation = 0;  // of the route when the call started
    std::vector<std::shared_ptr<waiter>> waiters;
  };

  [[nodiscard]] std::mutex& mutex() { return mutex_; }

  clock::time_point (*const now)() noexcept;  // process_state::now

  // The rest need the lock held.

  const entry* find(const std::string& key, clock::time_point now) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    if (it->second->expires <= now) {
      erase(it->second);
      expired_->Increment();
      return nullptr;
    }
    lru_.splice(lru_.begin(), lru_, it->second);  // most recent first
    return &*it->second;
  }

  void put(std::string key, std::string_view route, std::shared_ptr<const http::response> r,
           std::size_t bytes, clock::time_point now, clock::duration ttl) {
    if (bytes > limits_.max_entry_bytes || bytes > limits_.max_bytes) return;
    if (auto it = index_.find(key); it != index_.end()) erase(it->second);
    while (!lru_.empty() &&
           (index_.size() >= limits_.max_entries || bytes_ + bytes > limits_.max_bytes)) {
      erase(std::prev(lru_.end()));
      lru_evictions_->Increment();
    }
    lru_.push_front({std::move(key), route, now, now + ttl, std::move(r), bytes});
    index_.emplace(lru_.front().key, lru_.begin());
    bytes_ += bytes;
  }

  // Drops every entry of these routes, and makes calls in flight for them
  // not store what they get (it may predate the change).
  void invalidate(const std::vector<std::string>& routes) {
    for (const auto& r : routes) ++generation_[r];
    for (auto it = lru_.begin(); it != lru_.end();) {
      auto next = std::next(it);
      if (std::find(routes.begin(), routes.end(), it->route) != routes.end()) {
        erase(it);
        invalidated_->Increment();
      }
      it = next;
    }
  }

  std::uint64_t generation(std::string_view route) {
    auto it = generation_.find(route);
    return it == generation_.end() ? 0 : it->second;
  }

  std::unordered_map<std::string, std::shared_ptr<flight>> flights;

 private:
  void erase(std::list<entry>::iterator it) {
    bytes_ -= it->bytes;
    index_.erase(it->key);
    lru_.erase(it);
  }

  std::mutex mutex_;
  cache_limits limits_;
  prometheus::Family<Counter>& evictions_;
  Counter* lru_evictions_;
  Counter* expired_;
  Counter* invalidated_;
  std::list<entry> lru_;
  std::unordered_map<std::string_view, std::list<entry>::iterator> index_;  // keys in lru_
  std::map<std::string, std::uint64_t, std::less<>> generation_;
  std::size_t bytes_ = 0;
};

using flight = store::flight;

// Each worker's count of what the cache did (summed at scrape time).
struct request_family {
  explicit request_family(metrics_registry& m)
      : requests(prometheus::BuildCounter()
                     .Name("gateway_cache_requests_total")
                     .Help("Requests to cached routes, by route and result (hit: answered from "
                           "the cache or a call in flight; miss: called upstream; bypass: "
                           "Cache-Control: no-store).")
                     .Register(m.registry())) {}
  prometheus::Family<Counter>& requests;
};

std::size_t entry_bytes(const std::string& key, const http::response& r) {
  std::size_t bytes = key.size() + r.body.size() + sizeof(store::entry);
  for (const auto& [k, v] : r.headers) bytes += k.size() + v.size();
  return bytes;
}

struct cache_control {
  bool no_store = false, no_cache = false;
};

cache_control read_cache_control(const http::request& req) {
  cache_control cc;
  for (const auto& [k, v] : req.headers) {
    if (k != "cache-control") continue;
    std::string_view list = v;
    while (!list.empty()) {
      auto comma = list.find(',');
      auto item = list.substr(0, comma);
      list = comma == list.npos ? std::string_view() : list.substr(comma + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      auto is = [&](std::string_view name) {
        return item.size() == name.size() &&
               std::equal(item.begin(), item.end(), name.begin(), [](char a, char b) {
                 return std::tolower(static_cast<unsigned char>(a)) == b;
               });
      };
      cc.no_store = cc.no_store || is("no-store");
      cc.no_cache = cc.no_cache || is("no-cache") || is("max-age=0");
    }
  }
  return cc;
}

class cache final : public policy {
 public:
  cache(store& s, request_family& f, asio::io_context& io, std::string_view label)
      : store_(s), io_(io), label_(label) {
    std::string route(label);
    hit_ = &f.requests.Add({{"route", route}, {"result", "hit"}});
    miss_ = &f.requests.Add({{"route", route}, {"result", "miss"}});
    bypass_ = &f.requests.Add({{"route", route}, {"result", "bypass"}});
  }

  std::chrono::milliseconds ttl{0};      // 0: this route is not cached
  std::vector<std::string> invalidates;  // GET routes a success here makes stale
  bool uses_params = false, uses_query = false, uses_body = false;

  asio::awaitable<void> handle(request_context& ctx, next n) override {
    if (ttl.count() == 0) {
      co_await n(ctx);
      if (ctx.response.status >= 200 && ctx.response.status < 300) {
        std::lock_guard lock(store_.mutex());
        store_.invalidate(invalidates);
      }
      co_return;
    }
    auto cc = read_cache_control(ctx.request);
    if (cc.no_store) {
      bypass_->Increment();
      co_await n(ctx);
      ctx.response.headers.emplace_back("X-Cache", "MISS");
      co_return;
    }
    auto key = key_of(ctx);
    // Waits on a flight whose leader's client left get no answer from it,
    // and look again (one of them then leads). The lookup and the choice to
    // lead are one step under the lock: two workers missing at once must
    // not both lead.
    std::shared_ptr<flight> f;  // the flight this request leads
    std::uint64_t generation = 0;
    for (;;) {
      auto now = store_.now();
      std::shared_ptr<const http::response> hit;
      clock::time_point stored;
      std::shared_ptr<flight> waited;
      std::shared_ptr<flight::waiter> w;
      {
        std::lock_guard lock(store_.mutex());
        generation = store_.generation(label_);
        auto it = store_.flights.find(key);
        // A call that started before an invalidation may answer with what
        // the write changed: only a call from after it is waited on.
        bool current = it != store_.flights.end() && it->second->generation == generation;
        if (!cc.no_cache) {
          if (const auto* e = store_.find(key, now)) {
            hit = e->response;
            stored = e->stored;
          } else if (current) {
            waited = it->second;
            w = std::make_shared<flight::waiter>(io_);
            waited->waiters.push_back(w);
          }
        }
        // A no-cache request with a current call in flight makes its own,
        // and leaves the flight to that one; a call from before an
        // invalidation is replaced (its waiters still get its answer).
        if (!hit && !waited && !current) {
          f = std::make_shared<flight>();
          f->generation = generation;
          store_.flights.insert_or_assign(key, f);
        }
      }
      if (hit) {
        hit_->Increment();
        ctx.response = *hit;
        answered_from_cache(ctx, now - stored);
        co_return;
      }
      if (!waited) break;
      co_await w->done.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      std::unique_lock lock(store_.mutex());
      if (waited->leader_left && !ctx.request.client_gone) continue;
      // Not landed: this request's own client left (nobody reads the answer).
      auto answer = waited->landed ? waited->answer : nullptr;
      bool cacheable = waited->cacheable;
      lock.unlock();
      hit_->Increment();
      ctx.response = answer ? *answer : error_response_for_abandoned();
      if (cacheable) {
        answered_from_cache(ctx, {});
      } else {
        ctx.response.headers.emplace_back("X-Cache", "MISS");
      }
      co_return;
    }
    miss_->Increment();
    struct land {  // also when the chain is torn down mid-call
      store& s;
      const std::string& key;
      std::shared_ptr<flight> f;
      ~land() {
        if (!f) return;
        std::vector<std::shared_ptr<flight::waiter>> waiters;
        {
          std::lock_guard lock(s.mutex());
          if (auto it = s.flights.find(key); it != s.flights.end() && it->second == f) {
            s.flights.erase(it);
          }
          f->landed = true;  // waiters take f->answer (a 503 if never set)
          waiters.swap(f->waiters);
        }
        // Each waiter's timer is its own loop's: cancelled there.
        for (auto& w : waiters) {
          auto ex = w->done.get_executor();
          asio::post(ex, [w = std::move(w)] { w->done.cancel(); });
        }
      }
    } landing{store_, key, f};
    co_await n(ctx);
    bool cacheable = ctx.response.status == 200 &&
                     std::none_of(ctx.calls.begin(), ctx.calls.end(),
                                  [](const upstream_call& c) { return c.error.has_value(); });
    // One copy of the answer, made outside the lock, for the store and the
    // flight's waiters.
    std::shared_ptr<const http::response> answer;
    if (f || cacheable) answer = std::make_shared<const http::response>(ctx.response);
    {
      std::lock_guard lock(store_.mutex());
      if (cacheable && store_.generation(label_) == generation) {
        store_.put(key, label_, answer, entry_bytes(key, ctx.response), store_.now(), ttl);
      }
      if (f && ctx.request.client_gone) {
        f->leader_left = true;  // its calls were cancelled: not the others' answer
      } else if (f) {
        f->answer = std::move(answer);
        f->cacheable = cacheable;
      }
    }
    ctx.response.headers.emplace_back("X-Cache", "MISS");
  }

 private:
  static http::response error_response_for_abandoned() {
    return error_response(503, "the request this one waited on was abandoned");
  }

  static void answered_from_cache(request_context& ctx, clock::duration age) {
    ctx.response.headers.emplace_back("X-Cache", "HIT");
    ctx.response.headers.emplace_back(
        "Age", std::to_string(std::chrono::duration_cast<std::chrono::seconds>(age).count()));
  }

  // Method, route, then what the route's calls are made of (params in the
  // route's order, the query decoded and sorted, last value of a repeated
  // key winning as in the calls), then the identity on authenticated routes.
  [[nodiscard]] std::string key_of(const request_context& ctx) const {
    std::string key = "GET ";  // HEAD is answered as GET
    key += label_;
    auto field = [&key](std::string_view s) {
      key += '\0';
      key += std::to_string(s.size());
      key += ':';
      key += s;
    };
    if (uses_params) {
      for (const auto& [name, value] : ctx.params) {
        field(name);
        field(value);
      }
    }
    if (uses_query) {
      std::map<std::string, std::string> q;
      std::string_view rest = ctx.request.query;
      while (!rest.empty()) {
        auto amp = rest.find('&');
        auto item = rest.substr(0, amp);
        rest = amp == rest.npos ? std::string_view() : rest.substr(amp + 1);
        if (item.empty()) continue;
        auto eq = item.find('=');
        q[http::percent_decode(item.substr(0, eq), true)] =
            eq == item.npos ? std::string() : http::percent_decode(item.substr(eq + 1), true);
      }
      for (const auto& [k, v] : q) {
        field(k);
        field(v);
      }
    }
    if (uses_body) field(ctx.request.body);
    field(ctx.identity);
    return key;
  }

  store& store_;
  asio::io_context& io_;
  std::string_view label_;  // the config's route path: outlives the store's entries
  Counter* hit_;
  Counter* miss_;
  Counter* bypass_;
};

}  // namespace

std::unique_ptr<policy> make_cache_policy(const build_context& b) {
  const auto& piece = b.piece;
  if (piece.is_null() || piece == false) return nullptr;
  if (!piece.is_object() || !(piece.contains("ttl_s") || piece.contains("invalidates"))) {
    throw config_error(b.where +
                       R"(: must be {"ttl_s": N} (a GET route) or {"invalidates": [...]})");
  }
  if (!b.matched) return nullptr;  // the unmatched and admin chains have nothing to cache
  auto& s = b.process.shared.get<store>([&] {
    return new store(read_cache_limits(section_of(b.config, "cache"), "cache"), b.process.metrics,
                     b.process.now);
  });
  auto& f = b.shared.get<request_family>([&] { return new request_family(b.metrics); });
  auto p = std::make_unique<cache>(s, f, b.io, b.route_label);
  for (const auto& [key, v] : piece.items()) {
    std::string at = b.where + "." + key;
    if (key == "ttl_s") {
      if (b.matched->method != "GET") throw config_error(at + ": only GET routes are cached");
      if (!v.is_number() || v.get<double>() <= 0 || v.get<double>() > 86400) {
        throw config_error(at + ": must be a number of seconds (up to 86400)");
      }
      p->ttl = std::chrono::milliseconds(static_cast<long long>(v.get<double>() * 1000));
      if (p->ttl.count() == 0) throw config_error(at + ": must be at least 0.001");
    } else if (key == "invalidates") {
      if (!v.is_array()) throw config_error(at + ": must list GET route paths");
      for (const auto& path : v) {
        auto name = path.is_string() ? path.get<std::string>() : std::string();
        bool found =
            std::any_of(b.config.routes.begin(), b.config.routes.end(),
                        [&](const route& r) { return r.method == "GET" && r.path == name; });
        if (!found) throw config_error(at + ": '" + name + "' is not the path of a GET route");
        p->invalidates.push_back(name);
      }
    } else {
      throw config_error(at + ": is not a cache setting (ttl_s, invalidates)");
    }
  }
  if (p->ttl.count() == 0 && p->invalidates.empty()) return nullptr;
  for (const auto& [name, spec] : b.matched->calls) {
    for (auto d : spec.data) {
      p->uses_params = p->uses_params || d == data_source::params;
      p->uses_query = p->uses_query || d == data_source::query;
      p->uses_body = p->uses_body || d == data_source::body;
    }
  }
  return p;
}

void check_cache_section(const nlohmann::ordered_json& section, const std::string& where) {
  (void)read_cache_limits(section, where);
}

}  // namespace tern::gateway
