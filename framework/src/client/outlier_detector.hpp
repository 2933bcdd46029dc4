// Outlier detection (Envoy's consecutive-failure kind): an endpoint with
// enough failures in a row is left out for a while, longer each time,
// within the share that may be out at once, and asked tern.health while
// out. Internal to framework/ (docs/architecture.md, "The client").
#pragma once

#include "endpoint.hpp"

#include "tern/resilience.hpp"

#include <asio/awaitable.hpp>

#include <functional>
#include <span>
#include <string>

namespace tern::detail {

class outlier_detector {
 public:
  outlier_detector(const ejection_options& o, const std::string& where) : o_(o), where_(where) {}

  [[nodiscard]] bool enabled() const noexcept { return o_.consecutive_failures > 0; }
  /// One outcome of `ep` (a call's, a connect's) among `all`. Returns true
  /// if it ejected the endpoint and a probe should start (see probe()).
  bool outcome(endpoint& ep, bool failed, clock::time_point now, std::span<const endpoint_ptr> all);
  /// Ejects `ep` now, for `why`, unless as many are out as may be at once
  /// (or it is out or gone already). Returns true as outcome() does.
  bool eject(endpoint& ep, const std::string& why, clock::time_point now,
             std::span<const endpoint_ptr> all);

  /// Asks the ejected `ep` every probe_interval, by `ask` (true: it
  /// answered), until it answers (back in at once), its time is up, or it
  /// leaves the upstream.
  using asker = std::function<asio::awaitable<bool>(const endpoint_ptr&)>;
  asio::awaitable<void> probe(endpoint_ptr ep, asker ask);

  /// Endpoints left out since the client was made.
  [[nodiscard]] std::uint64_t ejections() const noexcept { return ejections_; }

 private:
  ejection_options o_;
  const std::string& where_;
  std::uint64_t ejections_ = 0;
};

}  // namespace tern::detail
