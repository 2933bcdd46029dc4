// Routes compiled for matching: method and path segments to a chain.
#pragma once

#include "pipeline/policy.hpp"

#include <tern/http/request.hpp>

#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tern::gateway {

struct route;

/// One matchable route: a method, a path template split into segments
/// (":name" captures one segment), its label for logs and metrics, and
/// the chain that serves it.
struct route_entry {
  std::string method;
  std::vector<std::string> segments;
  std::string label;
  const route* config = nullptr;  ///< null for admin routes
  std::unique_ptr<chain> serve;
};

/// Matches requests in the order routes were added. HEAD matches a GET
/// route (the server leaves the body out).
class route_table {
 public:
  using params = std::vector<std::pair<std::string_view, std::string>>;

  void add(route_entry e);

  /// The route for `req`, with its captures (percent-decoded) in `captured`;
  /// null if none.
  const route_entry* match(const http::request& req, params& captured) const {
    return match(req.method, req.path, captured);
  }
  /// The same for a method other than the request's (a policy's
  /// routes_by: a CORS preflight asks about the method it names).
  const route_entry* match(std::string_view method, std::string_view path, params& captured) const;
  /// The methods the routes that have `path` answer, for an Allow header
  /// ("GET, HEAD, POST": HEAD with GET); empty if no route has it.
  [[nodiscard]] std::string allowed(std::string_view path) const;

 private:
  // Calls `found(route)` for each route whose template `path` fits, in
  // order, until it returns true; fills `captured` for the route it
  // stopped at. Returns that route, or null.
  template <typename Found>
  const route_entry* each_fit(std::string_view path, params* captured, Found found) const;

  std::vector<route_entry> routes_;
  // Where each_fit() looks, so a request is not compared with every route:
  // routes without captures by their path ("/a/b"), and routes with a
  // capture by their number of segments; each list in the order added.
  std::deque<std::string> paths_;  // the keys of literal_
  std::unordered_map<std::string_view, std::vector<std::size_t>> literal_;
  std::vector<std::vector<std::size_t>> captures_by_count_;
};

}  // namespace tern::gateway
