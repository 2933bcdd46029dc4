// The HTTP API gateway in front of tern services.
#include "app/gateway.hpp"
#include "app/token_command.hpp"

#include <tern/cli.hpp>

#include <spdlog/spdlog.h>
#include <asio/co_spawn.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>

#include <charconv>
#include <iostream>

namespace {

// An io_context whose pending work can be destroyed (shutdown) while the
// gateway and server that suspended coroutines refer to still exist: after a
// drain that ran out of time, some do.
class io_context : public asio::io_context {
 public:
  using asio::execution_context::shutdown;
  using asio::io_context::io_context;
};

std::chrono::milliseconds milliseconds(const std::string& text, const std::string& what) {
  long long v = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0) {
    std::cerr << what << ": '" << text << "' is not a number of milliseconds\n";
    std::exit(2);
  }
  return std::chrono::milliseconds(v);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::string_view(argv[1]) == "token") {
    return tern::gateway::token_command(argc, argv);
  }
  auto args = tern::cli::parse(
      argc, argv, "gateway",
      "HTTP API gateway: routes HTTP requests to tern service patterns.\n"
      "`gateway token --help`: how to mint a token signed with the configured key.",
      {{"host", "HOST", "127.0.0.1", "address to listen on"},
       {"port", "PORT", "3000", "port to listen on"},
       {"config", "GATEWAY_CONFIG", "gateway/routes.json",
        "routes and upstreams (JSON); UPSTREAM_<NAME>=host:port overrides an upstream"},
       {"admin-host", "ADMIN_HOST", "127.0.0.1",
        "address of the admin listener (/metrics, /health/live, /health/ready)"},
       {"admin-port", "ADMIN_PORT", "9100", "port of the admin listener (0 picks a free one)"},
       {"drain-timeout-ms", "DRAIN_TIMEOUT_MS", "10000",
        "on SIGTERM/SIGINT, how long requests in flight may take to finish"},
       {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"}});
  tern::cli::set_log_level(args["log-level"]);
  auto drain_timeout = milliseconds(args["drain-timeout-ms"], "--drain-timeout-ms");
  namespace gw_ns = tern::gateway;
  io_context io(1);
  std::unique_ptr<gw_ns::gateway> made;
  try {
    auto cfg = gw_ns::load_config(args["config"]);
    gw_ns::apply_env_overrides(cfg);
    made = std::make_unique<gw_ns::gateway>(io, std::move(cfg));
  } catch (const std::exception& e) {
    spdlog::critical("config error: {}", e.what());
    return 1;
  }
  auto& gw = *made;
  try {
    auto render = [&gw](int status, std::string_view message, const tern::http::request& r) {
      return gw.render_error(status, message, r);
    };
    tern::http::server server(
        io, gw.config().limits, [&gw](tern::http::request& r) { return gw.handle(r); }, render);
    tern::http::server admin(io, tern::http::limits{.max_body_bytes = 0, .max_connections = 256},
                             [&gw](tern::http::request& r) { return gw.handle_admin(r); });
    gw.metrics().add_gauge("http_server_open_connections", "Open connections on the public port.",
                           [&server] { return static_cast<double>(server.connections()); });
    auto port = server.listen(args["host"], tern::cli::port(args["port"], "--port"));
    auto admin_port =
        admin.listen(args["admin-host"], tern::cli::port(args["admin-port"], "--admin-port"));
    for (const auto& u : gw.config().upstreams) {
      std::string at;
      for (const auto& e : u.endpoints) at += (at.empty() ? "" : ", ") + e;
      spdlog::info("upstream {} at {}", u.name, at);
    }
    gw.start();
    spdlog::info("gateway listening on {}:{} ({} routes); metrics and health on {}:{}",
                 args["host"], port, gw.config().routes.size(), args["admin-host"], admin_port);
    // The first signal drains, a second one stops at once.
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code ec, int sig) {
      if (ec) return;
      spdlog::info("received signal {}, draining (at most {} ms)", sig, drain_timeout.count());
      gw.set_draining();
      asio::co_spawn(io, server.drain(drain_timeout), [&io, &gw, &admin](std::exception_ptr) {
        spdlog::info("drained, stopping");
        admin.stop();
        // Calls still pending (the bound passed) end now, so nothing waits
        // on them when the loop stops; stop once their endings have run.
        gw.close_upstreams();
        asio::post(io, [&io] { io.stop(); });
      });
      signals.async_wait([&](std::error_code ec2, int) {
        if (ec2) return;
        server.stop();
        admin.stop();
        io.stop();
      });
    });
    io.run();
    io.shutdown();
    return 0;
  } catch (const std::exception& e) {
    spdlog::critical("gateway: {}", e.what());
    return 1;
  }
}
