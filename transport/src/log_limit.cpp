#include "tern/transport/log_limit.hpp"

#include <algorithm>

namespace tern::transport {

std::string clip(std::string_view s, std::size_t max) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  std::size_t shown = std::min(s.size(), max);
  out.reserve(shown + 16);
  for (std::size_t i = 0; i < shown; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 0xf];
    }
  }
  if (shown < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

std::string held_back(std::size_t suppressed) {
  if (suppressed == 0) return {};
  return " (and " + std::to_string(suppressed) + " more since)";
}

}  // namespace tern::transport
