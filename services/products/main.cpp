// The products service: products in SQLite behind tern message patterns.
#include "cli.hpp"
#include "products_handlers.hpp"

#include <spdlog/spdlog.h>
#include <tern/offload.hpp>

#include <algorithm>
#include <cstdlib>

#include <filesystem>

int main(int argc, char** argv) {
  auto args = tern::cli::parse(
      argc, argv, "products_service", "Serves products over tern's TCP protocol (data in SQLite).",
      {{"host", "HOST", "127.0.0.1", "address to listen on"},
       {"port", "PORT", "3002", "port to listen on"},
       {"data-dir", "DATA_DIR", "data", "directory of the products.db file (created if missing)"},
       {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"},
       {"workers", "TERN_WORKERS", "1",
        "worker threads for SQLite (one connection behind a lock: more only contend)"}});
  tern::cli::set_log_level(args["log-level"]);
  tern::set_worker_threads(static_cast<unsigned>(std::max(1, std::atoi(args["workers"].c_str()))));
  try {
    std::filesystem::create_directories(args["data-dir"]);
    tern::demo::products_repository repo(args["data-dir"] + "/products.db");
    tern::microservice app({.host = args["host"], .port = tern::cli::port(args["port"], "--port")});
    tern::demo::register_products_handlers(app, repo);
    return app.listen();
  } catch (const std::exception& e) {
    spdlog::critical("products_service: {}", e.what());
    return 1;
  }
}
