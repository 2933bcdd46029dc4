// X-Request-Id and W3C trace context: kept when well-formed, made when not,
// returned on the response and sent on with every upstream call.
#include "pipeline/registry.hpp"

#include <nlohmann/json.hpp>

namespace tern::gateway {

namespace {

std::size_t count(const http::request& req, std::string_view name) {
  std::size_t n = 0;
  for (const auto& [k, v] : req.headers) n += k == name;
  return n;
}

class request_id final : public policy {
 public:
  asio::awaitable<void> handle(request_context& ctx, next n) override {
    const auto& req = ctx.request;
    auto sent = req.header("x-request-id");
    ctx.request_id = valid_request_id(sent) ? std::string(sent) : new_request_id();
    ctx.traced = true;
    // Two traceparent headers make it invalid (W3C); two tracestate ones are
    // dropped rather than joined.
    if (count(req, "traceparent") == 1 && parse_traceparent(req.header("traceparent"), ctx.trace)) {
      auto state = req.header("tracestate");
      if (count(req, "tracestate") == 1 && valid_tracestate(state)) ctx.tracestate = state;
    } else {
      ctx.trace = new_trace();  // and tracestate is dropped with the old trace
    }
    co_await n(ctx);
    // The outermost policy: nothing after this reads the id.
    ctx.response.headers.emplace_back("X-Request-Id", std::move(ctx.request_id));
  }
};

}  // namespace

std::unique_ptr<policy> make_request_id_policy(const build_context& b) {
  if (b.piece.is_null() || b.piece == true || (b.piece.is_object() && b.piece.empty())) {
    return std::make_unique<request_id>();
  }
  if (b.piece == false) return nullptr;
  throw config_error(b.where + ": must be true, false or {}");
}

}  // namespace tern::gateway
