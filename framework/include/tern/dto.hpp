// Request data decoded into typed structs (DTOs) with errors that name the
// field, and constraints declared beside the fields, checked before the
// handler runs: what NestJS users get from DTO classes, class-validator and
// ValidationPipe, in plain C++20.
//
//   struct new_user {
//     std::string name;
//     std::string email;
//     std::optional<std::string> nickname;  // may be absent or null
//     MSGPACK_DEFINE_MAP(name, email, nickname);
//
//     static auto rules() {
//       return tern::rules(tern::field(&new_user::name, tern::length(1, 100)),
//                          tern::field(&new_user::email, tern::matches(".+@.+", "must be an email
//                          address")));
//     }
//   };
//
// A handler taking `new_user` gets it decoded and checked; data that does
// not fit is answered with rpc_error(400, "email: expected a string, got an
// integer") before the handler runs. docs/guide.md, "Request data", has the
// rules.
#pragma once

#include "tern/rpc_error.hpp"

#include <msgpack.hpp>

#include <bitset>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace re2 {
class RE2;
}

namespace tern {

/// What a DTO does with a field its struct does not declare: ignore it (the
/// default, as NestJS's ValidationPipe does) or refuse the request, naming it.
enum class unknown_fields { ignore, refuse };

// ---- constraints ----

/// Marks a field that may be absent (or null): it keeps its default value
/// and its other constraints are not checked. (A std::optional<T> member is
/// optional by its type.)
struct optional_t {
  explicit constexpr optional_t() = default;
};
inline constexpr optional_t optional{};

namespace detail::dto {
std::size_t count_chars(std::string_view utf8) noexcept;
std::string length_violation(std::size_t size, std::size_t min, std::size_t max, bool text);
std::string number_text(double v);
std::string number_text(std::int64_t v);
std::string number_text(std::uint64_t v);
bool full_match(const re2::RE2& re, std::string_view text);
std::shared_ptr<const re2::RE2> compile(std::string_view pattern);

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};

template <class A, class B>
bool less(A a, B b) {
  if constexpr (std::is_integral_v<A> && std::is_integral_v<B>) {
    return std::cmp_less(a, b);
  } else {
    return static_cast<double>(a) < static_cast<double>(b);
  }
}
template <class N>
std::string text_of(N v) {
  if constexpr (std::is_floating_point_v<N>) {
    return number_text(static_cast<double>(v));
  } else if constexpr (std::is_signed_v<N>) {
    return number_text(static_cast<std::int64_t>(v));
  } else {
    return number_text(static_cast<std::uint64_t>(v));
  }
}
}  // namespace detail::dto

/// A string's length in characters (Unicode code points), or a container's
/// size in items: from `min` to `max`, both included.
struct length {
  std::size_t min = 0;
  std::size_t max = std::numeric_limits<std::size_t>::max();
  constexpr length(std::size_t min_, std::size_t max_) : min(min_), max(max_) {}

  template <class V>
  std::string operator()(const V& v) const {
    if constexpr (std::is_same_v<V, std::string>) {
      return detail::dto::length_violation(detail::dto::count_chars(v), min, max, true);
    } else {
      return detail::dto::length_violation(v.size(), min, max, false);
    }
  }
};

/// A number from `min` to `max`, both included.
template <class N>
struct range {
  static_assert(std::is_arithmetic_v<N>, "tern::range takes numbers");
  N min;
  N max;
  constexpr range(N min_, N max_) : min(min_), max(max_) {}

  template <class V>
  std::string operator()(const V& v) const {
    static_assert(std::is_arithmetic_v<V>, "tern::range applies to a number field");
    if (detail::dto::less(v, min) || detail::dto::less(max, v)) {
      return "must be between " + detail::dto::text_of(min) + " and " + detail::dto::text_of(max);
    }
    return {};
  }
};

/// A number of at least `min`.
template <class N>
struct at_least {
  static_assert(std::is_arithmetic_v<N>, "tern::at_least takes a number");
  N min;
  constexpr explicit at_least(N min_) : min(min_) {}
  template <class V>
  std::string operator()(const V& v) const {
    static_assert(std::is_arithmetic_v<V>, "tern::at_least applies to a number field");
    return detail::dto::less(v, min) ? "must be at least " + detail::dto::text_of(min)
                                     : std::string();
  }
};

/// A number of at most `max`.
template <class N>
struct at_most {
  static_assert(std::is_arithmetic_v<N>, "tern::at_most takes a number");
  N max;
  constexpr explicit at_most(N max_) : max(max_) {}
  template <class V>
  std::string operator()(const V& v) const {
    static_assert(std::is_arithmetic_v<V>, "tern::at_most applies to a number field");
    return detail::dto::less(max, v) ? "must be at most " + detail::dto::text_of(max)
                                     : std::string();
  }
};

/// A string that matches a regular expression as a whole (RE2 syntax: linear
/// time in the input, whatever the pattern, so hostile text cannot make it
/// slow). A bad pattern throws std::invalid_argument when the handler is
/// registered. `message` says what was expected ("must be an email address").
class matches {
 public:
  explicit matches(std::string_view pattern, std::string message = {});
  std::string operator()(const std::string& v) const {
    return detail::dto::full_match(*re_, v) ? std::string() : message_;
  }

 private:
  std::shared_ptr<const re2::RE2> re_;
  std::string message_;
};

/// Any check: `test(value)` true when the value is fine, else `message`.
template <class F>
struct check {
  F test;
  std::string message;
  check(F test_, std::string message_) : test(std::move(test_)), message(std::move(message_)) {}
  template <class V>
  std::string operator()(const V& v) const {
    return test(v) ? std::string() : message;
  }
};

/// One field's constraints, checked in order; the first that fails is the
/// error.
template <class T, class M, class... C>
struct field_rule {
  M T::*member;
  std::tuple<C...> checks;
  static constexpr bool optional = (std::is_same_v<C, optional_t> || ...);

  /// The first violation's text, or empty.
  std::string violation(const T& dto) const {
    const M& value = dto.*member;
    if constexpr (detail::dto::is_optional<M>::value) {
      if (!value) return {};
      return first(*value);
    } else {
      return first(value);
    }
  }

 private:
  template <class V>
  std::string first(const V& v) const {
    std::string out;
    std::apply([&](const auto&... c) { (void)((out = one(c, v), out.empty()) && ...); }, checks);
    return out;
  }
  template <class Check, class V>
  static std::string one(const Check& c, const V& v) {
    if constexpr (std::is_same_v<Check, optional_t>) {
      return {};
    } else {
      return c(v);
    }
  }
};

/// The constraints on one member: `tern::field(&new_user::name, tern::length(1, 100))`.
template <class T, class M, class... C>
field_rule<T, M, C...> field(M T::*member, C... checks) {
  return {member, std::tuple<C...>(std::move(checks)...)};
}

/// A DTO's rules, returned by its `static auto rules()`.
template <class... F>
struct rule_set {
  unknown_fields unknown = unknown_fields::ignore;
  std::tuple<F...> fields;
};

template <class... F>
rule_set<F...> rules(F... fields) {
  return {unknown_fields::ignore, std::tuple<F...>(std::move(fields)...)};
}
template <class... F>
rule_set<F...> rules(unknown_fields unknown, F... fields) {
  return {unknown, std::tuple<F...>(std::move(fields)...)};
}

// ---- decoding ----

namespace detail::dto {

/// Where a value sits in the request data, for error messages: nodes on
/// the stack, from the value being decoded up to the root.
struct path {
  const path* parent = nullptr;
  std::string_view key{};  ///< a field's name or a map's key
  std::size_t index = 0;   ///< an array's element, when key is empty
  bool element = false;
};

/// "address.city: what" ("data: what" at the root).
[[noreturn]] void fail(const path& at, std::string_view what);
/// "email: expected a string, got an integer".
[[noreturn]] void fail_type(const path& at, std::string_view expected, const msgpack::object& got);

bool decode_bool(const msgpack::object& o, const path& at);
std::int64_t decode_signed(const msgpack::object& o, std::int64_t min, std::int64_t max,
                           const path& at);
std::uint64_t decode_unsigned(const msgpack::object& o, std::uint64_t max, const path& at);
double decode_double(const msgpack::object& o, const path& at);
float decode_float(const msgpack::object& o, const path& at);
std::string_view decode_text(const msgpack::object& o, const path& at);
std::string_view decode_bytes(const msgpack::object& o, const path& at);
/// A map's string key (anything else fails).
std::string_view key_of(const msgpack::object_kv& kv, const path& at);
/// A map's string key that must be valid UTF-8 (a std::map<std::string, T>'s).
std::string_view text_key_of(const msgpack::object_kv& kv, const path& at);

/// Most bytes one request's containers may decode into: each element is at
/// least a byte on the wire but may be a large struct in memory.
inline constexpr std::size_t max_decoded_bytes = std::size_t{64} << 20;
/// Counts a decode's container memory against max_decoded_bytes (per thread,
/// from tern::decode's start); fails at `at` beyond it.
void charge(const path& at, std::size_t count, std::size_t each);
struct budget_scope {
  budget_scope();
  ~budget_scope();
  budget_scope(const budget_scope&) = delete;
  budget_scope& operator=(const budget_scope&) = delete;
  std::size_t saved;
};

/// The value under `name` in a map (the first, if repeated), or null.
const msgpack::object* find(const msgpack::object& map, std::string_view name) noexcept;
/// A key no field declares, refused.
[[noreturn]] void fail_unknown(const path& at, std::string_view key);
/// For types tern does not decode itself: msgpack-c's own conversion, its
/// failure named.
[[noreturn]] void fail_fallback(const path& at, const msgpack::object& got);
const msgpack::object& empty_map() noexcept;

template <class T>
struct is_vector : std::false_type {};
template <class T, class A>
struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T>
struct is_string_map : std::false_type {};
template <class V, class C, class A>
struct is_string_map<std::map<std::string, V, C, A>> : std::true_type {};
template <class V, class H, class E, class A>
struct is_string_map<std::unordered_map<std::string, V, H, E, A>> : std::true_type {};
template <class T>
inline constexpr bool is_byte_vector = false;
template <class A>
inline constexpr bool is_byte_vector<std::vector<char, A>> = true;
template <class A>
inline constexpr bool is_byte_vector<std::vector<unsigned char, A>> = true;
template <class A>
inline constexpr bool is_byte_vector<std::vector<std::byte, A>> = true;

/// Where MSGPACK_DEFINE_MAP's fields are: their names (from the macro) and
/// their offsets in the struct, found once per type by packing a default
/// instance into this probe instead of a real packer.
struct layout {
  bool is_map = false;  ///< MSGPACK_DEFINE_MAP (not MSGPACK_DEFINE's array)
  std::vector<std::string> names;
  std::vector<std::ptrdiff_t> offsets;
  std::vector<bool> optional;  ///< by a tern::optional rule
  [[nodiscard]] std::size_t index_of(std::ptrdiff_t offset) const;
};
bool find_name(const layout& lay, std::string_view key) noexcept;

/// The rest of msgpack-c's packer interface, for the probes below that stand
/// in for a packer: a hand-written msgpack_pack calling any of these is not
/// MSGPACK_DEFINE_MAP's (name, field) pairs, so its type is left to
/// msgpack-c's own conversion.
template <class D>
struct packer_sink {
  bool odd = false;
  D& other() {
    odd = true;
    return static_cast<D&>(*this);
  }
  D& pack_nil() { return other(); }
  D& pack_true() { return other(); }
  D& pack_false() { return other(); }
  template <class N>
  D& pack_uint8(N) {
    return other();
  }
  template <class N>
  D& pack_uint16(N) {
    return other();
  }
  template <class N>
  D& pack_uint32(N) {
    return other();
  }
  template <class N>
  D& pack_uint64(N) {
    return other();
  }
  template <class N>
  D& pack_int8(N) {
    return other();
  }
  template <class N>
  D& pack_int16(N) {
    return other();
  }
  template <class N>
  D& pack_int32(N) {
    return other();
  }
  template <class N>
  D& pack_int64(N) {
    return other();
  }
  template <class N>
  D& pack_float(N) {
    return other();
  }
  template <class N>
  D& pack_double(N) {
    return other();
  }
  D& pack_str(std::uint32_t) { return other(); }
  D& pack_str_body(const char*, std::uint32_t) { return other(); }
  D& pack_bin(std::uint32_t) { return other(); }
  D& pack_bin_body(const char*, std::uint32_t) { return other(); }
  D& pack_ext(std::size_t, std::int8_t) { return other(); }
  D& pack_ext_body(const char*, std::uint32_t) { return other(); }
};

struct layout_probe : packer_sink<layout_probe> {
  layout_probe(const char* b, std::size_t size_, layout& o) : base(b), size(size_), out(o) {}
  const char* base;
  std::size_t size;
  layout& out;
  bool name_next = true;
  bool usable = true;

  void pack_map(std::uint32_t) {
    if (out.is_map || !out.names.empty()) usable = false;  // a second map: not MSGPACK_DEFINE_MAP's
    out.is_map = true;
  }
  void pack_array(std::uint32_t) {}
  template <class V>
  layout_probe& pack(const V& v) {
    if (!out.is_map) return *this;
    if (name_next) {
      if constexpr (std::is_convertible_v<const V&, std::string_view>) {
        out.names.emplace_back(std::string_view(v));
      } else {
        usable = false;  // a name that is not text: left to msgpack-c
      }
    } else {
      // A field of this struct; anything else (a literal, a temporary) is
      // not decodable into it, and the type is left to msgpack-c.
      auto at = reinterpret_cast<const char*>(std::addressof(v));
      if (at < base || at + sizeof(V) > base + size) usable = false;
      out.offsets.push_back(at - base);
    }
    name_next = !name_next;
    return *this;
  }
};

template <class T>
concept map_struct = std::is_class_v<T> && std::is_default_constructible_v<T> &&
    requires(const T& t, layout_probe& p) {
  t.msgpack_pack(p);
};

template <class T>
concept has_rules = requires {
  T::rules();
};
template <class T>
struct rules_type {
  using type = rule_set<>;
};
template <has_rules T>
struct rules_type<T> {
  using type = decltype(T::rules());
};

/// Most fields a DTO may declare.
inline constexpr std::size_t max_fields = 256;

/// A DTO type's layout and rules, made once (the first time it is decoded,
/// or when a handler taking it is registered).
template <class T>
struct dto_info {
  layout lay;
  typename rules_type<T>::type rules;
  std::vector<std::size_t> rule_field;  ///< each field rule's field index

  dto_info() : rules(make_rules()) {
    T probe{};
    layout_probe p(reinterpret_cast<const char*>(std::addressof(probe)), sizeof(T), lay);
    probe.msgpack_pack(p);
    if (!p.usable || p.odd) lay.is_map = false;
    if (!lay.is_map) {
      // rules() would silently never run under msgpack-c's conversion.
      if constexpr (has_rules<T>) {
        throw std::logic_error(
            "tern: a DTO with rules() declares its fields with MSGPACK_DEFINE_MAP");
      }
      return;
    }
    if (lay.names.size() > max_fields) {
      throw std::length_error("tern: a DTO declares at most 256 fields");
    }
    lay.optional.assign(lay.names.size(), false);
    std::apply(
        [&](const auto&... f) {
          (
              [&] {
                auto offset = reinterpret_cast<const char*>(std::addressof(probe.*f.member)) -
                              reinterpret_cast<const char*>(std::addressof(probe));
                auto i = lay.index_of(offset);
                rule_field.push_back(i);
                if (f.optional) lay.optional[i] = true;
              }(),
              ...);
        },
        rules.fields);
  }

 private:
  static auto make_rules() {
    if constexpr (has_rules<T>) {
      return T::rules();
    } else {
      return rule_set<>{};
    }
  }
};

template <class T>
const dto_info<T>& info_of() {
  static const dto_info<T> info;
  return info;
}

template <class V>
void decode_value(const msgpack::object& o, V& out, const path& at);

/// Receives MSGPACK_DEFINE_MAP's (name, field) pairs and decodes each field
/// from the request's map.
struct field_decoder : packer_sink<field_decoder> {
  field_decoder(const msgpack::object& m, const path& a, const layout& l) : map(m), at(a), lay(l) {}
  const msgpack::object& map;
  const path& at;
  const layout& lay;
  std::bitset<max_fields> present{};
  std::size_t index = 0;
  bool name_next = true;

  void pack_map(std::uint32_t) {}
  void pack_array(std::uint32_t) {}  // (not called: only map layouts get here)
  template <class V>
  field_decoder& pack(const V& v) {
    if (name_next) {
      name_next = false;
      return *this;
    }
    name_next = true;
    const std::string& name = lay.names[index];
    path here{&at, name};
    // The struct being decoded is not const: msgpack_pack only sees it so.
    V& field = const_cast<V&>(v);
    const msgpack::object* o = find(map, name);
    if (o && o->type != msgpack::type::NIL) {
      decode_value(*o, field, here);
      present.set(index);
    } else if constexpr (is_optional<V>::value) {
      if (o) field.reset();
    } else if (!lay.optional[index]) {
      if (!o) fail(here, "missing");
      decode_value(*o, field, here);  // names the type it wanted instead of null
    }
    ++index;
    return *this;
  }
};

template <class T>
void decode_struct(const msgpack::object& o, T& out, const path& at) {
  const auto& info = info_of<T>();
  if (!info.lay.is_map) {
    try {
      o.convert(out);
    } catch (const std::exception&) {
      fail_fallback(at, o);
    }
    return;
  }
  // No data at all, for the request as a whole, is an empty object.
  const msgpack::object& map = o.type == msgpack::type::NIL && !at.parent ? empty_map() : o;
  if (map.type != msgpack::type::MAP) fail_type(at, "an object", map);
  for (const auto& kv : std::span(map.via.map.ptr, map.via.map.size)) {
    auto key = key_of(kv, at);
    if (info.rules.unknown == unknown_fields::refuse && !find_name(info.lay, key)) {
      fail_unknown(at, key);
    }
  }
  field_decoder walk{map, at, info.lay};
  out.msgpack_pack(walk);
  std::size_t r = 0;
  std::apply(
      [&](const auto&... f) {
        (
            [&] {
              auto i = info.rule_field[r++];
              if (!walk.present.test(i) && info.lay.optional[i]) return;
              if (auto why = f.violation(out); !why.empty()) {
                fail(path{&at, info.lay.names[i]}, why);
              }
            }(),
            ...);
      },
      info.rules.fields);
}

template <class V>
void decode_value(const msgpack::object& o, V& out, const path& at) {
  if constexpr (std::is_same_v<V, bool>) {
    out = decode_bool(o, at);
  } else if constexpr (std::is_integral_v<V>) {
    using lim = std::numeric_limits<V>;
    if constexpr (std::is_signed_v<V>) {
      out = static_cast<V>(decode_signed(o, lim::min(), lim::max(), at));
    } else {
      out = static_cast<V>(decode_unsigned(o, lim::max(), at));
    }
  } else if constexpr (std::is_same_v<V, double> || std::is_same_v<V, long double>) {
    out = decode_double(o, at);
  } else if constexpr (std::is_same_v<V, float>) {
    out = decode_float(o, at);
  } else if constexpr (std::is_same_v<V, std::string>) {
    out = decode_text(o, at);
  } else if constexpr (is_optional<V>::value) {
    if (o.type == msgpack::type::NIL) {
      out.reset();
    } else {
      decode_value(o, out.emplace(), at);
    }
  } else if constexpr (is_byte_vector<V>) {
    auto bytes = decode_bytes(o, at);
    auto* p = reinterpret_cast<const typename V::value_type*>(bytes.data());
    out.assign(p, p + bytes.size());
  } else if constexpr (is_vector<V>::value) {
    if (o.type != msgpack::type::ARRAY) fail_type(at, "an array", o);
    out.clear();
    // Each element arrived as at least one byte, but may decode into a
    // large struct: the elements' memory is charged to the request's budget.
    charge(at, o.via.array.size, sizeof(typename V::value_type));
    out.reserve(o.via.array.size);
    for (std::size_t i = 0; i < o.via.array.size; ++i) {
      typename V::value_type item{};
      decode_value(o.via.array.ptr[i], item, path{&at, {}, i, true});
      out.push_back(std::move(item));
    }
  } else if constexpr (is_string_map<V>::value) {
    if (o.type != msgpack::type::MAP) fail_type(at, "an object", o);
    out.clear();
    charge(at, o.via.map.size, sizeof(typename V::value_type) + 4 * sizeof(void*));
    for (const auto& kv : std::span(o.via.map.ptr, o.via.map.size)) {
      auto key = text_key_of(kv, at);
      typename V::mapped_type item{};
      decode_value(kv.val, item, path{&at, key});
      out.emplace(std::string(key), std::move(item));
    }
  } else if constexpr (map_struct<V>) {
    decode_struct(o, out, at);
  } else {
    static_assert(!std::is_same_v<V, std::string_view> && !std::is_same_v<V, const char*>,
                  "request data outlives no buffer: take std::string");
    if constexpr (requires { typename V::value_type; }) {
      static_assert(!has_rules<typename V::value_type>,
                    "DTOs with rules() are decoded in std::vector, std::optional or "
                    "std::map<std::string, T> (msgpack-c's conversion of other containers "
                    "would skip their rules)");
    }
    try {
      o.convert(out);
    } catch (const std::exception&) {
      fail_fallback(at, o);
    }
  }
}

/// The nested types of T prepared too (fields, elements), once per type.
template <class T>
void prepare_nested();

/// Calls prepare_nested for each field type of a MSGPACK_DEFINE_MAP struct.
struct prepare_probe : packer_sink<prepare_probe> {
  bool name_next = true;
  void pack_map(std::uint32_t) {}
  void pack_array(std::uint32_t) {}
  template <class V>
  prepare_probe& pack(const V&) {
    if (!name_next) prepare_nested<V>();
    name_next = !name_next;
    return *this;
  }
};

template <class T>
void prepare_nested() {
  if constexpr (is_optional<T>::value || (is_vector<T>::value && !is_byte_vector<T>)) {
    prepare_nested<typename T::value_type>();
  } else if constexpr (is_string_map<T>::value) {
    prepare_nested<typename T::mapped_type>();
  } else if constexpr (map_struct<T>) {
    static thread_local bool busy = false;  // a type that contains itself
    if (busy) return;
    busy = true;
    struct done {
      bool& b;
      ~done() { b = false; }
    } reset{busy};
    if (!info_of<T>().lay.is_map) return;
    T probe{};
    prepare_probe p;
    probe.msgpack_pack(p);
  }
}

}  // namespace detail::dto

/// Request data as a `T`: a struct with MSGPACK_DEFINE_MAP (a DTO, with its
/// `rules()` if it has them), a number, a string, a bool, std::optional,
/// std::vector, std::map with string keys, nested any way. Throws
/// rpc_error(400, "path: what") naming the first thing that does not fit.
/// Other msgpack-adaptable types are converted by msgpack-c, their failure
/// named the same way.
template <class T>
T decode(const msgpack::object& data) {
  detail::dto::budget_scope budget;
  T out{};
  detail::dto::decode_value(data, out, detail::dto::path{});
  return out;
}

/// Makes T's layout and rules now, and those of the DTOs inside it (a
/// handler's registration does), so a bad rule or pattern fails at
/// start-up rather than on the first request.
template <class T>
void prepare_decode() {
  detail::dto::prepare_nested<T>();
}

}  // namespace tern
