// The framework's error type, rpc_error with its errc: what a handler
// throws to answer with an error, and what a caller catches. Defined beside
// the wire (tern/rpc_error.hpp, the transport's), which raises it too.
#pragma once

#include "tern/rpc_error.hpp"
