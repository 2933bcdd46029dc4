// The users service: users in SQLite behind tern message patterns.
#include "cli.hpp"
#include "users_handlers.hpp"

#include <spdlog/spdlog.h>
#include <tern/offload.hpp>

#include <algorithm>
#include <cstdlib>

#include <filesystem>

int main(int argc, char** argv) {
  auto args = tern::cli::parse(
      argc, argv, "users_service", "Serves users over tern's TCP protocol (data in SQLite).",
      {{"host", "HOST", "127.0.0.1", "address to listen on"},
       {"port", "PORT", "3001", "port to listen on"},
       {"data-dir", "DATA_DIR", "data", "directory of the users.db file (created if missing)"},
       {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"},
       {"workers", "TERN_WORKERS", "1",
        "worker threads for SQLite (one connection behind a lock: more only contend)"}});
  tern::cli::set_log_level(args["log-level"]);
  tern::set_worker_threads(static_cast<unsigned>(std::max(1, std::atoi(args["workers"].c_str()))));
  try {
    std::filesystem::create_directories(args["data-dir"]);
    tern::demo::users_repository repo(args["data-dir"] + "/users.db");
    tern::microservice app({.host = args["host"], .port = tern::cli::port(args["port"], "--port")});
    // user_created goes back to this service's own event handler.
    auto wildcard = args["host"] == "0.0.0.0" || args["host"] == "::";
    tern::client_proxy self({.host = wildcard ? "127.0.0.1" : args["host"],
                             .port = tern::cli::port(args["port"], "--port")});
    tern::demo::register_users_handlers(app, repo, &self);
    return app.listen();
  } catch (const std::exception& e) {
    spdlog::critical("users_service: {}", e.what());
    return 1;
  }
}
