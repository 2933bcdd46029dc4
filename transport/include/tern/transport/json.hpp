// JSON text and msgpack values, each straight into the other: the gateway's
// HTTP bodies and NestJS's JSON wire both go through here.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tern::transport {

/// How append_json writes a msgpack bin or ext value, which JSON lacks.
enum class json_binary : std::uint8_t {
  text,    ///< a string of its bytes (bytes that are not UTF-8 become U+FFFD)
  base64,  ///< a string of its bytes in base64 (RFC 4648, padded); an ext's type byte is dropped
};

/// Appends the one msgpack value in `packed` as JSON: maps become objects
/// (non-string keys as their JSON text, up to 64 KiB of it), binaries and
/// extensions become strings as `binary` says, non-finite floats become
/// null, integers are written exactly (a JavaScript reader rounds those
/// beyond 2^53 to the nearest double, as its JSON.parse does).
/// The output is always valid JSON (RFC 8259, UTF-8): in strings, each byte
/// that does not start a valid UTF-8 sequence becomes U+FFFD.
/// Throws std::invalid_argument if `packed` is not exactly one well-formed
/// value or has a longer key (`out` is then left as it was).
void append_json(std::string_view packed, std::string& out, json_binary binary = json_binary::text);

/// Appends `s` as a quoted JSON string (invalid UTF-8 as U+FFFD, as above).
void append_json_string(std::string_view s, std::string& out);

/// Appends a double as std::to_chars writes it (the shortest text that
/// reads back as the same value), with a faster path for values of up to
/// five integer digits and three decimals, such as prices.
void append_json_number(double v, std::string& out);

/// Why JSON text was refused by json_to_msgpack.
struct json_error {
  enum kind_t : std::uint8_t {
    none,
    malformed,      ///< not one JSON value (RFC 8259), or a string that is not UTF-8
    too_deep,       ///< arrays and objects nested deeper than the limit
    duplicate_key,  ///< an object has `key` twice
    out_of_range,   ///< a number too large for a double
  };
  kind_t kind = none;
  std::string key;  ///< duplicate_key: the key (its first 100 bytes)
  explicit operator bool() const noexcept { return kind != none; }
};

/// Appends the one JSON value in `text` to `out` as msgpack, in one pass
/// and without building a tree (nlohmann's SAX parser, iterative): objects
/// become maps, arrays arrays, integers that fit 64 bits integers (others,
/// like fractions, float64), strings str. Nesting past `max_depth`, a
/// duplicate key and a number beyond a double's range are refused as the
/// parser meets them. On refusal `out` is left as it was.
json_error json_to_msgpack(std::string_view text, std::string& out, int max_depth);

}  // namespace tern::transport
