// The products service: products in SQLite behind tern message patterns.
#include "cli.hpp"
#include "products_handlers.hpp"

#include <spdlog/spdlog.h>

int main(int argc, char** argv) {
  auto args = tern::cli::parse_service(argc, argv, "products", "3002", "9102");
  try {
    tern::demo::products_repository repo(args["store"]);
    tern::microservice app(tern::cli::service_options(args));
    tern::demo::register_products_handlers(app, repo);
    return app.listen();
  } catch (const std::exception& e) {
    spdlog::critical("products_service: {}", e.what());
    return 1;
  }
}
