// The seam every gateway concern plugs into: a per-route chain of policies
// in front of a handler.
#pragma once

#include "pipeline/request_context.hpp"

#include <asio/awaitable.hpp>

#include <memory>
#include <vector>

namespace tern::gateway {

class chain;

/// The rest of the chain after a policy: calling it runs the next policy,
/// or the handler after the last one. (Not a coroutine itself: it returns
/// the next policy's, which holds its own `next` by value, so a request
/// costs one coroutine frame per policy.)
class next {
 public:
  next(const chain& c, std::size_t i) noexcept : chain_(&c), index_(i) {}
  [[nodiscard]] asio::awaitable<void> operator()(request_context& ctx) const;

 private:
  const chain* chain_;
  std::size_t index_;
};

/// One concern on a route (request id, access log, metrics, later rate
/// limits, auth, caching): does its part, calls `n` to go on (or answers
/// itself by filling ctx.response and not calling it), and may look at the
/// response on the way back. Built once per route at start-up by its
/// factory (pipeline/registry.hpp) and shared by every request on that
/// route; runs on the gateway's event-loop thread, so it needs no lock.
class policy {
 public:
  virtual ~policy() = default;
  virtual asio::awaitable<void> handle(request_context& ctx, next n) = 0;
};

/// What a route does once every policy has let the request through: call
/// a service, aggregate several, answer health or metrics. Fills
/// ctx.response.
class handler {
 public:
  virtual ~handler() = default;
  virtual asio::awaitable<void> handle(request_context& ctx) = 0;
};

/// A route's policies, in the registry's fixed order, then its handler.
/// A handler's exception becomes a 500 (logged), so every policy sees the
/// response on the way back.
class chain {
 public:
  chain(std::vector<std::unique_ptr<policy>> policies, std::unique_ptr<handler> h)
      : policies_(std::move(policies)), handler_(std::move(h)) {}

  [[nodiscard]] asio::awaitable<void> run(request_context& ctx) const {
    return next(*this, 0)(ctx);
  }
  /// The routes_by of the chain's policies that have one
  /// (policy_registration::routes_by: a CORS preflight's): the requests
  /// routed to it by another method that it answers.
  std::vector<reroute_fn> reroutes;

 private:
  friend class next;
  asio::awaitable<void> run_handler(request_context& ctx) const;
  std::vector<std::unique_ptr<policy>> policies_;
  std::unique_ptr<handler> handler_;
};

}  // namespace tern::gateway
