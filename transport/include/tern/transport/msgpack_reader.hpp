// Reading msgpack bytes one value head at a time, without building objects:
// the envelope decoder, the reply relay and the gateway's JSON writer walk
// packed values with it.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <type_traits>

namespace tern::transport {

/// The head of one msgpack value: what it is, its scalar, or for a
/// container its element count, for a str/bin/ext its payload.
struct msgpack_head {
  enum kind_t : std::uint8_t { nil, boolean, uint, sint, f32, f64, str, bin, ext, array, map };
  kind_t kind = nil;
  std::int8_t ext_type = 0;  // ext
  std::uint32_t count = 0;   // array: elements; map: pairs; str/bin/ext: payload bytes
  union {
    bool b;
    std::uint64_t u;  // uint
    std::int64_t i;   // sint (always negative: non-negative integers read as uint)
    double f;         // f32 (widened) and f64
    const char* payload;
  };
  msgpack_head() : u(0) {}
  [[nodiscard]] std::string_view bytes() const noexcept { return {payload, count}; }
};

namespace detail {
template <class T>
T load_be(const char* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  if constexpr (std::endian::native == std::endian::little && sizeof(T) > 1) {
    if constexpr (sizeof(T) == 2)
      v = static_cast<T>(__builtin_bswap16(static_cast<std::uint16_t>(v)));
    if constexpr (sizeof(T) == 4)
      v = static_cast<T>(__builtin_bswap32(static_cast<std::uint32_t>(v)));
    if constexpr (sizeof(T) == 8)
      v = static_cast<T>(__builtin_bswap64(static_cast<std::uint64_t>(v)));
  }
  return v;
}
}  // namespace detail

/// Reads the head of the value at `p` (which must be < end). Returns the
/// position after the head and, for str/bin/ext, after the payload too; or
/// nullptr if the bytes end early or hold the never-used byte 0xc1.
/// Element counts are not checked against the bytes left: callers walking
/// containers must (every element takes at least one byte).
[[gnu::always_inline]] inline const char* read_head(const char* p, const char* end,
                                                    msgpack_head& h) noexcept {
  using detail::load_be;
  auto c = static_cast<std::uint8_t>(*p++);
  auto need = [&](std::size_t n) { return static_cast<std::size_t>(end - p) >= n; };
  auto payload = [&](std::uint32_t n) -> const char* {
    if (!need(n)) return nullptr;
    h.count = n;
    h.payload = p;
    return p + n;
  };
  if (c <= 0x7f) {
    h.kind = msgpack_head::uint;
    h.u = c;
    return p;
  }
  if (c >= 0xe0) {
    h.kind = msgpack_head::sint;
    h.i = static_cast<std::int8_t>(c);
    return p;
  }
  if (c <= 0x8f) {
    h.kind = msgpack_head::map;
    h.count = c & 0x0f;
    return p;
  }
  if (c <= 0x9f) {
    h.kind = msgpack_head::array;
    h.count = c & 0x0f;
    return p;
  }
  if (c <= 0xbf) {
    h.kind = msgpack_head::str;
    return payload(c & 0x1f);
  }
  // Reads a big-endian length of 1, 2 or 4 bytes into n.
  auto length = [&](int width, std::uint32_t& n) {
    if (!need(static_cast<std::size_t>(width))) return false;
    n = width == 1   ? static_cast<std::uint8_t>(*p)
        : width == 2 ? load_be<std::uint16_t>(p)
                     : load_be<std::uint32_t>(p);
    p += width;
    return true;
  };
  auto sized = [&](msgpack_head::kind_t k, int width) -> const char* {
    std::uint32_t n;
    if (!length(width, n)) return nullptr;
    h.kind = k;
    return payload(n);
  };
  auto ext = [&](int width, std::uint32_t fixed) -> const char* {
    std::uint32_t n = fixed;
    if (width > 0 && !length(width, n)) return nullptr;
    if (!need(1)) return nullptr;
    h.kind = msgpack_head::ext;
    h.ext_type = static_cast<std::int8_t>(*p++);
    return payload(n);
  };
  auto number = [&]<class T>() -> const char* {
    if (!need(sizeof(T))) return nullptr;
    T v = load_be<T>(p);
    if constexpr (std::is_unsigned_v<T>) {
      h.kind = msgpack_head::uint;
      h.u = v;
    } else if (v >= 0) {
      h.kind = msgpack_head::uint;
      h.u = static_cast<std::uint64_t>(v);
    } else {
      h.kind = msgpack_head::sint;
      h.i = v;
    }
    return p + sizeof(T);
  };
  auto count = [&](msgpack_head::kind_t k, int width) -> const char* {
    if (!length(width, h.count)) return nullptr;
    h.kind = k;
    return p;
  };
  switch (c) {
    case 0xc0:
      h.kind = msgpack_head::nil;
      return p;
    case 0xc2:
    case 0xc3:
      h.kind = msgpack_head::boolean;
      h.b = c == 0xc3;
      return p;
    case 0xc4:
      return sized(msgpack_head::bin, 1);
    case 0xc5:
      return sized(msgpack_head::bin, 2);
    case 0xc6:
      return sized(msgpack_head::bin, 4);
    case 0xc7:
      return ext(1, 0);
    case 0xc8:
      return ext(2, 0);
    case 0xc9:
      return ext(4, 0);
    case 0xca: {
      if (!need(4)) return nullptr;
      float f = std::bit_cast<float>(load_be<std::uint32_t>(p));
      h.kind = msgpack_head::f32;
      h.f = f;
      return p + 4;
    }
    case 0xcb: {
      if (!need(8)) return nullptr;
      h.kind = msgpack_head::f64;
      h.f = std::bit_cast<double>(load_be<std::uint64_t>(p));
      return p + 8;
    }
    case 0xcc:
      return number.operator()<std::uint8_t>();
    case 0xcd:
      return number.operator()<std::uint16_t>();
    case 0xce:
      return number.operator()<std::uint32_t>();
    case 0xcf:
      return number.operator()<std::uint64_t>();
    case 0xd0:
      return number.operator()<std::int8_t>();
    case 0xd1:
      return number.operator()<std::int16_t>();
    case 0xd2:
      return number.operator()<std::int32_t>();
    case 0xd3:
      return number.operator()<std::int64_t>();
    case 0xd4:
      return ext(0, 1);
    case 0xd5:
      return ext(0, 2);
    case 0xd6:
      return ext(0, 4);
    case 0xd7:
      return ext(0, 8);
    case 0xd8:
      return ext(0, 16);
    case 0xd9:
      return sized(msgpack_head::str, 1);
    case 0xda:
      return sized(msgpack_head::str, 2);
    case 0xdb:
      return sized(msgpack_head::str, 4);
    case 0xdc:
      return count(msgpack_head::array, 2);
    case 0xdd:
      return count(msgpack_head::array, 4);
    case 0xde:
      return count(msgpack_head::map, 2);
    case 0xdf:
      return count(msgpack_head::map, 4);
    default:
      return nullptr;  // 0xc1
  }
}

/// The deepest nesting of arrays and maps a decoder accepts in one value
/// (pattern, data, meta, response, err): `[[1]]` is 2 levels, a scalar 0.
inline constexpr int max_msgpack_depth = 64;

/// Returns the end of the one whole value at `p`, or nullptr if it is
/// truncated, malformed, or nested deeper than max_msgpack_depth - depth.
const char* skip_value(const char* p, const char* end, int depth = 0) noexcept;

/// Returns the end of the one whole value at `p` however deep it nests
/// (one counter of values still to skip, no stack), or nullptr if it is
/// truncated or malformed. For reading past a value that was refused.
const char* skip_any(const char* p, const char* end) noexcept;

}  // namespace tern::transport
