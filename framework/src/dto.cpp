// The non-template half of tern/dto.hpp: messages, scalars, RE2.
#include "tern/dto.hpp"

#include "tern/utf8.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace tern::detail::dto {

namespace {

constexpr std::size_t max_key_shown = 64;

// A key from outside, fit to be quoted in a message: at most 64 bytes (cut
// on a character), control characters written as \xNN (a NUL would end the
// message early for what()), and only if it is valid UTF-8.
std::string shown_key(std::string_view key) {
  if (key.empty()) return "(an empty key)";
  if (!is_valid_utf8(key)) return "(a key that is not UTF-8 text)";
  std::size_t cut = key.size();
  if (cut > max_key_shown) {
    cut = max_key_shown;
    while (cut > 0 && (static_cast<unsigned char>(key[cut]) & 0xC0) == 0x80) --cut;
  }
  std::string out;
  for (char c : key.substr(0, cut)) {
    auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[b >> 4];
      out += hex[b & 15];
    } else {
      out += c;
    }
  }
  if (cut < key.size()) out += "...";
  return out;
}

std::string render(const path& at) {
  std::vector<const path*> chain;
  for (const path* p = &at; p && p->parent; p = p->parent) chain.push_back(p);
  if (chain.empty()) return "data";
  std::string out;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const path& p = **it;
    if (p.element) {
      if (out.empty()) out = "data";
      out += '[' + std::to_string(p.index) + ']';
    } else {
      if (!out.empty()) out += '.';
      out += shown_key(p.key);
    }
  }
  return out;
}

const char* kind_of(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL:
      return "null";
    case msgpack::type::BOOLEAN:
      return "a boolean";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER:
      return "an integer";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "a number";
    case msgpack::type::STR:
      return "a string";
    case msgpack::type::BIN:
      return "binary data";
    case msgpack::type::ARRAY:
      return "an array";
    case msgpack::type::MAP:
      return "an object";
    case msgpack::type::EXT:
      return "an extension value";
  }
  return "an unknown value";
}

// An integer outside its field type's range, with the bound it broke.
[[noreturn]] void fail_range(const path& at, bool below, const std::string& bound,
                             const std::string& got) {
  fail(at, std::string("expected an integer of ") + (below ? "at least " : "at most ") + bound +
               ", got " + got);
}

}  // namespace

void fail(const path& at, std::string_view what) {
  throw rpc_error(400, render(at) + ": " + std::string(what));
}

void fail_type(const path& at, std::string_view expected, const msgpack::object& got) {
  fail(at, "expected " + std::string(expected) + ", got " + kind_of(got));
}

void fail_unknown(const path& at, std::string_view key) {
  fail(path{&at, key}, "unknown field");
}

void fail_fallback(const path& at, const msgpack::object& got) {
  fail(at, std::string("does not have the expected type (got ") + kind_of(got) + ")");
}

bool decode_bool(const msgpack::object& o, const path& at) {
  if (o.type != msgpack::type::BOOLEAN) fail_type(at, "a boolean", o);
  return o.via.boolean;
}

std::int64_t decode_signed(const msgpack::object& o, std::int64_t min, std::int64_t max,
                           const path& at) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > static_cast<std::uint64_t>(max)) {
        fail_range(at, false, number_text(max), number_text(o.via.u64));
      }
      return static_cast<std::int64_t>(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      if (o.via.i64 < min) fail_range(at, true, number_text(min), number_text(o.via.i64));
      return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: {
      // A whole number written as a float (JSON's 3.0) is an integer.
      double d = o.via.f64;
      if (!std::isfinite(d) || d != std::trunc(d)) fail_type(at, "an integer", o);
      // max + 1 as a double is exact (a power of two) for every integer type.
      if (d < static_cast<double>(min)) fail_range(at, true, number_text(min), number_text(d));
      if (d >= static_cast<double>(max) + 1) {
        fail_range(at, false, number_text(max), number_text(d));
      }
      return static_cast<std::int64_t>(d);
    }
    default:
      fail_type(at, "an integer", o);
  }
}

std::uint64_t decode_unsigned(const msgpack::object& o, std::uint64_t max, const path& at) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      if (o.via.u64 > max) fail_range(at, false, number_text(max), number_text(o.via.u64));
      return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER:
      fail_range(at, true, "0", number_text(o.via.i64));
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: {
      double d = o.via.f64;
      if (!std::isfinite(d) || d != std::trunc(d)) fail_type(at, "an integer", o);
      if (d < 0) fail_range(at, true, "0", number_text(d));
      if (d >= static_cast<double>(max) + 1) {
        fail_range(at, false, number_text(max), number_text(d));
      }
      return static_cast<std::uint64_t>(d);
    }
    default:
      fail_type(at, "an integer", o);
  }
}

double decode_double(const msgpack::object& o, const path& at) {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER:
      return static_cast<double>(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return static_cast<double>(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      if (std::isnan(o.via.f64)) fail(at, "expected a finite number, got NaN");
      if (std::isinf(o.via.f64)) fail(at, "expected a finite number, got infinity");
      return o.via.f64;
    default:
      fail_type(at, "a number", o);
  }
}

float decode_float(const msgpack::object& o, const path& at) {
  double d = decode_double(o, at);
  if (std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max())) {
    fail(at, "expected a number that fits a float, got " + number_text(d));
  }
  return static_cast<float>(d);
}

std::string_view decode_text(const msgpack::object& o, const path& at) {
  if (o.type != msgpack::type::STR) fail_type(at, "a string", o);
  std::string_view text(o.via.str.ptr, o.via.str.size);
  if (!is_valid_utf8(text)) fail(at, "must be valid UTF-8 text");
  return text;
}

std::string_view decode_bytes(const msgpack::object& o, const path& at) {
  if (o.type == msgpack::type::BIN) return {o.via.bin.ptr, o.via.bin.size};
  if (o.type == msgpack::type::STR) return {o.via.str.ptr, o.via.str.size};
  fail_type(at, "binary data", o);
}

std::string_view key_of(const msgpack::object_kv& kv, const path& at) {
  if (kv.key.type != msgpack::type::STR) {
    fail(at,
         std::string("expected an object with string keys, got a key that is ") + kind_of(kv.key));
  }
  return {kv.key.via.str.ptr, kv.key.via.str.size};
}

std::string_view text_key_of(const msgpack::object_kv& kv, const path& at) {
  auto key = key_of(kv, at);
  if (!is_valid_utf8(key)) fail(at, "has a key that is not valid UTF-8 text");
  return key;
}

namespace {
thread_local std::size_t decoded_bytes = 0;
}

budget_scope::budget_scope() : saved(decoded_bytes) {
  decoded_bytes = 0;
}
budget_scope::~budget_scope() {
  decoded_bytes = saved;
}

void charge(const path& at, std::size_t count, std::size_t each) {
  if (count > (max_decoded_bytes - decoded_bytes) / each) {
    fail(at, "too large once decoded (its containers would take more than " +
                 std::to_string(max_decoded_bytes >> 20) + " MiB)");
  }
  decoded_bytes += count * each;
}

const msgpack::object* find(const msgpack::object& map, std::string_view name) noexcept {
  for (const auto& kv : std::span(map.via.map.ptr, map.via.map.size)) {
    if (kv.key.type == msgpack::type::STR &&
        std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == name) {
      return &kv.val;
    }
  }
  return nullptr;
}

const msgpack::object& empty_map() noexcept {
  static const msgpack::object empty = [] {
    msgpack::object o;
    o.type = msgpack::type::MAP;
    o.via.map.size = 0;
    o.via.map.ptr = nullptr;
    return o;
  }();
  return empty;
}

std::size_t layout::index_of(std::ptrdiff_t offset) const {
  auto it = std::find(offsets.begin(), offsets.end(), offset);
  if (it == offsets.end()) {
    throw std::logic_error(
        "tern: a DTO rule names a member that its MSGPACK_DEFINE_MAP does not list");
  }
  return static_cast<std::size_t>(it - offsets.begin());
}

bool find_name(const layout& lay, std::string_view key) noexcept {
  return std::find(lay.names.begin(), lay.names.end(), key) != lay.names.end();
}

std::size_t count_chars(std::string_view utf8) noexcept {
  return static_cast<std::size_t>(std::count_if(utf8.begin(), utf8.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  }));
}

std::string length_violation(std::size_t size, std::size_t min, std::size_t max, bool text) {
  if (size < min) {
    if (min == 1) return "must not be empty";
    return text ? "must be at least " + std::to_string(min) + " characters long"
                : "must have at least " + std::to_string(min) + " items";
  }
  if (size > max) {
    return text ? "must be at most " + std::to_string(max) + " characters long"
                : "must have at most " + std::to_string(max) + " items";
  }
  return {};
}

std::string number_text(double v) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}
std::string number_text(std::int64_t v) {
  return std::to_string(v);
}
std::string number_text(std::uint64_t v) {
  return std::to_string(v);
}

std::shared_ptr<const re2::RE2> compile(std::string_view pattern) {
  re2::RE2::Options options;
  options.set_log_errors(false);
  auto re =
      std::make_shared<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok()) {
    throw std::invalid_argument("tern::matches: bad pattern \"" + std::string(pattern) +
                                "\": " + re->error());
  }
  return re;
}

bool full_match(const re2::RE2& re, std::string_view text) {
  return re2::RE2::FullMatch(re2::StringPiece(text.data(), text.size()), re);
}

}  // namespace tern::detail::dto

namespace tern {

matches::matches(std::string_view pattern, std::string message)
    : re_(detail::dto::compile(pattern)),
      message_(message.empty() ? "must match " + std::string(pattern) : std::move(message)) {}

}  // namespace tern
