// The users service: users in SQLite behind tern message patterns.
#include "cli.hpp"
#include "users_handlers.hpp"

#include <spdlog/spdlog.h>

int main(int argc, char** argv) try {
  auto args = tern::cli::parse_service(argc, argv, "users", "3001", "9101");
  tern::demo::users_repository repo(args["store"]);
  auto options = tern::cli::service_options(args);
  tern::microservice app(options);
  // Not ready while its database cannot be reached.
  app.ready_when([&repo] { return repo.ready(); });
  // user_created goes back to this service's own event handler, on the
  // wire its port speaks.
  auto wildcard = args["host"] == "0.0.0.0" || args["host"] == "::";
  tern::client_proxy self(
      {.host = wildcard ? "127.0.0.1" : args["host"], .port = options.port, .wire = options.wire});
  tern::demo::register_users_handlers(app, repo, &self);
  return app.listen();
} catch (const tern::cli::exit_request& e) {
  return e.report();
} catch (const std::exception& e) {
  spdlog::critical("users_service: {}", e.what());
  return 1;
}
