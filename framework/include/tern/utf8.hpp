// UTF-8 validation for text that arrives from outside.
#pragma once

#include "tern/transport/utf8.hpp"

namespace tern {

/// The length of the valid UTF-8 prefix of a string (RFC 3629).
using transport::valid_utf8_prefix;
/// Whether all of a string is valid UTF-8.
using transport::is_valid_utf8;

}  // namespace tern
