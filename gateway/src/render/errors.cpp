#include "render/errors.hpp"

#include <tern/json.hpp>
#include "config/config.hpp"

namespace tern::gateway {

http::response error_response(int status, std::string_view message) {
  http::response r;
  r.status = status;
  r.body = "{\"statusCode\":" + std::to_string(status) + ",\"message\":";
  append_json_string(message, r.body);
  r.body += ",\"error\":";
  append_json_string(http::reason_phrase(status), r.body);
  r.body += '}';
  return r;
}

http::response internal_error() {
  return error_response(500, "Internal server error");
}

http::response client_closed() {
  return error_response(499, "the client closed the connection before the response");
}

http::response error_for(const rpc_error& e, const upstream& service) {
  switch (e.kind()) {
    case errc::remote: {
      int status = e.status() >= 400 && e.status() <= 599 ? e.status() : 500;
      return error_response(status, e.message());
    }
    case errc::internal:
      return internal_error();
    case errc::no_handler:
      return error_response(502, "service " + service.name + " has no handler for this route");
    case errc::decode_error:
      return error_response(502, "service " + service.name + " sent an unreadable reply");
    case errc::timeout:
      return error_response(504, "service " + service.name + " did not answer within " +
                                     std::to_string(service.timeout.count()) + " ms");
    case errc::deadline_exceeded:
      return error_response(504, "service " + service.name + " did not answer within " +
                                     std::to_string(service.timeout.count()) +
                                     " ms (the deadline passed before it could)");
    case errc::circuit_open:
      return error_response(503,
                            "service " + service.name + " is unavailable (circuit breaker open)");
    case errc::cancelled:  // the HTTP client left, which cancelled the call (nginx's 499)
      return client_closed();
    case errc::connection_refused:
    case errc::connection_closed:
    case errc::protocol_error:
      break;
  }
  return error_response(503, "service " + service.name + " is unavailable");
}

}  // namespace tern::gateway
