#include "tern/trace.hpp"

#include <msgpack.hpp>

#include <algorithm>
#include <random>

namespace tern {

namespace {

// Ids need to be unique, not secret: a per-thread generator seeded from the
// OS is enough, and costs no syscall per id.
std::uint64_t random64() noexcept {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }());
  return gen();
}

void hex(std::uint64_t v, char* out) noexcept {
  constexpr char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = digits[v & 0xf];
    v >>= 4;
  }
}

bool lower_hex(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

bool all_zero(std::string_view s) noexcept {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

void random_nonzero_hex(char* out, int words) noexcept {
  for (;;) {
    for (int i = 0; i < words; ++i) hex(random64(), out + 16 * i);
    if (!all_zero({out, static_cast<std::size_t>(16 * words)})) return;
  }
}

int hex_value(char c) noexcept {
  return c <= '9' ? c - '0' : c - 'a' + 10;
}

struct string_out {
  std::string* s;
  void write(const char* p, std::size_t n) { s->append(p, n); }
};
using packer = msgpack::packer<string_out>;

void pack_str(packer& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
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
  std::string id(32, '0');
  hex(random64(), id.data());
  hex(random64(), id.data() + 16);
  return id;
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
  out.flags = static_cast<std::uint8_t>(hex_value(flags[0]) * 16 + hex_value(flags[1]));
  return true;
}

trace_parent new_trace() noexcept {
  trace_parent t;
  random_nonzero_hex(t.trace_id, 2);
  random_nonzero_hex(t.parent_id, 1);
  t.flags = 1;
  return t;
}

trace_parent child_of(const trace_parent& t) noexcept {
  trace_parent c = t;
  random_nonzero_hex(c.parent_id, 1);
  return c;
}

void append_traceparent(const trace_parent& t, std::string& out) {
  constexpr char digits[] = "0123456789abcdef";
  out += "00-";
  out.append(t.trace_id, 32);
  out += '-';
  out.append(t.parent_id, 16);
  out += '-';
  out += digits[t.flags >> 4];
  out += digits[t.flags & 0xf];
}

bool valid_tracestate(std::string_view text) noexcept {
  if (text.size() > 512) return false;
  return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

void append_trace_meta(std::string& out, std::string_view request_id, const trace_parent* parent,
                       std::string_view tracestate) {
  string_out sink{&out};
  packer pk(sink);
  std::uint32_t n = (request_id.empty() ? 0 : 1) + (parent ? 1 : 0) + (tracestate.empty() ? 0 : 1);
  pk.pack_map(n);
  if (!request_id.empty()) {
    pack_str(pk, meta_request_id);
    pack_str(pk, request_id);
  }
  if (parent) {
    pack_str(pk, meta_traceparent);
    pk.pack_str(55);
    append_traceparent(*parent, out);
  }
  if (!tracestate.empty()) {
    pack_str(pk, meta_tracestate);
    pack_str(pk, tracestate);
  }
}

}  // namespace tern
