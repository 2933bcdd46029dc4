// The HTTP API gateway in front of tern services.
#include "app/app.hpp"
#include "app/cores.hpp"
#include "app/token_command.hpp"

#include <tern/cli.hpp>

#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>
#include <map>

namespace {

std::size_t threads(const std::string& text) {
  if (text.empty()) return tern::gateway::default_threads(tern::gateway::usable_cores());
  unsigned v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 1 || v > 1024) {
    throw tern::cli::exit_request(
        2, "--threads: '" + text + "' is not a number of threads (1 to 1024)\n");
  }
  return v;
}

// The --upstream-tls-* flags as the TLS options of upstreams without their own.
tern::tls_options upstream_tls(std::map<std::string, std::string>& args) {
  tern::tls_options o;
  o.ca_file = args["upstream-tls-ca"];
  o.cert_file = args["upstream-tls-cert"];
  o.key_file = args["upstream-tls-key"];
  if (o.ca_file.empty() && !(o.cert_file.empty() && o.key_file.empty())) {
    throw tern::cli::exit_request(
        2, "--upstream-tls-cert and --upstream-tls-key need --upstream-tls-ca\n");
  }
  if (o.cert_file.empty() != o.key_file.empty()) {
    throw tern::cli::exit_request(2, "--upstream-tls-cert and --upstream-tls-key go together\n");
  }
  if (const char* p = std::getenv("TERN_UPSTREAM_TLS_KEY_PASSPHRASE")) o.key_passphrase = p;
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc > 1 && std::string_view(argv[1]) == "token") {
    return tern::gateway::token_command(argc, argv);
  }
  auto args = tern::cli::parse(
      argc, argv, "gateway",
      "HTTP API gateway: routes HTTP requests to tern service patterns.\n"
      "`gateway token --help`: how to mint a token signed with the configured key.",
      {{"host", "HOST", "127.0.0.1", "address to listen on"},
       {"port", "PORT", "3000", "port to listen on"},
       {"threads", "GATEWAY_THREADS", "",
        "event-loop threads, each serving its share of connections (default: one per CPU this "
        "process may use, by affinity and cgroup quota; one on two CPUs or fewer)"},
       {"config", "GATEWAY_CONFIG", "gateway/routes.json",
        "routes and upstreams (JSON); UPSTREAM_<NAME>=host:port overrides an upstream"},
       {"admin-host", "ADMIN_HOST", "127.0.0.1",
        "address of the admin listener (/metrics, /health/live, /health/ready)"},
       {"admin-port", "ADMIN_PORT", "9100", "port of the admin listener (0 picks a free one)"},
       {"drain-timeout-ms", "DRAIN_TIMEOUT_MS", "10000",
        "on SIGTERM/SIGINT, how long requests in flight may take to finish"},
       {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"},
       {"tls-cert", "TERN_TLS_CERT", "",
        "serve HTTPS with this certificate chain (PEM; in place of server.tls.cert)"},
       {"tls-key", "TERN_TLS_KEY", "",
        "its key (PEM; if encrypted, its passphrase in TERN_TLS_KEY_PASSPHRASE); SIGHUP or "
        "POST /admin/tls/reload on the admin port re-reads both"},
       {"upstream-tls-ca", "TERN_UPSTREAM_TLS_CA", "",
        "call every upstream without a \"tls\" of its own over TLS, trusting this CA file (PEM)"},
       {"upstream-tls-cert", "TERN_UPSTREAM_TLS_CERT", "",
        "with it, the gateway's client certificate (PEM) for services that require one"},
       {"upstream-tls-key", "TERN_UPSTREAM_TLS_KEY", "",
        "its key (PEM; if encrypted, its passphrase in TERN_UPSTREAM_TLS_KEY_PASSPHRASE)"}});
  tern::cli::set_log_level(args["log-level"]);
  namespace gw = tern::gateway;
  gw::app_options options{
      .host = args["host"],
      .port = tern::cli::port(args["port"], "--port"),
      .admin_host = args["admin-host"],
      .admin_port = tern::cli::port(args["admin-port"], "--admin-port"),
      .threads = threads(args["threads"]),
      .drain_timeout = tern::cli::millis(args["drain-timeout-ms"], "--drain-timeout-ms")};
  auto upstream_defaults = upstream_tls(args);
  std::unique_ptr<gw::app> made;
  try {
    auto cfg = gw::load_config(args["config"]);
    gw::apply_env_overrides(cfg);
    gw::apply_upstream_tls(cfg, upstream_defaults);
    if (!args["tls-cert"].empty() || !args["tls-key"].empty()) {
      if (args["tls-cert"].empty() || args["tls-key"].empty()) {
        throw tern::cli::exit_request(2, "--tls-cert and --tls-key go together\n");
      }
      if (!cfg.tls) cfg.tls.emplace();
      cfg.tls->cert_file = args["tls-cert"];
      cfg.tls->key_file = args["tls-key"];
      if (const char* p = std::getenv("TERN_TLS_KEY_PASSPHRASE")) cfg.tls->key_passphrase = p;
    }
    made = std::make_unique<gw::app>(std::move(cfg), std::move(options));
  } catch (const tern::cli::exit_request&) {
    throw;
  } catch (const std::exception& e) {
    spdlog::critical("config error: {}", e.what());
    return 1;
  }
  try {
    return made->run();
  } catch (const std::exception& e) {
    spdlog::critical("gateway: {}", e.what());
    return 1;
  }
} catch (const tern::cli::exit_request& e) {
  return e.report();
}
