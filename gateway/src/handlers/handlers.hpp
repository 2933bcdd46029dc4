// The handlers at the end of the gateway's chains.
#pragma once

#include "pipeline/policy.hpp"

#include <tern/metrics.hpp>

#include <memory>

namespace tern::gateway {

class upstreams;
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
// The admin endpoints' handlers: handlers/admin.hpp.

}  // namespace tern::gateway
