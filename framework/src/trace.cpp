#include "tern/trace.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

namespace tern {

namespace {

// Ids need to be unique, not secret: splitmix64 per thread, seeded from the
// OS once, costs a few instructions and no syscall per id.
std::uint64_t random64() noexcept {
  thread_local std::uint64_t state = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Two hex digits per byte value, so an id is 8 table lookups.
constexpr auto hex_pairs = [] {
  std::array<char, 512> t{};
  constexpr char digits[] = "0123456789abcdef";
  for (int i = 0; i < 256; ++i) {
    t[2 * i] = digits[i >> 4];
    t[2 * i + 1] = digits[i & 0xf];
  }
  return t;
}();

void hex(std::uint64_t v, char* out) noexcept {
  for (int i = 14; i >= 0; i -= 2) {
    std::memcpy(out + i, &hex_pairs[2 * (v & 0xff)], 2);
    v >>= 8;
  }
}

std::uint64_t random_nonzero() noexcept {
  for (;;) {
    if (auto v = random64()) return v;
  }
}

bool lower_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

int hex_value(char c) noexcept {
  return c <= '9' ? c - '0' : c - 'a' + 10;
}

// A msgpack str header (fixstr, str8 or str16: meta strings are short).
void str_header(std::string& out, std::size_t n) {
  if (n < 32) {
    out += static_cast<char>(0xa0 | n);
  } else if (n < 256) {
    out += '\xd9';
    out += static_cast<char>(n);
  } else {
    out += '\xda';
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  }
}

void pack_str(std::string& out, std::string_view s) {
  str_header(out, s.size());
  out.append(s);
}

}  // namespace

bool valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
  });
}

std::string new_request_id() {
  char id[32];
  hex(random64(), id);
  hex(random64(), id + 16);
  return std::string(id, sizeof id);
}

bool parse_traceparent(std::string_view text, trace_parent& out) noexcept {
  // version "-" trace-id "-" parent-id "-" flags; a later version may append
  // "-" and more fields, which a version-00 reader ignores.
  if (text.size() < 55 || text[2] != '-' || text[35] != '-' || text[52] != '-') return false;
  auto version = text.substr(0, 2);
  if (!lower_hex(version) || version == "ff") return false;
  if (version == "00" ? text.size() != 55 : (text.size() > 55 && text[55] != '-')) return false;
  auto trace = text.substr(3, 32), parent = text.substr(36, 16), flags = text.substr(53, 2);
  if (!lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags)) return false;
  if (all_zero(trace) || all_zero(parent)) return false;
  std::copy(trace.begin(), trace.end(), out.trace_id);
  std::copy(parent.begin(), parent.end(), out.parent_id);
  // Version 00 defines one flag, sampled; the others are not passed on.
  out.flags = static_cast<std::uint8_t>(hex_value(flags[1]) & 1);
  return true;
}

trace_parent new_trace() noexcept {
  trace_parent t;
  hex(random_nonzero(), t.trace_id);  // one non-zero half: the id is not all zeros
  hex(random64(), t.trace_id + 16);
  hex(random_nonzero(), t.parent_id);
  t.flags = 1;
  return t;
}

trace_parent child_of(const trace_parent& t) noexcept {
  trace_parent c = t;
  hex(random_nonzero(), c.parent_id);
  return c;
}

void append_traceparent(const trace_parent& t, std::string& out) {
  char line[55];
  std::memcpy(line, "00-", 3);
  std::memcpy(line + 3, t.trace_id, 32);
  line[35] = '-';
  std::memcpy(line + 36, t.parent_id, 16);
  line[52] = '-';
  std::memcpy(line + 53, &hex_pairs[2 * t.flags], 2);
  out.append(line, sizeof line);
}

bool valid_tracestate(std::string_view text) noexcept {
  if (text.size() > 512) return false;
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

void append_trace_meta(std::string& out, std::string_view request_id, const trace_parent* parent,
                       std::string_view tracestate, std::string_view identity) {
  // Packed by hand: this runs for every upstream call, and a packer's
  // generality costs several times more here.
  if (tracestate.size() > 0xffff) tracestate = {};
  if (request_id.empty() && !parent && identity.empty()) return;  // no meta at all
  out.reserve(out.size() + 112 + request_id.size() + tracestate.size() + identity.size());
  int n = (request_id.empty() ? 0 : 1) + (parent ? 1 : 0) + (tracestate.empty() ? 0 : 1) +
          (identity.empty() ? 0 : 1);
  out += static_cast<char>(0x80 | n);  // fixmap
  if (!request_id.empty()) {
    pack_str(out, meta_request_id);
    pack_str(out, request_id.substr(0, 0xffff));
  }
  if (parent) {
    pack_str(out, meta_traceparent);
    str_header(out, 55);
    append_traceparent(*parent, out);
  }
  if (!tracestate.empty()) {
    pack_str(out, meta_tracestate);
    pack_str(out, tracestate);
  }
  if (!identity.empty()) {
    pack_str(out, meta_identity);
    out += identity;
  }
}

}  // namespace tern
