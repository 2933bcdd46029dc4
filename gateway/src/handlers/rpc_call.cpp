#include "config/config.hpp"
#include "handlers/handlers.hpp"
#include "render/call_data.hpp"
#include "render/errors.hpp"
#include "routing/route_table.hpp"
#include "upstreams/upstreams.hpp"

#include <tern/json.hpp>
#include <tern/log_limit.hpp>
#include <tern/packed.hpp>

#include <spdlog/spdlog.h>

namespace tern::gateway {

namespace {

// Writes each reply value as JSON into its slot (a stream's last value wins,
// as in send()).
struct json_sink {
  std::string* out;
  void operator()(const tern::value_view& v) const {
    out->clear();
    append_json(v.packed(), *out);
  }
};

// One request's call data, meta, reply JSON and calls. Kept per thread
// between requests, so their memory is reused instead of allocated for each.
struct call_buffers {
  std::vector<std::string> data, meta, json;
  std::vector<json_sink> sinks;
  std::vector<tern::raw_call> calls;

  // Buffers that grew large for one big reply are not kept.
  [[nodiscard]] bool worth_keeping() const {
    std::size_t bytes = 0;
    for (const auto& j : json) bytes += j.capacity();
    return bytes <= 64 * 1024;
  }
};

class borrowed_buffers {
 public:
  borrowed_buffers() {
    if (spare().empty()) {
      b_ = std::make_unique<call_buffers>();
    } else {
      b_ = std::move(spare().back());
      spare().pop_back();
    }
  }
  borrowed_buffers(const borrowed_buffers&) = delete;
  borrowed_buffers& operator=(const borrowed_buffers&) = delete;
  ~borrowed_buffers() {
    b_->data.clear();  // request bodies: rebuilt for each request, and not to be kept
    if (spare().size() < 1024 && b_->worth_keeping()) spare().push_back(std::move(b_));
  }
  call_buffers* operator->() const noexcept { return b_.get(); }

 private:
  static std::vector<std::unique_ptr<call_buffers>>& spare() {
    thread_local std::vector<std::unique_ptr<call_buffers>> kept;
    return kept;
  }
  std::unique_ptr<call_buffers> b_;
};

class rpc_call final : public handler {
 public:
  rpc_call(const route& r, upstreams& u) : route_(r), upstreams_(u) {}

  asio::awaitable<void> handle(request_context& ctx) override {
    const std::size_t n = route_.calls.size();
    const auto& req = ctx.request;
    borrowed_buffers b;
    auto& data = b->data;
    auto& json = b->json;
    auto& meta = b->meta;
    data.resize(n);
    json.resize(n);
    meta.resize(n);
    try {
      for (std::size_t i = 0; i < n; ++i) {
        data[i] = build_call_data(route_.calls[i].second.data, ctx.params, req.query, req.body);
      }
    } catch (const rpc_error& e) {
      ctx.response = error_response(400, e.message());
      co_return;
    }

    // Every call at once; replies are written as JSON straight from the
    // receive buffer, each into its own slot (they may arrive in any order).
    auto& sinks = b->sinks;
    auto& calls = b->calls;
    sinks.clear();
    calls.clear();
    for (std::size_t i = 0; i < n; ++i) {
      json[i].clear();
      meta[i].clear();
      ctx.call_meta(meta[i]);
      sinks.push_back({&json[i]});
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto& spec = route_.calls[i].second;
      // The sinks are function_refs: the sink objects they point to stay put
      // (all pushed above, before any reference is taken).
      calls.push_back({.client = &upstreams_.client(spec.upstream),
                       .p = &spec.pattern,
                       .packed_data = data[i],
                       .on_value = sinks[i],
                       .options = {.meta = meta[i], .idempotent = route_.idempotent}});
    }
    auto sent = std::chrono::steady_clock::now();
    co_await tern::send_raw_all(calls);
    const rpc_error* failed = nullptr;
    std::size_t failed_call = 0;
    ctx.calls.reserve(ctx.calls.size() + n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& e = calls[i].error;
      ctx.calls.push_back({.call = i,
                           .error = e ? std::optional(e->kind()) : std::nullopt,
                           .took = calls[i].ended - sent,
                           .retries = calls[i].retries});
      if (e && !failed) {
        failed = &*e;
        failed_call = i;
      }
    }
    if (failed) {
      auto upstream = route_.calls[failed_call].second.upstream;
      if (failed->kind() == errc::remote) {
        spdlog::debug("{} {}: {} answered {} {} (request_id={})", req.method, clip(req.target),
                      upstreams_.info(upstream).name, failed->status(), clip(failed->what()),
                      ctx.request_id);
      } else {
        upstreams_.warn_failure(upstream, req.method, req.target, *failed);
      }
      ctx.response = error_for(*failed, upstreams_.info(upstream));
      if (failed->kind() == errc::circuit_open) {
        // The breaker's next trial, in whole seconds (at least one).
        auto ms = upstreams_.client(upstream).retry_after().count();
        ctx.response.headers.emplace_back(
            "Retry-After", std::to_string(std::max<long long>(1, (ms + 999) / 1000)));
      }
      co_return;
    }

    auto& resp = ctx.response;
    resp.status = route_.status;
    if (!route_.aggregate) {
      resp.body = std::move(json[0]);
      if (resp.body.empty()) resp.body = "null";  // a reply without a value
      co_return;
    }
    std::size_t size = 2;
    for (std::size_t i = 0; i < n; ++i) size += route_.calls[i].first.size() + json[i].size() + 8;
    resp.body.reserve(size);
    resp.body += '{';
    for (std::size_t i = 0; i < n; ++i) {
      if (i) resp.body += ',';
      append_json_string(route_.calls[i].first, resp.body);
      resp.body += ':';
      resp.body += json[i].empty() ? std::string_view("null") : std::string_view(json[i]);
    }
    resp.body += '}';
  }

 private:
  const route& route_;
  upstreams& upstreams_;
};

class no_route final : public handler {
 public:
  explicit no_route(const route_table& table) : table_(table) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    auto text = "Cannot " + ctx.request.method + " " + ctx.request.path;
    auto allow = table_.allowed(ctx.request.path);
    ctx.response = error_response(allow.empty() ? 404 : 405, text);
    if (!allow.empty()) ctx.response.headers.emplace_back("Allow", std::move(allow));
    co_return;
  }

 private:
  const route_table& table_;
};

class refused final : public handler {
 public:
  asio::awaitable<void> handle(request_context& ctx) override {
    ctx.response = error_response(ctx.refused_status, ctx.refused_message);
    co_return;
  }
};

}  // namespace

std::unique_ptr<handler> make_refused_handler() {
  return std::make_unique<refused>();
}

std::unique_ptr<handler> make_rpc_handler(const route& r, upstreams& u) {
  return std::make_unique<rpc_call>(r, u);
}
std::unique_ptr<handler> make_no_route_handler(const route_table& table) {
  return std::make_unique<no_route>(table);
}

}  // namespace tern::gateway
