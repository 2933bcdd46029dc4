// The @NAME@ service: flags, each with an environment fallback (--help lists them).
#include "handlers.hpp"

#include <tern/cli.hpp>

int main(int argc, char** argv) {
  auto args = tern::cli::parse(argc, argv, "@NAME@", "The @NAME@ service.",
                               {{"host", "HOST", "127.0.0.1", "address to listen on"},
                                {"port", "PORT", "@PORT@", "port to listen on"},
                                {"admin-port", "ADMIN_PORT", "@ADMIN_PORT@", "metrics and health over HTTP"},
                                {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"}});
  tern::cli::set_log_level(args["log-level"]);
  tern::microservice app({.host = args["host"],
                          .port = tern::cli::port(args["port"], "--port"),
                          .admin_port = tern::cli::port(args["admin-port"], "--admin-port")});
  @NAME@::register_handlers(app);
  return app.listen();  // until SIGINT/SIGTERM, then drains
}
