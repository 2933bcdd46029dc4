// Log lines hostile peers cannot amplify: client input clipped and escaped,
// repeated warnings rate-limited.
#pragma once

#include "tern/transport/log_limit.hpp"

namespace tern {
using transport::clip;
using transport::held_back;
using transport::log_limiter;
}  // namespace tern
