// The @NAME@ service. Flags (--help lists them) fall back to environment
// variables: --port or PORT, --admin-port or ADMIN_PORT, --host or HOST...
#include "handlers.hpp"

#include <tern/cli.hpp>

int main(int argc, char** argv) try {
  auto args = tern::cli::parse(argc, argv, "@NAME@", "The @NAME@ service.",
                               tern::cli::service_flags("@PORT@", "@ADMIN_PORT@"));
  tern::microservice app(tern::cli::service_options(args));
  @NAME@::register_handlers(app);
  return app.listen();  // until SIGINT or SIGTERM, then drains
} catch (const tern::cli::exit_request& e) {
  return e.report();  // --help, or a flag that is not valid
}
