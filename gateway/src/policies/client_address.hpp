// Who the client is: the peer's address, or, behind proxies the config
// trusts (server.trusted_proxies, read here), the one X-Forwarded-For names.
#pragma once

#include <tern/endpoint.hpp>

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace tern::http {
struct request;
}

namespace tern::gateway {

/// An address range ("10.0.0.0/8", "::1"): IPv4 kept as IPv4-mapped IPv6,
/// so one comparison serves both.
struct address_range {
  tern::ip_address base{};
  int prefix = 128;
  [[nodiscard]] bool contains(const tern::ip_address& a) const noexcept;
};

/// The peers whose X-Forwarded-For names the client. None by default: the
/// peer is the client, and the field is the client's word (ignored).
class trusted_proxies {
 public:
  trusted_proxies() = default;
  /// Reads server.trusted_proxies: an array of addresses and ranges
  /// (10.0.0.0/8, ::1, fd00::/8). Throws config_error naming `where`.
  static trusted_proxies read(const nlohmann::ordered_json& list, const std::string& where);

  [[nodiscard]] bool contains(const tern::ip_address& a) const noexcept;
  /// The client's address: the peer's, or, when the peer is trusted, the
  /// last address in X-Forwarded-For that is not (read from the right,
  /// the hops nearest to us; a hop that is not an address ends the walk).
  [[nodiscard]] tern::ip_address client(const http::request& req) const;
  [[nodiscard]] std::size_t size() const noexcept { return ranges_.size(); }

 private:
  std::vector<address_range> ranges_;
};

}  // namespace tern::gateway
