#include "admin_endpoint.hpp"

namespace tern::detail {

admin_endpoint::admin_endpoint(asio::io_context& io, metrics_registry& m,
                               std::function<const char*()> not_ready)
    : metrics_(m),
      not_ready_(std::move(not_ready)),
      server_(io, http::admin_limits(64), [this](http::request& r) { return handle(r); }) {}

std::uint16_t admin_endpoint::listen(const std::string& host, std::uint16_t port) {
  return server_.listen(host, port);
}

asio::awaitable<http::response> admin_endpoint::handle(http::request& req) {
  http::response r;
  bool known = req.path == "/metrics" || req.path == "/health/live" || req.path == "/health/ready";
  if (!known) co_return http::text_response(404, "no such admin path: " + req.path);
  if (req.method != "GET" && req.method != "HEAD") {
    r = http::text_response(405, "use GET");
    r.headers.emplace_back("Allow", "GET, HEAD");
    co_return r;
  }
  if (req.path == "/metrics") {
    r.body = metrics_.scrape();
    r.content_type = metrics_content_type;
  } else if (const char* why = req.path == "/health/ready" ? not_ready_() : nullptr) {
    r.status = 503;
    r.body = std::string(R"({"status":")") + why + "\"}";
  } else {
    r.body = R"({"status":"ok"})";
  }
  co_return r;
}

}  // namespace tern::detail
