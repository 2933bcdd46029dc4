#include "tern/rpc_error.hpp"

namespace tern {

std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::remote:
      return "remote";
    case errc::internal:
      return "internal";
    case errc::no_handler:
      return "no_handler";
    case errc::timeout:
      return "timeout";
    case errc::connection_refused:
      return "connection_refused";
    case errc::connection_closed:
      return "connection_closed";
    case errc::decode_error:
      return "decode_error";
    case errc::protocol_error:
      return "protocol_error";
    case errc::cancelled:
      return "cancelled";
    case errc::circuit_open:
      return "circuit_open";
    case errc::deadline_exceeded:
      return "deadline_exceeded";
  }
  return "unknown";
}

}  // namespace tern
