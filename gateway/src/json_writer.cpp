#include "json_writer.hpp"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

namespace tern::gateway {

namespace {

// Whether any of the 8 bytes in `w` is a control character, '"' or '\\'
// (the classic SWAR zero-byte test, applied to w ^ '"' and w ^ '\\').
constexpr bool needs_escape(std::uint64_t w) {
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  auto zero_byte = [](std::uint64_t x) { return (x - ones) & ~x & highs; };
  auto below_space = (w - ones * 0x20) & ~w & highs;
  return (below_space | zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\'))) != 0;
}

}  // namespace

void append_json_string(std::string_view s, std::string& out) {
  static constexpr char hex[] = "0123456789abcdef";
  out += '"';
  std::size_t run = 0;  // start of the pending run of characters that need no escape
  for (std::size_t i = 0; i < s.size(); ++i) {
    // Skip 8 plain bytes at a time; most strings have nothing to escape.
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (needs_escape(w)) break;
      i += 8;
    }
    if (i == s.size()) break;
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 0xf];
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

void append_json(const msgpack::object& v, std::string& out) {
  char num[32];
  switch (v.type) {
    case msgpack::type::NIL:
      out += "null";
      break;
    case msgpack::type::BOOLEAN:
      out += v.via.boolean ? "true" : "false";
      break;
    case msgpack::type::POSITIVE_INTEGER:
      out.append(num, std::to_chars(num, num + sizeof num, v.via.u64).ptr);
      break;
    case msgpack::type::NEGATIVE_INTEGER:
      out.append(num, std::to_chars(num, num + sizeof num, v.via.i64).ptr);
      break;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      if (!std::isfinite(v.via.f64)) {
        out += "null";
      } else {
        out.append(num, std::to_chars(num, num + sizeof num, v.via.f64).ptr);
      }
      break;
    case msgpack::type::STR:
      append_json_string({v.via.str.ptr, v.via.str.size}, out);
      break;
    case msgpack::type::BIN:
      append_json_string({v.via.bin.ptr, v.via.bin.size}, out);
      break;
    case msgpack::type::EXT:
      append_json_string({v.via.ext.data(), v.via.ext.size}, out);
      break;
    case msgpack::type::ARRAY: {
      out += '[';
      bool first = true;
      for (const auto& e : std::span(v.via.array.ptr, v.via.array.size)) {
        if (!first) out += ',';
        first = false;
        append_json(e, out);
      }
      out += ']';
      break;
    }
    case msgpack::type::MAP: {
      out += '{';
      bool first = true;
      for (const auto& kv : std::span(v.via.map.ptr, v.via.map.size)) {
        if (!first) out += ',';
        first = false;
        if (kv.key.type == msgpack::type::STR) {
          append_json_string({kv.key.via.str.ptr, kv.key.via.str.size}, out);
        } else {
          std::string key;
          append_json(kv.key, key);
          append_json_string(key, out);
        }
        out += ':';
        append_json(kv.val, out);
      }
      out += '}';
      break;
    }
  }
}

}  // namespace tern::gateway
