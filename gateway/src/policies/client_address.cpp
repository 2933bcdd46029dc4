#include "policies/client_address.hpp"

#include "config/config.hpp"
#include "pipeline/registry.hpp"

#include <tern/http/request.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>

namespace tern::gateway {

bool address_range::contains(const tern::ip_address& a) const noexcept {
  int full = prefix / 8, rest = prefix % 8;
  for (int i = 0; i < full; ++i) {
    if (a[static_cast<std::size_t>(i)] != base[static_cast<std::size_t>(i)]) return false;
  }
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[static_cast<std::size_t>(full)] & mask) ==
         (base[static_cast<std::size_t>(full)] & mask);
}

namespace {

address_range read_range(const nlohmann::ordered_json& v, const std::string& where) {
  std::string text = v.is_string() ? v.get<std::string>() : std::string();
  address_range r;
  auto slash = text.find('/');
  bool ok = tern::parse_ip(std::string_view(text).substr(0, slash), r.base);
  bool v4 = text.find(':') == std::string::npos;
  if (ok && slash != std::string::npos) {
    auto bits = text.substr(slash + 1);
    char* end = nullptr;
    long n = std::strtol(bits.c_str(), &end, 10);
    ok = !bits.empty() && *end == '\0' && n >= 0 && n <= (v4 ? 32 : 128);
    r.prefix = static_cast<int>(n) + (v4 ? 96 : 0);
  }
  if (!ok) {
    throw config_error(where + ": '" + text +
                       "' is not an address or range (10.0.0.0/8, ::1, fd00::/8)");
  }
  return r;
}

}  // namespace

trusted_proxies trusted_proxies::read(const nlohmann::ordered_json& list,
                                      const std::string& where) {
  if (!list.is_array()) throw config_error(where + ": must be an array of addresses or ranges");
  trusted_proxies t;
  for (std::size_t i = 0; i < list.size(); ++i) {
    t.ranges_.push_back(read_range(list[i], where + "[" + std::to_string(i) + "]"));
  }
  return t;
}

bool trusted_proxies::contains(const tern::ip_address& a) const noexcept {
  return std::any_of(ranges_.begin(), ranges_.end(), [&](auto& r) { return r.contains(a); });
}

tern::ip_address trusted_proxies::client(const http::request& req) const {
  // (A peer the socket could not tell is ::, one client for all such.)
  const auto& peer = req.peer.address;
  if (ranges_.empty() || !contains(peer)) return peer;
  tern::ip_address chosen = peer, a{};
  // Several X-Forwarded-For fields are one list, in order.
  for (auto it = req.headers.rbegin(); it != req.headers.rend(); ++it) {
    if (it->first != "x-forwarded-for") continue;
    std::string_view list = it->second;
    while (!list.empty()) {
      auto comma = list.rfind(',');
      auto item = comma == list.npos ? list : list.substr(comma + 1);
      list = comma == list.npos ? std::string_view() : list.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (!tern::parse_ip(item, a)) return chosen;  // a hop we cannot read
      chosen = a;
      if (!contains(a)) return chosen;
    }
  }
  return chosen;
}

void check_trusted_proxies(const nlohmann::ordered_json& section, const std::string& where) {
  (void)trusted_proxies::read(section, where);
}

}  // namespace tern::gateway
