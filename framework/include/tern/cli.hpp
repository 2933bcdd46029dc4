// Command-line flags with environment fallbacks, and --help, for services,
// the gateway and tools.
#pragma once

#include "tern/microservice.hpp"

#include <chrono>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace tern::cli {

/// What the parsers below throw instead of exiting the process: `--help`
/// (status 0, the usage for stdout) or a flag or value that is not valid
/// (status 2, the reason and the usage for stderr). main() reports it:
///
/// ```
/// int main(int argc, char** argv) try {
///   ...
/// } catch (const tern::cli::exit_request& e) {
///   return e.report();
/// }
/// ```
class exit_request : public std::runtime_error {
 public:
  exit_request(int status, const std::string& text) : std::runtime_error(text), status_(status) {}
  [[nodiscard]] int status() const noexcept { return status_; }
  /// Prints the text (stdout for status 0, else stderr); returns status().
  int report() const;

 private:
  int status_;
};

struct flag {
  std::string name;      ///< "port" for --port
  std::string env;       ///< environment fallback, "PORT"
  std::string fallback;  ///< default value
  std::string help;
  /// A switch: `--name` alone means "true" (`--name=false` turns it off);
  /// read its value with yes().
  bool is_switch = false;
};

/// Parses `--name value` / `--name=value` for the given flags; a flag not
/// on the command line takes its env variable, then its default. `--help`
/// throws exit_request(0, usage); an unknown flag or a missing value
/// exit_request(2, what is wrong and the usage).
std::map<std::string, std::string> parse(int argc, char** argv, const std::string& program,
                                         const std::string& summary,
                                         const std::vector<flag>& flags);

/// A port number from text; exit_request(2, why) if it is not one.
unsigned short port(const std::string& text, const std::string& what);

/// A duration in milliseconds from text (0 up to a day); exit_request(2,
/// why) if it is not one.
std::chrono::milliseconds millis(const std::string& text, const std::string& what);

/// A switch's value: true for "true", "1", "yes" and "on", false for
/// "false", "0", "no", "off" and ""; exit_request(2, why) otherwise.
bool yes(const std::string& text, const std::string& what);

/// A wire format from its name (tern, nestjs); exit_request(2, why) if it
/// is not one.
wire_format wire(const std::string& text);

/// Sets spdlog's level from its name (trace, debug, info, warn, error);
/// exit_request(2, why) if unknown.
void set_log_level(const std::string& level);

/// The flags every service takes, each with its environment fallback:
/// --host (HOST), --port (PORT), --admin-host (ADMIN_HOST, default: --host),
/// --admin-port (ADMIN_PORT), --log-level (LOG_LEVEL), --drain-grace-ms
/// (DRAIN_GRACE_MS), --drain-timeout-ms (DRAIN_TIMEOUT_MS), --wire
/// (TERN_WIRE: tern, or nestjs to answer NestJS clients), and TLS
/// (docs/security.md): --tls-cert (TERN_TLS_CERT) and --tls-key
/// (TERN_TLS_KEY) serve TLS, --tls-ca (TERN_TLS_CA) checks callers'
/// certificates against that CA when they send one, and
/// --tls-require-client-cert (TERN_TLS_REQUIRE_CLIENT_CERT) refuses callers
/// without one; an encrypted key's passphrase is read from
/// TERN_TLS_KEY_PASSPHRASE only (a flag would show in `ps`). Append a
/// service's own flags to them before parse().
///
/// ```
/// auto args = tern::cli::parse(argc, argv, "orders", "The orders service.",
///                              tern::cli::service_flags("3100", "9200"));
/// tern::microservice app(tern::cli::service_options(args));
/// ```
std::vector<flag> service_flags(const std::string& default_port,
                                const std::string& default_admin_port);

/// A microservice's options from service_flags()' values; applies
/// --log-level too. exit_request(2, why) for a value that is not valid.
microservice_options service_options(std::map<std::string, std::string>& args);

/// The TLS options the --tls-* values give, or none without --tls-cert.
/// exit_request(2, why) for a combination that cannot work (a certificate
/// without its key, a required client certificate without a CA).
std::optional<tls_options> service_tls(std::map<std::string, std::string>& args);

}  // namespace tern::cli
