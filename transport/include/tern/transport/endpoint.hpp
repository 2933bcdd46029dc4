// Endpoints, in the one place that reads and writes them: "host:port" as
// configs and options write it (IPv6 in brackets everywhere), and a peer's
// address as its socket reports it, kept in binary so nothing parses its
// text back.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tern::transport {

/// "host:port": a name or an address (IPv6 without its brackets).
struct endpoint_address {
  std::string host;
  std::uint16_t port = 0;
};

/// Parses "host:port", "10.0.0.5:3001" or "[::1]:3001". Throws
/// std::invalid_argument naming the text and what is wrong with it.
endpoint_address parse_endpoint(std::string_view text);
/// The text parse_endpoint() reads back: brackets around an IPv6 host.
std::string to_string(const endpoint_address& e);

/// An IP address (IPv6, or IPv4 mapped as ::ffff:a.b.c.d; network order).
using ip_address = std::array<std::uint8_t, 16>;

/// Reads "10.0.0.5" or "::1" (no brackets, no port); false if it is neither.
bool parse_ip(std::string_view text, ip_address& out);
/// Whether `a` is an IPv4 address (mapped).
bool is_v4(const ip_address& a) noexcept;
/// "10.0.0.5", "::1".
std::string to_string(const ip_address& a);

/// An address and port as a socket reports them (a connection's peer).
struct ip_endpoint {
  ip_address address{};
  std::uint16_t port = 0;
  bool known = false;  ///< false: the socket could not tell
};
/// "10.0.0.5:80", "[::1]:80"; "(unknown)" when not known.
std::string to_string(const ip_endpoint& e);
/// Reads an address with an optional port ("10.0.0.2", "127.0.0.1:5353",
/// "::1", "[::1]:53"); `default_port` when none is given. Throws
/// std::invalid_argument naming the text.
ip_endpoint parse_ip_endpoint(std::string_view text, std::uint16_t default_port);

}  // namespace tern::transport
