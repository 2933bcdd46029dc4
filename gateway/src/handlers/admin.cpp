#include "handlers/admin.hpp"

#include <tern/json.hpp>
#include <tern/metrics.hpp>

#include <algorithm>

namespace tern::gateway {

void readiness::merge(readiness other) {
  draining = draining || other.draining;
  upstreams_ready = upstreams_ready && other.upstreams_ready;
  for (auto& name : other.failing) {
    if (std::find(failing.begin(), failing.end(), name) == failing.end()) {
      failing.push_back(std::move(name));
    }
  }
}

namespace {

class live final : public handler {
 public:
  asio::awaitable<void> handle(request_context& ctx) override {
    ctx.response.body = R"({"status":"ok"})";
    co_return;
  }
};

class ready final : public handler {
 public:
  explicit ready(admin_view& view) : view_(view) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    auto now = co_await view_.ready();
    auto& body = ctx.response.body;
    if (now.ok()) {
      body = R"({"status":"ok"})";
      co_return;
    }
    ctx.response.status = 503;
    body = now.draining ? R"({"status":"draining","failing":[)"
                        : R"({"status":"unavailable","failing":[)";
    for (std::size_t i = 0; i < now.failing.size(); ++i) {
      if (i) body += ',';
      append_json_string(now.failing[i], body);
    }
    body += "]}";
  }

 private:
  admin_view& view_;
};

class metrics_endpoint final : public handler {
 public:
  explicit metrics_endpoint(admin_view& view) : view_(view) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    ctx.response.body = co_await view_.scrape();
    ctx.response.content_type = metrics_content_type;
  }

 private:
  admin_view& view_;
};

class tls_reload final : public handler {
 public:
  explicit tls_reload(admin_view& view) : view_(view) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    auto why = view_.reload_tls();
    auto& body = ctx.response.body;
    if (!why) {
      ctx.response.status = 404;
      body = R"({"status":"refused","reason":"the public port does not serve TLS"})";
      co_return;
    }
    if (why->empty()) {
      body = R"({"status":"reloaded"})";
      co_return;
    }
    ctx.response.status = 500;
    body = R"({"status":"refused","reason":)";
    append_json_string(*why, body);
    body += '}';
  }

 private:
  admin_view& view_;
};

}  // namespace

std::unique_ptr<handler> make_live_handler() {
  return std::make_unique<live>();
}
std::unique_ptr<handler> make_ready_handler(admin_view& view) {
  return std::make_unique<ready>(view);
}
std::unique_ptr<handler> make_metrics_handler(admin_view& view) {
  return std::make_unique<metrics_endpoint>(view);
}
std::unique_ptr<handler> make_tls_reload_handler(admin_view& view) {
  return std::make_unique<tls_reload>(view);
}

}  // namespace tern::gateway
