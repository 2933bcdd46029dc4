// Listening sockets for servers built beside the framework's own (the
// gateway's HTTP server, a service's admin endpoint).
#pragma once

#include "tern/transport/server.hpp"

namespace tern {
/// Resolves host:port (passive; port 0 picks a free one), then opens, binds
/// (SO_REUSEADDR) and listens on `acceptor`; returns the bound port.
/// Throws std::system_error.
using transport::open_acceptor;
}  // namespace tern
