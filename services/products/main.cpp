// The products service: products in SQLite behind tern message patterns.
#include "cli.hpp"
#include "products_handlers.hpp"

#include <spdlog/spdlog.h>

int main(int argc, char** argv) try {
  auto args = tern::cli::parse_service(argc, argv, "products", "3002", "9102");
  tern::demo::products_repository repo(args["store"]);
  tern::microservice app(tern::cli::service_options(args));
  // Not ready while its database cannot be reached.
  app.ready_when([&repo] { return repo.ready(); });
  tern::demo::register_products_handlers(app, repo);
  return app.listen();
} catch (const tern::cli::exit_request& e) {
  return e.report();
} catch (const std::exception& e) {
  spdlog::critical("products_service: {}", e.what());
  return 1;
}
