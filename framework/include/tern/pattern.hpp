// Message patterns: what a handler answers to and what a caller sends.
#pragma once

#include <msgpack/object_fwd.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tern {

/// A value inside an object pattern: a string, an integer, a boolean, null,
/// or a nested object. Built implicitly from literals; see pattern.
class pattern_value {
 public:
  pattern_value(const char* s) : pattern_value(std::string_view(s)) {}  // NOLINT
  pattern_value(const std::string& s) : pattern_value(std::string_view(s)) {}  // NOLINT
  pattern_value(std::string_view s);  // NOLINT
  pattern_value(bool b);              // NOLINT
  pattern_value(std::nullptr_t);      // NOLINT
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  pattern_value(I i)  // NOLINT
      : pattern_value(static_cast<std::int64_t>(i), 0) {}
  /// A nested object: {{"name", "get"}, {"v", 2}}
  pattern_value(std::initializer_list<std::pair<std::string, pattern_value>> fields);  // NOLINT

  [[nodiscard]] const std::string& canonical() const noexcept { return canonical_; }
  [[nodiscard]] const std::string& packed() const noexcept { return packed_; }

 private:
  pattern_value(std::int64_t i, int);
  friend class pattern;
  std::string canonical_;  // canonical text (see pattern)
  std::string packed_;     // msgpack encoding
};

/// A message pattern: a string ("ping") or an object ({{"cmd", "get_users"}}).
///
/// Handlers are found by the pattern's canonical form, so object patterns
/// match whatever the order of their keys:
/// - a string is itself: `ping`;
/// - an object is `{` + its `"key":value` pairs sorted by key (bytewise) and
///   joined by `,` + `}`, with strings quoted (`\` and `"` escaped), numbers
///   in decimal, `true`/`false`/`null` bare, nested objects alike:
///   `{"cmd":"get_users"}`, `{"cmd":"x","op":{"name":"get","v":2}}`.
/// This is NestJS's route key for ASCII keys. On the wire an object pattern
/// travels as a msgpack map (keys sorted), a string as a msgpack string.
///
/// Immutable after construction; cheap to send (the encoding is made once).
class pattern {
 public:
  pattern(const char* s) : pattern(std::string_view(s)) {}          // NOLINT
  pattern(const std::string& s) : pattern(std::string_view(s)) {}   // NOLINT
  pattern(std::string_view s);                                      // NOLINT
  pattern(std::initializer_list<std::pair<std::string, pattern_value>> fields);  // NOLINT

  /// The handler key (see above).
  [[nodiscard]] const std::string& canonical() const noexcept { return canonical_; }
  /// The msgpack bytes sent as the packet's `pattern`.
  [[nodiscard]] const std::string& packed() const noexcept { return packed_; }

  friend bool operator==(const pattern& a, const pattern& b) {
    return a.canonical_ == b.canonical_;
  }

 private:
  std::string canonical_;
  std::string packed_;
};

/// The canonical form of a pattern as received: a msgpack string (itself,
/// or, when it holds a JSON object's text, that object's canonical form),
/// map, number or boolean. Written into `out` (cleared first) so the caller
/// can reuse its buffer.
void canonical_pattern(const msgpack::object& received, std::string& out);

}  // namespace tern
