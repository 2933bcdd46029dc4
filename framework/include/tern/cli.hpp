// Command-line flags with environment fallbacks, and --help, for services,
// the gateway and tools.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace tern::cli {

struct flag {
  std::string name;      ///< "port" for --port
  std::string env;       ///< environment fallback, "PORT"
  std::string fallback;  ///< default value
  std::string help;
};

/// Parses `--name value` / `--name=value` for the given flags; a flag not
/// on the command line takes its env variable, then its default. `--help`
/// prints usage and exits 0; an unknown flag or a missing value prints the
/// usage to stderr and exits 2.
std::map<std::string, std::string> parse(int argc, char** argv, const std::string& program,
                                         const std::string& summary,
                                         const std::vector<flag>& flags);

/// A port number from text; exits 2 with a message if it is not one.
unsigned short port(const std::string& text, const std::string& what);

/// A duration in milliseconds from text (0 up to a day); exits 2 with a
/// message if it is not one.
std::chrono::milliseconds millis(const std::string& text, const std::string& what);

/// Sets spdlog's level from its name (trace, debug, info, warn, error); exits 2 if unknown.
void set_log_level(const std::string& level);

}  // namespace tern::cli
