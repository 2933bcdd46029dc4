// UTF-8 validation and measuring for text that arrives from outside.
#pragma once

#include <cstddef>
#include <string_view>

namespace tern::transport {

/// The length of the valid UTF-8 prefix of `s` (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF); s.size() when all of it
/// is valid.
std::size_t valid_utf8_prefix(std::string_view s) noexcept;

/// Whether all of `s` is valid UTF-8.
inline bool is_valid_utf8(std::string_view s) noexcept {
  return valid_utf8_prefix(s) == s.size();
}

}  // namespace tern::transport
