#include "tern/transport/msgpack_codec.hpp"

#include "envelope.hpp"
#include "tern/transport/control.hpp"
#include "tern/transport/msgpack_reader.hpp"
#include "tern/transport/wire_error.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace tern::transport {

namespace {

// Appends one frame to a buffer: reserves the header, patches it at the end,
// and takes everything back if encoding fails or the body is over the limit.
class frame_scope {
 public:
  frame_scope(byte_buffer& out, std::uint32_t max) : out_(out), start_(out.size()), max_(max) {
    out_.extend(frame_header_size);
  }
  frame_scope(const frame_scope&) = delete;
  frame_scope& operator=(const frame_scope&) = delete;
  ~frame_scope() {
    if (!done_) out_.truncate(start_);
  }
  void finish() {
    std::size_t len = out_.size() - start_ - frame_header_size;
    if (len > max_) {
      throw protocol_violation("frame of " + std::to_string(len) + " bytes exceeds the limit of " +
                               std::to_string(max_));
    }
    write_frame_header(out_.data() + start_, static_cast<std::uint32_t>(len));
    done_ = true;
  }

 private:
  byte_buffer& out_;
  std::size_t start_;
  std::uint32_t max_;
  bool done_ = false;
};

// A key of the envelope, a fixstr: its head and bytes in one write.
template <std::size_t N>
void key(packer& pk, const char (&k)[N]) {
  static_assert(N - 1 < 32, "a fixstr");
  char packed[N];
  packed[0] = static_cast<char>(0xa0 | (N - 1));
  std::memcpy(packed + 1, k, N - 1);
  pk.pack_packed(std::string_view(packed, N));
}

[[noreturn]] void malformed(const char* what) {
  throw protocol_violation(std::string("undecodable msgpack: ") + what);
}

// Builds the msgpack object for the value at p into `zone`; strings, binaries
// and extensions point into the bytes with `reference`, else are copied.
// Returns the end of the value, or nullptr as skip_value() does.
const char* build(const char* p, const char* end, msgpack::zone& zone, bool reference, int depth,
                  msgpack::object& o) {
  msgpack_head h;
  if (p >= end || !(p = read_head(p, end, h))) return nullptr;
  auto bytes = [&](const char* from, std::uint32_t n) -> const char* {
    if (reference || n == 0) return from;
    auto* copy = static_cast<char*>(zone.allocate_no_align(n));
    std::memcpy(copy, from, n);
    return copy;
  };
  switch (h.kind) {
    case msgpack_head::nil:
      o.type = msgpack::type::NIL;
      break;
    case msgpack_head::boolean:
      o.type = msgpack::type::BOOLEAN;
      o.via.boolean = h.b;
      break;
    case msgpack_head::uint:
      o.type = msgpack::type::POSITIVE_INTEGER;
      o.via.u64 = h.u;
      break;
    case msgpack_head::sint:
      o.type = msgpack::type::NEGATIVE_INTEGER;
      o.via.i64 = h.i;
      break;
    case msgpack_head::f32:
      o.type = msgpack::type::FLOAT32;
      o.via.f64 = h.f;
      break;
    case msgpack_head::f64:
      o.type = msgpack::type::FLOAT64;
      o.via.f64 = h.f;
      break;
    case msgpack_head::str:
      o.type = msgpack::type::STR;
      o.via.str.size = h.count;
      o.via.str.ptr = bytes(h.payload, h.count);
      break;
    case msgpack_head::bin:
      o.type = msgpack::type::BIN;
      o.via.bin.size = h.count;
      o.via.bin.ptr = bytes(h.payload, h.count);
      break;
    case msgpack_head::ext:
      // msgpack-c keeps the type byte in front of the data.
      o.type = msgpack::type::EXT;
      o.via.ext.size = h.count;
      o.via.ext.ptr = bytes(h.payload - 1, h.count + 1);
      break;
    case msgpack_head::array: {
      if (depth >= max_msgpack_depth || h.count > static_cast<std::size_t>(end - p)) return nullptr;
      o.type = msgpack::type::ARRAY;
      o.via.array.size = h.count;
      o.via.array.ptr = nullptr;
      if (h.count == 0) break;
      auto* items = static_cast<msgpack::object*>(
          zone.allocate_align(sizeof(msgpack::object) * h.count, alignof(msgpack::object)));
      o.via.array.ptr = items;
      for (std::uint32_t i = 0; i < h.count; ++i) {
        p = build(p, end, zone, reference, depth + 1, items[i]);
        if (!p) return nullptr;
      }
      break;
    }
    case msgpack_head::map: {
      if (depth >= max_msgpack_depth || h.count > static_cast<std::size_t>(end - p) / 2) {
        return nullptr;
      }
      o.type = msgpack::type::MAP;
      o.via.map.size = h.count;
      o.via.map.ptr = nullptr;
      if (h.count == 0) break;
      auto* pairs = static_cast<msgpack::object_kv*>(
          zone.allocate_align(sizeof(msgpack::object_kv) * h.count, alignof(msgpack::object_kv)));
      o.via.map.ptr = pairs;
      for (std::uint32_t i = 0; i < h.count; ++i) {
        p = build(p, end, zone, reference, depth + 1, pairs[i].key);
        if (!p) return nullptr;
        p = build(p, end, zone, reference, depth + 1, pairs[i].val);
        if (!p) return nullptr;
      }
      break;
    }
  }
  return p;
}

}  // namespace

const char* skip_value(const char* p, const char* end, int depth) noexcept {
  // Containers are walked with a counter of values still to skip at each
  // level, not by recursion per element.
  std::uint64_t pending[max_msgpack_depth + 1];
  int top = 0;
  pending[0] = 1;
  while (true) {
    while (pending[top] == 0) {
      if (top == 0) return p;
      --top;
    }
    --pending[top];
    if (p >= end) return nullptr;
    // The commonest heads first, without decoding them: fixints and fixstrs.
    auto c = static_cast<std::uint8_t>(*p);
    if (c <= 0x7f || c >= 0xe0) {
      ++p;
      continue;
    }
    if (c >= 0xa0 && c <= 0xbf) {
      std::size_t n = c & 0x1f;
      if (static_cast<std::size_t>(end - p) - 1 < n) return nullptr;
      p += 1 + n;
      continue;
    }
    msgpack_head h;
    p = read_head(p, end, h);
    if (!p) return nullptr;
    if (h.kind == msgpack_head::array || h.kind == msgpack_head::map) {
      std::uint64_t n = h.kind == msgpack_head::map ? 2ull * h.count : h.count;
      if (n > static_cast<std::size_t>(end - p)) return nullptr;  // each takes a byte at least
      if (depth + top + 1 > max_msgpack_depth) return nullptr;    // empty ones count too
      if (n == 0) continue;
      pending[++top] = n;
    }
  }
}

const char* skip_any(const char* p, const char* end) noexcept {
  std::uint64_t remaining = 1;
  while (remaining > 0) {
    if (p >= end) return nullptr;
    msgpack_head h;
    p = read_head(p, end, h);
    if (!p) return nullptr;
    --remaining;
    if (h.kind == msgpack_head::array) remaining += h.count;
    if (h.kind == msgpack_head::map) remaining += 2ull * h.count;
    if (remaining > static_cast<std::size_t>(end - p)) return nullptr;
  }
  return p;
}

msgpack::object decode_value(std::string_view packed, msgpack::zone& zone, bool reference) {
  msgpack::object o;
  const char* end = packed.data() + packed.size();
  const char* p = packed.empty() ? nullptr : build(packed.data(), end, zone, reference, 0, o);
  if (!p) malformed("truncated, malformed or too deeply nested value");
  if (p != end) malformed("trailing bytes after the value");
  return o;
}

msgpack::object_handle decode_owned(std::string_view packed) {
  auto zone = std::make_unique<msgpack::zone>(std::max<std::size_t>(packed.size() * 2, 64));
  msgpack::object o = decode_value(packed, *zone, false);
  return {o, std::move(zone)};
}

namespace {

// What can still be read of an envelope that failed to decode: its id, and
// whether it is one well-formed map at all (however deep).
struct envelope_facts {
  std::optional<std::uint64_t> id;
  std::string packed_id;
  bool well_formed = false;
  bool has_pattern = false;
};

envelope_facts scan_envelope(const char* p, const char* end, const envelope_dialect& d) {
  envelope_facts f;
  msgpack_head root;
  if (p >= end || !(p = read_head(p, end, root)) || root.kind != msgpack_head::map) return f;
  for (std::uint32_t i = 0; i < root.count; ++i) {
    msgpack_head k, v;
    const char* key = p;
    if (p >= end || !(p = read_head(p, end, k))) return f;
    if (k.kind != msgpack_head::str) p = skip_any(key, end);
    if (!p || p >= end) return f;
    const char* value = p;
    bool is_id = k.kind == msgpack_head::str && k.bytes() == "id";
    if (is_id && !d.any_id && read_head(p, end, v) && v.kind == msgpack_head::uint) f.id = v.u;
    if (k.kind == msgpack_head::str && k.bytes() == "pattern") f.has_pattern = true;
    if (!(p = skip_any(value, end))) return f;
    if (is_id && d.any_id) {
      if (static_cast<std::size_t>(p - value) > max_packed_id) {
        return f;  // an id too long to echo: nothing can be answered, nor dropped quietly
      }
      f.packed_id.assign(value, p);
      f.id = id_number(f.packed_id, true);
    }
  }
  f.well_formed = p == end;
  return f;
}

}  // namespace

namespace {
// meta's first `deadline_ms` (tern writes it first), when it is an unsigned
// integer; past a week it is no deadline worth keeping (and cannot overflow
// a clock).
std::optional<std::chrono::milliseconds> deadline_in(const msgpack::object& meta) {
  constexpr std::uint64_t week_ms = 7ULL * 24 * 3600 * 1000;
  for (const auto& kv : std::span(meta.via.map.ptr, meta.via.map.size)) {
    if (kv.key.type != msgpack::type::STR || kv.key.via.str.size != 11 ||
        std::memcmp(kv.key.via.str.ptr, "deadline_ms", 11) != 0) {
      continue;
    }
    if (kv.val.type != msgpack::type::POSITIVE_INTEGER || kv.val.via.u64 > week_ms) {
      return std::nullopt;
    }
    return std::chrono::milliseconds(static_cast<std::int64_t>(kv.val.via.u64));
  }
  return std::nullopt;
}
}  // namespace

std::uint64_t id_number(std::string_view packed, bool request) noexcept {
  msgpack_head h;
  const char* end = packed.data() + packed.size();
  const char* after = packed.empty() ? nullptr : read_head(packed.data(), end, h);
  if (after == end && h.kind == msgpack_head::uint) return h.u;
  if (after == end && h.kind == msgpack_head::str && h.count > 0 && h.count <= 20) {
    std::uint64_t n = 0;
    auto [last, ec] = std::from_chars(h.payload, h.payload + h.count, n);
    if (ec == std::errc() && last == h.payload + h.count) return n;
  }
  if (!request) return 0;
  std::uint64_t hash = 14695981039346656037ull;  // FNV-1a
  for (unsigned char c : packed) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

void refuse_envelope(const char* body, std::size_t size, const char* what,
                     const envelope_dialect& d) {
  auto f = scan_envelope(body, body + size, d);
  throw packet_error(what, f.id, f.well_formed, f.has_pattern, std::move(f.packed_id));
}

void msgpack_codec::decode(const char* body, std::size_t size, msgpack::zone& zone, bool reference,
                           packet& out) const {
  static constexpr envelope_dialect tern_dialect{};
  try {
    decode_envelope(body, size, zone, reference, out, tern_dialect);
  } catch (const protocol_violation& e) {
    refuse_envelope(body, size, e.what(), tern_dialect);
  }
}

void decode_envelope(const char* body, std::size_t size, msgpack::zone& zone, bool reference,
                     packet& out, const envelope_dialect& d) {
  // The envelope is read head by head; pattern, data, meta and err are built
  // as objects, while a reply's response stays bytes (a relay writes them on
  // as they are; a typed caller decodes them once).
  const char* p = body;
  const char* end = body + size;
  msgpack_head root;
  if (size == 0 || !(p = read_head(p, end, root))) malformed("truncated or malformed packet");
  if (root.kind != msgpack_head::map) throw protocol_violation("packet is not a map");
  if (root.count > size / 2) malformed("map larger than the frame");

  static const packet blank{};  // (copying it costs less than building one)
  out = blank;
  out.zone = &zone;
  bool has_id = false, has_pattern = false, has_data = false, has_disposed = false;
  bool goaway = false;
  // Reads the head of the value at p and moves p past the whole value.
  auto next = [&](msgpack_head& h) {
    const char* start = p;
    p = read_head(p, end, h);
    if (p && (h.kind == msgpack_head::array || h.kind == msgpack_head::map)) {
      p = skip_value(start, end, 0);
    }
  };
  // Each value may nest max_msgpack_depth levels; the envelope does not count.
  auto object = [&](msgpack::object& o) { p = build(p, end, zone, reference, 0, o); };
  for (std::uint32_t i = 0; i < root.count; ++i) {
    msgpack_head k, v;
    if (p < end) next(k);
    if (!p || p >= end) malformed("truncated packet");
    std::string_view name = k.kind == msgpack_head::str ? k.bytes() : std::string_view();
    if (name == "id") {
      const char* start = p;
      next(v);
      if (p && d.any_id) {
        out.packed_id = std::string_view(start, static_cast<std::size_t>(p - start));
        if (out.packed_id.size() > max_packed_id) {
          throw protocol_violation("packet id is longer than " + std::to_string(max_packed_id) +
                                   " bytes");
        }
      } else if (p && v.kind != msgpack_head::uint) {
        throw protocol_violation("packet id is not an unsigned integer");
      }
      out.id = v.u;
      has_id = true;
    } else if (name == "pattern") {
      const char* start = p;
      object(out.pattern);
      if (p) out.packed_pattern = std::string_view(start, static_cast<std::size_t>(p - start));
      has_pattern = true;
    } else if (name == "data") {
      object(out.data);
      has_data = true;
    } else if (name == "response") {
      const char* start = p;
      p = skip_value(p, end, 0);
      if (p) out.response = std::string_view(start, static_cast<std::size_t>(p - start));
      out.has_response = true;
    } else if (name == "err") {
      object(out.err);
      out.has_err = true;
    } else if (name == "isDisposed") {
      next(v);
      if (p && v.kind != msgpack_head::boolean) {
        throw protocol_violation("isDisposed is not a boolean");
      }
      out.disposed = p && v.b;
      has_disposed = true;
    } else if (name == d.meta_key) {
      object(out.meta);
      if (p && out.meta.type != msgpack::type::MAP && out.meta.type != msgpack::type::NIL) {
        throw protocol_violation("meta is not a map");
      }
      out.has_meta = out.meta.type == msgpack::type::MAP;
      if (p && out.has_meta) out.deadline = deadline_in(out.meta);  // (p: built whole)
    } else if (name == "status") {
      next(v);
      out.status_error = v.kind == msgpack_head::str;
    } else if (name == "goaway") {
      next(v);
      goaway = p && v.kind == msgpack_head::boolean && v.b;
    } else {
      // Other keys are ignored, as NestJS does, so packets can grow.
      p = skip_value(p, end, 0);
    }
    if (!p) malformed("truncated, malformed or too deeply nested value");
  }
  if (p != end) throw protocol_violation("trailing bytes after the packet");
  if (d.any_id && has_id) out.id = id_number(out.packed_id, has_pattern);
  if (has_pattern) {
    out.kind = has_id ? packet_kind::request : packet_kind::event;
    if (!has_data) out.data = msgpack::object();
    return;
  }
  if (!has_id && goaway) {
    out.kind = packet_kind::goaway;
    return;
  }
  if (!has_id) throw protocol_violation("packet has neither pattern nor id");
  if (!out.has_response && !out.has_err && !has_disposed) {
    throw protocol_violation("reply has none of response, err, isDisposed");
  }
  out.kind = packet_kind::reply;
}

outgoing_meta::outgoing_meta(std::string_view packed_meta, std::chrono::milliseconds deadline)
    : deadline_(deadline), timed_(deadline.count() > 0) {
  if (packed_meta.empty()) return;
  msgpack_head h;
  const char* end = packed_meta.data() + packed_meta.size();
  const char* after = read_head(packed_meta.data(), end, h);
  if (!after || (h.kind != msgpack_head::map && h.kind != msgpack_head::nil)) {
    throw protocol_violation("meta is not a map");
  }
  if (h.kind == msgpack_head::map) {
    entries_ = h.count;
    rest_ = std::string_view(after, static_cast<std::size_t>(end - after));
  }
}

void outgoing_meta::write(packer& pk) const {
  pk.pack_map(entries_ + (timed_ ? 1 : 0));
  if (timed_) {
    key(pk, "deadline_ms");
    pk.pack_uint64(static_cast<std::uint64_t>(deadline_.count()));
  }
  pk.pack_packed(rest_);
}

void msgpack_codec::encode_request(byte_buffer& out, std::uint64_t id,
                                   std::string_view packed_pattern, std::string_view packed_meta,
                                   std::chrono::milliseconds deadline, value_writer data) const {
  outgoing_meta meta(packed_meta, deadline);
  bool has_meta = meta.any();
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(has_meta ? 4 : 3);
  key(pk, "id");
  pk.pack_uint64(id);
  key(pk, "pattern");
  out.write(packed_pattern.data(), packed_pattern.size());
  key(pk, "data");
  data(pk);
  if (has_meta) {
    key(pk, "meta");
    meta.write(pk);
  }
  frame.finish();
}

void msgpack_codec::encode_event(byte_buffer& out, std::string_view packed_pattern,
                                 std::string_view packed_meta, value_writer data) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(packed_meta.empty() ? 2 : 3);
  key(pk, "pattern");
  out.write(packed_pattern.data(), packed_pattern.size());
  key(pk, "data");
  data(pk);
  if (!packed_meta.empty()) {
    key(pk, "meta");
    out.write(packed_meta.data(), packed_meta.size());
  }
  frame.finish();
}

void msgpack_codec::encode_response(byte_buffer& out, reply_to to, const value_writer* response,
                                    bool disposed) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(1 + (response ? 1 : 0) + (disposed ? 1 : 0));
  key(pk, "id");
  pk.pack_uint64(to.id);
  if (response) {
    key(pk, "response");
    (*response)(pk);
  }
  if (disposed) {
    key(pk, "isDisposed");
    pk.pack_true();
  }
  frame.finish();
}

void msgpack_codec::encode_error(byte_buffer& out, reply_to to, value_writer err) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(3);
  key(pk, "id");
  pk.pack_uint64(to.id);
  key(pk, "err");
  err(pk);
  key(pk, "isDisposed");
  pk.pack_true();
  frame.finish();
}

bool msgpack_codec::encode_goaway(byte_buffer& out) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(1);
  key(pk, "goaway");
  pk.pack_true();
  frame.finish();
  return true;
}

bool msgpack_codec::encode_cancel(byte_buffer& out, std::uint64_t id) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(2);
  key(pk, "pattern");
  pk.pack_str(static_cast<std::uint32_t>(cancel_pattern.size()));
  pk.pack_str_body(cancel_pattern.data(), static_cast<std::uint32_t>(cancel_pattern.size()));
  key(pk, "data");
  pk.pack_uint64(id);
  frame.finish();
  return true;
}

void msgpack_codec::encode_no_handler(byte_buffer& out, reply_to to) const {
  frame_scope frame(out, max_frame());
  packer pk(out);
  pk.pack_map(4);
  key(pk, "id");
  pk.pack_uint64(to.id);
  key(pk, "status");
  key(pk, "error");
  key(pk, "err");
  pk.pack_str(no_handler_message.size());
  pk.pack_str_body(no_handler_message.data(), no_handler_message.size());
  key(pk, "isDisposed");
  pk.pack_true();
  frame.finish();
}

}  // namespace tern::transport
