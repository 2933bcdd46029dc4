// The policies of a config's routes, run in process: every route's chain
// is built as a gateway worker builds it, but ends in a handler the test
// writes instead of a call to a service; time is a clock the test moves.
#pragma once

#include "config/config.hpp"
#include "pipeline/registry.hpp"
#include "routing/route_table.hpp"

#include <tern/endpoint.hpp>
#include <tern/task_group.hpp>

#include <doctest/doctest.h>
#include <prometheus/metric_family.h>
#include <asio/awaitable.hpp>
#include <asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tern::gateway::test {

/// A steady clock that moves only when a test says so (process_state::now).
struct manual_clock {
  static inline std::atomic<std::int64_t> ns{1'000'000'000'000};  // far from zero, like a boot
  static std::chrono::steady_clock::time_point now() noexcept {
    return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(ns.load()));
  }
  static void advance(std::chrono::nanoseconds d) noexcept { ns += d.count(); }
};

/// What a route's chain ends in: the test's coroutine, and how often it ran.
using test_handler_fn = std::function<asio::awaitable<void>(request_context&)>;

class policy_fixture {
 public:
  /// Builds the chain of each route of `config_text`, each ending in
  /// `h`. Throws config_error as the gateway would.
  policy_fixture(asio::io_context& io, const std::string& config_text, test_handler_fn h)
      : config_(parse_config(config_text)),
        tasks_(io.get_executor(), "policies"),
        env_{io, config_, metrics_, shared_, process_, tasks_},
        handler_(std::move(h)) {
    process_.now = &manual_clock::now;
    try {
      build();
    } catch (...) {
      tasks_.cancel();  // as the gateway does: nothing started may outlive this
      throw;
    }
  }
  policy_fixture(const policy_fixture&) = delete;
  policy_fixture& operator=(const policy_fixture&) = delete;
  ~policy_fixture() { CHECK_MESSAGE(closed_, "a policy_fixture's test must co_await close()"); }

 private:
  void build() {
    check_sections(config_);
    for (std::size_t i = 0; i < config_.routes.size(); ++i) {
      const auto& r = config_.routes[i];
      auto id = "routes[" + std::to_string(i) + "]";
      route_entry e{.method = r.method,
                    .segments = r.segments,
                    .label = r.path,
                    .config = &r,
                    .serve = build_chain(env_, &r, r.path, id, r.policies, id + ".policies",
                                         std::make_unique<forward>(*this))};
      table_.add(std::move(e));
    }
  }

 public:
  /// `req` through the chain of the route it matches (the test asks only
  /// for paths that have one).
  /// `req` (the test's, so it can mark its client gone meanwhile) must
  /// outlive the call.
  asio::awaitable<http::response> ask(http::request& req) {
    if (req.target.empty()) req.target = req.path;
    if (!req.peer.known) req.peer = tern::parse_ip_endpoint("192.0.2.1:40000", 0);
    request_context ctx(req);
    const auto* e = table_.match(req, ctx.params);
    REQUIRE_MESSAGE(e, "no route for ", req.method, " ", req.path);
    ctx.matched = e->config;
    co_await e->serve->run(ctx);
    co_return std::move(ctx.response);
  }
  asio::awaitable<http::response> get(
      std::string path, std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::request req;
    req.method = "GET";
    req.path = std::move(path);
    req.headers = std::move(headers);
    co_return co_await ask(req);
  }

  /// Ends the policies' own tasks (as gateway::close and join do).
  asio::awaitable<void> close() {
    tasks_.cancel();
    CHECK(co_await tasks_.join(std::chrono::steady_clock::now() + std::chrono::seconds(5)));
    closed_ = true;
  }

  /// The handler's runs so far.
  [[nodiscard]] int handled() const noexcept { return handled_; }
  [[nodiscard]] process_state& process() noexcept { return process_; }
  [[nodiscard]] metrics_registry& metrics() noexcept { return metrics_; }

 private:
  struct forward final : handler {
    explicit forward(policy_fixture& f) : f_(f) {}
    asio::awaitable<void> handle(request_context& ctx) override {
      ++f_.handled_;
      co_await f_.handler_(ctx);
    }
    policy_fixture& f_;
  };

  gateway_config config_;
  metrics_registry metrics_;
  shared_state shared_;
  process_state process_;
  tern::task_group tasks_;
  chain_env env_;
  test_handler_fn handler_;
  route_table table_;
  int handled_ = 0;
  bool closed_ = false;
};

/// A response's field `name` ("" if absent; the last if repeated).
inline std::string field(const http::response& r, std::string_view name) {
  std::string v;
  for (const auto& [k, x] : r.headers) {
    if (k == name) v = x;
  }
  return v;
}

/// The value of the series of `family` with these labels in `m` (counter
/// or gauge); -1 when there is none.
inline double sample(const metrics_registry& m, std::string_view family,
                     const std::vector<std::pair<std::string, std::string>>& labels = {}) {
  for (const auto& f : m.collect()) {
    if (f.name != family) continue;
    for (const auto& s : f.metric) {
      bool all = std::all_of(labels.begin(), labels.end(), [&](const auto& want) {
        return std::any_of(s.label.begin(), s.label.end(), [&](const auto& l) {
          return l.name == want.first && l.value == want.second;
        });
      });
      if (all) return f.type == prometheus::MetricType::Counter ? s.counter.value : s.gauge.value;
    }
  }
  return -1;
}

}  // namespace tern::gateway::test
