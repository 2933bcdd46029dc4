#include "app/token_command.hpp"

#include "auth/jwt.hpp"
#include "config/config.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <string_view>

namespace tern::gateway {

namespace {

constexpr std::string_view usage =
    "usage: gateway token --sub SUBJECT [--role ROLE]... [--scope SCOPE]... [--ttl SECONDS]\n"
    "                     [--config PATH]\n"
    "Prints a JWT signed with the first secret key of the config's \"auth\" section\n"
    "(the config defaults to $GATEWAY_CONFIG, else gateway/routes.json; the key's\n"
    "secret comes from its secret_env variable or secret_file). --ttl defaults to 3600.\n";

}  // namespace

int token_command(int argc, char** argv) {
  // The token is the only thing on stdout (`token=$(gateway token ...)`).
  spdlog::set_default_logger(spdlog::stderr_color_st("gateway"));
  std::string sub, config;
  if (const char* c = std::getenv("GATEWAY_CONFIG"); c && *c) config = c;
  if (config.empty()) config = "gateway/routes.json";
  std::vector<std::string> roles, scopes;
  long long ttl = 3600;
  for (int i = 2; i < argc; ++i) {
    std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << usage;
      return 0;
    }
    if (i + 1 >= argc) {
      std::cerr << "gateway token: " << flag << " needs a value\n" << usage;
      return 2;
    }
    std::string value = argv[++i];
    if (flag == "--sub") {
      sub = value;
    } else if (flag == "--role") {
      roles.push_back(value);
    } else if (flag == "--scope") {
      scopes.push_back(value);
    } else if (flag == "--config") {
      config = value;
    } else if (flag == "--ttl") {
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), ttl);
      if (ec != std::errc() || end != value.data() + value.size() || ttl <= 0) {
        std::cerr << "gateway token: --ttl: '" << value
                  << "' is not a positive number of seconds\n";
        return 2;
      }
    } else {
      std::cerr << "gateway token: unknown flag " << flag << "\n" << usage;
      return 2;
    }
  }
  if (sub.empty()) {
    std::cerr << "gateway token: --sub is required\n" << usage;
    return 2;
  }
  try {
    auto cfg = load_config(config);
    const auto* auth = cfg.section("auth");
    if (!auth) throw config_error(config + " has no \"auth\" section");
    jwt::verifier keys(nlohmann::json::parse(*auth), "auth");
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    nlohmann::json claims = {{"sub", sub}, {"iat", now}, {"exp", now + ttl}};
    if (!roles.empty()) claims["roles"] = roles;
    if (!scopes.empty()) {
      std::string joined;
      for (const auto& s : scopes) joined += (joined.empty() ? "" : " ") + s;
      claims["scope"] = joined;
    }
    if (!keys.issuer().empty()) claims["iss"] = keys.issuer();
    if (!keys.audience().empty()) claims["aud"] = keys.audience();
    std::cout << keys.sign(claims) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "gateway token: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace tern::gateway
