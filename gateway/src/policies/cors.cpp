// CORS (the Fetch standard's CORS protocol): preflights answered by the
// gateway without an upstream call, and the Access-Control-* fields on the
// answers of allowed origins.
#include "config/config.hpp"
#include "pipeline/registry.hpp"
#include "render/errors.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>

namespace tern::gateway {

namespace {

using json = nlohmann::ordered_json;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
  return out;
}

class cors final : public policy {
 public:
  bool any_origin = false;  // "*": public routes only, never with credentials
  std::vector<std::string> origins, methods, headers, expose;
  bool credentials = false;
  int max_age_s = 600;
  std::string methods_field, headers_field, expose_field;  // joined once

  asio::awaitable<void> handle(request_context& ctx, next n) override {
    auto origin = allowed_origin(ctx.request);
    if (ctx.rerouted_by == &cors_preflight_method) {
      preflight(ctx, origin);
      co_return;
    }
    co_await n(ctx);
    auto& h = ctx.response.headers;
    // With a list the answer depends on Origin; "*" is the same for all
    // (sent even without an Origin, so a shared cache cannot keep an
    // answer without it for a cross-origin request).
    if (!any_origin) h.emplace_back("Vary", "Origin");
    if (origin.empty() && !any_origin) co_return;
    h.emplace_back("Access-Control-Allow-Origin", any_origin ? "*" : std::string(origin));
    if (credentials) h.emplace_back("Access-Control-Allow-Credentials", "true");
    if (!expose_field.empty()) h.emplace_back("Access-Control-Expose-Headers", expose_field);
  }

 private:
  // The request's Origin if it is allowed, else empty (also for two).
  [[nodiscard]] std::string_view allowed_origin(const http::request& req) const {
    std::string_view found;
    int count = 0;
    for (const auto& [k, v] : req.headers) {
      if (k == "origin") found = v, ++count;
    }
    if (count != 1 || found.empty()) return {};
    if (any_origin) return found;
    return std::find(origins.begin(), origins.end(), found) != origins.end() ? found
                                                                             : std::string_view();
  }

  void preflight(request_context& ctx, std::string_view origin) const {
    const auto& req = ctx.request;
    auto method = req.header("access-control-request-method");
    bool ok = !origin.empty() && std::find(methods.begin(), methods.end(), method) != methods.end();
    // Every header the browser asks about must be allowed (names are
    // case-insensitive; the list is comma-separated).
    std::string_view asked = req.header("access-control-request-headers");
    std::string_view list = asked;
    while (ok && !list.empty()) {
      auto comma = list.find(',');
      auto name = list.substr(0, comma);
      list = comma == list.npos ? std::string_view() : list.substr(comma + 1);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (name.empty()) continue;
      ok = std::any_of(headers.begin(), headers.end(), [&](auto& h) { return iequals(h, name); });
    }
    auto& r = ctx.response;
    if (!ok) {
      r = error_response(403, "CORS preflight refused: origin, method or headers not allowed");
    } else {
      r.status = 204;
      r.headers.emplace_back("Access-Control-Allow-Origin", any_origin ? "*" : std::string(origin));
      r.headers.emplace_back("Access-Control-Allow-Methods", methods_field);
      if (!headers_field.empty())
        r.headers.emplace_back("Access-Control-Allow-Headers", headers_field);
      r.headers.emplace_back("Access-Control-Max-Age", std::to_string(max_age_s));
      if (credentials) r.headers.emplace_back("Access-Control-Allow-Credentials", "true");
    }
    r.headers.emplace_back("Vary",
                           "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  }
};

// Whether a route's chain authenticates: its own auth piece, or the default.
bool has_auth(const build_context& b) {
  if (!b.matched) return false;
  auto own = json::parse(b.matched->policies, nullptr, false);
  if (own.is_object() && own.contains("auth"))
    return !(own["auth"].is_null() || own["auth"] == false);
  auto defaults = json::parse(b.config.policies, nullptr, false);
  return defaults.is_object() && defaults.contains("auth") &&
         !(defaults["auth"].is_null() || defaults["auth"] == false);
}

}  // namespace

std::string_view cors_preflight_method(const http::request& req) {
  if (req.method != "OPTIONS") return {};
  return req.header("access-control-request-method");
}

std::unique_ptr<policy> make_cors_policy(const build_context& b) {
  const auto& piece = b.piece;
  if (piece.is_null() || piece == false) return nullptr;
  if (!piece.is_object() || !piece.contains("origins")) {
    throw config_error(b.where + R"(: must be {"origins": ["https://app.example"] or "*", ...})");
  }
  auto p = std::make_unique<cors>();
  // By default: the route's own method (GET also allows HEAD), the
  // headers tern reads, and the ones it adds that scripts may want.
  p->headers = {"Authorization", "Content-Type", "X-Request-Id", "traceparent", "tracestate"};
  p->expose = {"X-Request-Id", "X-Cache", "Age", "Retry-After", "RateLimit", "RateLimit-Policy"};
  if (b.matched) {
    p->methods = {b.matched->method};
    if (b.matched->method == "GET") p->methods.emplace_back("HEAD");
  }
  for (const auto& [key, v] : piece.items()) {
    std::string at = b.where + "." + key;
    if (key == "origins") {
      if (v == "*") {
        p->any_origin = true;
      } else {
        p->origins = piece_strings(v, at);
        for (const auto& o : p->origins) {
          if (o == "*" || o == "null" || o.find("://") == std::string::npos || o.back() == '/') {
            throw config_error(at + ": '" + o +
                               "' is not an origin (scheme://host[:port], no path); use \"*\" "
                               "alone for any");
          }
        }
      }
    } else if (key == "methods") {
      p->methods = piece_strings(v, at);
    } else if (key == "headers") {
      p->headers = piece_strings(v, at);
    } else if (key == "expose_headers") {
      p->expose = piece_strings(v, at);
    } else if (key == "credentials") {
      if (!v.is_boolean()) throw config_error(at + ": must be true or false");
      p->credentials = v.get<bool>();
    } else if (key == "max_age_s") {
      if (!v.is_number_integer() || v.get<int>() < 0 || v.get<int>() > 86400) {
        throw config_error(at + ": must be a whole number of seconds from 0 to 86400");
      }
      p->max_age_s = v.get<int>();
    } else {
      throw config_error(at +
                         ": is not a cors setting (origins, methods, headers, expose_headers, "
                         "credentials, max_age_s)");
    }
  }
  if (p->any_origin && p->credentials) {
    throw config_error(b.where + R"(.origins: "*" cannot go with credentials (list the origins))");
  }
  if (p->any_origin && has_auth(b)) {
    throw config_error(b.where + R"(.origins: "*" is for public routes only, and )" +
                       b.matched->method + " " + b.matched->path + " has auth (list the origins)");
  }
  p->methods_field = join(p->methods);
  p->headers_field = join(p->headers);
  p->expose_field = join(p->expose);
  return p;
}

}  // namespace tern::gateway
