// Coroutines an object starts and must see finished (tracked, cancelled
// together, joined with a bound, failures logged in one place).
#pragma once

#include "tern/transport/task_group.hpp"

namespace tern {
using transport::task_group;
}  // namespace tern
