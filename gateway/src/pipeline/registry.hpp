// Where policies are registered, and how a route's chain is built from the
// config: the one place that knows every concern and their order.
#pragma once

#include "config/config.hpp"
#include "pipeline/policy.hpp"

#include <tern/metrics.hpp>

#include <nlohmann/json_fwd.hpp>

#include <any>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

namespace asio {
class io_context;
}

namespace tern::gateway {

/// Objects the policies of every route share (one access-log writer, one
/// set of metric families): made on first use, by type.
class shared_state {
 public:
  template <class T, class Make>
  T& get(Make&& make) {
    auto& slot = items_[std::type_index(typeid(T))];
    if (!slot) slot = std::shared_ptr<T>(make());
    return *std::static_pointer_cast<T>(slot);
  }

 private:
  std::map<std::type_index, std::shared_ptr<void>> items_;
};

class upstreams;

/// What every chain is built with: the gateway's parts policies may use.
struct chain_env {
  asio::io_context& io;
  const gateway_config& config;
  metrics_registry& metrics;
  shared_state& shared;
  const upstreams* services;
};

/// What a policy's factory gets for one route.
struct build_context : chain_env {
  const route* matched;          ///< null for the unmatched and admin chains
  std::string_view route_label;  ///< outlives the chain
  /// This policy's config: the route's "policies.<name>" if it has one,
  /// else the top-level default, else null. `false` turns the policy off.
  const nlohmann::ordered_json& piece;
  std::string where;  ///< the piece's place in the config, for errors
};

/// Makes a route's policy from its piece (throws config_error naming
/// `where` when the piece is wrong), or returns null when the policy is off
/// for that route.
using policy_factory = std::function<std::unique_ptr<policy>(const build_context&)>;

struct policy_registration {
  std::string_view name;  ///< the config key
  policy_factory make;
};

/// A piece's list of non-empty strings (`where` names it in the error).
std::vector<std::string> piece_strings(const nlohmann::ordered_json& v, const std::string& where);

/// Every policy, in chain order.
std::span<const policy_registration> registered_policies();

/// Builds one route's chain. `route_policies` is the route's "policies"
/// JSON text (or "{}"); keys that name no policy are refused.
std::unique_ptr<chain> build_chain(const chain_env& env, const route* matched,
                                   std::string_view label, std::string_view route_policies,
                                   const std::string& where, std::unique_ptr<handler> h);

// The factories, one per file under policies/.
std::unique_ptr<policy> make_request_id_policy(const build_context& b);
std::unique_ptr<policy> make_access_log_policy(const build_context& b);
std::unique_ptr<policy> make_metrics_policy(const build_context& b);
std::unique_ptr<policy> make_cors_policy(const build_context& b);
std::unique_ptr<policy> make_auth_policy(const build_context& b);
std::unique_ptr<policy> make_rate_limit_policy(const build_context& b);
std::unique_ptr<policy> make_cache_policy(const build_context& b);

}  // namespace tern::gateway
