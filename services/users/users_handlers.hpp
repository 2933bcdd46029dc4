// The users service's patterns.
#pragma once

#include "users_repository.hpp"

#include <tern/client_proxy.hpp>
#include <tern/microservice.hpp>

namespace tern::demo {

/// Registers {cmd:get_users} {limit?, offset?}, {cmd:get_user} {id},
/// {cmd:create_user} {name, email} (then emits user_created to `events`, if
/// given; admins only), {cmd:whoami} (the caller's verified identity), the
/// user_created event (counted), and {cmd:health}.
void register_users_handlers(microservice& app, users_repository& repo,
                             client_proxy* events = nullptr);

}  // namespace tern::demo
