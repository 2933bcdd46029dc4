#include "service_metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

namespace tern::detail {

std::string_view outcome_name(std::size_t slot) noexcept {
  return slot == outcome_ok ? std::string_view("ok") : to_string(static_cast<errc>(slot));
}

void call_stats::count(std::size_t outcome) {
  auto*& c = by_outcome[outcome];
  if (!c) c = &family->Add({{"pattern", pattern}, {"outcome", std::string(outcome_name(outcome))}});
  c->Increment();
}

service_metrics::service_metrics(metrics_registry& m)
    : requests_(&prometheus::BuildCounter()
                     .Name("rpc_server_requests_total")
                     .Help("Requests handled, by pattern and outcome (ok or the error kind).")
                     .Register(m.registry())),
      events_(&prometheus::BuildCounter()
                   .Name("rpc_server_events_total")
                   .Help("Events handled, by pattern and outcome (ok or the error kind).")
                   .Register(m.registry())),
      durations_(m, "rpc_server_request_duration_seconds",
                 "Time from a request's arrival to its final reply, by pattern."),
      unknown_(request_stats("(unknown)", false)),
      malformed_(request_stats("(malformed)", false)) {}

service_metrics::~service_metrics() = default;

call_stats* service_metrics::request_stats(const std::string& pattern, bool timed) {
  auto& s = by_request_[pattern];
  if (!s) {
    s = std::make_unique<call_stats>();
    s->pattern = pattern;
    s->family = requests_;
    s->by_outcome[outcome_ok] = &requests_->Add({{"pattern", pattern}, {"outcome", "ok"}});
    if (timed) {
      s->duration = &durations_.add({{"pattern", pattern}});
    }
  }
  return s.get();
}

call_stats* service_metrics::event_stats(const std::string& pattern) {
  auto& s = by_event_[pattern];
  if (!s) {
    s = std::make_unique<call_stats>();
    s->pattern = pattern;
    s->family = events_;
    s->by_outcome[outcome_ok] = &events_->Add({{"pattern", pattern}, {"outcome", "ok"}});
  }
  return s.get();
}

void service_metrics::record(call_stats& s, std::size_t outcome,
                             std::chrono::steady_clock::duration d) {
  s.count(outcome);
  if (s.duration) s.duration->observe(std::chrono::duration<double>(d).count());
}

}  // namespace tern::detail
