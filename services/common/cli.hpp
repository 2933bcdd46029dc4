// The demo services' shared command line (on tern's flag parser).
#pragma once

#include <tern/cli.hpp>
#include <tern/microservice.hpp>

#include <map>
#include <string>

namespace tern::cli {

/// Parses a demo service's flags (--host, --port, --admin-host,
/// --admin-port, --data-dir, --database, --log-level, --drain-grace-ms,
/// --drain-timeout-ms, --workers); "store" is where the repository keeps
/// its data (the --database URL, or name.db in --data-dir), applies the log level and the worker
/// pool size, and creates the data directory. `name` is "users" for users_service and users.db.
std::map<std::string, std::string> parse_service(int argc, char** argv, const std::string& name,
                                                 const std::string& default_port,
                                                 const std::string& default_admin_port);

/// The microservice's options from those flags (address, admin listener, drain).
microservice_options service_options(std::map<std::string, std::string>& args);

}  // namespace tern::cli
