// A client's endpoints: the configured entries, what DNS says the names
// among them stand for now (looked up again and again), the drain of
// addresses that left, and the pick of one for a call. Internal to
// framework/ (docs/architecture.md, "The client").
#pragma once

#include "endpoint.hpp"

#include <asio/awaitable.hpp>
#include <asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace tern::detail {

class dns_resolver;

class endpoint_set {
 public:
  /// Throws std::invalid_argument for a malformed entry or DNS server.
  endpoint_set(const asio::any_io_executor& ex, const client_options& o);
  ~endpoint_set();
  endpoint_set(const endpoint_set&) = delete;
  endpoint_set& operator=(const endpoint_set&) = delete;

  /// The entries as configured ("users:3001,10.0.0.5:3001"), for errors.
  [[nodiscard]] const std::string& where() const noexcept { return where_; }
  /// The endpoints calls are picked from now.
  [[nodiscard]] const std::vector<endpoint_ptr>& list() const noexcept { return endpoints_; }
  /// The endpoints are known (no name to look up, or the first lookup ended).
  [[nodiscard]] bool resolved() const noexcept { return resolved_; }
  /// Some entry is a name: discover() must run for the endpoints to be known.
  [[nodiscard]] bool discovers() const noexcept { return dns_ != nullptr; }
  /// The endpoint came from a name (a failed connect asks for a lookup soon).
  [[nodiscard]] bool named(const endpoint& e) const noexcept { return !sources_[e.source].literal; }

  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  /// The index of the endpoint for the next call, or `none` if none can
  /// take one now. `avoid` (a retry's last endpoint) is passed over while
  /// another can take the call.
  std::size_t pick(const endpoint* avoid = nullptr);
  /// Why no endpoint can take a call.
  [[nodiscard]] rpc_error unavailable() const;
  /// A random number (xorshift64*), for picks and retry jitter.
  std::uint64_t random() noexcept;

  /// Looks the names up now and every resolve_interval after, sooner when
  /// lookup_soon() asks; runs until cancelled (its owner's task).
  asio::awaitable<void> discover();
  /// Completes once the endpoints are known, or when wake_waiters() is called.
  asio::awaitable<void> wait_resolved();
  void wake_waiters();
  /// Looks the names up again now, unless a lookup ended under a second ago.
  void lookup_soon();

 private:
  struct source {
    std::string host;
    std::uint16_t port = 0;
    bool literal = false;  // an address: no lookup
  };
  asio::awaitable<void> lookup();
  void update(const std::vector<std::pair<asio::ip::tcp::endpoint, std::size_t>>& found,
              const std::vector<bool>& failed);
  void add(const asio::ip::tcp::endpoint& a, std::size_t from);
  std::size_t last_resort() const;

  asio::any_io_executor executor_;
  balancing balance_;
  std::chrono::milliseconds resolve_interval_;
  std::string where_;
  std::vector<source> sources_;
  std::vector<endpoint_ptr> endpoints_;
  std::size_t next_turn_ = 0;  // round robin
  std::uint64_t rng_;

  std::unique_ptr<dns_resolver> dns_;
  bool resolved_ = false;
  int resolve_waiters_ = 0;
  asio::steady_timer resolved_signal_;
  asio::steady_timer wake_;  // discover()'s sleep
  clock::time_point last_lookup_{};
  clock::time_point next_lookup_{};  // now: the first lookup runs at once
  std::string lookup_error_;
};

}  // namespace tern::detail
