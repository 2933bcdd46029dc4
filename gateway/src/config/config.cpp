#include "config/config.hpp"

#include <tern/endpoint.hpp>
#include <tern/json_depth.hpp>

#include <nlohmann/json.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tern::gateway {

namespace {

using json = nlohmann::ordered_json;

constexpr int max_config_depth = 64;

[[noreturn]] void bad(const std::string& where, const std::string& why) {
  throw config_error(where + ": " + why);
}

std::uint16_t read_port(const json& v, const std::string& where) {
  if (!v.is_number_integer() || v.get<long>() < 1 || v.get<long>() > 65535) {
    bad(where, "must be a port number (1-65535)");
  }
  return static_cast<std::uint16_t>(v.get<long>());
}

std::chrono::milliseconds read_ms(const json& obj, const char* key, std::chrono::milliseconds def,
                                  const std::string& where) {
  if (!obj.contains(key)) return def;
  const auto& v = obj[key];
  if (!v.is_number_integer() || v.get<long>() <= 0) {
    bad(where + "." + key, "must be a positive number of milliseconds");
  }
  return std::chrono::milliseconds(v.get<long>());
}

std::size_t read_size(const json& obj, const char* key, std::size_t def, const std::string& where) {
  if (!obj.contains(key)) return def;
  const auto& v = obj[key];
  if (!v.is_number_integer() || v.get<long>() <= 0)
    bad(where + "." + key, "must be a positive integer");
  return static_cast<std::size_t>(v.get<long>());
}

std::vector<std::string> read_strings(const json& v, const std::string& where) {
  if (!v.is_array() || v.empty()) bad(where, "must be a non-empty array of strings");
  std::vector<std::string> out;
  for (const auto& s : v) {
    if (!s.is_string() || s.get<std::string>().empty()) bad(where, "must hold non-empty strings");
    out.push_back(s.get<std::string>());
  }
  return out;
}

std::string checked_endpoint(const std::string& text, const std::string& where) {
  try {
    return tern::to_string(tern::parse_endpoint(text));
  } catch (const std::invalid_argument& e) {
    bad(where, e.what());
  }
}

// A section's keys are all known ones; `keys` lists them for the message.
void known_keys(const json& obj, std::initializer_list<const char*> keys,
                const std::string& where) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& key = it.key();  // (clang 14 cannot capture a structured binding)
    if (std::none_of(keys.begin(), keys.end(), [&](const char* k) { return key == k; })) {
      std::string list;
      for (const char* k : keys) list += std::string(list.empty() ? "" : ", ") + k;
      bad(where + "." + key, "unknown setting (" + list + ")");
    }
  }
}

int read_int(const json& obj, const char* key, int def, int lo, int hi, const std::string& where) {
  if (!obj.contains(key)) return def;
  const auto& v = obj[key];
  if (!v.is_number_integer() || v.get<long>() < lo || v.get<long>() > hi) {
    bad(where + "." + key,
        "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return static_cast<int>(v.get<long>());
}

double read_share(const json& obj, const char* key, double def, const std::string& where) {
  if (!obj.contains(key)) return def;
  const auto& v = obj[key];
  if (!v.is_number() || v.get<double>() < 0 || v.get<double>() > 1) {
    bad(where + "." + key, "must be a number from 0 to 1");
  }
  return v.get<double>();
}

// "ejection", "breaker", "retry": an object of settings, or false for off.
void read_ejection(const json& v, tern::ejection_options& e, const std::string& where) {
  if (v == false) {
    e.consecutive_failures = 0;
    return;
  }
  known_keys(
      v, {"consecutive_failures", "base_ms", "max_ms", "max_ejected_percent", "probe_interval_ms"},
      where);
  e.consecutive_failures =
      read_int(v, "consecutive_failures", e.consecutive_failures, 1, 1000000, where);
  e.base_time = read_ms(v, "base_ms", e.base_time, where);
  e.max_time = read_ms(v, "max_ms", e.max_time, where);
  e.max_ejected_percent = read_int(v, "max_ejected_percent", e.max_ejected_percent, 0, 100, where);
  e.probe_interval = read_ms(v, "probe_interval_ms", e.probe_interval, where);
}

void read_breaker(const json& v, tern::breaker_options& b, const std::string& where) {
  if (v == false) {
    b.consecutive_failures = 0;
    b.failure_rate = 0;
    return;
  }
  known_keys(v,
             {"consecutive_failures", "failure_rate", "window_ms", "min_calls", "open_ms",
              "half_open_calls"},
             where);
  b.consecutive_failures =
      read_int(v, "consecutive_failures", b.consecutive_failures, 0, 1000000, where);
  b.failure_rate = read_share(v, "failure_rate", b.failure_rate, where);
  b.window = read_ms(v, "window_ms", b.window, where);
  b.min_calls = read_int(v, "min_calls", b.min_calls, 1, 1000000, where);
  b.open_time = read_ms(v, "open_ms", b.open_time, where);
  b.half_open_calls = read_int(v, "half_open_calls", b.half_open_calls, 1, 1000, where);
}

void read_keepalive(const json& v, upstream& up, const std::string& where) {
  if (v == false) {
    up.keepalive_interval = std::chrono::milliseconds(0);
    return;
  }
  known_keys(v, {"interval_ms", "timeout_ms"}, where);
  up.keepalive_interval = read_ms(v, "interval_ms", up.keepalive_interval, where);
  up.keepalive_timeout = read_ms(v, "timeout_ms", up.keepalive_timeout, where);
  if (up.keepalive_interval.count() <= 0 || up.keepalive_timeout.count() <= 0) {
    bad(where, "interval_ms and timeout_ms must be above 0 (false turns pings off)");
  }
}

void read_retry(const json& v, tern::retry_options& r, const std::string& where) {
  if (v == false) {
    r.max_attempts = 1;
    return;
  }
  known_keys(v,
             {"max_attempts", "base_backoff_ms", "max_backoff_ms", "budget_ratio",
              "budget_min_retries", "budget_window_ms"},
             where);
  r.max_attempts = read_int(v, "max_attempts", r.max_attempts, 1, 10, where);
  r.base_backoff = read_ms(v, "base_backoff_ms", r.base_backoff, where);
  r.max_backoff = read_ms(v, "max_backoff_ms", r.max_backoff, where);
  r.budget_ratio = read_share(v, "budget_ratio", r.budget_ratio, where);
  r.budget_min_retries = read_int(v, "budget_min_retries", r.budget_min_retries, 0, 1000000, where);
  r.budget_window = read_ms(v, "budget_window_ms", r.budget_window, where);
}

// A "tls" entry's file name or setting: absent (empty), or a non-empty string.
std::string tls_text(const json& v, const char* key, const std::string& where) {
  if (!v.contains(key)) return {};
  if (!v[key].is_string() || v[key].get<std::string>().empty()) {
    bad(where + "." + key, "must be a non-empty string");
  }
  return v[key].get<std::string>();
}

// An encrypted key's passphrase: from the environment variable that
// key_passphrase_env names, never from the file; empty without one.
std::string tls_passphrase(const json& v, const std::string& where) {
  auto env = tls_text(v, "key_passphrase_env", where);
  if (env.empty()) return {};
  const char* p = std::getenv(env.c_str());
  if (!p || !*p) bad(where + ".key_passphrase_env", "names " + env + ", which is not set");
  return p;
}

// "tls": Node's names (ca, cert, key), files as given; an encrypted key's
// passphrase comes from the environment variable that key_passphrase_env
// names, never from the file.
std::optional<tern::tls_options> read_upstream_tls(const json& v, const std::string& where) {
  if (v == false) return std::nullopt;
  if (!v.is_object()) bad(where, "must be an object (ca, cert, key, ...) or false");
  known_keys(
      v,
      {"ca", "cert", "key", "key_passphrase_env", "server_name", "ciphers", "trust_system_store"},
      where);
  auto text = [&](const char* key) { return tls_text(v, key, where); };
  tern::tls_options o;
  o.ca_file = text("ca");
  o.cert_file = text("cert");
  o.key_file = text("key");
  o.server_name = text("server_name");
  o.ciphers = text("ciphers");
  if (v.contains("trust_system_store")) {
    if (!v["trust_system_store"].is_boolean())
      bad(where + ".trust_system_store", "must be true or false");
    o.trust_system_store = v["trust_system_store"].get<bool>();
  }
  if (o.ca_file.empty() && !o.trust_system_store) {
    bad(where + ".ca",
        "is required (the CA that signs the service's certificate), unless "
        "trust_system_store is true");
  }
  if (o.cert_file.empty() != o.key_file.empty()) bad(where, "cert and key go together");
  o.key_passphrase = tls_passphrase(v, where);
  return o;
}

// server.tls: the public port's certificate and key, and the CA and mode
// for client certificates (an identity auth can map to roles).
tern::tls_options read_server_tls(const json& v, const std::string& where) {
  if (!v.is_object()) bad(where, "must be an object (cert, key, ...)");
  known_keys(v, {"cert", "key", "key_passphrase_env", "ca", "client_cert", "ciphers"}, where);
  auto text = [&](const char* key) { return tls_text(v, key, where); };
  tern::tls_options o;
  o.cert_file = text("cert");
  o.key_file = text("key");
  o.ca_file = text("ca");
  o.ciphers = text("ciphers");
  if (o.cert_file.empty()) bad(where + ".cert", "is required (the certificate chain, PEM)");
  if (o.key_file.empty()) bad(where + ".key", "is required (the certificate's key, PEM)");
  if (auto mode = text("client_cert"); mode == "require") {
    o.check = tern::peer_check::require;
  } else if (mode == "optional") {
    o.check = tern::peer_check::optional;
  } else if (!mode.empty() && mode != "off") {
    bad(where + ".client_cert", "must be \"off\", \"optional\" or \"require\"");
  }
  if (o.check != tern::peer_check::none && o.ca_file.empty()) {
    bad(where + ".ca", "is required to check client certificates (client_cert)");
  }
  o.key_passphrase = tls_passphrase(v, where);
  return o;
}

upstream read_upstream(const std::string& name, const json& u) {
  std::string where = "upstreams." + name;
  if (!u.is_object()) bad(where, "must be an object with host and port, or endpoints");
  known_keys(u,
             {"host", "port", "endpoints", "timeout_ms", "balance", "resolve_interval_ms",
              "ejection", "breaker", "retry", "keepalive", "wire", "tls"},
             where);
  upstream up;
  up.name = name;
  if (u.contains("endpoints")) {
    if (u.contains("host") || u.contains("port")) {
      bad(where, "give either host and port, or endpoints");
    }
    auto list = read_strings(u["endpoints"], where + ".endpoints");
    for (std::size_t i = 0; i < list.size(); ++i) {
      up.endpoints.push_back(
          checked_endpoint(list[i], where + ".endpoints[" + std::to_string(i) + "]"));
    }
  } else {
    if (!u.contains("host") || !u["host"].is_string() || u["host"].get<std::string>().empty()) {
      bad(where + ".host", "is required (or endpoints)");
    }
    if (!u.contains("port")) bad(where + ".port", "is required");
    up.endpoints.push_back(tern::to_string(tern::endpoint_address{
        u["host"].get<std::string>(), read_port(u["port"], where + ".port")}));
  }
  up.timeout = read_ms(u, "timeout_ms", up.timeout, where);
  up.resolve_interval = read_ms(u, "resolve_interval_ms", up.resolve_interval, where);
  if (u.contains("wire")) {
    const auto& w = u["wire"];
    if (w == "nestjs") {
      up.wire = tern::wire_format::nestjs;
    } else if (w != "tern") {
      bad(where + ".wire", "must be \"tern\" or \"nestjs\"");
    }
  }
  if (u.contains("balance")) {
    const auto& b = u["balance"];
    if (b == "round_robin") {
      up.round_robin = true;
    } else if (b != "least_outstanding") {
      bad(where + ".balance", "must be \"least_outstanding\" or \"round_robin\"");
    }
  }
  auto section = [&](const char* key) -> const json* {
    if (!u.contains(key)) return nullptr;
    const auto& v = u[key];
    if (!v.is_object() && v != false) {
      bad(where + "." + key, "must be an object of settings, or false");
    }
    return &v;
  };
  if (const auto* v = section("ejection")) read_ejection(*v, up.ejection, where + ".ejection");
  if (const auto* v = section("breaker")) read_breaker(*v, up.breaker, where + ".breaker");
  if (const auto* v = section("retry")) read_retry(*v, up.retry, where + ".retry");
  if (const auto* v = section("keepalive")) read_keepalive(*v, up, where + ".keepalive");
  if (u.contains("tls")) {
    up.tls = read_upstream_tls(u["tls"], where + ".tls");
    up.tls_configured = true;
  }
  return up;
}

data_source read_source(const json& v, const std::string& where) {
  if (v == "none") return data_source::none;
  if (v == "params") return data_source::params;
  if (v == "query") return data_source::query;
  if (v == "body") return data_source::body;
  bad(where, "must be \"none\", \"params\", \"query\" or \"body\", or an array of them");
}

call_spec read_call(const json& c, const gateway_config& cfg, const std::string& where) {
  if (!c.is_object()) bad(where, "must be an object");
  call_spec spec;
  if (!c.contains("service") || !c["service"].is_string()) bad(where + ".service", "is required");
  auto name = c["service"].get<std::string>();
  bool found = false;
  for (std::size_t i = 0; i < cfg.upstreams.size(); ++i) {
    if (cfg.upstreams[i].name == name) {
      spec.upstream = i;
      found = true;
    }
  }
  if (!found) bad(where + ".service", "unknown upstream '" + name + "'");
  if (!c.contains("pattern") || !(c["pattern"].is_object() || c["pattern"].is_string())) {
    bad(where + ".pattern", "is required (an object or a string)");
  }
  spec.pattern = tern::pattern::from_json(c["pattern"].dump());
  const json data = c.contains("data") ? c["data"] : json("none");
  if (data.is_array()) {
    for (std::size_t i = 0; i < data.size(); ++i) {
      spec.data.push_back(read_source(data[i], where + ".data[" + std::to_string(i) + "]"));
    }
  } else {
    spec.data.push_back(read_source(data, where + ".data"));
  }
  return spec;
}

void read_upstreams(const json& root, gateway_config& cfg) {
  if (!root.contains("upstreams") || !root["upstreams"].is_object() || root["upstreams"].empty()) {
    bad("upstreams", "must be an object naming at least one service");
  }
  for (const auto& [name, u] : root["upstreams"].items()) {
    cfg.upstreams.push_back(read_upstream(name, u));
  }
}

void read_dns(const json& d, gateway_config& cfg) {
  if (!d.is_object()) bad("dns", "must be an object");
  known_keys(d, {"servers"}, "dns");
  if (!d.contains("servers")) return;
  cfg.dns_servers = read_strings(d["servers"], "dns.servers");
  for (std::size_t i = 0; i < cfg.dns_servers.size(); ++i) {
    try {
      (void)tern::parse_ip_endpoint(cfg.dns_servers[i], 53);
    } catch (const std::invalid_argument& e) {
      bad("dns.servers[" + std::to_string(i) + "]", e.what());
    }
  }
}

void read_server(const json& s, gateway_config& cfg) {
  if (!s.is_object()) bad("server", "must be an object");
  known_keys(s,
             {"max_header_bytes", "max_body_bytes", "read_timeout_ms", "idle_timeout_ms",
              "max_connections", "trusted_proxies", "tls"},
             "server");
  auto& l = cfg.limits;
  l.max_header_bytes = read_size(s, "max_header_bytes", l.max_header_bytes, "server");
  l.max_body_bytes = read_size(s, "max_body_bytes", l.max_body_bytes, "server");
  l.read_timeout = read_ms(s, "read_timeout_ms", l.read_timeout, "server");
  l.idle_timeout = read_ms(s, "idle_timeout_ms", l.idle_timeout, "server");
  l.max_connections = read_size(s, "max_connections", l.max_connections, "server");
  if (s.contains("tls")) cfg.tls = read_server_tls(s["tls"], "server.tls");
  // Whose X-Forwarded-For to believe: the client address's (policies/client_address).
  if (s.contains("trusted_proxies"))
    cfg.sections["server.trusted_proxies"] = s["trusted_proxies"].dump();
}

void read_admin(const json& a, gateway_config& cfg) {
  if (!a.is_object()) bad("admin", "must be an object");
  known_keys(a, {"on_public_port"}, "admin");
  if (!a.contains("on_public_port")) return;
  if (!a["on_public_port"].is_boolean()) bad("admin.on_public_port", "must be true or false");
  cfg.admin_on_public = a["on_public_port"].get<bool>();
}

route read_route(const json& r, const gateway_config& cfg, const std::string& where) {
  if (!r.is_object()) bad(where, "must be an object");
  route rt;
  if (!r.contains("method") || !r["method"].is_string()) bad(where + ".method", "is required");
  rt.method = r["method"].get<std::string>();
  static const char* methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
  if (std::find(std::begin(methods), std::end(methods), rt.method) == std::end(methods)) {
    bad(where + ".method", "must be one of GET, POST, PUT, PATCH, DELETE");
  }
  if (!r.contains("path") || !r["path"].is_string() || r["path"].get<std::string>().empty() ||
      r["path"].get<std::string>()[0] != '/') {
    bad(where + ".path", "is required and must start with /");
  }
  rt.path = r["path"].get<std::string>();
  std::stringstream ss(rt.path.substr(1));
  for (std::string seg; std::getline(ss, seg, '/');) {
    if (seg == ":") bad(where + ".path", "a parameter needs a name");
    rt.segments.push_back(seg);
  }
  rt.status = rt.method == "POST" ? 201 : 200;
  if (r.contains("status")) {
    if (!r["status"].is_number_integer() || r["status"].get<int>() < 200 ||
        r["status"].get<int>() > 299) {
      bad(where + ".status", "must be a 2xx status");
    }
    rt.status = r["status"].get<int>();
  }
  bool has_call = r.contains("service"), has_aggregate = r.contains("aggregate");
  if (has_call == has_aggregate) bad(where, "needs either service+pattern or aggregate");
  if (has_call) {
    rt.calls.emplace_back("", read_call(r, cfg, where));
  } else {
    const auto& agg = r["aggregate"];
    if (!agg.is_object() || agg.empty()) bad(where + ".aggregate", "must be an object of calls");
    rt.aggregate = true;
    for (const auto& [key, c] : agg.items()) {
      rt.calls.emplace_back(key, read_call(c, cfg, where + ".aggregate." + key));
    }
  }
  rt.idempotent = rt.method == "GET";
  if (r.contains("idempotent")) {
    if (!r["idempotent"].is_boolean()) bad(where + ".idempotent", "must be true or false");
    rt.idempotent = r["idempotent"].get<bool>();
  }
  if (r.contains("policies")) {
    if (!r["policies"].is_object()) bad(where + ".policies", "must be an object");
    rt.policies = r["policies"].dump();
  }
  for (const auto& other : cfg.routes) {
    if (other.method == rt.method && other.path == rt.path)
      bad(where, "duplicates an earlier route");
  }
  return rt;
}

void read_routes(const json& root, gateway_config& cfg) {
  if (!root.contains("routes") || !root["routes"].is_array()) bad("routes", "must be an array");
  const auto& routes = root["routes"];
  for (std::size_t i = 0; i < routes.size(); ++i) {
    cfg.routes.push_back(read_route(routes[i], cfg, "routes[" + std::to_string(i) + "]"));
  }
}

}  // namespace

std::span<const std::string_view> core_sections() {
  static constexpr std::string_view all[] = {"upstreams", "dns",   "server",
                                             "policies",  "admin", "routes"};
  return all;
}

const std::string* gateway_config::section(std::string_view name) const {
  auto it = sections.find(name);
  return it == sections.end() ? nullptr : &it->second;
}

gateway_config parse_config(const std::string& text) {
  // Checked before parsing: the parser is iterative, but dump() and the
  // pattern code walk the tree recursively.
  if (tern::json_depth(text, max_config_depth) > max_config_depth) {
    throw config_error("config nests deeper than " + std::to_string(max_config_depth) + " levels");
  }
  json root = json::parse(text, nullptr, false);
  if (root.is_discarded()) throw config_error("config is not valid JSON");
  if (!root.is_object()) throw config_error("config must be a JSON object");
  gateway_config cfg;
  read_upstreams(root, cfg);
  if (root.contains("dns")) read_dns(root["dns"], cfg);
  if (root.contains("server")) read_server(root["server"], cfg);
  if (root.contains("policies")) {
    if (!root["policies"].is_object()) bad("policies", "must be an object");
    cfg.policies = root["policies"].dump();
  }
  if (root.contains("admin")) read_admin(root["admin"], cfg);
  read_routes(root, cfg);
  for (const auto& [key, v] : root.items()) {
    auto core = core_sections();
    if (std::find(core.begin(), core.end(), key) != core.end()) continue;
    // "server.trusted_proxies" names a setting inside server, not a section
    // a top-level key may stand for.
    if (key.find('.') != std::string::npos) {
      throw config_error(key + ": is not a section (write a nested setting inside its section)");
    }
    cfg.sections[key] = v.dump();
  }
  return cfg;
}

gateway_config load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw config_error("cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return parse_config(ss.str());
  } catch (const config_error& e) {
    throw config_error(path + ": " + e.what());
  }
}

void apply_env_overrides(gateway_config& c) {
  for (auto& u : c.upstreams) {
    std::string var = "UPSTREAM_";
    for (char ch : u.name)
      var +=
          static_cast<char>(std::isalnum(static_cast<unsigned char>(ch)) ? std::toupper(ch) : '_');
    const char* v = std::getenv(var.c_str());
    if (!v || !*v) continue;
    std::vector<std::string> list;
    std::string_view rest = v;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      list.push_back(checked_endpoint(std::string(rest.substr(0, comma)), var));
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    u.endpoints = std::move(list);
  }
}

void apply_upstream_tls(gateway_config& c, const tern::tls_options& defaults) {
  if (defaults.ca_file.empty()) return;
  for (auto& u : c.upstreams) {
    if (!u.tls_configured) u.tls = defaults;
  }
}

}  // namespace tern::gateway
