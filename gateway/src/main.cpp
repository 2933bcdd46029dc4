// The HTTP API gateway in front of tern services.
#include "cli.hpp"
#include "gateway.hpp"

#include <spdlog/spdlog.h>
#include <asio/signal_set.hpp>

int main(int argc, char** argv) {
  auto args = tern::cli::parse(
      argc, argv, "gateway", "HTTP API gateway: routes HTTP requests to tern service patterns.",
      {{"host", "HOST", "127.0.0.1", "address to listen on"},
       {"port", "PORT", "3000", "port to listen on"},
       {"config", "GATEWAY_CONFIG", "gateway/routes.json",
        "routes and upstreams (JSON); UPSTREAM_<NAME>=host:port overrides an upstream"},
       {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"}});
  tern::cli::set_log_level(args["log-level"]);
  tern::gateway::gateway_config cfg;
  try {
    cfg = tern::gateway::load_config(args["config"]);
    tern::gateway::apply_env_overrides(cfg);
  } catch (const std::exception& e) {
    spdlog::critical("config error: {}", e.what());
    return 1;
  }
  try {
    asio::io_context io(1);
    tern::gateway::gateway gw(io, std::move(cfg));
    tern::gateway::http_server server(
        io, gw.config().limits, [&gw](tern::gateway::http_request& r) { return gw.handle(r); });
    auto port = server.listen(args["host"], tern::cli::port(args["port"], "--port"));
    for (const auto& u : gw.config().upstreams) {
      spdlog::info("upstream {} at {}:{}", u.name, u.host, u.port);
    }
    spdlog::info("gateway listening on {}:{} ({} routes)", args["host"], port,
                 gw.config().routes.size());
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("received signal {}, stopping", sig);
      server.stop();
      io.stop();
    });
    io.run();
    return 0;
  } catch (const std::exception& e) {
    spdlog::critical("gateway: {}", e.what());
    return 1;
  }
}
