// The @NAME@ service's patterns.
#pragma once

#include "messages.hpp"

namespace @NAME@ {

void register_handlers(tern::microservice& app);

}  // namespace @NAME@
