// Rate limits per client, subject or header, with the GCRA (a token bucket
// kept as one time per limit): 429 with Retry-After over the limit, and the
// IETF RateLimit-Policy / RateLimit fields (draft-ietf-httpapi-ratelimit-
// headers-08) on every answer of a limited route.
#include "config/config.hpp"
#include "pipeline/registry.hpp"
#include "policies/client_address.hpp"
#include "render/errors.hpp"

#include <tern/endpoint.hpp>
#include <tern/log_limit.hpp>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace tern::gateway {

namespace {

using json = nlohmann::ordered_json;
using clock = std::chrono::steady_clock;

constexpr std::size_t max_limits = 4;
constexpr std::size_t max_key_bytes = 256;  // of a header's value
constexpr std::chrono::seconds sweep_interval{1};

// Each worker's count of refusals (summed at scrape time).
struct families {
  explicit families(metrics_registry& m)
      : limited(prometheus::BuildCounter()
                    .Name("gateway_rate_limited_requests_total")
                    .Help("Requests over a rate limit, by route and mode (enforced: refused with "
                          "429; shadow: counted only).")
                    .Register(m.registry())) {}
  prometheus::Family<prometheus::Counter>& limited;
};

// One limit: `requests` per `period`, up to `burst` at once. GCRA: a key's
// state is its theoretical arrival time (tat); a request is allowed when
// max(tat, now) + interval - now <= burst * interval.
struct limit {
  std::string name;
  std::int64_t requests = 0, burst = 0;
  double period_s = 0;
  std::int64_t interval = 0;   // ns between requests at the sustained rate
  std::int64_t tolerance = 0;  // burst * interval
};

// A key's times, one per limit; a bucket whose times have all passed is
// the same as none (full), so it can be evicted without changing anything.
struct bucket {
  std::array<std::int64_t, max_limits> tat{};
};

// A route's buckets, shared by that route's policy in every worker (a
// client's connections may reach different workers: a limit is the
// process's, never split by thread). The lock is held for a lookup and a
// few additions per request.
struct table {
  std::mutex mutex;
  std::unordered_map<std::string, bucket> buckets;
  bucket overflow;
  std::int64_t last_sweep = 0;
  prometheus::Gauge* keys = nullptr;
};

// Every route's table, by chain id.
class tables {
 public:
  explicit tables(metrics_registry& m)
      : keys_(prometheus::BuildGauge()
                  .Name("gateway_rate_limit_keys")
                  .Help("Client keys with a bucket, by route (bounded by max_keys).")
                  .Register(m.registry())) {}

  table& of(std::string_view chain, std::string_view route) {
    std::lock_guard lock(mutex_);
    auto& t = by_chain_[std::string(chain)];
    if (!t) {
      t = std::make_unique<table>();
      t->keys = &keys_.Add({{"route", std::string(route)}});
    }
    return *t;
  }

 private:
  prometheus::Family<prometheus::Gauge>& keys_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<table>> by_chain_;
};

std::int64_t ceil_seconds(std::int64_t ns) {
  return (ns + 999'999'999) / 1'000'000'000;
}

class rate_limit final : public policy {
 public:
  rate_limit(families& f, table& t, std::string_view label, const trusted_proxies& trusted,
             clock::time_point (*now)() noexcept)
      : now_(now),
        route_(label),
        trusted_(trusted),
        limited_(&f.limited.Add({{"route", route_}, {"mode", "enforced"}})),
        shadowed_(&f.limited.Add({{"route", route_}, {"mode", "shadow"}})),
        table_(t) {}

  std::vector<limit> limits;
  enum class key_kind { client, subject, header } kind = key_kind::client;
  std::string header;  // lower-cased, for key_kind::header
  bool shadow = false;
  std::size_t max_keys = 100000;
  std::string policy_field;  // RateLimit-Policy, made once

  asio::awaitable<void> handle(request_context& ctx, next n) override {
    auto now = now_().time_since_epoch().count();
    auto key = key_of(ctx);
    std::int64_t wait = 0;
    bucket b;  // a copy of the key's times, as they are after this request
    {
      std::lock_guard lock(table_.mutex);
      bucket& kept = find(key, now);
      for (std::size_t i = 0; i < limits.size(); ++i) {
        auto over = std::max(kept.tat[i], now) + limits[i].interval - now - limits[i].tolerance;
        wait = std::max(wait, over);
      }
      if (wait <= 0) {
        for (std::size_t i = 0; i < limits.size(); ++i) {
          kept.tat[i] = std::max(kept.tat[i], now) + limits[i].interval;
        }
      }
      b = kept;
    }
    if (wait > 0) {
      (shadow ? shadowed_ : limited_)->Increment();
      std::size_t held = 0;
      if (log_.allow(held)) {
        spdlog::info("[{}] {} {} {} (rate limit, key {}) (request_id={}){}",
                     tern::to_string(ctx.request.peer), ctx.request.method,
                     clip(ctx.request.target),
                     shadow ? "over the limit, let through (shadow mode)" : "refused (429)",
                     describe(key), ctx.request_id, held_back(held));
      }
      if (!shadow) {
        ctx.response = error_response(429, "Too Many Requests");
        ctx.response.headers.emplace_back("Retry-After", std::to_string(ceil_seconds(wait)));
        add_fields(ctx.response, b, now);
        co_return;
      }
    }
    if (shadow) {
      co_await n(ctx);
      co_return;
    }
    http::response fields;
    add_fields(fields, b, now);
    co_await n(ctx);
    for (auto& h : fields.headers) ctx.response.headers.push_back(std::move(h));
  }

 private:
  // A key: "s:" and the subject, "h:" and the header's value, or for the
  // client's address 'c' and its bytes (IPv4's 4, an IPv6 /64's 8: short
  // enough for std::string to hold without allocating, and no text made).
  std::string key_of(const request_context& ctx) const {
    if (kind == key_kind::subject && !ctx.subject.empty()) return "s:" + ctx.subject;
    if (kind == key_kind::header) {
      auto v = ctx.request.header(header);
      if (!v.empty()) return "h:" + std::string(v.substr(0, max_key_bytes));
    }
    auto a = trusted_.client(ctx.request);
    // IPv6 clients are limited by /64: one subscriber usually holds a whole
    // /64, and would otherwise have 2^64 buckets to spread over.
    std::size_t from = tern::is_v4(a) ? 12 : 0, to = tern::is_v4(a) ? 16 : 8;
    std::string key(1 + to - from, 'c');
    std::memcpy(key.data() + 1, a.data() + from, to - from);
    return key;
  }

  // A key as the log shows it.
  static std::string describe(const std::string& key) {
    if (key.empty() || key[0] != 'c') return clip(key);
    tern::ip_address a{};
    if (key.size() == 5) {
      a[10] = a[11] = 0xff;  // IPv4-mapped
      std::memcpy(a.data() + 12, key.data() + 1, 4);
      return "c:" + tern::to_string(a);
    }
    std::memcpy(a.data(), key.data() + 1, std::min<std::size_t>(key.size() - 1, 8));
    return "c:" + tern::to_string(a) + "/64";
  }

  // The key's bucket (table_.mutex held). Over max_keys, buckets that are
  // full again are evicted (at most once a second); if none is, new keys
  // share one bucket.
  bucket& find(const std::string& key, std::int64_t now) {
    auto& t = table_;
    if (auto it = t.buckets.find(key); it != t.buckets.end()) return it->second;
    if (t.buckets.size() >= max_keys &&
        now - t.last_sweep >= std::chrono::nanoseconds(sweep_interval).count()) {
      t.last_sweep = now;
      std::erase_if(t.buckets, [&](const auto& kv) {
        return std::all_of(kv.second.tat.begin(), kv.second.tat.end(),
                           [&](std::int64_t x) { return x <= now; });
      });
      t.keys->Set(static_cast<double>(t.buckets.size()));
    }
    if (t.buckets.size() >= max_keys) return t.overflow;
    auto& b = t.buckets[key];
    t.keys->Set(static_cast<double>(t.buckets.size()));
    return b;
  }

  void add_fields(http::response& r, const bucket& b, std::int64_t now) const {
    std::string state;
    state.reserve(limits.size() * 48);
    char digits[24];
    auto number = [&](std::int64_t v) {
      state.append(digits, std::to_chars(digits, digits + sizeof digits, v).ptr);
    };
    for (std::size_t i = 0; i < limits.size(); ++i) {
      const auto& l = limits[i];
      auto ahead = std::max<std::int64_t>(b.tat[i] - now, 0);
      auto remaining = std::max<std::int64_t>((l.tolerance - ahead) / l.interval, 0);
      if (i > 0) state += ", ";
      state += '"';
      state += l.name;
      state += "\";r=";
      number(remaining);
      state += ";t=";
      number(ceil_seconds(ahead));
    }
    r.headers.emplace_back("RateLimit-Policy", policy_field);
    r.headers.emplace_back("RateLimit", std::move(state));
  }

  clock::time_point (*now_)() noexcept;  // process_state::now
  std::string route_;
  const trusted_proxies& trusted_;
  prometheus::Counter* limited_;
  prometheus::Counter* shadowed_;
  table& table_;
  log_limiter log_;
};

std::string format_number(double v) {
  if (v == std::floor(v)) return std::to_string(static_cast<long long>(v));
  auto s = std::to_string(v);
  while (s.back() == '0') s.pop_back();
  return s;
}

limit read_limit(const json& v, const std::string& where) {
  if (!v.is_object()) throw config_error(where + ": must be {\"requests\": N, \"per_s\": S}");
  limit l;
  for (const auto& [key, x] : v.items()) {
    if (key == "requests" || key == "burst") {
      if (!x.is_number_integer() || x.get<std::int64_t>() < 1 || x.get<std::int64_t>() > 1000000) {
        throw config_error(where + "." + key + ": must be a whole number from 1 to 1000000");
      }
      (key == "requests" ? l.requests : l.burst) = x.get<std::int64_t>();
    } else if (key == "per_s") {
      if (!x.is_number() || x.get<double>() < 0.001 || x.get<double>() > 86400.0 * 366) {
        throw config_error(where + ".per_s: must be a number of seconds (0.001 to a year)");
      }
      l.period_s = x.get<double>();
    } else if (key == "name") {
      auto ok = x.is_string() && !x.get<std::string>().empty() &&
                std::all_of(x.get_ref<const std::string&>().begin(),
                            x.get_ref<const std::string&>().end(), [](char c) {
                              return std::isalnum(static_cast<unsigned char>(c)) || c == '-' ||
                                     c == '_' || c == '.';
                            });
      if (!ok) throw config_error(where + ".name: must be letters, digits, '-', '_' or '.'");
      l.name = x.get<std::string>();
    } else {
      throw config_error(where + "." + key +
                         ": is not a limit setting (requests, per_s, burst, name)");
    }
  }
  if (l.requests == 0 || l.period_s == 0) {
    throw config_error(where + ": needs requests and per_s");
  }
  if (l.burst == 0) l.burst = l.requests;
  // The times are int64 nanoseconds: keep burst * interval far from overflow.
  if (l.period_s * 1e9 / static_cast<double>(l.requests) * static_cast<double>(l.burst + 1) >
      1e18) {
    throw config_error(where + ": burst x (per_s / requests) must stay under 30 years");
  }
  l.interval = static_cast<std::int64_t>(l.period_s * 1e9 / static_cast<double>(l.requests));
  if (l.interval < 1) throw config_error(where + ": more than one request per nanosecond");
  l.tolerance = l.interval * l.burst;
  if (l.name.empty())
    l.name = std::to_string(l.requests) + "-per-" + format_number(l.period_s) + "s";
  return l;
}

}  // namespace

std::unique_ptr<policy> make_rate_limit_policy(const build_context& b) {
  const auto& piece = b.piece;
  if (piece.is_null() || piece == false) return nullptr;
  if (!piece.is_object() || !piece.contains("limits")) {
    throw config_error(b.where + ": must be {\"limits\": [{\"requests\": N, \"per_s\": S}], ...}");
  }
  auto& f = b.shared.get<families>([&] { return new families(b.metrics); });
  auto& t = b.process.shared.get<tables>([&] { return new tables(b.process.metrics); });
  // Read once per worker (a route's own list would be a piece, not this).
  auto& trusted = b.shared.get<trusted_proxies>([&] {
    auto list = section_of(b.config, "server.trusted_proxies");
    return new trusted_proxies(
        list.is_null() ? trusted_proxies() : trusted_proxies::read(list, "server.trusted_proxies"));
  });
  auto p = std::make_unique<rate_limit>(f, t.of(b.chain_id, b.route_label), b.route_label, trusted,
                                        b.process.now);
  for (const auto& [key, v] : piece.items()) {
    std::string at = b.where + "." + key;
    if (key == "limits") {
      if (!v.is_array() || v.empty() || v.size() > max_limits) {
        throw config_error(at + ": must list 1 to " + std::to_string(max_limits) + " limits");
      }
      for (std::size_t i = 0; i < v.size(); ++i) {
        p->limits.push_back(read_limit(v[i], at + "[" + std::to_string(i) + "]"));
      }
    } else if (key == "key") {
      auto k = v.is_string() ? v.get<std::string>() : std::string();
      if (k == "client") {
        p->kind = rate_limit::key_kind::client;
      } else if (k == "subject") {
        p->kind = rate_limit::key_kind::subject;
      } else if (k.starts_with("header:") && k.size() > 7) {
        p->kind = rate_limit::key_kind::header;
        p->header = k.substr(7);
        std::transform(p->header.begin(), p->header.end(), p->header.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      } else {
        throw config_error(at + ": must be \"client\", \"subject\" or \"header:<name>\"");
      }
    } else if (key == "shadow") {
      if (!v.is_boolean()) throw config_error(at + ": must be true or false");
      p->shadow = v.get<bool>();
    } else if (key == "max_keys") {
      if (!v.is_number_integer() || v.get<std::int64_t>() < 1 || v.get<std::int64_t>() > 10000000) {
        throw config_error(at + ": must be a whole number from 1 to 10000000");
      }
      p->max_keys = v.get<std::size_t>();
    } else {
      throw config_error(at + ": is not a rate_limit setting (limits, key, shadow, max_keys)");
    }
  }
  for (const auto& l : p->limits) {
    p->policy_field += p->policy_field.empty() ? "" : ", ";
    p->policy_field += "\"" + l.name + "\";q=" + std::to_string(l.requests) +
                       ";w=" + format_number(std::ceil(l.period_s));
  }
  return p;
}

}  // namespace tern::gateway
