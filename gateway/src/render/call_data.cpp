#include "render/call_data.hpp"

#include <tern/packed.hpp>
#include <tern/rpc_error.hpp>
#include <tern/utf8.hpp>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>

namespace tern::gateway {

namespace {

[[noreturn]] void bad_request(std::string message) {
  throw rpc_error(400, std::move(message));
}

// msgpack written into a std::string with msgpack-c's packer (smallest
// encodings), plus container headers written into reserved bytes.
class msgpack_out {
 public:
  explicit msgpack_out(std::string& s) : stream_{s}, pk_(stream_) {}

  void byte(unsigned char c) { stream_.s.push_back(static_cast<char>(c)); }
  void uint(std::uint64_t v) { pk_.pack_uint64(v); }
  void sint(std::int64_t v) { pk_.pack_int64(v); }
  void real(double v) { pk_.pack_double(v); }
  void str(std::string_view v) {
    pk_.pack_str(static_cast<std::uint32_t>(v.size()));
    pk_.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
  }
  void map_header(std::size_t n) { pk_.pack_map(static_cast<std::uint32_t>(n)); }
  // The header of a map or array of n entries, written at `at` (where 5
  // bytes were kept for it); returns the bytes it took.
  static std::size_t container_header(char* at, bool map, std::size_t n) {
    if (n <= 15) {
      at[0] = static_cast<char>((map ? 0x80 : 0x90) | n);
      return 1;
    }
    auto write = [&](unsigned char tag, std::size_t width) {
      at[0] = static_cast<char>(tag);
      for (std::size_t i = 0; i < width; ++i)
        at[1 + i] = static_cast<char>(n >> (8 * (width - 1 - i)));
      return 1 + width;
    };
    if (n <= 0xffff) return write(map ? 0xde : 0xdc, 2);
    return write(map ? 0xdf : 0xdd, 4);
  }

 private:
  struct string_stream {  // msgpack-c's stream concept over a std::string
    std::string& s;
    void write(const char* p, std::size_t n) { s.append(p, n); }
  };
  string_stream stream_;
  msgpack::packer<string_stream> pk_;
};

// nlohmann's SAX events written straight as msgpack, with the depth, key
// and number checks made as the parser goes (its parser is iterative; no
// tree is built, so nothing recurses over the body).
class body_writer {
 public:
  using json = nlohmann::json;
  explicit body_writer(std::string& out) : out_(out), w_(out) {}

  bool null() {
    return value([&] { w_.byte(0xc0); });
  }
  bool boolean(bool b) {
    return value([&] { w_.byte(b ? 0xc3 : 0xc2); });
  }
  bool number_integer(json::number_integer_t v) {
    return value([&] { w_.sint(v); });
  }
  bool number_unsigned(json::number_unsigned_t v) {
    return value([&] { w_.uint(v); });
  }
  bool number_float(json::number_float_t v, const json::string_t&) {
    if (!std::isfinite(v)) return fail("a number in the JSON body is out of range");
    return value([&] { w_.real(v); });
  }
  bool string(json::string_t& s) {
    return value([&] { w_.str(s); });
  }
  bool binary(json::binary_t&) { return fail("malformed JSON body"); }  // not in JSON text
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    auto& f = frames_.back();
    if (duplicate(f, k)) {
      return fail("duplicate key \"" + k.substr(0, 100) + "\" in the JSON body");
    }
    ++f.count;
    w_.str(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return fail("malformed JSON body");
  }

  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  struct key_ref {
    std::size_t at, size;  // the key's bytes in out_ (before the object closes)
  };
  // The keys of one object with many: open addressing over their bytes in
  // out_, which stay put while the object is open (no string is copied).
  struct key_table {
    std::vector<key_ref> keys;
    std::vector<std::uint32_t> slots;  // 0: empty; else 1 + an index into keys
    // Whether `k` is there; if not, adds it as the key whose bytes will be at `at`.
    bool seen(std::string_view k, std::size_t at, const std::string& out) {
      if (2 * (keys.size() + 1) > slots.size()) grow(out);
      std::size_t mask = slots.size() - 1;
      for (std::size_t i = std::hash<std::string_view>{}(k)&mask;; i = (i + 1) & mask) {
        if (slots[i] == 0) {
          keys.push_back({at, k.size()});
          slots[i] = static_cast<std::uint32_t>(keys.size());
          return false;
        }
        const auto& r = keys[slots[i] - 1];
        if (std::string_view(out.data() + r.at, r.size) == k) return true;
      }
    }
    void grow(const std::string& out) {
      slots.assign(std::max<std::size_t>(64, 2 * slots.size()), 0);
      std::size_t mask = slots.size() - 1;
      for (std::size_t n = 0; n < keys.size(); ++n) {
        std::string_view k(out.data() + keys[n].at, keys[n].size);
        std::size_t i = std::hash<std::string_view>{}(k)&mask;
        while (slots[i] != 0) i = (i + 1) & mask;
        slots[i] = static_cast<std::uint32_t>(n + 1);
      }
    }
  };
  struct frame {
    bool map;
    std::size_t start;  // where its 5 reserved header bytes begin
    std::size_t count = 0;
    std::size_t keys_from = 0;  // its keys in keys_ (while they are few)
    std::unique_ptr<key_table> many_keys;
  };
  // Keys are compared by a linear scan while an object has few of them.
  static constexpr std::size_t few_keys = 16;

  bool fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    return false;
  }
  template <class Write>
  bool value(Write write) {
    if (!frames_.empty() && !frames_.back().map) ++frames_.back().count;
    write();
    return true;
  }
  bool open(bool map) {
    if (frames_.size() >= static_cast<std::size_t>(max_body_depth)) {
      return fail("the JSON body nests deeper than " + std::to_string(max_body_depth) + " levels");
    }
    if (!frames_.empty() && !frames_.back().map) ++frames_.back().count;
    frames_.push_back({map, out_.size(), 0, keys_.size(), nullptr});
    out_.append(5, '\0');
    return true;
  }
  bool close() {
    auto& f = frames_.back();
    char* at = out_.data() + f.start;
    std::size_t used = msgpack_out::container_header(at, f.map, f.count);
    if (used < 5) {
      std::memmove(at + used, at + 5, out_.size() - f.start - 5);
      out_.resize(out_.size() - (5 - used));
    }
    keys_.resize(f.keys_from);
    frames_.pop_back();
    return true;
  }
  bool duplicate(frame& f, const std::string& k) {
    // Where the key's bytes will be: after its msgpack str header.
    std::size_t header = k.size() <= 31 ? 1 : k.size() <= 0xff ? 2 : k.size() <= 0xffff ? 3 : 5;
    std::size_t at = out_.size() + header;
    if (f.many_keys) return f.many_keys->seen(k, at, out_);
    for (std::size_t i = f.keys_from; i < keys_.size(); ++i) {
      if (std::string_view(out_.data() + keys_[i].at, keys_[i].size) == k) return true;
    }
    if (keys_.size() - f.keys_from < few_keys) {
      keys_.push_back({at, k.size()});
      return false;
    }
    f.many_keys = std::make_unique<key_table>();
    f.many_keys->keys.assign(keys_.begin() + static_cast<std::ptrdiff_t>(f.keys_from), keys_.end());
    keys_.resize(f.keys_from);
    return f.many_keys->seen(k, at, out_);
  }

  std::string& out_;
  msgpack_out w_;
  std::vector<frame> frames_;
  std::vector<key_ref> keys_;
  std::string error_;
};

std::string body_to_msgpack(std::string_view body) {
  std::string out;
  out.reserve(body.size() + 16);
  body_writer w(out);
  if (!nlohmann::json::sax_parse(body, &w)) {
    bad_request(w.error().empty() ? std::string("malformed JSON body") : w.error());
  }
  return out;
}

// Digit-only text that fits a 64-bit integer is that integer; anything
// else (and "-", "", "+1", 21 digits) stays a string.
void scalar(std::string_view v, msgpack_out& w) {
  if (!v.empty() && v.find_first_not_of("0123456789", v[0] == '-' ? 1 : 0) == std::string::npos &&
      v != "-") {
    if (v[0] == '-') {
      std::int64_t i;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
      if (ec == std::errc() && end == v.data() + v.size()) return w.sint(i);
    } else {
      std::uint64_t u;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), u);
      if (ec == std::errc() && end == v.data() + v.size()) return w.uint(u);
    }
  }
  w.str(v);
}

void require_utf8(std::string_view text, const char* what, std::string_view name) {
  if (is_valid_utf8(text)) return;
  if (name.empty() || name.size() > 100 || !is_valid_utf8(name)) {
    bad_request(std::string(what) + " is not valid UTF-8");
  }
  bad_request(std::string(what) + " '" + std::string(name) + "' is not valid UTF-8");
}

// Keeps the first place of each key with the last value given for it.
template <class K, class V>
void last_wins(std::vector<std::pair<K, V>>& entries) {
  if (entries.size() < 2) return;
  std::unordered_map<std::string_view, std::size_t> first;  // key -> its first entry
  first.reserve(entries.size());
  std::vector<std::size_t> last(entries.size(), SIZE_MAX);  // first entry -> its last one
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto [it, fresh] = first.try_emplace(std::string_view(entries[i].first), i);
    last[it->second] = i;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (last[i] == SIZE_MAX) continue;  // a repeat, its value taken below
    if (last[i] != i) entries[i].second = std::move(entries[last[i]].second);
    if (kept != i) entries[kept] = std::move(entries[i]);
    ++kept;
  }
  entries.resize(kept);
}

std::string params_map(const std::vector<std::pair<std::string_view, std::string>>& params) {
  std::string out;
  msgpack_out w(out);
  w.map_header(params.size());
  for (const auto& [k, v] : params) {
    require_utf8(v, "path parameter", k);
    w.str(k);
    scalar(v, w);
  }
  return out;
}

std::string query_map(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    auto key = percent_decode(part.substr(0, eq), true);
    auto value =
        eq == std::string_view::npos ? std::string() : percent_decode(part.substr(eq + 1), true);
    require_utf8(key, "a query parameter name", "");
    require_utf8(value, "query parameter", key);
    pairs.emplace_back(std::move(key), std::move(value));
  }
  last_wins(pairs);
  std::string out;
  msgpack_out w(out);
  w.map_header(pairs.size());
  for (const auto& [k, v] : pairs) {
    w.str(k);
    scalar(v, w);
  }
  return out;
}

// The entries of a packed map (as msgpack bytes), or false if it is not one.
bool map_entries(std::string_view packed,
                 std::vector<std::pair<std::string_view, std::string_view>>& entries) {
  const char* p = packed.data();
  const char* end = p + packed.size();
  tern::msgpack_head h;
  if (p >= end || !(p = tern::read_head(p, end, h)) || h.kind != tern::msgpack_head::map) {
    return false;
  }
  for (std::uint32_t i = 0; i < h.count; ++i) {
    const char* k = p;
    p = tern::skip_value(p, end);
    const char* v = p;
    if (p) p = tern::skip_value(p, end);
    if (!p) return false;  // not from our own writers
    entries.emplace_back(std::string_view(k, static_cast<std::size_t>(v - k)),
                         std::string_view(v, static_cast<std::size_t>(p - v)));
  }
  return true;
}

}  // namespace

std::string percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (plus_is_space && s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string build_call_data(const std::vector<data_source>& sources,
                            const std::vector<std::pair<std::string_view, std::string>>& params,
                            std::string_view query, std::string_view body) {
  // The common cases without any merging.
  if (sources.size() == 1 && sources[0] == data_source::none) return std::string(1, '\xc0');
  if (sources.size() == 1 && sources[0] == data_source::query && query.empty()) {
    return std::string(1, '\x80');
  }
  std::vector<std::string> parts;
  parts.reserve(sources.size());
  for (auto source : sources) {
    switch (source) {
      case data_source::none:
        break;
      case data_source::params:
        parts.push_back(params_map(params));
        break;
      case data_source::query:
        parts.push_back(query_map(query));
        break;
      case data_source::body:
        if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) break;
        parts.push_back(body_to_msgpack(body));
        break;
    }
  }
  if (parts.empty()) return std::string(1, '\xc0');
  if (parts.size() == 1) return std::move(parts[0]);

  // Objects merged in order: a later key replaces an earlier one in place.
  std::vector<std::pair<std::string_view, std::string_view>> merged;
  for (const auto& part : parts) {
    if (!map_entries(part, merged)) bad_request("the request body must be a JSON object");
  }
  last_wins(merged);
  std::string out;
  msgpack_out w(out);
  w.map_header(merged.size());
  for (const auto& [k, v] : merged) {
    out.append(k);
    out.append(v);
  }
  return out;
}

}  // namespace tern::gateway
