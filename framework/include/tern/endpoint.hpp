// Endpoints: "host:port" as client_options::endpoints and configs write it
// (IPv6 in brackets), and a peer's address as its socket reports it. The
// transport's one unit for them (tern/transport/endpoint.hpp).
#pragma once

#include "tern/transport/endpoint.hpp"

namespace tern {

using transport::endpoint_address;
using transport::ip_address;
using transport::ip_endpoint;
using transport::is_v4;
using transport::parse_endpoint;
using transport::parse_ip;
using transport::parse_ip_endpoint;
using transport::to_string;

}  // namespace tern
