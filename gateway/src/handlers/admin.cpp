#include "app/upstreams.hpp"
#include "handlers/handlers.hpp"
#include "render/json_writer.hpp"

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
  ready(const upstreams& u, const bool& draining) : upstreams_(u), draining_(draining) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    std::vector<std::string> failing;
    bool ok = upstreams_.ready(&failing) && !draining_;
    auto& body = ctx.response.body;
    if (ok) {
      body = R"({"status":"ok"})";
      co_return;
    }
    ctx.response.status = 503;
    body = draining_ ? R"({"status":"draining","failing":[)"
                     : R"({"status":"unavailable","failing":[)";
    for (std::size_t i = 0; i < failing.size(); ++i) {
      if (i) body += ',';
      append_json_string(failing[i], body);
    }
    body += "]}";
  }

 private:
  const upstreams& upstreams_;
  const bool& draining_;
};

class metrics_endpoint final : public handler {
 public:
  explicit metrics_endpoint(const metrics_registry& m) : metrics_(m) {}
  asio::awaitable<void> handle(request_context& ctx) override {
    ctx.response.body = metrics_.scrape();
    ctx.response.content_type = metrics_content_type;
    co_return;
  }

 private:
  const metrics_registry& metrics_;
};

}  // namespace

std::unique_ptr<handler> make_live_handler() {
  return std::make_unique<live>();
}
std::unique_ptr<handler> make_ready_handler(const upstreams& u, const bool& draining) {
  return std::make_unique<ready>(u, draining);
}
std::unique_ptr<handler> make_metrics_handler(const metrics_registry& m) {
  return std::make_unique<metrics_endpoint>(m);
}

}  // namespace tern::gateway
