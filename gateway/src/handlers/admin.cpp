#include "app/gateway.hpp"
#include "handlers/handlers.hpp"
#include <tern/json.hpp>

namespace tern::gateway {

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
  explicit ready(gateway& gw) : gateway_(gw) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    auto now = co_await gateway_.ready();
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
  gateway& gateway_;
};

class metrics_endpoint final : public handler {
 public:
  explicit metrics_endpoint(gateway& gw) : gateway_(gw) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    ctx.response.body = co_await gateway_.scrape();
    ctx.response.content_type = metrics_content_type;
  }

 private:
  gateway& gateway_;
};

}  // namespace

std::unique_ptr<handler> make_live_handler() {
  return std::make_unique<live>();
}
std::unique_ptr<handler> make_ready_handler(gateway& gw) {
  return std::make_unique<ready>(gw);
}
std::unique_ptr<handler> make_metrics_handler(gateway& gw) {
  return std::make_unique<metrics_endpoint>(gw);
}

}  // namespace tern::gateway
