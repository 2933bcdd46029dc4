#include "pipeline/policy.hpp"
#include "render/errors.hpp"

#include <spdlog/spdlog.h>

namespace tern::gateway {

asio::awaitable<void> next::operator()(request_context& ctx) const {
  if (index_ < chain_->policies_.size()) {
    co_await chain_->policies_[index_]->handle(ctx, next(*chain_, index_ + 1));
    co_return;
  }
  try {
    co_await chain_->handler_->handle(ctx);
  } catch (const std::exception& e) {
    spdlog::error("[{}] {} {} failed: {} (request_id={})", ctx.request.peer, ctx.request.method,
                  ctx.request.target, e.what(), ctx.request_id);
    ctx.response = error_response(500, "Internal server error");
  }
}

asio::awaitable<void> chain::run(request_context& ctx) const {
  // A coroutine, not a forwarder: the `next` it awaits must live in a frame.
  co_await next(*this, 0)(ctx);
}

void request_context::call_meta(std::string& out) const {
  if (!traced) {
    append_trace_meta(out, request_id, nullptr, {});
    return;
  }
  auto span = child_of(trace);
  append_trace_meta(out, request_id, &span, tracestate);
}

}  // namespace tern::gateway
