// The demo services' shared command line (on tern's flag parser).
#pragma once

#include <tern/cli.hpp>
#include <tern/microservice.hpp>

#include <map>
#include <string>

namespace tern::cli {

/// Parses a demo service's flags (tern::cli::service_flags and --data-dir,
/// --database, --workers); "store" is where the repository keeps
/// its data (the --database URL, or name.db in --data-dir), applies the log level and the worker
/// pool size, and creates the data directory. `name` is "users" for users_service and users.db.
/// Throws exit_request for --help, a bad flag, or a data directory it cannot create.
std::map<std::string, std::string> parse_service(int argc, char** argv, const std::string& name,
                                                 const std::string& default_port,
                                                 const std::string& default_admin_port);

}  // namespace tern::cli
