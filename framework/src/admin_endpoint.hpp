// A service's admin HTTP listener: /metrics, /health/live, /health/ready.
#pragma once

#include "tern/http/server.hpp"
#include "tern/metrics.hpp"

#include <functional>

namespace tern::detail {

/// Serves GET (and HEAD) /metrics, /health/live and /health/ready over
/// HTTP/1.1 on its own port. Ready is 200 while `not_ready()` gives null,
/// else 503 with its reason as the status ("draining", "not ready"). Other paths: 404; other
/// methods: 405.
///
/// Thread safety: the io_context's thread.
class admin_endpoint {
 public:
  admin_endpoint(asio::io_context& io, metrics_registry& m, std::function<const char*()> not_ready);
  /// Binds; returns the bound port. Throws std::system_error.
  std::uint16_t listen(const std::string& host, std::uint16_t port);
  void stop() { server_.stop(); }

 private:
  asio::awaitable<http::response> handle(http::request& req);
  metrics_registry& metrics_;
  std::function<const char*()> not_ready_;
  http::server server_;
};

}  // namespace tern::detail
