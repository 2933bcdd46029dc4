#include "tern/cli.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace tern::cli {

int exit_request::report() const {
  (status_ == 0 ? std::cout : std::cerr) << what() << std::flush;
  return status_;
}

namespace {
std::string usage(const std::string& program, const std::string& summary,
                  const std::vector<flag>& flags) {
  std::ostringstream out;
  out << "usage: " << program << " [options]\n" << summary << "\n\noptions:\n";
  for (const auto& f : flags) {
    out << "  --" << f.name << (f.is_switch ? "" : " VALUE") << "\n      " << f.help << " (env "
        << f.env;
    // An empty default is one the program works out (its help says how).
    if (!f.fallback.empty()) out << ", default \"" << f.fallback << '"';
    out << ")\n";
  }
  out << "  --help\n      show this text\n";
  return out.str();
}
}  // namespace

std::map<std::string, std::string> parse(int argc, char** argv, const std::string& program,
                                         const std::string& summary,
                                         const std::vector<flag>& flags) {
  std::map<std::string, std::string> values;
  for (const auto& f : flags) {
    const char* env = std::getenv(f.env.c_str());
    values[f.name] = env && *env ? env : f.fallback;
  }
  auto fail = [&](const std::string& why) {
    throw exit_request(2, program + ": " + why + "\n" + usage(program, summary, flags));
  };
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") throw exit_request(0, usage(program, summary, flags));
    if (a.rfind("--", 0) != 0) fail("unexpected argument '" + a + "'");
    std::string name = a.substr(2), value;
    auto eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (auto f = std::find_if(flags.begin(), flags.end(),
                                     [&](const flag& x) { return x.name == name; });
               f != flags.end() && f->is_switch) {
      value = "true";
    } else {
      if (i + 1 >= argc) fail("--" + name + " needs a value");
      value = argv[++i];
    }
    if (!values.count(name)) fail("unknown option --" + name);
    values[name] = value;
  }
  return values;
}

unsigned short port(const std::string& text, const std::string& what) {
  char* end = nullptr;
  long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 0 || v > 65535) {
    throw exit_request(2, what + ": '" + text + "' is not a port number\n");
  }
  return static_cast<unsigned short>(v);
}

std::chrono::milliseconds millis(const std::string& text, const std::string& what) {
  char* end = nullptr;
  long long v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 0 || v > 24LL * 3600 * 1000) {
    throw exit_request(2, what + ": '" + text + "' is not a number of milliseconds (0 to a day)\n");
  }
  return std::chrono::milliseconds(v);
}

bool yes(const std::string& text, const std::string& what) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off" || text.empty()) return false;
  throw exit_request(2, what + ": '" + text + "' is not true or false\n");
}

void set_log_level(const std::string& level) {
  auto l = spdlog::level::from_str(level);
  if (l == spdlog::level::off && level != "off") {
    throw exit_request(
        2, "unknown log level '" + level + "' (trace, debug, info, warn, error, off)\n");
  }
  spdlog::set_level(l);
}

std::vector<flag> service_flags(const std::string& default_port,
                                const std::string& default_admin_port) {
  return {{"host", "HOST", "127.0.0.1", "address to listen on"},
          {"port", "PORT", default_port, "port to listen on"},
          {"admin-host", "ADMIN_HOST", "",
           "address of the admin listener (/metrics, /health/live, /health/ready); empty: --host"},
          {"admin-port", "ADMIN_PORT", default_admin_port,
           "port of the admin listener (0 picks a free one)"},
          {"log-level", "LOG_LEVEL", "info", "trace, debug, info, warn, error"},
          {"drain-grace-ms", "DRAIN_GRACE_MS", "500",
           "on SIGTERM, how long to go on serving after the goaway"},
          {"drain-timeout-ms", "DRAIN_TIMEOUT_MS", "10000",
           "then how long in-flight requests may take to finish"},
          {"wire", "TERN_WIRE", "tern",
           "wire format of the port: tern (msgpack) or nestjs (NestJS's TCP transport, JSON)"},
          {"tls-cert", "TERN_TLS_CERT", "",
           "serve TLS with this certificate chain (PEM, leaf first); empty: plaintext"},
          {"tls-key", "TERN_TLS_KEY", "",
           "the certificate's key (PEM; if encrypted, its passphrase in TERN_TLS_KEY_PASSPHRASE)"},
          {"tls-ca", "TERN_TLS_CA", "",
           "CA file (PEM) that callers' certificates must be signed by, when they send one"},
          {"tls-require-client-cert", "TERN_TLS_REQUIRE_CLIENT_CERT", "",
           "refuse callers without a certificate signed by --tls-ca (mutual TLS)", true}};
}

std::optional<tls_options> service_tls(std::map<std::string, std::string>& args) {
  bool require = yes(args["tls-require-client-cert"], "--tls-require-client-cert");
  const auto& cert = args["tls-cert"];
  const auto& key = args["tls-key"];
  const auto& ca = args["tls-ca"];
  if (cert.empty()) {
    if (!key.empty() || !ca.empty() || require) {
      throw exit_request(2, "--tls-key, --tls-ca and --tls-require-client-cert need --tls-cert\n");
    }
    return std::nullopt;
  }
  if (key.empty()) throw exit_request(2, "--tls-cert needs its key: --tls-key\n");
  if (require && ca.empty()) {
    throw exit_request(2, "--tls-require-client-cert needs the CA that signs callers: --tls-ca\n");
  }
  tls_options o;
  o.cert_file = cert;
  o.key_file = key;
  o.ca_file = ca;
  if (const char* p = std::getenv("TERN_TLS_KEY_PASSPHRASE")) o.key_passphrase = p;
  o.check = require ? peer_check::require : ca.empty() ? peer_check::none : peer_check::optional;
  return o;
}

wire_format wire(const std::string& text) {
  try {
    return parse_wire_format(text);
  } catch (const std::invalid_argument& e) {
    throw exit_request(2, std::string("--wire: ") + e.what() + '\n');
  }
}

microservice_options service_options(std::map<std::string, std::string>& args) {
  set_log_level(args["log-level"]);
  return {.host = args["host"],
          .port = port(args["port"], "--port"),
          .drain_grace = millis(args["drain-grace-ms"], "--drain-grace-ms"),
          .drain_timeout = millis(args["drain-timeout-ms"], "--drain-timeout-ms"),
          .wire = wire(args["wire"]),
          .tls = service_tls(args),
          .admin_port = port(args["admin-port"], "--admin-port"),
          .admin_host = args["admin-host"]};
}

}  // namespace tern::cli
