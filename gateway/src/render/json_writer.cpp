#include "render/json_writer.hpp"

#include <tern/packed.hpp>
#include <tern/utf8.hpp>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace tern::gateway {

namespace {

using tern::msgpack_head;

// Whether any of the 8 bytes in `w` is a control character, '"', '\\' or
// not ASCII (the classic SWAR zero-byte test, applied to w ^ '"' and
// w ^ '\\'; non-ASCII bytes go the slow way, where UTF-8 is checked).
constexpr bool needs_escape(std::uint64_t w) {
  constexpr std::uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
  auto zero_byte = [](std::uint64_t x) { return (x - ones) & ~x & highs; };
  auto below_space = (w - ones * 0x20) & ~w & highs;
  return (below_space | zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\')) | (w & highs)) !=
         0;
}

// The length of the valid UTF-8 sequence at the front of [p, p + n), or 0.
std::size_t utf8_sequence(const char* p, std::size_t n) {
  auto c = static_cast<unsigned char>(*p);
  std::size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
  if (len == 0 || n < len) return 0;
  return tern::valid_utf8_prefix(std::string_view(p, len)) == len ? len : 0;
}

// Writes into a std::string through a raw cursor: room is made in advance
// for the most an item can take, so single characters need no checks.
class json_out {
 public:
  /// The longest JSON text of a map key that is not a string.
  static constexpr std::size_t max_key_text = 64 * 1024;

  // `floor`: where the packed bytes being written from start (see string()).
  // `expect`: room to make at once (JSON is rarely much longer than msgpack).
  explicit json_out(std::string& s, const char* floor = nullptr, std::size_t expect = 256)
      : s_(s), start_(s.size()), floor_(floor) {
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
  static std::uint64_t load(const char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    return w;
  }
  void close(char* d) noexcept {
    *d++ = '"';
    p_ = d;
  }
  void put(std::string_view s) noexcept {
    std::memcpy(p_, s.data(), s.size());
    p_ += s.size();
  }
  template <class T>
  void integer(T v) noexcept {
    p_ = std::to_chars(p_, p_ + 24, v).ptr;
  }

  // Writes `s` quoted and escaped. Bytes from `floor` up to s are readable
  // too (the rest of the packed value): a short string is then tested and
  // copied as one 8-byte word that ends where it ends.
  void string(std::string_view s, const char* floor) {
    const std::size_t n = s.size();
    const char* src = s.data();
    room(n + 10);  // the string unescaped, quotes, slack for 8-byte stores
    char* d = p_;
    *d++ = '"';
    if constexpr (std::endian::native == std::endian::little) {
      if (n >= 8) {
        bool plain = true;
        std::size_t i = 0;
        for (; i + 8 <= n && plain; i += 8) plain = !needs_escape(load(src + i));
        if (plain && i < n) plain = !needs_escape(load(src + n - 8));
        if (plain) {
          for (std::size_t j = 0; j + 8 <= n; j += 8) std::memcpy(d + j, src + j, 8);
          std::memcpy(d + n - 8, src + n - 8, 8);
          return close(d + n);
        }
      } else if (n > 0 && static_cast<std::size_t>(src - floor) + n >= 8) {
        unsigned drop = static_cast<unsigned>(8 - n) * 8;  // the bytes before s
        std::uint64_t w = load(src + n - 8) >> drop;
        constexpr std::uint64_t spaces = 0x2020202020202020ull;
        if (!needs_escape(w | spaces << (64 - drop))) {
          std::memcpy(d, &w, 8);
          return close(d + n);
        }
      }
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::size_t i = 0;
    while (i < n) {
      std::size_t plain = i;
      while (plain + 8 <= n && !needs_escape(load(src + plain))) plain += 8;
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
  const char* value(const char* p, const char* end, int depth) {
    if (p >= end) return nullptr;
    msgpack_head h;
    p = tern::read_head(p, end, h);
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
      case msgpack_head::bin:
      case msgpack_head::ext:
        string(h.bytes(), floor_);
        break;
      case msgpack_head::array:
        if (depth >= tern::max_value_depth || h.count > std::size_t(end - p)) return nullptr;
        room(2);
        put('[');
        for (std::uint32_t i = 0; i < h.count; ++i) {
          if (i) {
            room(1);
            put(',');
          }
          if (!(p = value(p, end, depth + 1))) return nullptr;
        }
        room(1);
        put(']');
        break;
      case msgpack_head::map:
        if (depth >= tern::max_value_depth || h.count > std::size_t(end - p) / 2) {
          return nullptr;
        }
        room(2);
        put('{');
        for (std::uint32_t i = 0; i < h.count; ++i) {
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
        break;
    }
    return p;
  }

 private:
  // A string key as it is; any other key as its JSON text, quoted.
  const char* key(const char* p, const char* end, int depth) {
    msgpack_head h;
    if (p < end && tern::read_head(p, end, h) && h.kind == msgpack_head::str) {
      string(h.bytes(), floor_);
      return h.payload + h.count;
    }
    // Each level of such keys escapes the text of the one inside it again,
    // so nested ones grow exponentially: their text is capped.
    std::string text;
    const char* next;
    {
      json_out inner(text, floor_);
      next = inner.value(p, end, depth);
      if (next) inner.finish();
    }
    if (!next || text.size() > max_key_text) return nullptr;
    string(text, text.data());
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
  const char* floor_;
  char* p_;
  char* end_;
  bool finished_ = false;
};

}  // namespace

void append_json(std::string_view packed, std::string& out) {
  json_out w(out, packed.data(), 2 * packed.size() + 64);
  const char* end = packed.data() + packed.size();
  if (w.value(packed.data(), end, 0) != end || packed.empty()) {
    throw std::invalid_argument("not exactly one well-formed msgpack value");
  }
  w.finish();
}

void append_json_string(std::string_view s, std::string& out) {
  json_out w(out, nullptr, s.size() + 10);  // string() makes more room if it escapes
  w.string(s, s.data());
  w.finish();
}

void append_json_number(double v, std::string& out) {
  json_out w(out, nullptr, 32);
  w.number(v);
  w.finish();
}

}  // namespace tern::gateway
