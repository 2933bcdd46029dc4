// The parts of a request target: percent-decoding of path segments and
// query strings (RFC 3986 §2.1; application/x-www-form-urlencoded's `+`).
#pragma once

#include <string>
#include <string_view>

namespace tern::http {

/// Decodes %XX escapes (and `+` as a space when `plus_is_space`, as query
/// strings use it); other bytes, malformed escapes included, stay as they are.
std::string percent_decode(std::string_view s, bool plus_is_space);

}  // namespace tern::http
