#include "upstreams/upstreams.hpp"

#include <tern/microservice.hpp>
#include <tern/packed.hpp>

#include <prometheus/metric_family.h>
#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <algorithm>

namespace tern::gateway {

namespace {

std::string_view state_name(client_proxy::connection_state s) {
  switch (s) {
    case client_proxy::connection_state::connected:
      return "connected";
    case client_proxy::connection_state::connecting:
      return "connecting";
    case client_proxy::connection_state::disconnected:
      break;
  }
  return "disconnected";
}

}  // namespace

upstreams::upstreams(asio::io_context& io, const std::vector<upstream>& config,
                     const std::vector<std::string>& dns_servers, metrics_registry& metrics)
    : io_(io),
      config_(config),
      answered_(config.size()),
      reported_(config.size(), false),
      warnings_(config.size()),
      tasks_(io.get_executor(), "upstream probes") {
  for (const auto& u : config_) {
    clients_.push_back(std::make_unique<tern::client_proxy>(
        io_, tern::client_options{
                 .endpoints = u.endpoints,
                 .balance = u.round_robin ? balancing::round_robin : balancing::least_outstanding,
                 .resolve_interval = u.resolve_interval,
                 .dns_servers = dns_servers,
                 .timeout = u.timeout,
                 .connect_timeout = std::min(u.timeout, std::chrono::milliseconds(2000)),
                 .backoff_initial = std::chrono::milliseconds(50),
                 .backoff_max = std::chrono::milliseconds(1000),
                 .connection = {.keepalive_interval = u.keepalive_interval,
                                .keepalive_timeout = u.keepalive_timeout},
                 .wire = u.wire,
                 .tls = u.tls,
                 .ejection = u.ejection,
                 .breaker = u.breaker,
                 .retry = u.retry}));
  }
  metrics.add_collector([this](std::vector<prometheus::MetricFamily>& out) {
    prometheus::MetricFamily f{
        "rpc_client_connections",
        "Endpoints of each upstream by the state of their connection (one connection each).",
        prometheus::MetricType::Gauge,
        {}};
    static const client_proxy::connection_state states[] = {
        client_proxy::connection_state::connected, client_proxy::connection_state::connecting,
        client_proxy::connection_state::disconnected};
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      auto endpoints = clients_[i]->endpoints();
      for (auto s : states) {
        prometheus::ClientMetric m;
        m.label = {{"service", config_[i].name}, {"state", std::string(state_name(s))}};
        m.gauge.value = static_cast<double>(std::count_if(
            endpoints.begin(), endpoints.end(), [s](const auto& e) { return e.state == s; }));
        f.metric.push_back(std::move(m));
      }
    }
    out.push_back(std::move(f));
    resilience_families(out);
  });
}

// What ejection, the breakers and retries did, per upstream.
void upstreams::resilience_families(std::vector<prometheus::MetricFamily>& out) const {
  auto family = [&](const char* name, const char* help, prometheus::MetricType type, auto value) {
    prometheus::MetricFamily f{name, help, type, {}};
    for (std::size_t i = 0; i < clients_.size(); ++i) {
      prometheus::ClientMetric m;
      m.label = {{"service", config_[i].name}};
      auto v = static_cast<double>(value(*clients_[i]));
      (type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value) = v;
      f.metric.push_back(std::move(m));
    }
    out.push_back(std::move(f));
  };
  using type = prometheus::MetricType;
  family("rpc_client_retries_total", "Attempts after the first, per upstream.", type::Counter,
         [](const client_proxy& c) { return c.stats().retries; });
  family("rpc_client_retries_refused_total",
         "Retries the retry budget did not allow, per upstream.", type::Counter,
         [](const client_proxy& c) { return c.stats().retries_refused; });
  family("rpc_client_ejections_total",
         "Endpoints left out after consecutive failures, per upstream.", type::Counter,
         [](const client_proxy& c) { return c.stats().ejections; });
  family("rpc_client_endpoints_ejected", "Endpoints left out now, per upstream.", type::Gauge,
         [](const client_proxy& c) {
           auto eps = c.endpoints();
           return std::count_if(eps.begin(), eps.end(), [](const auto& e) { return e.ejected; });
         });
  family("rpc_client_breaker_opened_total", "Times the upstream's circuit breaker opened.",
         type::Counter, [](const client_proxy& c) { return c.stats().breaker_opened; });
  family("rpc_client_breaker_refused_total",
         "Calls failed at once (503) while the upstream's circuit breaker was open.", type::Counter,
         [](const client_proxy& c) { return c.stats().breaker_refused; });

  prometheus::MetricFamily f{"rpc_client_breaker_state",
                             "The upstream's circuit breaker: 1 for its current state.",
                             type::Gauge,
                             {}};
  static const std::pair<client_proxy::breaker_state, const char*> states[] = {
      {client_proxy::breaker_state::closed, "closed"},
      {client_proxy::breaker_state::open, "open"},
      {client_proxy::breaker_state::half_open, "half_open"}};
  for (std::size_t i = 0; i < clients_.size(); ++i) {
    auto now = clients_[i]->breaker();
    for (const auto& [s, name] : states) {
      prometheus::ClientMetric m;
      m.label = {{"service", config_[i].name}, {"state", name}};
      m.gauge.value = now == s ? 1 : 0;
      f.metric.push_back(std::move(m));
    }
  }
  out.push_back(std::move(f));
}

void upstreams::watch(std::vector<std::size_t> used) {
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  watched_ = std::move(used);
  for (auto i : watched_) tasks_.spawn(probe_rounds(i));
}

bool upstreams::ready(std::vector<std::string>* failing) const {
  auto since = std::chrono::steady_clock::now() - ready_window;
  bool ok = !closed_;
  for (auto i : watched_) {
    if (answered_[i] >= since) continue;
    ok = false;
    if (failing) failing->push_back(config_[i].name);
  }
  return ok;
}

// One loop per upstream: a service that never answers (or whose connect
// hangs) delays only its own probes, never another's.
asio::awaitable<void> upstreams::probe_rounds(std::size_t i) {
  static const tern::pattern health(tern::health_pattern);
  static constexpr char nil = '\xc0';  // msgpack nil: the call's data
  asio::steady_timer tick(io_);
  auto ignore = [](const tern::value_view&) {};
  while (!closed_) {
    auto started = std::chrono::steady_clock::now();
    tern::raw_call call{.client = clients_[i].get(),
                        .p = &health,
                        .packed_data = std::string_view(&nil, 1),
                        .on_value = ignore,
                        .options = {.timeout = probe_timeout}};
    co_await tern::send_raw_all(std::span(&call, 1));
    // A NestJS service has no health pattern: its no-handler answer shows
    // it is up and serving.
    bool nest_alive = config_[i].wire == tern::wire_format::nestjs && call.error &&
                      call.error->kind() == errc::no_handler;
    if (!call.error || nest_alive) answered_[i] = call.ended;
    bool ready = answered_[i] >= std::chrono::steady_clock::now() - ready_window;
    if (ready != reported_[i]) {
      reported_[i] = ready;
      if (ready) {
        spdlog::info("upstream {} is ready", config_[i].name);
      } else {
        spdlog::warn("upstream {} is not ready: {}", config_[i].name,
                     call.error ? tern::clip(call.error->what()) : "no answer");
      }
    }
    tick.expires_at(started + probe_interval);
    co_await tick.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
  }
}

void upstreams::warn_failure(std::size_t i, std::string_view method, std::string_view target,
                             const rpc_error& e) {
  // A dead service under load must not turn into a log flood.
  if (std::size_t held = 0; warnings_[i].allow(held)) {
    spdlog::warn("{} {}: {} failed ({}): {}{}", method, tern::clip(target), config_[i].name,
                 to_string(e.kind()), tern::clip(e.what()), tern::held_back(held));
  }
}

void upstreams::close() {
  closed_ = true;
  tasks_.cancel();
  for (auto& c : clients_) c->close();
}

asio::awaitable<bool> upstreams::join(std::chrono::steady_clock::time_point deadline) {
  return tasks_.join(deadline);
}

}  // namespace tern::gateway
