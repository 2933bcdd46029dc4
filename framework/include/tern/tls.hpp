// TLS for services and clients (docs/security.md): the options a
// microservice, a client_proxy and the gateway take, and what a handler
// learns of a caller that showed a certificate. Light: no Asio or OpenSSL.
#pragma once

#include "tern/transport/tls.hpp"

namespace tern {

/// Certificate, key, CA and checks of one side (see transport::tls_options).
using tls_options = transport::tls_options;
/// Whether a service asks its callers for a certificate.
using peer_check = transport::peer_check;
/// A caller's verified certificate: subject and subject alternative names.
using tls_peer = transport::tls_peer;
/// A certificate, key or CA file that cannot be used.
using tls_error = transport::tls_error;
/// One side's loaded certificate, key and checks (an SSL_CTX), shared by
/// its connections and threads; a reload makes a new one.
using tls_context = transport::tls_context;

}  // namespace tern
