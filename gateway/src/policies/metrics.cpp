// Prometheus metrics of the HTTP side (requests by route, method, status;
// durations; requests in progress) and of each upstream call the handler
// made (by service, pattern, outcome).
#include "config/config.hpp"
#include "pipeline/registry.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <nlohmann/json.hpp>

#include <array>

namespace tern::gateway {

namespace {

using prometheus::Counter;
using prometheus::Family;
using histogram = local_histograms::histogram;

// The families, shared by every route's policy.
struct families {
  explicit families(metrics_registry& m)
      : requests(prometheus::BuildCounter()
                     .Name("http_server_requests_total")
                     .Help("HTTP requests answered, by route template, method and status.")
                     .Register(m.registry())),
        durations(m, "http_server_request_duration_seconds",
                  "Time from a request's parse to its response, by route template."),
        calls(prometheus::BuildCounter()
                  .Name("rpc_client_requests_total")
                  .Help("Upstream calls made for HTTP requests, by service, pattern and outcome.")
                  .Register(m.registry())),
        call_durations(m, "rpc_client_request_duration_seconds",
                       "Upstream call durations, by service and pattern.") {
    m.add_gauge("http_server_active_requests", "HTTP requests being handled now.",
                [this] { return static_cast<double>(active); });
  }
  Family<Counter>& requests;
  local_histograms durations;  // this worker's: recorded and read on its thread
  Family<Counter>& calls;
  local_histograms call_durations;
  std::size_t active = 0;
};

// Method label values are bounded: a client may send any token as a method.
std::string_view method_label(std::string_view m) {
  static constexpr std::string_view known[] = {"GET",   "HEAD",   "POST",   "PUT",
                                               "PATCH", "DELETE", "OPTIONS"};
  for (auto k : known) {
    if (k == m) return k;
  }
  return "other";
}

// One upstream call of a route: its ok counter and histogram made up
// front, the other outcomes' counters on first use.
struct call_metrics {
  std::string service, pattern;
  std::array<Counter*, errc_slots> by_outcome{};  // 0: ok
  histogram* took = nullptr;
};

class metrics final : public policy {
 public:
  metrics(families& f, std::string_view label, const route* r,
          const std::vector<upstream>& services)
      : f_(f), route_(label), durations_(&f.durations.add({{"route", route_}})) {
    if (!r) return;
    for (const auto& [key, spec] : r->calls) {
      auto& c = calls_.emplace_back();
      c.service = services[spec.upstream].name;
      c.pattern = spec.pattern.canonical();
      c.by_outcome[0] =
          &f.calls.Add({{"service", c.service}, {"pattern", c.pattern}, {"outcome", "ok"}});
      c.took = &f.call_durations.add({{"service", c.service}, {"pattern", c.pattern}});
    }
  }

  asio::awaitable<void> handle(request_context& ctx, next n) override {
    ++f_.active;
    struct done {  // also when a later policy throws
      std::size_t& active;
      ~done() { --active; }
    } guard{f_.active};
    co_await n(ctx);
    counter(method_label(ctx.request.method), ctx.response.status).Increment();
    durations_->observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - ctx.start).count());
    for (const auto& call : ctx.calls) {
      if (call.call >= calls_.size()) continue;
      auto& c = calls_[call.call];
      outcome_counter(c, call).Increment();
      c.took->observe(std::chrono::duration<double>(call.took).count());
    }
  }

 private:
  Counter& counter(std::string_view method, int status) {
    for (auto& k : by_status_) {
      if (k.status == status && k.method == method) return *k.counter;
    }
    auto* c = &f_.requests.Add(
        {{"route", route_}, {"method", std::string(method)}, {"status", std::to_string(status)}});
    by_status_.push_back({method, status, c});
    return *c;
  }

  Counter& outcome_counter(call_metrics& c, const upstream_call& call) {
    auto*& counter = c.by_outcome[call.error ? static_cast<std::size_t>(*call.error) : 0];
    if (!counter) {
      counter = &f_.calls.Add({{"service", c.service},
                               {"pattern", c.pattern},
                               {"outcome", std::string(call.outcome())}});
    }
    return *counter;
  }

  struct keyed {
    std::string_view method;  // static storage (method_label)
    int status;
    Counter* counter;
  };
  families& f_;
  std::string route_;
  histogram* durations_;
  std::vector<keyed> by_status_;
  std::vector<call_metrics> calls_;
};

}  // namespace

std::unique_ptr<policy> make_metrics_policy(const build_context& b) {
  if (b.piece == false) return nullptr;
  if (!(b.piece.is_null() || b.piece == true || (b.piece.is_object() && b.piece.empty()))) {
    throw config_error(b.where + ": must be true, false or {}");
  }
  auto& f = b.shared.get<families>([&] { return new families(b.metrics); });
  return std::make_unique<metrics>(f, b.route_label, b.matched, b.config.upstreams);
}

}  // namespace tern::gateway
