#include "pipeline/registry.hpp"

#include <nlohmann/json.hpp>

namespace tern::gateway {

std::span<const policy_registration> registered_policies() {
  // The chain's order: the request id first (every later line and reply
  // carries it), then the access log and the metrics, which time and see
  // everything after them; CORS, which answers preflights and marks every
  // answer after it (401s and 429s too, so a browser can read them); then
  // authentication, whose identity later policies and the calls use; then
  // rate limits (keyed by that identity, or by the client); the cache last,
  // so a hit still passes auth and the limits, and its key can hold the
  // identity.
  static const policy_registration all[] = {
      {"request_id", make_request_id_policy},
      {"access_log", make_access_log_policy},
      {"metrics", make_metrics_policy},
      {"cors", make_cors_policy, cors_preflight_method},
      {"auth", make_auth_policy},
      {"rate_limit", make_rate_limit_policy},
      {"cache", make_cache_policy},
  };
  return all;
}

using json = nlohmann::ordered_json;

const std::string& admin_policies() {
  static const std::string piece = [] {
    json off = json::object();
    for (const auto& r : registered_policies()) {
      if (r.name != "request_id") off[std::string(r.name)] = false;
    }
    return off.dump();
  }();
  return piece;
}

std::span<const section_registration> registered_sections() {
  static const section_registration all[] = {
      {"auth", check_auth_section},                       // policies/auth.cpp
      {"cache", check_cache_section},                     // policies/cache.cpp
      {"server.trusted_proxies", check_trusted_proxies},  // policies/client_address.cpp
  };
  return all;
}

void check_sections(const gateway_config& config) {
  for (const auto& [name, text] : config.sections) {
    const section_registration* owner = nullptr;
    std::string known;
    for (auto core : core_sections()) known += std::string(known.empty() ? "" : ", ") += core;
    for (const auto& r : registered_sections()) {
      if (r.name == name) owner = &r;
      if (r.name.find('.') != std::string_view::npos) continue;  // not a top-level one
      known += ", ";
      known += r.name;
    }
    if (!owner) throw config_error(name + ": is not a section (known: " + known + ")");
    owner->check(json::parse(text), name);
  }
}

json section_of(const gateway_config& config, std::string_view name) {
  const auto* text = config.section(name);
  return text ? json::parse(*text) : json();
}

std::vector<std::string> piece_strings(const json& v, const std::string& where) {
  std::vector<std::string> out;
  if (!v.is_array()) throw config_error(where + ": must be an array of strings");
  for (const auto& x : v) {
    if (!x.is_string() || x.get<std::string>().empty()) {
      throw config_error(where + ": must be an array of non-empty strings");
    }
    out.push_back(x.get<std::string>());
  }
  return out;
}

namespace {

json parse_policies(std::string_view text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) throw config_error(where + ": must be an object");
  for (const auto& [key, v] : j.items()) {
    bool known = false;
    std::string names;
    for (const auto& r : registered_policies()) {
      known = known || r.name == key;
      names += names.empty() ? "" : ", ";
      names += r.name;
    }
    if (!known) throw config_error(where + "." + key + ": is not a policy (known: " + names + ")");
  }
  return j;
}

}  // namespace

std::unique_ptr<chain> build_chain(const chain_env& env, const route* matched,
                                   std::string_view label, std::string_view id,
                                   std::string_view route_policies, const std::string& where,
                                   std::unique_ptr<handler> h) {
  // Parsed again for each route: start-up only, and it keeps the config's
  // structs free of JSON.
  const json defaults = parse_policies(env.config.policies, "policies");
  const json own = parse_policies(route_policies, where);
  static const json none;
  std::vector<std::unique_ptr<policy>> policies;
  std::vector<reroute_fn> reroutes;
  for (const auto& r : registered_policies()) {
    std::string key(r.name);
    bool local = own.contains(key);
    const json& piece = local ? own[key] : defaults.contains(key) ? defaults[key] : none;
    build_context b{env, matched, label,
                    id,  piece,   (local ? where : std::string("policies")) + "." + key};
    auto p = r.make(b);
    if (!p) continue;
    if (r.routes_by) reroutes.push_back(r.routes_by);
    policies.push_back(std::move(p));
  }
  auto c = std::make_unique<chain>(std::move(policies), std::move(h));
  c->reroutes = std::move(reroutes);
  return c;
}

}  // namespace tern::gateway
