#include "pipeline/policy.hpp"
#include "render/errors.hpp"

#include <tern/endpoint.hpp>
#include <tern/log_limit.hpp>

#include <spdlog/spdlog.h>

namespace tern::gateway {

asio::awaitable<void> next::operator()(request_context& ctx) const {
  if (index_ < chain_->policies_.size()) {
    return chain_->policies_[index_]->handle(ctx, next(*chain_, index_ + 1));
  }
  return chain_->run_handler(ctx);
}

asio::awaitable<void> chain::run_handler(request_context& ctx) const {
  try {
    co_await handler_->handle(ctx);
  } catch (const std::exception& e) {
    if (ctx.request.client_gone) {  // its awaited operations were cancelled
      ctx.response = client_closed();
      co_return;
    }
    spdlog::error("[{}] {} {} failed: {} (request_id={})", tern::to_string(ctx.request.peer),
                  ctx.request.method, clip(ctx.request.target), clip(e.what()), ctx.request_id);
    ctx.response = internal_error();
  }
}

void request_context::call_meta(std::string& out) const {
  if (!traced) {
    append_trace_meta(out, request_id, nullptr, {}, identity);
    return;
  }
  auto span = child_of(trace);
  append_trace_meta(out, request_id, &span, tracestate, identity);
}

}  // namespace tern::gateway
