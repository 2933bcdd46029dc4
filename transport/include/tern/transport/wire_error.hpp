// The error model on the wire, in one place: how an rpc_error becomes a
// reply's `err` value and back, and the texts both sides agree on.
#pragma once

#include "tern/rpc_error.hpp"
#include "tern/transport/codec.hpp"
#include "tern/transport/packet.hpp"

#include <string_view>

namespace tern::transport {

/// The text NestJS sends, and we send, when no handler matches a request.
inline constexpr std::string_view no_handler_message =
    "There is no matching message handler defined in the remote service.";

/// The message of the generic error a service sends for a handler failure
/// it does not describe (any exception but rpc_error); the detail stays in
/// the service's log.
inline constexpr std::string_view internal_error_message = "Internal server error";

/// The status of a request dropped because its deadline passed (HTTP's 504).
inline constexpr int deadline_exceeded_status = 504;

/// Writes `e` as an `err` map: {status, message[, details]}, where status is
/// e.status(), or the string "error" when it is 0; errc::deadline_exceeded
/// is {status: 504, kind: "deadline_exceeded", message}.
void write_error(packer& pk, const rpc_error& e);
/// Writes the generic internal error: {status: "error", message: internal_error_message}.
void write_internal_error(packer& pk);

/// The rpc_error a reply's `err` stands for: errc::no_handler for NestJS's
/// no-handler reply, errc::internal for the generic internal error,
/// errc::deadline_exceeded for `kind: "deadline_exceeded"`, else errc::remote with the status,
/// message and details as sent.
rpc_error to_rpc_error(const packet& reply);

}  // namespace tern::transport
