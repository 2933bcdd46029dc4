#include "tern/transport/nestjs_codec.hpp"

#include "envelope.hpp"
#include "tern/transport/json.hpp"
#include "tern/transport/msgpack_reader.hpp"
#include "tern/transport/wire_error.hpp"

#include <charconv>
#include <cstring>
#include <string>

namespace tern::transport {

namespace {

constexpr envelope_dialect nestjs_dialect{.any_id = true, .meta_key = "metadata"};

// The longest prefix read before its `#`: whitespace and digits.
constexpr std::size_t max_prefix = 32;

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// A prefix as it can be shown in a log line: printable ASCII, the rest as \xNN.
std::string shown(const char* p, std::size_t n) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n && i < max_prefix; ++i) {
    auto c = static_cast<unsigned char>(p[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      s += static_cast<char>(c);
    } else {
      s += "\\x";
      s += hex[c >> 4];
      s += hex[c & 15];
    }
  }
  return s;
}

// Scratch space for one frame's JSON and one value's msgpack, per thread
// (codecs are shared; encoding and decoding never nest on a thread).
struct scratch {
  std::string json;
  byte_buffer value;
  std::string packed;
  // Keeps what a big frame made it grow to from staying for good.
  void trim() {
    constexpr std::size_t keep = 1 << 20;
    if (json.capacity() > keep) std::string().swap(json);
    if (packed.capacity() > keep) std::string().swap(packed);
    value.shrink_to(keep);
  }
};
scratch& scratch_space() {
  thread_local scratch s;
  return s;
}

// ---- decoding ----

// What a JSON packet that could not be transcoded (nested too deep, a key
// twice) still tells: its root-level id (as packed msgpack) and whether it
// has a pattern. The text is walked once, iteratively, strings skipped.
struct json_facts {
  std::string packed_id;
  bool has_id = false;
  bool bad_id = false;  // an id too long to echo, or not JSON
  bool has_pattern = false;
};

json_facts scan_json_packet(std::string_view t) {
  json_facts f;
  std::size_t i = 0, n = t.size();
  auto skip_space = [&] {
    while (i < n && is_space(t[i])) ++i;
  };
  // Moves i past the string that starts at i (a quote); false if it does not end.
  auto skip_string = [&] {
    for (++i; i < n; ++i) {
      if (t[i] == '\\') {
        ++i;
      } else if (t[i] == '"') {
        ++i;
        return true;
      }
    }
    return false;
  };
  // Moves i past the value at i: to the `,` or `}` that ends it at the root.
  auto skip_value = [&] {
    int depth = 0;
    while (i < n) {
      char c = t[i];
      if (c == '"') {
        if (!skip_string()) return false;
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (depth == 0) return true;
        --depth;
      }
      if (c == ',' && depth == 0) return true;
      ++i;
    }
    return false;
  };
  skip_space();
  if (i >= n || t[i] != '{') return f;
  ++i;
  while (true) {
    skip_space();
    if (i >= n || t[i] != '"') return f;
    std::size_t key_at = i + 1;
    if (!skip_string()) return f;
    std::string_view key = t.substr(key_at, i - 1 - key_at);
    skip_space();
    if (i >= n || t[i] != ':') return f;
    ++i;
    skip_space();
    std::size_t value_at = i;
    if (!skip_value()) return f;
    if (key == "pattern") f.has_pattern = true;
    if (key == "id") {
      std::string packed;
      auto text = t.substr(value_at, i - value_at);
      while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
      if (text.size() <= max_packed_id && !json_to_msgpack(text, packed, max_msgpack_depth) &&
          packed.size() <= max_packed_id) {
        f.packed_id = std::move(packed);
        f.has_id = true;
      } else {
        f.bad_id = true;
      }
    }
    if (t[i] == '}') return f;
    ++i;  // the comma
  }
}

[[noreturn]] void refuse_json(std::string_view text, const json_error& e) {
  std::string why;
  switch (e.kind) {
    case json_error::malformed:
    case json_error::none:
      why = "the packet is not valid JSON";
      break;
    case json_error::too_deep:
      why = "a value nests deeper than " + std::to_string(max_msgpack_depth) + " levels";
      break;
    case json_error::duplicate_key:
      why = "a JSON object has the key \"" + e.key + "\" twice";
      break;
    case json_error::out_of_range:
      why = "a number is out of range";
      break;
  }
  // The frame's length delimited it, so the stream is intact: a request
  // whose id can still be found is answered for that id (a reply's fails
  // its call), an event is dropped, and anything else closes.
  auto f = scan_json_packet(text);
  std::optional<std::uint64_t> id;
  if (f.has_id) id = id_number(f.packed_id, f.has_pattern);
  bool readable = !f.bad_id && (f.has_id || f.has_pattern);
  throw packet_error(why, id, readable, f.has_pattern, std::move(f.packed_id));
}

// JSON text with each escaped lone surrogate (`\ud800` not followed by its
// pair, which JavaScript's JSON.stringify writes for a cut string) replaced
// by `\ufffd`, as a UTF-8 encoder replaces it; empty if there was none.
std::string without_lone_surrogates(std::string_view t) {
  auto unit = [&](std::size_t at) -> int {  // the \uXXXX at `at`, or -1
    if (at + 6 > t.size() || t[at] != '\\' || t[at + 1] != 'u') return -1;
    int v = 0;
    for (std::size_t k = at + 2; k < at + 6; ++k) {
      char c = t[k];
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    return v;
  };
  std::string out;
  bool changed = false;
  std::size_t copied = 0;
  for (std::size_t i = 0; i + 1 < t.size(); ++i) {
    if (t[i] != '\\') continue;
    int u = unit(i);
    if (u < 0) {
      ++i;  // another escape (\\ among them): skip its second character
      continue;
    }
    bool high = u >= 0xd800 && u <= 0xdbff, low = u >= 0xdc00 && u <= 0xdfff;
    if (high) {
      int next = unit(i + 6);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i += 11;  // a proper pair
        continue;
      }
    }
    if (high || low) {
      out.append(t.substr(copied, i - copied));
      out.append("\\ufffd");
      copied = i + 6;
      changed = true;
    }
    i += 5;
  }
  if (!changed) return {};
  out.append(t.substr(copied));
  return out;
}

// ---- encoding ----

// One frame: its JSON is built in scratch space, then its length prefix
// and the JSON are appended to `out` together (nothing on failure).
class json_frame {
 public:
  json_frame(byte_buffer& out, std::uint32_t max)
      : out_(out), max_(max), s_(scratch_space()), json_(s_.json) {
    json_.clear();
  }
  json_frame(const json_frame&) = delete;
  json_frame& operator=(const json_frame&) = delete;
  ~json_frame() { s_.trim(); }

  void text(std::string_view t) { json_.append(t); }
  // One value a writer packs, as JSON.
  void value(value_writer write) {
    s_.value.clear();
    packer pk(s_.value);
    write(pk);
    packed(std::string_view(s_.value.data(), s_.value.size()));
  }
  void packed(std::string_view p) {
    try {
      append_json(p, json_, json_binary::base64);
    } catch (const std::invalid_argument& e) {
      // Nested too deep for JSON's writer, or not one value: not sent.
      throw protocol_violation(std::string("a value cannot be written as JSON: ") + e.what());
    }
  }
  void string(std::string_view text) { append_json_string(text, json_); }
  // `,"metadata":{...}` when there is any (NestJS 12's name for tern's meta).
  void metadata(const outgoing_meta& meta) {
    if (!meta.any()) return;
    text(R"(,"metadata":)");
    value([&](packer& pk) { meta.write(pk); });
  }
  void id(const reply_to& to) {
    if (!to.packed_id.empty()) {
      packed(to.packed_id);
      return;
    }
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, to.id).ptr;
    json_ += '"';
    json_.append(digits, end);
    json_ += '"';
  }
  void finish() {
    if (json_.size() > max_) {
      throw protocol_violation("frame of " + std::to_string(json_.size()) +
                               " bytes exceeds the limit of " + std::to_string(max_));
    }
    char prefix[24];
    auto end = std::to_chars(prefix, prefix + 20, utf16_length(json_)).ptr;
    *end++ = '#';
    out_.write(prefix, static_cast<std::size_t>(end - prefix));
    out_.write(json_.data(), json_.size());
  }

 private:
  byte_buffer& out_;
  std::uint32_t max_;
  scratch& s_;
  std::string& json_;
};

}  // namespace

std::size_t utf16_length(std::string_view s) noexcept {
  // Every byte but a continuation byte (10xxxxxx) starts a character; one
  // of four bytes (11110xxx) needs a surrogate pair.
  std::size_t units = 0;
  for (unsigned char c : s) {
    units += static_cast<std::size_t>((c & 0xc0) != 0x80) + static_cast<std::size_t>(c >= 0xf0);
  }
  return units;
}

frame_result nestjs_codec::next_frame(const char* data, std::size_t size) const {
  std::size_t i = 0;
  while (i < size && i < max_prefix && is_space(data[i])) ++i;
  std::size_t digits = i;
  std::uint64_t units = 0;
  while (i < size && i < max_prefix && data[i] >= '0' && data[i] <= '9') {
    units = units * 10 + static_cast<std::uint64_t>(data[i] - '0');
    if (units > max_frame_) {
      // Every character takes a byte at least: over the limit already.
      throw protocol_violation("a frame announces more than " + std::to_string(max_frame_) +
                               " characters, over the limit of " + std::to_string(max_frame_) +
                               " bytes");
    }
    ++i;
  }
  if (i == size && i <= max_prefix) return {frame_status::need_more};
  if (i == size || data[i] != '#' || i == digits) {
    throw protocol_violation("bad frame prefix \"" + shown(data, std::min<std::size_t>(size, 16)) +
                             "\": expected a decimal length and '#'");
  }
  const auto header = static_cast<std::uint32_t>(i + 1);
  const auto* b = reinterpret_cast<const unsigned char*>(data) + header;
  const std::size_t avail = size - header;
  // Each character takes one byte at least: no need to look before then.
  if (avail < units) return {frame_status::need_more, static_cast<std::uint32_t>(units), header};

  // Count characters as UTF-16 units until `units` are there; the frame
  // ends where the next character would start. The UTF-8 is checked for
  // structure on the way (lead bytes, and continuation bytes where a lead
  // asked for them, no others), so every byte counts towards the length and
  // what need_more asks for is a true lower bound.
  const std::size_t limit = std::min<std::size_t>(avail, std::size_t{max_frame_} + 1);
  std::size_t n = 0, counted = 0;
  int pending = 0;  // continuation bytes the current character still needs
  auto not_utf8 = [&]() {
    throw protocol_violation("a frame's text is not UTF-8 (byte " + std::to_string(n) + ")");
  };
  while (n < limit) {
    if (pending == 0 && counted + 8 <= units && n + 8 <= limit) {
      std::uint64_t w;
      std::memcpy(&w, b + n, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        n += 8;
        counted += 8;
        continue;
      }
    }
    unsigned char c = b[n];
    if (pending > 0) {
      if ((c & 0xc0) != 0x80) not_utf8();
      --pending;
      ++n;
      continue;
    }
    if (counted == units) break;
    if (c < 0x80) {
      counted += 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      counted += 1;
      pending = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
      counted += 1;
      pending = 2;
    } else if (c >= 0xf0 && c <= 0xf4) {
      counted += 2;  // a surrogate pair in JavaScript
      pending = 3;
    } else {
      not_utf8();  // a continuation byte without its lead, or no lead byte at all
    }
    if (counted > units) {
      throw protocol_violation("a frame's length of " + std::to_string(units) +
                               " characters ends inside a character");
    }
    ++n;
  }
  if (n > max_frame_) {
    throw protocol_violation("frame of more than " + std::to_string(max_frame_) +
                             " bytes exceeds the limit");
  }
  if (counted < units || pending > 0) {
    // The rest of this character, then a byte at least per character to come.
    return {frame_status::need_more,
            static_cast<std::uint32_t>(n + static_cast<std::size_t>(pending) + (units - counted)),
            header};
  }
  return {frame_status::complete, static_cast<std::uint32_t>(n), header};
}

void nestjs_codec::decode(const char* body, std::size_t size, msgpack::zone& zone, bool,
                          packet& out) const {
  // The JSON becomes msgpack in one pass (depth checked as it goes; the
  // packet itself is one level), then the envelope is read as on tern's
  // wire. Its objects point into the zone's copy, valid as long as the zone.
  std::string_view text(body, size);
  struct trim_after {  // what a big frame made the scratch space grow to goes
    ~trim_after() { scratch_space().trim(); }
  } trim;
  auto& packed = scratch_space().packed;
  packed.clear();
  auto e = json_to_msgpack(text, packed, max_msgpack_depth + 1);
  if (e.kind == json_error::malformed && text.find("\\u") != std::string_view::npos) {
    if (auto fixed = without_lone_surrogates(text); !fixed.empty()) {
      packed.clear();
      e = json_to_msgpack(fixed, packed, max_msgpack_depth + 1);
    }
  }
  if (e) refuse_json(text, e);
  msgpack_head root;
  if (!read_head(packed.data(), packed.data() + packed.size(), root) ||
      root.kind != msgpack_head::map) {
    throw packet_error("the packet is not a JSON object", std::nullopt, false, false);
  }
  auto* copy = static_cast<char*>(zone.allocate_no_align(packed.size()));
  std::memcpy(copy, packed.data(), packed.size());
  const std::size_t n = packed.size();
  try {
    decode_envelope(copy, n, zone, true, out, nestjs_dialect);
  } catch (const protocol_violation& e) {
    refuse_envelope(copy, n, e.what(), nestjs_dialect);
  }
}

void nestjs_codec::encode_request(byte_buffer& out, std::uint64_t id,
                                  std::string_view packed_pattern, std::string_view packed_meta,
                                  std::chrono::milliseconds deadline, value_writer data) const {
  outgoing_meta meta(packed_meta, deadline);
  json_frame f(out, max_frame_);
  f.text(R"({"pattern":)");
  f.packed(packed_pattern);
  f.text(R"(,"data":)");
  f.value(data);
  f.metadata(meta);
  f.text(R"(,"id":)");
  f.id(id);
  f.text("}");
  f.finish();
}

void nestjs_codec::encode_event(byte_buffer& out, std::string_view packed_pattern,
                                std::string_view packed_meta, value_writer data) const {
  outgoing_meta meta(packed_meta, std::chrono::milliseconds(0));
  json_frame f(out, max_frame_);
  f.text(R"({"pattern":)");
  msgpack_head h;
  const char* end = packed_pattern.data() + packed_pattern.size();
  if (!packed_pattern.empty() && read_head(packed_pattern.data(), end, h) &&
      h.kind == msgpack_head::map) {
    // As NestJS's client does: an object pattern goes as its JSON text
    // (tern's patterns keep their keys sorted, so this is the route key).
    std::string flat;
    append_json(packed_pattern, flat, json_binary::base64);
    f.string(flat);
  } else {
    f.packed(packed_pattern);
  }
  f.text(R"(,"data":)");
  f.value(data);
  f.metadata(meta);
  f.text("}");
  f.finish();
}

void nestjs_codec::encode_response(byte_buffer& out, reply_to to, const value_writer* response,
                                   bool disposed) const {
  json_frame f(out, max_frame_);
  if (response) {
    f.text(R"({"response":)");
    f.value(*response);
    f.text(disposed ? R"(,"isDisposed":true,"id":)" : R"(,"id":)");
  } else {
    f.text(R"({"isDisposed":true,"id":)");
  }
  f.id(to);
  f.text("}");
  f.finish();
}

void nestjs_codec::encode_error(byte_buffer& out, reply_to to, value_writer err) const {
  json_frame f(out, max_frame_);
  f.text(R"({"err":)");
  f.value(err);
  f.text(R"(,"isDisposed":true,"id":)");
  f.id(to);
  f.text("}");
  f.finish();
}

void nestjs_codec::encode_no_handler(byte_buffer& out, reply_to to) const {
  json_frame f(out, max_frame_);
  f.text(R"({"id":)");
  f.id(to);
  f.text(R"(,"status":"error","err":)");
  f.string(no_handler_message);
  f.text("}");
  f.finish();
}

}  // namespace tern::transport
