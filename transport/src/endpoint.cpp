#include "tern/transport/endpoint.hpp"

#include "tern/transport/connection.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <stdexcept>

namespace tern::transport {

endpoint_address parse_endpoint(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return std::invalid_argument("endpoint \"" + std::string(text) + "\": " + std::string(why));
  };
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) throw bad("expected host:port");
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    throw bad("an IPv6 address is written [address]:port");
  }
  if (host.empty()) throw bad("empty host");
  auto digits = text.substr(colon + 1);
  unsigned long port = 0;
  for (char c : digits) {
    if (c < '0' || c > '9' || (port = port * 10 + static_cast<unsigned long>(c - '0')) > 65535) {
      throw bad("the port must be 1-65535");
    }
  }
  if (port == 0) throw bad("the port must be 1-65535");
  return {std::string(host), static_cast<std::uint16_t>(port)};
}

namespace {
// host:port with brackets around an IPv6 host. Appended piece by piece:
// GCC 12's -Wrestrict misfires at -O3 on "[" + host + "]:" + port.
std::string host_port(std::string_view host, std::uint16_t port) {
  std::string out;
  bool v6 = host.find(':') != std::string_view::npos;
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}
}  // namespace

std::string to_string(const endpoint_address& e) {
  return host_port(e.host, e.port);
}

bool parse_ip(std::string_view text, ip_address& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return false;
  text.copy(buf, text.size());
  buf[text.size()] = '\0';
  out = {};
  if (inet_pton(AF_INET, buf, out.data() + 12) == 1) {
    out[10] = out[11] = 0xff;
    return true;
  }
  return inet_pton(AF_INET6, buf, out.data()) == 1;
}

bool is_v4(const ip_address& a) noexcept {
  return std::all_of(a.begin(), a.begin() + 10, [](auto x) { return x == 0; }) && a[10] == 0xff &&
         a[11] == 0xff;
}

std::string to_string(const ip_address& a) {
  char text[INET6_ADDRSTRLEN];
  bool v4 = is_v4(a);
  if (!inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? a.data() + 12 : a.data(), text, sizeof text)) {
    return "(unknown)";
  }
  return text;
}

std::string to_string(const ip_endpoint& e) {
  if (!e.known) return "(unknown)";
  return host_port(to_string(e.address), e.port);
}

ip_endpoint parse_ip_endpoint(std::string_view text, std::uint16_t default_port) {
  ip_endpoint out;
  out.known = true;
  out.port = default_port;
  // A bare address first: "::1" has colons but no port.
  if (parse_ip(text, out.address)) return out;
  try {
    auto e = parse_endpoint(text);
    if (parse_ip(e.host, out.address)) {
      out.port = e.port;
      return out;
    }
  } catch (const std::invalid_argument&) {
  }
  throw std::invalid_argument("'" + std::string(text) +
                              "' is not an address (10.0.0.2, 127.0.0.1:5353, [::1]:53)");
}

ip_endpoint to_ip_endpoint(const asio::ip::tcp::endpoint& ep) {
  ip_endpoint out;
  out.port = ep.port();
  out.known = true;
  auto a = ep.address();
  if (a.is_v4()) {
    auto b = a.to_v4().to_bytes();
    out.address[10] = out.address[11] = 0xff;
    std::copy(b.begin(), b.end(), out.address.begin() + 12);
  } else {
    out.address = a.to_v6().to_bytes();
  }
  return out;
}

std::string to_string(const asio::ip::tcp::endpoint& ep) {
  return to_string(to_ip_endpoint(ep));
}

}  // namespace tern::transport
