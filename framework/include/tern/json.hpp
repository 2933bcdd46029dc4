// JSON text and msgpack values, each straight into the other (for code that
// speaks JSON at its edge, as the gateway does).
#pragma once

#include "tern/transport/json.hpp"

namespace tern {

/// How a msgpack bin or ext value is written as JSON.
using transport::json_binary;
/// Appends one packed msgpack value as JSON text.
using transport::append_json;
/// Appends a quoted JSON string.
using transport::append_json_string;
/// Appends a double in its shortest JSON form.
using transport::append_json_number;
/// Why JSON text was refused.
using transport::json_error;
/// Appends one JSON value as msgpack, depth-checked as it parses.
using transport::json_to_msgpack;

}  // namespace tern
