// What the policies of one request's chain and its handler share.
#pragma once

#include <tern/http/server.hpp>
#include <tern/trace.hpp>

#include <tern/error.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::gateway {

struct call_spec;
struct route;

/// The method to match `req` by instead of its own, when a policy answers
/// it on behalf of the route of that method; else empty
/// (policy_registration::routes_by).
using reroute_fn = std::string_view (*)(const http::request& req);

/// One upstream call a handler made: for the access log and the metrics.
struct upstream_call {
  std::size_t call = 0;       ///< index into the route's calls
  std::optional<errc> error;  ///< how it failed, if it did
  [[nodiscard]] std::string_view outcome() const noexcept {
    return error ? to_string(*error) : std::string_view("ok");
  }
  std::chrono::nanoseconds took{};
  int retries = 0;  ///< attempts after the first
};

/// One HTTP request on its way through a route's chain. Made by the
/// gateway for each request and alive until its response is written; the
/// policies fill in their parts (request id, trace) before calling on,
/// the handler fills `response` and `calls`, and policies may amend the
/// response on the way back.
struct request_context {
  explicit request_context(const http::request& r) : request(r) {}

  const http::request& request;
  http::response response;
  /// The route matched: null for admin paths and for requests that match
  /// no route or that the HTTP server refused. (Policies know their
  /// route's label from when their chain was built.)
  const route* matched = nullptr;
  /// Set when the request was matched by the method a policy's
  /// registration routes it by (policy_registration::routes_by: a CORS
  /// preflight, by the method it asks about), not by its own: the policy
  /// registered with this function answers it, and nothing after it runs.
  reroute_fn rerouted_by = nullptr;
  /// For a request the HTTP server refused itself (a parse error): its
  /// status and message, which the "(rejected)" chain's handler answers.
  int refused_status = 0;
  std::string_view refused_message;
  std::vector<std::pair<std::string_view, std::string>> params;  ///< ":id" captures, decoded

  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  /// The request id (set by the request_id policy; X-Request-Id).
  std::string request_id;
  /// The trace this request belongs to (continued or started by the
  /// request_id policy); `traced` is false until then.
  trace_parent trace{};
  bool traced = false;
  std::string_view tracestate;  ///< into the request's headers

  /// The verified identity (set by the auth policy on routes that require
  /// one): its packed msgpack map for the calls' meta (tern::meta_identity),
  /// and its subject, for keys (rate limits, cache) that are per user.
  std::string identity;
  std::string subject;

  std::vector<upstream_call> calls;

  /// The `meta` for one upstream call, into `out`: the request id and a
  /// child span of this request's trace.
  void call_meta(std::string& out) const;
};

}  // namespace tern::gateway
