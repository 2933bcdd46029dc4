// The gateway's error responses, in NestJS's shape.
#pragma once

#include <tern/error.hpp>
#include <tern/http/server.hpp>

#include <string_view>

namespace tern::gateway {

struct upstream;

/// JSON error body in NestJS's shape: {"statusCode","message","error"}.
/// Every error the gateway answers itself is made here.
http::response error_response(int status, std::string_view message);
/// 500 "Internal server error": what failed stays in the log.
http::response internal_error();
/// 499: the client closed its connection before the response (nginx's
/// status; the response is only logged and counted, never sent).
http::response client_closed();

/// The HTTP error for a failed call to `service`: the service's rpc_error
/// status (4xx/5xx) and message; 503 when the service is unreachable; 504
/// when it does not answer in time; 502 for a reply that makes no sense.
http::response error_for(const rpc_error& e, const upstream& service);

}  // namespace tern::gateway
