// Where policies are registered, and how a route's chain is built from the
// config: the one place that knows every concern and their order.
#pragma once

#include "config/config.hpp"
#include "pipeline/policy.hpp"

#include <tern/metrics.hpp>

#include <nlohmann/json_fwd.hpp>

#include <any>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

namespace asio {
class io_context;
}
namespace tern::transport {
class task_group;
}

namespace tern::gateway {

/// Objects the policies of every route share (one access-log writer, one
/// set of metric families): made on first use, by type. Getting one is
/// thread-safe (chains are built at start-up); using it is the object's
/// own affair.
class shared_state {
 public:
  template <class T, class Make>
  T& get(Make&& make) {
    std::lock_guard lock(mutex_);
    auto& slot = items_[std::type_index(typeid(T))];
    if (!slot) slot = std::shared_ptr<T>(make());
    return *std::static_pointer_cast<T>(slot);
  }

 private:
  std::mutex mutex_;
  std::map<std::type_index, std::shared_ptr<void>> items_;
};

/// What a gateway's workers (one event loop per thread, app/app.hpp)
/// share: the few objects whose effect must not be split by thread (rate
/// limit buckets, the response cache, access-log destinations), kept
/// thread-safe by their own locks, and the metrics of those objects.
/// Everything else a policy keeps is its worker's alone, so the request
/// path takes no lock and shares no cache line with another thread.
struct process_state {
  shared_state shared;       ///< every object in it is thread-safe
  metrics_registry metrics;  ///< for those objects' metrics (scraped once, not per worker)
  /// The clock of what they keep in time (cache entries' TTLs and ages,
  /// rate-limit buckets): the steady clock, or a test's.
  std::chrono::steady_clock::time_point (*now)() noexcept = []() noexcept {
    return std::chrono::steady_clock::now();
  };
};

/// What every chain is built with: the gateway's parts policies may use.
struct chain_env {
  asio::io_context& io;
  const gateway_config& config;
  metrics_registry& metrics;  ///< this worker's (summed with the others' at scrape time)
  shared_state& shared;       ///< this worker's
  process_state& process;     ///< every worker's
  /// This worker's: a policy's own coroutines (the access log's flushes)
  /// start here; the gateway cancels and joins them before it goes.
  transport::task_group& tasks;
};

/// What a policy's factory gets for one route.
struct build_context : chain_env {
  const route* matched;          ///< null for the unmatched and admin chains
  std::string_view route_label;  ///< outlives the chain
  /// Names the chain the same way in every worker ("routes[2]",
  /// "(unmatched)", ...): the key of what its policies share across them.
  std::string_view chain_id;
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
  /// Requests this policy answers for a route of another method (a CORS
  /// preflight: OPTIONS, for the method it asks about); null for most.
  /// The gateway matches them by that method, and where the route's chain
  /// has the policy (chain::reroutes), runs it with
  /// request_context::rerouted_by set to this function.
  reroute_fn routes_by = nullptr;
};

/// A config section some policy owns (gateway_config::sections) beside
/// its pieces: its name ("cache", "server.trusted_proxies") and the check
/// that reads it, throwing config_error naming `where` when it is wrong.
struct section_registration {
  std::string_view name;
  void (*check)(const nlohmann::ordered_json& section, const std::string& where);
};

/// Every section a policy owns.
std::span<const section_registration> registered_sections();
/// Checks every section of `config` once, whether or not a route uses its
/// owner: each has one, and its owner accepts it. Throws config_error.
void check_sections(const gateway_config& config);
/// Section `name` of `config`, parsed; a JSON null when there is none.
nlohmann::ordered_json section_of(const gateway_config& config, std::string_view name);

/// A piece's list of non-empty strings (`where` names it in the error).
std::vector<std::string> piece_strings(const nlohmann::ordered_json& v, const std::string& where);

/// Every policy, in chain order.
std::span<const policy_registration> registered_policies();
/// The policies piece of the admin chains (/metrics, /health/*, and their
/// unmatched paths): every policy off but the request id, so scrapes and
/// probes are neither logged, counted, limited nor authenticated.
const std::string& admin_policies();

/// Builds one route's chain. `route_policies` is the route's "policies"
/// JSON text (or "{}"); keys that name no policy are refused. `id` names
/// the chain (build_context::chain_id).
std::unique_ptr<chain> build_chain(const chain_env& env, const route* matched,
                                   std::string_view label, std::string_view id,
                                   std::string_view route_policies, const std::string& where,
                                   std::unique_ptr<handler> h);

// The factories, one per file under policies/.
std::unique_ptr<policy> make_request_id_policy(const build_context& b);
std::unique_ptr<policy> make_access_log_policy(const build_context& b);
std::unique_ptr<policy> make_metrics_policy(const build_context& b);
std::unique_ptr<policy> make_cors_policy(const build_context& b);
std::unique_ptr<policy> make_auth_policy(const build_context& b);
std::unique_ptr<policy> make_rate_limit_policy(const build_context& b);
std::unique_ptr<policy> make_cache_policy(const build_context& b);
// The policies' reroutes (policy_registration::routes_by).
std::string_view cors_preflight_method(const http::request& req);
// The sections' checks, beside the policies that read them.
void check_auth_section(const nlohmann::ordered_json& section, const std::string& where);
void check_cache_section(const nlohmann::ordered_json& section, const std::string& where);
void check_trusted_proxies(const nlohmann::ordered_json& section, const std::string& where);

}  // namespace tern::gateway
