// The products service's patterns.
#pragma once

#include "products_repository.hpp"

#include <tern/microservice.hpp>

namespace tern::demo {

/// Registers {cmd:get_products} {limit?, offset?}, {cmd:get_product} {id},
/// {cmd:create_product} {name, price}, and {cmd:health}.
void register_products_handlers(microservice& app, products_repository& repo);

}  // namespace tern::demo
