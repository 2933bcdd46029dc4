// msgpack values to JSON text, without an intermediate document.
#pragma once

#include <msgpack.hpp>

#include <string>
#include <string_view>

namespace tern::gateway {

/// Appends `v` as JSON: maps become objects (non-string keys as their JSON
/// text), binaries and extensions become strings of their bytes, non-finite
/// floats become null.
void append_json(const msgpack::object& v, std::string& out);

/// Appends `s` as a quoted JSON string.
void append_json_string(std::string_view s, std::string& out);

}  // namespace tern::gateway
