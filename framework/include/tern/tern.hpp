// Everything a service or a caller needs.
#pragma once

#include "tern/client_proxy.hpp"
#include "tern/context.hpp"
#include "tern/dto.hpp"
#include "tern/microservice.hpp"
#include "tern/offload.hpp"
#include "tern/pattern.hpp"
#include "tern/rpc_error.hpp"
#include "tern/stream.hpp"
