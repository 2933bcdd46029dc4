// Authentication (a bearer JWT checked against the config's "auth" keys) and
// authorization (the roles or scopes a route requires). The verified
// identity travels to the services in each call's meta.
#include "auth/jwt.hpp"
#include "pipeline/registry.hpp"
#include "render/errors.hpp"

#include <tern/endpoint.hpp>
#include <tern/log_limit.hpp>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include <strings.h>

#include <algorithm>
#include <chrono>

namespace tern::gateway {

namespace {

using json = nlohmann::json;

// The verifier every route's auth policy shares: made from the "auth"
// section on first use.
struct shared_verifier {
  explicit shared_verifier(const json& auth)
      : keys(auth, "auth"), cache(keys.token_cache_entries(), keys.leeway()) {}
  jwt::verifier keys;
  jwt::token_cache cache;
};

// A list a route requires, and whether any one or all of it must be held.
struct wanted {
  std::vector<std::string> items;
  bool all = false;

  [[nodiscard]] bool met_by(const std::vector<std::string>& held) const {
    auto has = [&](const std::string& x) {
      return std::find(held.begin(), held.end(), x) != held.end();
    };
    if (items.empty()) return true;
    return all ? std::all_of(items.begin(), items.end(), has)
               : std::any_of(items.begin(), items.end(), has);
  }
};

// Words of a claim: the strings of an array, or a string split on spaces
// (so "scope": "a b" and "scp": ["a", "b"] read alike).
void add_words(const json* v, std::vector<std::string>& out) {
  if (!v) return;
  if (v->is_array()) {
    for (const auto& x : *v) {
      if (x.is_string()) out.push_back(x.get<std::string>());
    }
  } else if (v->is_string()) {
    std::string_view s = v->get_ref<const std::string&>();
    while (!s.empty()) {
      auto end = s.find(' ');
      if (end != 0) out.emplace_back(s.substr(0, end));
      if (end == s.npos) break;
      s.remove_prefix(end + 1);
    }
  }
}

const json* at_path(const json& claims, const std::vector<std::string>& path) {
  const json* v = &claims;
  for (const auto& step : path) {
    if (!v->is_object()) return nullptr;
    auto it = v->find(step);
    if (it == v->end()) return nullptr;
    v = &*it;
  }
  return v;
}

class auth final : public policy {
 public:
  explicit auth(shared_verifier& v) : keys_(v.keys), cache_(v.cache) {}

  wanted roles, scopes;
  std::vector<std::string> roles_claim{"roles"};
  std::vector<std::string> propagate;

  asio::awaitable<void> handle(request_context& ctx, next n) override {
    std::string_view token;
    int given = 0;
    for (const auto& [k, v] : ctx.request.headers) {
      if (k != "authorization") continue;
      ++given;
      std::string_view value = v;
      if (value.size() > 7 && strncasecmp(value.data(), "bearer ", 7) == 0) {
        value.remove_prefix(7);
        while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
        token = value;
      }
    }
    if (given == 0) {  // RFC 6750 §3.1: no error code when no credentials came
      refuse(ctx, 401, "missing bearer token", "Bearer realm=\"tern\"", "no token");
      co_return;
    }
    if (given > 1 || token.empty()) {
      refuse(ctx, 401, "invalid token", invalid_challenge, "not one Bearer token");
      co_return;
    }
    auto now = std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
    // A token seen before keeps this route's verdict and identity with it.
    jwt::route_view own;
    const jwt::route_view* view = nullptr;
    if (auto* seen = cache_.find(token, now)) {
      view = seen->view(this);
      if (!view) view = &cache_.add_view(*seen, judge(seen->claims));
    } else {
      auto checked = keys_.verify(token, now);
      if (!checked.ok) {
        refuse(ctx, 401, "invalid token", invalid_challenge, checked.reason);
        co_return;
      }
      own = judge(checked.claims);
      view = &own;
      if (auto* added = cache_.add(token, std::move(checked.claims), now)) {
        view = &cache_.add_view(*added, std::move(own));
      }
    }
    if (!view->allowed) {
      refuse(ctx, 403, "Forbidden resource", "Bearer error=\"insufficient_scope\"",
             "lacks a required role or scope");
      co_return;
    }
    ctx.subject = view->subject;
    ctx.identity = view->identity;
    co_await n(ctx);
  }

 private:
  static constexpr std::string_view invalid_challenge = "Bearer error=\"invalid_token\"";

  // What this route makes of a good token's claims: whether it may pass,
  // and the identity its calls carry.
  [[nodiscard]] jwt::route_view judge(const json& claims) const {
    jwt::route_view v{this, false, {}, {}};
    std::vector<std::string> held_roles, held_scopes;
    add_words(at_path(claims, roles_claim), held_roles);
    add_words(at_path(claims, {"scope"}), held_scopes);
    add_words(at_path(claims, {"scp"}), held_scopes);
    v.allowed = roles.met_by(held_roles) && scopes.met_by(held_scopes);
    if (!v.allowed) return v;
    json identity = json::object();
    if (auto sub = claims.find("sub"); sub != claims.end() && sub->is_string()) {
      identity["sub"] = *sub;
      v.subject = sub->get<std::string>();
    }
    identity["roles"] = std::move(held_roles);
    identity["scopes"] = std::move(held_scopes);
    auto& propagated = identity["claims"] = json::object();
    for (const auto& name : propagate) {
      if (auto it = claims.find(name); it != claims.end()) propagated[name] = *it;
    }
    auto packed = json::to_msgpack(identity);
    v.identity.assign(packed.begin(), packed.end());
    return v;
  }

  void refuse(request_context& ctx, int status, std::string_view message,
              std::string_view challenge, std::string_view reason) {
    ctx.response = error_response(status, message);
    ctx.response.headers.emplace_back("WWW-Authenticate", std::string(challenge));
    std::size_t held = 0;
    if (log_.allow(held)) {
      spdlog::info("[{}] {} {} refused ({}): {} (request_id={}){}",
                   tern::to_string(ctx.request.peer), ctx.request.method, clip(ctx.request.target),
                   status, clip(reason), ctx.request_id, held_back(held));
    }
  }

  const jwt::verifier& keys_;
  jwt::token_cache& cache_;
  log_limiter log_;
};

// ["a", "b"] (any of them), or {"any": [...]} / {"all": [...]}.
wanted read_wanted(const nlohmann::ordered_json& v, const std::string& where) {
  if (v.is_array()) return {piece_strings(v, where), false};
  if (v.is_object() && v.size() == 1 && (v.contains("any") || v.contains("all"))) {
    bool all = v.contains("all");
    return {piece_strings(all ? v["all"] : v["any"], where + (all ? ".all" : ".any")), all};
  }
  throw config_error(where + ": must be a list (any of) or {\"all\": [...]} / {\"any\": [...]}");
}

}  // namespace

std::unique_ptr<policy> make_auth_policy(const build_context& b) {
  const auto& piece = b.piece;
  if (piece.is_null() || piece == false) return nullptr;  // a public route
  if (!(piece == true || piece.is_object())) {
    throw config_error(b.where + ": must be true (any valid token), false or an object");
  }
  // The (unmatched) and (rejected) chains answer 404 and parse errors:
  // asking those for a token would only hide the real answer.
  if (!b.matched) return nullptr;
  if (!b.config.section("auth")) {
    throw config_error(b.where + ": needs the top-level \"auth\" section (its keys)");
  }
  auto& shared = b.shared.get<shared_verifier>(
      [&] { return new shared_verifier(json(section_of(b.config, "auth"))); });
  auto p = std::make_unique<auth>(shared);
  if (piece.is_object()) {
    for (const auto& [key, v] : piece.items()) {
      std::string at = b.where + "." + key;
      if (key == "roles") {
        p->roles = read_wanted(v, at);
      } else if (key == "scopes") {
        p->scopes = read_wanted(v, at);
      } else if (key == "roles_claim") {
        if (!v.is_string() || v.get<std::string>().empty()) {
          throw config_error(at + ": must be a claim name or dotted path (realm_access.roles)");
        }
        p->roles_claim.clear();
        std::string_view s = v.get_ref<const std::string&>();
        for (auto dot = s.find('.');; dot = s.find('.')) {
          p->roles_claim.emplace_back(s.substr(0, dot));
          if (dot == s.npos) break;
          s.remove_prefix(dot + 1);
        }
      } else if (key == "propagate") {
        p->propagate = piece_strings(v, at);
      } else {
        throw config_error(at + ": is not an auth setting (roles, scopes, roles_claim, propagate)");
      }
    }
  }
  return p;
}

void check_auth_section(const nlohmann::ordered_json& section, const std::string& where) {
  if (!section.is_object()) throw config_error(where + ": must be an object");
  jwt::verifier keys(json(section), where);  // reads the keys, as a route with auth will
}

}  // namespace tern::gateway
