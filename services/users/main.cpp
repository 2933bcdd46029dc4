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
  // Over TLS, it trusts --tls-ca and shows the service's own certificate
  // (which then carries clientAuth too), as a caller must.
  tern::client_options self_options{
      .host = wildcard ? "127.0.0.1" : args["host"], .port = options.port, .wire = options.wire};
  if (options.tls) {
    if (options.tls->ca_file.empty()) {
      throw tern::cli::exit_request(
          2,
          "users_service: with TLS, --tls-ca is needed: user_created goes to this service's "
          "own port, whose certificate it must check\n");
    }
    tern::tls_options tls;
    tls.cert_file = options.tls->cert_file;
    tls.key_file = options.tls->key_file;
    tls.key_passphrase = options.tls->key_passphrase;
    tls.ca_file = options.tls->ca_file;
    self_options.tls = tls;
  }
  tern::client_proxy self(self_options);
  tern::demo::register_users_handlers(app, repo, &self);
  return app.listen();
} catch (const tern::cli::exit_request& e) {
  return e.report();
} catch (const std::exception& e) {
  spdlog::critical("users_service: {}", e.what());
  return 1;
}
