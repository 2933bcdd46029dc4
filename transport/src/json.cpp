#include "tern/transport/json.hpp"

#include "tern/transport/msgpack_reader.hpp"
#include "tern/transport/utf8.hpp"

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tern::transport {

namespace {

// Bytes that JSON text cannot hold as they are, among 16 (SSE2) or 8 (SWAR)
// at p: bit i stands for byte i, and none is set when none needs escaping.
// SSE2 sets exactly the bits of such bytes; SWAR exactly the lowest, and
// maybe some above it (callers only test for none, or none among the low
// bits). Control characters, '"', '\\' and non-ASCII bytes count (those go
// the slow way, where UTF-8 is checked).
#if defined(__SSE2__)
constexpr std::size_t block = 16;
inline unsigned escapes(const char* p) noexcept {
  __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  // As signed bytes, those from 0x80 are negative: one compare finds them
  // and the control characters.
  __m128i bad = _mm_or_si128(
      _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
  return static_cast<unsigned>(_mm_movemask_epi8(bad));
}
inline void copy_block(char* d, const char* s) noexcept {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(d),
                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(s)));
}
#else
constexpr std::size_t block = 8;
// The classic SWAR zero-byte test, applied to w ^ '"' and w ^ '\\', gives
// the high bit of each byte to escape (exact for the lowest one found; the
// slow path looks at the bytes themselves).
inline unsigned escapes(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  auto zero_byte = [](std::uint64_t x) { return (x - ones) & ~x & highs; };
  auto below_space = (w - ones * 0x20) & ~w & highs;
  std::uint64_t bad =
      below_space | zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\')) | (w & highs);
  unsigned bits = 0;  // the high bit of byte i becomes bit i
  for (int i = 0; i < 8; ++i) bits |= static_cast<unsigned>((bad >> (8 * i + 7)) & 1) << i;
  return bits;
}
inline void copy_block(char* d, const char* s) noexcept {
  std::memcpy(d, s, 8);
}
#endif

// The length of the valid UTF-8 sequence at the front of [p, p + n), or 0.
std::size_t utf8_sequence(const char* p, std::size_t n) {
  auto c = static_cast<unsigned char>(*p);
  std::size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
  if (len == 0 || n < len) return 0;
  return valid_utf8_prefix(std::string_view(p, len)) == len ? len : 0;
}

// Writes into a std::string through a raw cursor: room is made in advance
// for the most an item can take, so single characters need no checks. The
// msgpack is read one head at a time; only containers recurse.
class json_out {
 public:
  /// The longest JSON text of a map key that is not a string.
  static constexpr std::size_t max_key_text = 64 * 1024;

  // `limit`: the end of the packed bytes being written from (see string()).
  // `expect`: room to make at once (JSON is rarely much longer than msgpack).
  explicit json_out(std::string& s, const char* limit, std::size_t expect = 256,
                    json_binary binary = json_binary::text)
      : s_(s), start_(s.size()), limit_(limit), binary_(binary) {
    s_.resize(start_ + expect);
    p_ = s_.data() + start_;
    end_ = s_.data() + s_.size();
  }
  json_out(const json_out&) = delete;
  json_out& operator=(const json_out&) = delete;
  ~json_out() { s_.resize(finished_ ? static_cast<std::size_t>(p_ - s_.data()) : start_); }
  void finish() noexcept { finished_ = true; }

  void room(std::size_t n) {
    if (static_cast<std::size_t>(end_ - p_) < n) grow(n);
  }
  void put(char c) noexcept { *p_++ = c; }
  void put(std::string_view s) noexcept {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  template <class T>
  void integer(T v) noexcept {
    p_ = std::to_chars(p_, p_ + 24, v).ptr;
  }

  // Writes `s` quoted and escaped. What needs no escape is tested and copied
  // a block at a time; bytes after s, up to `limit`, may be read for that (a
  // block that runs past s is copied whole, and what follows overwrites the
  // rest).
  [[gnu::always_inline]] void string(std::string_view s, const char* limit) {
    const std::size_t n = s.size();
    const char* src = s.data();
    // The usual case inline: a short string with a block readable from it.
    if (n <= block && static_cast<std::size_t>(limit - src) >= block) {
      room(block + 2);  // a block's overrun, quotes
      char* d = p_;
      *d++ = '"';
      // One block from s on: the bits of s's own bytes decide.
      if ((escapes(src) & ((1u << n) - 1)) == 0) {
        copy_block(d, src);
        return close(d + n);
      }
      return escaped(src, n, d);
    }
    other_string(src, n);
  }

  void base64(std::string_view bytes) {
    static constexpr char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    room((bytes.size() + 2) / 3 * 4 + 2);
    put('"');
    const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
    std::size_t n = bytes.size(), i = 0;
    for (; i + 3 <= n; i += 3) {
      std::uint32_t v = (std::uint32_t{b[i]} << 16) | (std::uint32_t{b[i + 1]} << 8) | b[i + 2];
      put(digits[v >> 18]);
      put(digits[(v >> 12) & 63]);
      put(digits[(v >> 6) & 63]);
      put(digits[v & 63]);
    }
    if (i < n) {
      std::uint32_t v = std::uint32_t{b[i]} << 16;
      if (i + 1 < n) v |= std::uint32_t{b[i + 1]} << 8;
      put(digits[v >> 18]);
      put(digits[(v >> 12) & 63]);
      put(i + 1 < n ? digits[(v >> 6) & 63] : '=');
      put('=');
    }
    put('"');
  }

  void number(double v) {
    room(32);
    if (!std::isfinite(v)) return put("null");
    // Up to five integer digits and three decimals: if k/1000 reads back as
    // v, those digits (trailing zeros dropped) are the shortest text for v,
    // and fixed notation is what to_chars picks for them.
    if (std::fabs(v) < 1e5 && !(v == 0 && std::signbit(v))) {
      double scaled = std::nearbyint(v * 1000);
      auto k = static_cast<std::int64_t>(scaled);
      if (static_cast<double>(k) / 1000 == v) {
        if (k < 0) {
          *p_++ = '-';
          k = -k;
        }
        integer(k / 1000);
        if (auto frac = static_cast<int>(k % 1000); frac != 0) {
          char d[3] = {char('0' + frac / 100), char('0' + frac / 10 % 10), char('0' + frac % 10)};
          int len = d[2] != '0' ? 3 : d[1] != '0' ? 2 : 1;
          *p_++ = '.';
          put(std::string_view(d, len));
        }
        return;
      }
    }
    p_ = std::to_chars(p_, p_ + 32, v).ptr;
  }

  // Writes the value at p as JSON; returns its end, or nullptr if the bytes
  // are malformed.
  [[gnu::always_inline]] const char* value(const char* p, const char* end, int depth) {
    if (p >= end) return nullptr;
    msgpack_head h;
    p = read_head(p, end, h);
    if (!p) return nullptr;
    switch (h.kind) {
      case msgpack_head::nil:
        room(4);
        put("null");
        break;
      case msgpack_head::boolean:
        room(5);
        put(h.b ? std::string_view("true") : std::string_view("false"));
        break;
      case msgpack_head::uint:
        room(24);
        integer(h.u);
        break;
      case msgpack_head::sint:
        room(24);
        integer(h.i);
        break;
      case msgpack_head::f32:
      case msgpack_head::f64:
        number(h.f);
        break;
      case msgpack_head::str:
        string(h.bytes(), limit_);
        break;
      case msgpack_head::bin:
      case msgpack_head::ext:
        if (binary_ == json_binary::base64) {
          base64(h.bytes());
        } else {
          string(h.bytes(), limit_);
        }
        break;
      case msgpack_head::array:
        return array(p, end, h.count, depth);
      case msgpack_head::map:
        return map(p, end, h.count, depth);
    }
    return p;
  }

 private:
  void close(char* d) noexcept {
    *d++ = '"';
    p_ = d;
  }

  [[gnu::noinline]] void other_string(const char* src, std::size_t n) {
    room(n + block + 2);  // the string unescaped, a block's overrun, quotes
    char* d = p_;
    *d++ = '"';
    if (n <= block) {
      // Too near the end of what may be read: the string alone, in a block
      // of its own.
      char own[block];
      std::memset(own, ' ', block);
      if (n >= 8) {  // two words that overlap, not a call to memcpy
        std::memcpy(own, src, 8);
        std::memcpy(own + n - 8, src + n - 8, 8);
      } else if (n >= 4) {
        std::memcpy(own, src, 4);
        std::memcpy(own + n - 4, src + n - 4, 4);
      } else {
        for (std::size_t i = 0; i < n; ++i) own[i] = src[i];
      }
      if (escapes(own) == 0) {
        copy_block(d, own);
        return close(d + n);
      }
    } else {
      std::size_t i = 0;
      for (; i + block <= n; i += block) {
        if (escapes(src + i) != 0) break;
        copy_block(d + i, src + i);
      }
      // The last block ends where s ends, overlapping what was copied.
      if (i + block > n && (i == n || escapes(src + n - block) == 0)) {
        copy_block(d + n - block, src + n - block);
        return close(d + n);
      }
    }
    escaped(src, n, d);
  }

  // The rest of string(), from its first byte: runs that need no escape
  // copied whole, escapes and UTF-8 checked between them. `d` is past the
  // opening quote.
  [[gnu::noinline]] void escaped(const char* src, std::size_t n, char* d) {
    static constexpr char hex[] = "0123456789abcdef";
    std::size_t i = 0;
    while (i < n) {
      std::size_t plain = i;
      while (plain + block <= n && escapes(src + plain) == 0) plain += block;
      while (plain < n) {
        auto c = static_cast<unsigned char>(src[plain]);
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) break;
        ++plain;
      }
      // Room for this run, one escape (6 bytes) and the closing quote.
      p_ = d;
      room(plain - i + 8);
      d = p_;
      std::memcpy(d, src + i, plain - i);
      d += plain - i;
      if (plain == n) break;
      auto c = static_cast<unsigned char>(src[plain]);
      if (c >= 0x80) {
        // A valid UTF-8 sequence is copied; any other byte becomes U+FFFD,
        // so the output is valid JSON whatever the service sent.
        if (std::size_t len = utf8_sequence(src + plain, n - plain); len > 0) {
          std::memcpy(d, src + plain, len);
          d += len;
          i = plain + len;
        } else {
          std::memcpy(d, "\xef\xbf\xbd", 3);
          d += 3;
          i = plain + 1;
        }
        continue;
      }
      *d++ = '\\';
      switch (c) {
        case '"':
          *d++ = '"';
          break;
        case '\\':
          *d++ = '\\';
          break;
        case '\n':
          *d++ = 'n';
          break;
        case '\r':
          *d++ = 'r';
          break;
        case '\t':
          *d++ = 't';
          break;
        default:
          std::memcpy(d, "u00", 3);
          d[3] = hex[c >> 4];
          d[4] = hex[c & 0xf];
          d += 5;
      }
      i = plain + 1;
    }
    close(d);
  }

  [[gnu::noinline]] const char* array(const char* p, const char* end, std::uint32_t count,
                                      int depth) {
    if (depth >= max_msgpack_depth || count > std::size_t(end - p)) return nullptr;
    room(2);
    put('[');
    for (std::uint32_t i = 0; i < count; ++i) {
      if (i) {
        room(1);
        put(',');
      }
      if (!(p = value(p, end, depth + 1))) return nullptr;
    }
    room(1);
    put(']');
    return p;
  }

  [[gnu::noinline]] const char* map(const char* p, const char* end, std::uint32_t count,
                                    int depth) {
    if (depth >= max_msgpack_depth || count > std::size_t(end - p) / 2) return nullptr;
    room(2);
    put('{');
    for (std::uint32_t i = 0; i < count; ++i) {
      if (i) {
        room(1);
        put(',');
      }
      if (!(p = key(p, end, depth + 1))) return nullptr;
      room(1);
      put(':');
      if (!(p = value(p, end, depth + 1))) return nullptr;
    }
    room(1);
    put('}');
    return p;
  }

  // A string key as it is; any other key as its JSON text, quoted.
  [[gnu::always_inline]] const char* key(const char* p, const char* end, int depth) {
    if (p < end) {
      auto c = static_cast<unsigned char>(*p);
      if (c >= 0xa0 && c <= 0xbf) {  // fixstr, the usual key
        std::size_t n = c & 0x1f;
        if (static_cast<std::size_t>(end - p - 1) < n) return nullptr;
        string(std::string_view(p + 1, n), limit_);
        return p + 1 + n;
      }
    }
    return other_key(p, end, depth);
  }

  [[gnu::noinline]] const char* other_key(const char* p, const char* end, int depth) {
    msgpack_head h;
    if (p < end && read_head(p, end, h) && h.kind == msgpack_head::str) {
      string(h.bytes(), limit_);
      return h.payload + h.count;
    }
    // Each level of such keys escapes the text of the one inside it again,
    // so nested ones grow exponentially: their text is capped.
    std::string text;
    const char* next;
    {
      json_out inner(text, limit_, 256, binary_);
      next = inner.value(p, end, depth);
      if (next) inner.finish();
    }
    if (!next || text.size() > max_key_text) return nullptr;
    string(text, text.data() + text.size());
    return next;
  }

  [[gnu::noinline]] void grow(std::size_t n) {
    auto used = static_cast<std::size_t>(p_ - s_.data());
    s_.resize(std::max(used + n, s_.size() * 2));
    p_ = s_.data() + used;
    end_ = s_.data() + s_.size();
  }

  std::string& s_;
  std::size_t start_;
  const char* limit_;  // the packed bytes being written from may be read up to here
  json_binary binary_;
  char* p_;
  char* end_;
  bool finished_ = false;
};

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
  body_writer(std::string& out, int max_depth) : out_(out), w_(out), max_depth_(max_depth) {}

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
    if (!std::isfinite(v)) return fail(json_error::out_of_range);
    return value([&] { w_.real(v); });
  }
  bool string(json::string_t& s) {
    return value([&] { w_.str(s); });
  }
  bool binary(json::binary_t&) { return fail(json_error::malformed); }  // not in JSON text
  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(json::string_t& k) {
    auto& f = frames_.back();
    if (duplicate(f, k)) return fail(json_error::duplicate_key, k.substr(0, 100));
    ++f.count;
    w_.str(k);
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return fail(json_error::malformed);
  }

  [[nodiscard]] json_error& error() noexcept { return error_; }

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

  bool fail(json_error::kind_t why, std::string key = {}) {
    if (!error_) error_ = {why, std::move(key)};
    return false;
  }
  template <class Write>
  bool value(Write write) {
    if (!frames_.empty() && !frames_.back().map) ++frames_.back().count;
    write();
    return true;
  }
  bool open(bool map) {
    if (frames_.size() >= static_cast<std::size_t>(max_depth_)) return fail(json_error::too_deep);
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
  int max_depth_;
  json_error error_;
};

}  // namespace

void append_json(std::string_view packed, std::string& out, json_binary binary) {
  const char* end = packed.data() + packed.size();
  json_out w(out, end, 2 * packed.size() + 64, binary);
  if (w.value(packed.data(), end, 0) != end || packed.empty()) {
    throw std::invalid_argument("not exactly one well-formed msgpack value");
  }
  w.finish();
}

void append_json_string(std::string_view s, std::string& out) {
  // Room for string()'s block-at-a-time copy; it makes more if it escapes.
  json_out w(out, s.data() + s.size(), s.size() + 32);
  w.string(s, s.data() + s.size());
  w.finish();
}

void append_json_number(double v, std::string& out) {
  json_out w(out, nullptr, 32);
  w.number(v);
  w.finish();
}

json_error json_to_msgpack(std::string_view text, std::string& out, int max_depth) {
  std::size_t start = out.size();
  body_writer w(out, max_depth);
  if (!nlohmann::json::sax_parse(text, &w)) {
    out.resize(start);
    if (!w.error()) return {json_error::malformed, {}};
    return std::move(w.error());
  }
  return {};
}

}  // namespace tern::transport
