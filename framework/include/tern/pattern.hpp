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

struct pattern_field;

/// A value inside an object pattern: a string, an integer, a boolean, null,
/// or a nested object. Built implicitly from literals; see pattern.
class pattern_value {
 public:
  template <class S, std::enable_if_t<std::is_convertible_v<const S&, std::string_view> &&
                                          !std::is_same_v<S, std::nullptr_t>,
                                      int> = 0>
  pattern_value(const S& s) : pattern_value(string_tag{}, std::string_view(s)) {}  // NOLINT
  template <class B, std::enable_if_t<std::is_same_v<B, bool>, int> = 0>
  pattern_value(B b) : pattern_value(bool_tag{}, b) {}  // NOLINT
  pattern_value(std::nullptr_t);                        // NOLINT
  template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  pattern_value(I i)  // NOLINT
      : pattern_value(static_cast<std::int64_t>(i), 0) {}
  /// A nested object: {{"name", "get"}, {"v", 2}} (up to 8 fields)
  pattern_value(const pattern_field& f0) : pattern_value(fields_tag{}, {&f0}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1)
      : pattern_value(fields_tag{}, {&f0, &f1}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2)
      : pattern_value(fields_tag{}, {&f0, &f1, &f2}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
                const pattern_field& f3)
      : pattern_value(fields_tag{}, {&f0, &f1, &f2, &f3}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
                const pattern_field& f3, const pattern_field& f4)
      : pattern_value(fields_tag{}, {&f0, &f1, &f2, &f3, &f4}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
                const pattern_field& f3, const pattern_field& f4, const pattern_field& f5)
      : pattern_value(fields_tag{}, {&f0, &f1, &f2, &f3, &f4, &f5}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
                const pattern_field& f3, const pattern_field& f4, const pattern_field& f5,
                const pattern_field& f6)
      : pattern_value(fields_tag{}, {&f0, &f1, &f2, &f3, &f4, &f5, &f6}) {}  // NOLINT
  pattern_value(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
                const pattern_field& f3, const pattern_field& f4, const pattern_field& f5,
                const pattern_field& f6, const pattern_field& f7)
      : pattern_value(fields_tag{}, {&f0, &f1, &f2, &f3, &f4, &f5, &f6, &f7}) {}  // NOLINT

  [[nodiscard]] const std::string& canonical() const noexcept { return canonical_; }
  [[nodiscard]] const std::string& packed() const noexcept { return packed_; }

 private:
  struct string_tag {};
  struct bool_tag {};
  struct fields_tag {};
  pattern_value(string_tag, std::string_view s);
  pattern_value(bool_tag, bool b);
  pattern_value(std::int64_t i, int);
  pattern_value(fields_tag, std::initializer_list<const pattern_field*> fields);
  friend class pattern;
  std::string canonical_;  // canonical text (see pattern)
  std::string packed_;     // msgpack encoding
};

/// One `{"key", value}` of an object pattern.
struct pattern_field {
  pattern_field(std::string_view k, pattern_value v) : key(k), value(std::move(v)) {}
  std::string key;
  pattern_value value;
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
  /// A string pattern.
  template <class S, std::enable_if_t<std::is_convertible_v<const S&, std::string_view>, int> = 0>
  pattern(const S& s) : pattern(string_tag{}, std::string_view(s)) {}  // NOLINT
  /// An object pattern, {{"cmd", "get_users"}} (up to 8 fields). Fixed
  /// arities rather than an initializer_list: GCC 12 cannot keep an
  /// initializer_list's array alive across co_await ("array used as
  /// initializer"), and patterns are mostly written inside co_await.
  pattern(const pattern_field& f0) : pattern(fields_tag{}, {&f0}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1)
      : pattern(fields_tag{}, {&f0, &f1}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2)
      : pattern(fields_tag{}, {&f0, &f1, &f2}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
          const pattern_field& f3)
      : pattern(fields_tag{}, {&f0, &f1, &f2, &f3}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
          const pattern_field& f3, const pattern_field& f4)
      : pattern(fields_tag{}, {&f0, &f1, &f2, &f3, &f4}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
          const pattern_field& f3, const pattern_field& f4, const pattern_field& f5)
      : pattern(fields_tag{}, {&f0, &f1, &f2, &f3, &f4, &f5}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
          const pattern_field& f3, const pattern_field& f4, const pattern_field& f5,
          const pattern_field& f6)
      : pattern(fields_tag{}, {&f0, &f1, &f2, &f3, &f4, &f5, &f6}) {}  // NOLINT
  pattern(const pattern_field& f0, const pattern_field& f1, const pattern_field& f2,
          const pattern_field& f3, const pattern_field& f4, const pattern_field& f5,
          const pattern_field& f6, const pattern_field& f7)
      : pattern(fields_tag{}, {&f0, &f1, &f2, &f3, &f4, &f5, &f6, &f7}) {}  // NOLINT

  /// A pattern from JSON text: an object (`{"cmd":"get_users"}`) or a
  /// string (`"ping"`). Throws std::invalid_argument for anything else.
  static pattern from_json(std::string_view json_text);

  /// The handler key (see above).
  [[nodiscard]] const std::string& canonical() const noexcept { return canonical_; }
  /// The msgpack bytes sent as the packet's `pattern`.
  [[nodiscard]] const std::string& packed() const noexcept { return packed_; }

  friend bool operator==(const pattern& a, const pattern& b) {
    return a.canonical_ == b.canonical_;
  }

 private:
  struct string_tag {};
  struct fields_tag {};
  pattern(string_tag, std::string_view s);
  pattern(fields_tag, std::initializer_list<const pattern_field*> fields);
  std::string canonical_;
  std::string packed_;
};

/// The canonical form of a pattern as received: a msgpack string (itself,
/// or, when it holds a JSON object's text, that object's canonical form),
/// map, number or boolean. Written into `out` (cleared first) so the caller
/// can reuse its buffer.
void canonical_pattern(const msgpack::object& received, std::string& out);

}  // namespace tern
