#include "app/gateway.hpp"

#include "handlers/handlers.hpp"
#include "render/errors.hpp"

#include <prometheus/metric_family.h>

#include <algorithm>

namespace tern::gateway {

gateway::gateway(asio::io_context& io, gateway_config cfg)
    : gateway(io, std::make_shared<const gateway_config>(std::move(cfg)),
              std::make_shared<process_state>()) {}

gateway::gateway(asio::io_context& io, std::shared_ptr<const gateway_config> cfg,
                 std::shared_ptr<process_state> process)
    : io_(io),
      cfg_(std::move(cfg)),
      process_(std::move(process)),
      upstreams_(io, cfg_->upstreams, cfg_->dns_servers, metrics_),
      tasks_(io.get_executor(), "gateway") {
  try {
    build();
  } catch (...) {
    // A policy refused its piece: the tasks started so far (an access
    // log's flush) must not touch what goes with this gateway.
    tasks_.cancel();
    throw;
  }
}

void gateway::build() {
  check_sections(*cfg_);
  for (const auto& r : registered_policies()) {
    if (r.routes_by) reroutes_.push_back(r.routes_by);
  }
  chain_env env{io_, *cfg_, metrics_, shared_, *process_, tasks_};
  for (std::size_t i = 0; i < cfg_->routes.size(); ++i) {
    const auto& r = cfg_->routes[i];
    route_entry e{
        .method = r.method, .segments = r.segments, .label = r.path, .config = &r, .serve = {}};
    // The entry's label string is moved into the table below; a chain keeps
    // its own copies of what it needs from it.
    auto id = "routes[" + std::to_string(i) + "]";
    e.serve = build_chain(env, &r, r.path, id, r.policies, id + ".policies",
                          make_rpc_handler(r, upstreams_));
    public_.add(std::move(e));
  }
  add_admin_routes(admin_, env, "admin ");
  if (cfg_->admin_on_public) add_admin_routes(public_, env, "public ");
  // Never on the public port, whatever admin.on_public_port says.
  route_entry reload{.method = "POST",
                     .segments = {"admin", "tls", "reload"},
                     .label = "/admin/tls/reload",
                     .config = nullptr,
                     .serve = {}};
  reload.serve = build_chain(env, nullptr, "(admin)", "admin /admin/tls/reload", admin_policies(),
                             "admin", make_tls_reload_handler(*this));
  admin_.add(std::move(reload));
  unmatched_ = build_chain(env, nullptr, "(unmatched)", "(unmatched)", "{}", "policies",
                           make_no_route_handler(public_));
  rejected_ = build_chain(env, nullptr, "(rejected)", "(rejected)", "{}", "policies",
                          make_refused_handler());
  admin_unmatched_ = build_chain(env, nullptr, "(unmatched)", "admin (unmatched)", admin_policies(),
                                 "admin", make_no_route_handler(admin_));
}

void gateway::add_admin_routes(route_table& t, const chain_env& env, std::string_view id_prefix) {
  // Scrapes and probes are neither logged nor counted: they would drown
  // the traffic they watch.
  const std::string& quiet = admin_policies();
  auto add = [&](std::vector<std::string> segments, std::string path, std::unique_ptr<handler> h) {
    auto id = std::string(id_prefix) + path;
    route_entry e{.method = "GET",
                  .segments = std::move(segments),
                  .label = std::move(path),
                  .config = nullptr,
                  .serve = {}};
    e.serve = build_chain(env, nullptr, "(admin)", id, quiet, "admin", std::move(h));
    t.add(std::move(e));
  };
  add({"metrics"}, "/metrics", make_metrics_handler(*this));
  add({"health", "live"}, "/health/live", make_live_handler());
  add({"health", "ready"}, "/health/ready", make_ready_handler(*this));
}

std::vector<prometheus::MetricFamily> gateway::collect_metrics() const {
  return metrics_.collect();
}

readiness gateway::local_readiness() const {
  readiness r;
  r.draining = draining_;
  r.upstreams_ready = upstreams_.ready(&r.failing);
  return r;
}

asio::awaitable<std::string> gateway::scrape() {
  if (view_) co_return co_await view_->scrape();
  co_return process_->metrics.scrape(collect_metrics());
}

std::optional<std::string> gateway::reload_tls() {
  return view_ ? view_->reload_tls() : admin_view::reload_tls();
}

asio::awaitable<readiness> gateway::ready() {
  if (view_) co_return co_await view_->ready();
  co_return local_readiness();
}

void gateway::start() {
  std::vector<std::size_t> used;
  for (const auto& r : cfg_->routes) {
    for (const auto& [key, spec] : r.calls) used.push_back(spec.upstream);
  }
  upstreams_.watch(std::move(used));
}

void gateway::close() {
  tasks_.cancel();
  upstreams_.close();
}

asio::awaitable<bool> gateway::join(std::chrono::steady_clock::time_point deadline) {
  bool probes = co_await upstreams_.join(deadline);
  co_return co_await tasks_.join(deadline) && probes;
}

asio::awaitable<http::response> gateway::handle(http::request& req) {
  return serve(public_, *unmatched_, req);
}

asio::awaitable<http::response> gateway::handle_admin(http::request& req) {
  return serve(admin_, *admin_unmatched_, req);
}

asio::awaitable<http::response> gateway::serve(const route_table& table, const chain& fallback,
                                               http::request& req) {
  request_context ctx(req);
  // A request a policy answers for the route of another method (a CORS
  // preflight) goes to that route, if its chain has the policy.
  for (auto routes_by : reroutes_) {
    auto method = routes_by(req);
    if (method.empty()) continue;
    const auto* e = table.match(method, req.path, ctx.params);
    if (e && std::find(e->serve->reroutes.begin(), e->serve->reroutes.end(), routes_by) !=
                 e->serve->reroutes.end()) {
      ctx.matched = e->config;
      ctx.rerouted_by = routes_by;
      co_await e->serve->run(ctx);
      co_return std::move(ctx.response);
    }
    ctx.params.clear();
  }
  if (const auto* e = table.match(req, ctx.params)) {
    ctx.matched = e->config;
    co_await e->serve->run(ctx);
  } else {
    co_await fallback.run(ctx);
  }
  co_return std::move(ctx.response);
}

asio::awaitable<http::response> gateway::render_error(int status, std::string_view message,
                                                      const http::request& req) {
  request_context ctx(req);
  ctx.refused_status = status;
  ctx.refused_message = message;
  co_await rejected_->run(ctx);
  co_return std::move(ctx.response);
}

}  // namespace tern::gateway
