// "host:port" as client_options::endpoints and configs write it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tern {

struct endpoint_address {
  std::string host;  ///< a name, or an address (IPv6 without its brackets)
  std::uint16_t port = 0;
};

/// Parses "host:port", "10.0.0.5:3001" or "[::1]:3001". Throws
/// std::invalid_argument naming the text and what is wrong with it.
endpoint_address parse_endpoint(std::string_view text);

/// The text parse_endpoint() reads back: brackets around an IPv6 host.
std::string to_string(const endpoint_address& e);

}  // namespace tern
