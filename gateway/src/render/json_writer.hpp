// msgpack values to JSON text, straight from their packed bytes.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace tern::gateway {

/// Appends the one msgpack value in `packed` as JSON: maps become objects
/// (non-string keys as their JSON text, up to 64 KiB of it), binaries and
/// extensions become strings of their bytes, non-finite floats become null.
/// The output is always valid JSON (RFC 8259, UTF-8): in strings, each byte
/// that does not start a valid UTF-8 sequence becomes U+FFFD.
/// Throws std::invalid_argument if `packed` is not exactly one well-formed
/// value or has a longer key (`out` is then left as it was).
void append_json(std::string_view packed, std::string& out);

/// Appends `s` as a quoted JSON string (invalid UTF-8 as U+FFFD, as above).
void append_json_string(std::string_view s, std::string& out);

/// Appends a double as std::to_chars writes it (the shortest text that
/// reads back as the same value), with a faster path for values of up to
/// five integer digits and three decimals, such as prices.
void append_json_number(double v, std::string& out);

}  // namespace tern::gateway
