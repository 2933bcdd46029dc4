// The gateway's routes and upstreams, read from a JSON file.
#pragma once

#include <tern/http/request.hpp>

#include <tern/pattern.hpp>
#include <tern/resilience.hpp>
#include <tern/tls.hpp>
#include <tern/wire.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace tern::gateway {

/// A config file that cannot be used; what() names the bad entry.
class config_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct upstream {
  std::string name;
  /// "host:port" each; a host that is a name stands for all its addresses
  /// (tern::client_options::endpoints).
  std::vector<std::string> endpoints;
  std::chrono::milliseconds timeout{3000};
  /// The wire its instances speak: tern's, or NestJS's for NestJS services.
  tern::wire_format wire = tern::wire_format::tern;
  bool round_robin = false;  ///< else least outstanding of two random choices
  std::chrono::milliseconds resolve_interval{5000};
  tern::ejection_options ejection{};
  tern::breaker_options breaker{};
  tern::retry_options retry{};
  /// Keep-alive pings (tern::transport::connection_options); 0: none.
  std::chrono::milliseconds keepalive_interval{10000};
  std::chrono::milliseconds keepalive_timeout{5000};
  /// TLS to its instances ("tls": ca, cert, key, server_name, ciphers,
  /// trust_system_store, key_passphrase_env); none: plaintext.
  std::optional<tern::tls_options> tls{};
  bool tls_configured = false;  ///< "tls" given (false included): flags' defaults do not apply
};

/// Where a call's data comes from; several are merged (objects, in order).
enum class data_source { none, params, query, body };

struct call_spec {
  std::size_t upstream = 0;  ///< index into gateway_config::upstreams
  tern::pattern pattern{""};
  std::vector<data_source> data;
};

struct route {
  std::string method;
  std::string path;                   ///< template: /api-gateway/users/:id
  std::vector<std::string> segments;  ///< split path; ":id" captures
  int status = 200;                   ///< success status
  std::vector<std::pair<std::string, call_spec>>
      calls;  ///< one call, or an aggregate's keyed calls
  bool aggregate = false;
  /// Its calls may run twice, so failed ones are retried on another
  /// endpoint ("idempotent"; by default GET and HEAD routes are).
  bool idempotent = false;
  /// The route's "policies" object as JSON text ("{}" when absent): each
  /// policy's factory reads and validates its own key (pipeline/registry).
  std::string policies = "{}";
};

struct gateway_config {
  std::vector<upstream> upstreams;
  /// dns.servers: where upstream names are looked up; empty: the system's.
  std::vector<std::string> dns_servers;
  std::vector<route> routes;
  http::limits limits;
  /// server.tls: HTTPS on the public port (cert, key, key_passphrase_env,
  /// ca, client_cert "off"/"optional"/"require", ciphers); none: HTTP.
  std::optional<tern::tls_options> tls{};
  /// The top-level "policies" object as JSON text: every route's defaults.
  std::string policies = "{}";
  /// admin.on_public_port: the admin paths (/metrics, /health/*) are also
  /// served on the public port (by default only on the admin port).
  bool admin_on_public = false;
  /// The sections policies own, as JSON text by name: every top-level one
  /// parse_config does not read itself ("auth", "cache"), and
  /// "server.trusted_proxies". Each is read and validated by its owner
  /// (pipeline/registry.hpp, registered_sections()); a section without
  /// one is an error when the gateway is built.
  std::map<std::string, std::string, std::less<>> sections;

  /// sections' entry `name`, or null.
  [[nodiscard]] const std::string* section(std::string_view name) const;
};

/// The top-level sections parse_config reads itself (upstreams, dns, ...);
/// any other is a policy's (gateway_config::sections).
std::span<const std::string_view> core_sections();

/// TLS for every upstream that has no "tls" of its own (the gateway's
/// --upstream-tls-* flags): its CA, and its client certificate and key for
/// services that require one. Nothing happens without a CA.
void apply_upstream_tls(gateway_config& c, const tern::tls_options& defaults);

/// Parses and validates a config; throws config_error naming the entry.
gateway_config parse_config(const std::string& json_text);
/// Reads and parses a config file.
gateway_config load_config(const std::string& path);
/// UPSTREAM_<NAME>=host:port[,host:port...] (NAME upper-cased) replaces an
/// upstream's endpoints.
void apply_env_overrides(gateway_config& c);

}  // namespace tern::gateway
