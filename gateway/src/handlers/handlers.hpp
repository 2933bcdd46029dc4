// The handlers at the end of the gateway's chains.
#pragma once

#include "pipeline/policy.hpp"

#include <tern/metrics.hpp>

#include <memory>

namespace tern::gateway {

class upstreams;
class gateway;
class route_table;

/// A config route: its one call, or its aggregate's calls made at once
/// with each result under its key. Records each call in ctx.calls.
std::unique_ptr<handler> make_rpc_handler(const route& r, upstreams& u);
/// For a request no route of `table` matches: 405 with an Allow header
/// when some route has its path with another method (RFC 9110 §15.5.6),
/// else 404; "Cannot GET /path", NestJS's text for no route, either way.
std::unique_ptr<handler> make_no_route_handler(const route_table& table);
/// A request the HTTP server refused: ctx.refused_status and its message.
std::unique_ptr<handler> make_refused_handler();
/// GET /health/live: 200 while the process serves.
std::unique_ptr<handler> make_live_handler();
/// GET /health/ready: 200 while no drain has begun and every upstream the
/// routes use answers its health calls (in every worker); else 503 naming
/// the failing ones.
std::unique_ptr<handler> make_ready_handler(gateway& gw);
/// GET /metrics: the Prometheus text (gateway::scrape()).
std::unique_ptr<handler> make_metrics_handler(gateway& gw);

}  // namespace tern::gateway
