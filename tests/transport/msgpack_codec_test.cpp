#include "tern/transport/msgpack_codec.hpp"

#include "tern/transport/client_connection.hpp"
#include "tern/transport/msgpack_reader.hpp"
#include "tern/transport/wire_error.hpp"

#include <doctest/doctest.h>

#include <random>
#include <string>

using namespace tern::transport;

namespace {

std::string packed(const auto& v) {
  msgpack::sbuffer b;
  msgpack::pack(b, v);
  return {b.data(), b.size()};
}

// Decodes the one frame in `buf`, checking the framing on the way.
packet decode_one(const msgpack_codec& c, const byte_buffer& buf, msgpack::zone& z) {
  auto r = c.next_frame(buf.data(), buf.size());
  REQUIRE(r.status == frame_status::complete);
  REQUIRE(r.total() == buf.size());
  packet p;
  c.decode(buf.data() + r.header, r.length, z, false, p);
  return p;
}

void decode_body(const std::string& body) {
  msgpack_codec c;
  msgpack::zone z;
  packet p;
  c.decode(body.data(), body.size(), z, false, p);
}

}  // namespace

TEST_CASE("a request round-trips with id, pattern, data and meta") {
  msgpack_codec c;
  byte_buffer buf;
  auto pattern = packed(std::map<std::string, std::string>{{"cmd", "get_user"}});
  auto meta = packed(std::map<std::string, std::string>{{"request_id", "r-1"}});
  c.encode_request(buf, 42, pattern, meta, {}, [](packer& pk) { pk.pack(std::vector<int>{1, 2}); });
  msgpack::zone z;
  auto p = decode_one(c, buf, z);
  CHECK(p.kind == packet_kind::request);
  CHECK(p.id == 42);
  CHECK(p.pattern.as<std::map<std::string, std::string>>().at("cmd") == "get_user");
  CHECK(p.data.as<std::vector<int>>() == std::vector<int>{1, 2});
  REQUIRE(p.has_meta);
  CHECK(p.meta.as<std::map<std::string, std::string>>().at("request_id") == "r-1");
}

TEST_CASE("a request's deadline travels as meta's first key, in front of the caller's meta") {
  msgpack_codec c;
  using std::chrono::milliseconds;
  auto first_key = [](const packet& p) {
    return std::string(p.meta.via.map.ptr[0].key.via.str.ptr,
                       p.meta.via.map.ptr[0].key.via.str.size);
  };
  SUBCASE("with no meta of its own") {
    byte_buffer buf;
    c.encode_request(buf, 1, packed(std::string("ping")), {}, milliseconds(250),
                     [](packer& pk) { pk.pack_nil(); });
    msgpack::zone z;
    auto p = decode_one(c, buf, z);
    REQUIRE(p.has_meta);
    CHECK(p.meta.via.map.size == 1);
    REQUIRE(p.deadline);
    CHECK(*p.deadline == milliseconds(250));
  }
  SUBCASE("with a fixmap and a map16 meta, whose keys all stay") {
    for (int n : {1, 20}) {
      std::map<std::string, int> m;
      for (int i = 0; i < n; ++i) m["k" + std::to_string(i)] = i;
      byte_buffer buf;
      c.encode_request(buf, 2, packed(std::string("ping")), packed(m), milliseconds(7),
                       [](packer& pk) { pk.pack_nil(); });
      msgpack::zone z;
      auto p = decode_one(c, buf, z);
      REQUIRE(p.has_meta);
      CHECK(first_key(p) == "deadline_ms");
      CHECK(*p.deadline == milliseconds(7));
      auto back = p.meta.as<std::map<std::string, msgpack::object>>();
      CHECK(back.size() == m.size() + 1);
      CHECK(back.at("k0").as<int>() == 0);
    }
  }
  SUBCASE("none: no deadline_ms, and a deadline_ms that is not an unsigned integer is none") {
    byte_buffer buf;
    c.encode_request(buf, 3, packed(std::string("ping")), {}, {},
                     [](packer& pk) { pk.pack_nil(); });
    msgpack::zone z;
    auto p = decode_one(c, buf, z);
    CHECK_FALSE(p.has_meta);
    CHECK_FALSE(p.deadline);
    byte_buffer buf2;
    c.encode_request(buf2, 4, packed(std::string("ping")),
                     packed(std::map<std::string, int>{{"deadline_ms", -5}}), {},
                     [](packer& pk) { pk.pack_nil(); });
    msgpack::zone z2;
    CHECK_FALSE(decode_one(c, buf2, z2).deadline);
  }
  SUBCASE("a meta map cut short is a packet error, never read past what was built") {
    // {id: 2, pattern: "x", data: nil, meta: {"request": <cut>}}: the map
    // announces 3 entries (the fuzzers found it read half-built ones).
    std::string body =
        "\x84\xa2"
        "id\x02\xa7"
        "pattern\xa1"
        "x\xa4"
        "data\xc0\xa4"
        "meta\x83\xa7"
        "request";
    msgpack::zone z;
    packet p;
    CHECK_THROWS_AS(c.decode(body.data(), body.size(), z, false, p), packet_error);
  }
  SUBCASE("meta that is not a map is not sent") {
    byte_buffer buf;
    CHECK_THROWS_AS(c.encode_request(buf, 5, packed(std::string("ping")), packed(3),
                                     milliseconds(5), [](packer& pk) { pk.pack_nil(); }),
                    protocol_violation);
    CHECK(buf.size() == 0);
  }
}

TEST_CASE("an event has no id") {
  msgpack_codec c;
  byte_buffer buf;
  c.encode_event(buf, packed(std::string("user_created")), {},
                 [](packer& pk) { pk.pack(std::string("bob")); });
  msgpack::zone z;
  auto p = decode_one(c, buf, z);
  CHECK(p.kind == packet_kind::event);
  CHECK(p.pattern.as<std::string>() == "user_created");
  CHECK(p.data.as<std::string>() == "bob");
  CHECK_FALSE(p.has_meta);
}

TEST_CASE("goaway: {goaway: true}, told from a reply, and goaway false is no packet") {
  msgpack_codec c;
  byte_buffer buf;
  CHECK(c.encode_goaway(buf));
  msgpack::zone z;
  auto p = decode_one(c, buf, z);
  CHECK(p.kind == packet_kind::goaway);

  msgpack::sbuffer body;
  msgpack::packer<msgpack::sbuffer> pk(body);
  pk.pack_map(1);
  pk.pack(std::string("goaway"));
  pk.pack(false);
  packet q;
  CHECK_THROWS_AS(c.decode(body.data(), body.size(), z, true, q), protocol_violation);
}

TEST_CASE("replies: value, stream value, completion, error, no handler") {
  msgpack_codec c;
  msgpack::zone z;
  SUBCASE("final value") {
    byte_buffer buf;
    value_writer w = [](packer& pk) { pk.pack(7); };
    c.encode_response(buf, 9, &w, true);
    auto p = decode_one(c, buf, z);
    CHECK(p.kind == packet_kind::reply);
    CHECK(p.id == 9);
    CHECK(p.has_response);
    CHECK(p.response == packed(7));
    CHECK(decode_value(p.response, z, true).as<int>() == 7);
    CHECK(p.disposed);
    CHECK(p.final());
  }
  SUBCASE("a stream value is not final") {
    byte_buffer buf;
    value_writer w = [](packer& pk) { pk.pack(1); };
    c.encode_response(buf, 9, &w, false);
    auto p = decode_one(c, buf, z);
    CHECK(p.has_response);
    CHECK_FALSE(p.final());
  }
  SUBCASE("completion only") {
    byte_buffer buf;
    c.encode_response(buf, 9, nullptr, true);
    auto p = decode_one(c, buf, z);
    CHECK_FALSE(p.has_response);
    CHECK(p.final());
  }
  SUBCASE("error") {
    byte_buffer buf;
    c.encode_error(buf, 9, [](packer& pk) {
      pk.pack_map(2);
      pk.pack("status");
      pk.pack(404);
      pk.pack("message");
      pk.pack("user 9 not found");
    });
    auto p = decode_one(c, buf, z);
    CHECK(p.has_err);
    CHECK(p.final());
    auto e = to_rpc_error(p);
    CHECK(e.kind() == tern::errc::remote);
    CHECK(e.status() == 404);
    CHECK(e.message() == "user 9 not found");
  }
  SUBCASE("no handler") {
    byte_buffer buf;
    c.encode_no_handler(buf, 9);
    auto p = decode_one(c, buf, z);
    CHECK(p.status_error);
    CHECK(to_rpc_error(p).kind() == tern::errc::no_handler);
  }
  SUBCASE("deadline exceeded: status 504 for any peer, its own kind for tern's") {
    byte_buffer buf;
    tern::rpc_error sent(tern::errc::deadline_exceeded, "too late");
    c.encode_error(buf, 9, [&](packer& pk) { write_error(pk, sent); });
    auto p = decode_one(c, buf, z);
    auto err = p.err.as<std::map<std::string, msgpack::object>>();
    CHECK(err.at("status").as<int>() == 504);
    auto e = to_rpc_error(p);
    CHECK(e.kind() == tern::errc::deadline_exceeded);
    CHECK(e.status() == 504);
    CHECK(e.message() == "too late");
  }
}

TEST_CASE("an encoder refuses a frame over the limit and leaves the buffer as it was") {
  msgpack_codec c(64);
  byte_buffer buf;
  c.encode_event(buf, packed(std::string("e")), {}, [](packer& pk) { pk.pack(1); });
  auto before = buf.size();
  CHECK_THROWS_AS(c.encode_event(buf, packed(std::string("e")), {},
                                 [](packer& pk) { pk.pack(std::string(100, 'x')); }),
                  protocol_violation);
  CHECK(buf.size() == before);
}

TEST_CASE("malformed msgpack is a protocol violation") {
  CHECK_THROWS_AS(decode_body(""), protocol_violation);
  CHECK_THROWS_AS(decode_body("\xc1"), protocol_violation);                 // never-used byte
  CHECK_THROWS_AS(decode_body("\x82\xa2id"), protocol_violation);           // truncated map
  CHECK_THROWS_AS(decode_body(packed(1) + packed(2)), protocol_violation);  // trailing bytes
}

TEST_CASE("a tiny frame announcing a huge array is refused without allocating for it") {
  // 0xdd = array 32: 4 billion elements announced in a 5-byte body.
  CHECK_THROWS_AS(decode_body(std::string("\xdd\xff\xff\xff\xff", 5)), protocol_violation);
  CHECK_THROWS_AS(decode_body(std::string("\xdf\xff\xff\xff\xff", 5)), protocol_violation);
}

// A msgpack map from keys and already-packed values.
std::string map_of(std::initializer_list<std::pair<std::string, std::string>> fields) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(static_cast<std::uint32_t>(fields.size()));
  for (const auto& [k, v] : fields) {
    pk.pack(k);
    b.write(v.data(), v.size());
  }
  return {b.data(), b.size()};
}

TEST_CASE("packets of the wrong shape are protocol violations") {
  auto p = packed(std::string("p"));
  CHECK_THROWS_AS(decode_body(packed(std::vector<int>{1, 2})), protocol_violation);  // not a map
  CHECK_THROWS_AS(decode_body(map_of({})), protocol_violation);                      // empty
  CHECK_THROWS_AS(decode_body(map_of({{"data", packed(1)}})),
                  protocol_violation);  // no pattern, no id
  CHECK_THROWS_AS(decode_body(map_of({{"id", packed(1)}})),
                  protocol_violation);  // reply of nothing
  CHECK_THROWS_AS(decode_body(map_of({{"id", p}, {"pattern", p}})), protocol_violation);
  CHECK_THROWS_AS(decode_body(map_of({{"id", packed(-1)}, {"pattern", p}})), protocol_violation);
  CHECK_THROWS_AS(decode_body(map_of({{"id", packed(1)}, {"isDisposed", packed(1)}})),
                  protocol_violation);
  CHECK_THROWS_AS(decode_body(map_of({{"pattern", p}, {"meta", packed(3)}})), protocol_violation);
  CHECK_NOTHROW(
      decode_body(map_of({{"pattern", p}, {"extra", packed(3)}})));  // unknown keys ignored
}

TEST_CASE("strings may point into the frame when referencing is allowed") {
  msgpack_codec c;
  byte_buffer buf;
  c.encode_event(buf, packed(std::string("pattern-text")), {}, [](packer& pk) { pk.pack(1); });
  msgpack::zone z;
  packet p;
  c.decode(buf.data() + 4, buf.size() - 4, z, true, p);
  const char* s = p.pattern.via.str.ptr;
  CHECK(s >= buf.data());
  CHECK(s < buf.data() + buf.size());
}

TEST_CASE("a frame split across reads decodes once whole") {
  msgpack_codec c;
  byte_buffer buf;
  c.encode_request(buf, 1, packed(std::string("ping")), {}, {}, [](packer& pk) { pk.pack_nil(); });
  c.encode_request(buf, 2, packed(std::string("pong")), {}, {}, [](packer& pk) { pk.pack(7); });
  const std::string bytes(buf.data(), buf.size());
  // As a reader gets them: the bytes arrive in two reads, cut anywhere;
  // each whole frame at the front is decoded once, then dropped.
  for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::string received;
    std::vector<std::uint64_t> decoded;
    for (auto part : {bytes.substr(0, cut), bytes.substr(cut)}) {
      received += part;
      for (;;) {
        auto r = c.next_frame(received.data(), received.size());
        if (r.status != frame_status::complete) break;
        msgpack::zone z;
        packet p;
        c.decode(received.data() + r.header, r.length, z, false, p);
        CHECK(p.kind == packet_kind::request);
        decoded.push_back(p.id);
        received.erase(0, r.total());
      }
    }
    CHECK_MESSAGE((decoded == std::vector<std::uint64_t>{1, 2}), "cut at ", cut);
    CHECK(received.empty());
  }
}

namespace {

// A random msgpack value of every kind and width the format has.
void random_value(std::mt19937& rng, msgpack::packer<msgpack::sbuffer>& pk, int depth) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  auto text = [&](std::size_t n) {
    std::string t(n, ' ');
    for (auto& c : t) c = static_cast<char>(rng());
    return t;
  };
  switch (pick(depth < 4 ? 14 : 11)) {
    case 0:
      pk.pack_nil();
      break;
    case 1:
      pk.pack(pick(2) == 1);
      break;
    case 2:
      pk.pack_fix_uint8(static_cast<std::uint8_t>(rng()));
      break;
    case 3:
      pk.pack_uint64((std::uint64_t(rng()) << 32 | rng()) >> pick(64));
      break;
    case 4:
      pk.pack_int64(-static_cast<std::int64_t>(rng() >> pick(32)) - 1);
      break;
    case 5:
      pk.pack_fix_int16(static_cast<std::int16_t>(rng()));
      break;
    case 6:
      pk.pack_float(static_cast<float>(rng()) / 7.0f);
      break;
    case 7:
      pk.pack_double(static_cast<double>(rng()) / 13.0 - 1e9);
      break;
    case 8: {
      auto t = text(pick(3) == 0 ? 40 + pick(300) : pick(20));
      pk.pack_str(static_cast<std::uint32_t>(t.size()));
      pk.pack_str_body(t.data(), static_cast<std::uint32_t>(t.size()));
      break;
    }
    case 9: {
      auto t = text(pick(40));
      pk.pack_bin(static_cast<std::uint32_t>(t.size()));
      pk.pack_bin_body(t.data(), static_cast<std::uint32_t>(t.size()));
      break;
    }
    case 10: {
      static constexpr std::uint32_t sizes[] = {1, 2, 4, 8, 16, 0, 3, 300};
      auto t = text(sizes[pick(8)]);
      pk.pack_ext(static_cast<std::uint32_t>(t.size()), static_cast<std::int8_t>(rng()));
      pk.pack_ext_body(t.data(), static_cast<std::uint32_t>(t.size()));
      break;
    }
    case 11:
    case 12: {
      auto n = static_cast<std::uint32_t>(pick(3) == 0 ? 16 + pick(10) : pick(5));
      pk.pack_array(n);
      for (std::uint32_t i = 0; i < n; ++i) random_value(rng, pk, depth + 1);
      break;
    }
    default: {
      auto n = static_cast<std::uint32_t>(pick(3) == 0 ? 16 + pick(10) : pick(5));
      pk.pack_map(n);
      for (std::uint32_t i = 0; i < 2 * n; ++i) random_value(rng, pk, depth + 1);
    }
  }
}

// Deep equality (msgpack-c's operator== passes null pointers to memcmp for
// empty strings, which UBSan rejects).
bool same(const msgpack::object& a, const msgpack::object& b) {
  if (a.type != b.type) return false;
  auto bytes = [](const char* p, std::uint32_t n) { return std::string_view(n ? p : "", n); };
  switch (a.type) {
    case msgpack::type::NIL:
      return true;
    case msgpack::type::BOOLEAN:
      return a.via.boolean == b.via.boolean;
    case msgpack::type::POSITIVE_INTEGER:
      return a.via.u64 == b.via.u64;
    case msgpack::type::NEGATIVE_INTEGER:
      return a.via.i64 == b.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return a.via.f64 == b.via.f64 || (a.via.f64 != a.via.f64 && b.via.f64 != b.via.f64);
    case msgpack::type::STR:
      return bytes(a.via.str.ptr, a.via.str.size) == bytes(b.via.str.ptr, b.via.str.size);
    case msgpack::type::BIN:
      return bytes(a.via.bin.ptr, a.via.bin.size) == bytes(b.via.bin.ptr, b.via.bin.size);
    case msgpack::type::EXT:
      return bytes(a.via.ext.ptr, a.via.ext.size + 1) == bytes(b.via.ext.ptr, b.via.ext.size + 1);
    case msgpack::type::ARRAY:
      if (a.via.array.size != b.via.array.size) return false;
      for (std::uint32_t i = 0; i < a.via.array.size; ++i) {
        if (!same(a.via.array.ptr[i], b.via.array.ptr[i])) return false;
      }
      return true;
    case msgpack::type::MAP:
      if (a.via.map.size != b.via.map.size) return false;
      for (std::uint32_t i = 0; i < a.via.map.size; ++i) {
        if (!same(a.via.map.ptr[i].key, b.via.map.ptr[i].key) ||
            !same(a.via.map.ptr[i].val, b.via.map.ptr[i].val)) {
          return false;
        }
      }
      return true;
  }
  return false;
}

}  // namespace

TEST_CASE("values decode to the objects msgpack-c makes, and any cut is refused") {
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    random_value(rng, pk, 0);
    std::string bytes(b.data(), b.size());
    INFO("round ", round, ", ", bytes.size(), " bytes");
    auto theirs = msgpack::unpack(bytes.data(), bytes.size());
    msgpack::zone z;
    CHECK(same(decode_value(bytes, z, true), theirs.get()));
    CHECK(same(decode_value(bytes, z, false), theirs.get()));
    CHECK(same(decode_owned(bytes).get(), theirs.get()));
    CHECK(skip_value(bytes.data(), bytes.data() + bytes.size()) == bytes.data() + bytes.size());
    for (std::size_t cut : {std::size_t(0), bytes.size() / 2, bytes.size() - 1}) {
      if (cut >= bytes.size()) continue;
      std::string_view part(bytes.data(), cut);
      CHECK_THROWS_AS(decode_value(part, z, true), protocol_violation);
      CHECK(skip_value(part.data(), part.data() + part.size()) == nullptr);
    }
    CHECK_THROWS_AS(decode_value(bytes + '\x01', z, true), protocol_violation);  // trailing byte
  }
}

TEST_CASE("damaged bytes are refused or decoded as msgpack-c decodes them, never read past") {
  std::mt19937 rng(11);
  int refused = 0;
  for (int round = 0; round < 2000; ++round) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    random_value(rng, pk, 2);
    // An exact-size heap copy, so ASan sees any read past the end.
    std::vector<char> bytes(b.data(), b.data() + b.size());
    for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    std::string_view view(bytes.data(), bytes.size());
    msgpack::zone z;
    msgpack::object ours;
    bool ok = true;
    try {
      ours = decode_value(view, z, true);
    } catch (const protocol_violation&) {
      ok = false;
      ++refused;
    }
    CHECK(ok ==
          (skip_value(bytes.data(), bytes.data() + bytes.size()) == bytes.data() + bytes.size()));
    if (!ok) continue;
    std::size_t off = 0;
    auto theirs = msgpack::unpack(bytes.data(), bytes.size(), off);
    CHECK(off == bytes.size());
    CHECK(same(ours, theirs.get()));
  }
  CHECK(refused > 100);  // the damage did reach the decoder
}

TEST_CASE("nesting deeper than 64 levels is refused") {
  auto nested = [](int levels) { return std::string(levels, '\x91') + '\xc0'; };  // [[[...nil]]]
  msgpack::zone z;
  CHECK_NOTHROW(decode_value(nested(64), z, true));
  CHECK_THROWS_AS(decode_value(nested(65), z, true), protocol_violation);
  auto ok = nested(64), deep = nested(65);
  CHECK(skip_value(ok.data(), ok.data() + ok.size()) == ok.data() + ok.size());
  CHECK(skip_value(deep.data(), deep.data() + deep.size()) == nullptr);
  // Empty containers count as a level too.
  auto empty_inside = std::string(64, '\x91') + '\x90';
  CHECK_THROWS_AS(decode_value(empty_inside, z, true), protocol_violation);
  CHECK(skip_value(empty_inside.data(), empty_inside.data() + empty_inside.size()) == nullptr);
  // In a packet each value may nest as deep: the envelope does not count.
  auto p = packed(std::string("p"));
  CHECK_NOTHROW(decode_body(map_of({{"pattern", p}, {"data", nested(64)}})));
  CHECK_THROWS_AS(decode_body(map_of({{"pattern", p}, {"data", nested(65)}})), protocol_violation);
  CHECK_NOTHROW(decode_body(map_of({{"id", packed(1)}, {"response", nested(64)}})));
  CHECK_THROWS_AS(decode_body(map_of({{"id", packed(1)}, {"response", nested(65)}})),
                  protocol_violation);
}

TEST_CASE("a packet that cannot be taken still names its id when it can be read") {
  auto p = packed(std::string("p"));
  auto deep = std::string(100000, '\x91') + '\xc0';
  auto facts = [](const std::string& body) {
    try {
      decode_body(body);
    } catch (const packet_error& e) {
      return std::tuple(e.id(), e.well_formed(), e.has_pattern());
    }
    FAIL("decoded");
    return std::tuple(std::optional<std::uint64_t>(), false, false);
  };
  using facts_t = std::tuple<std::optional<std::uint64_t>, bool, bool>;
  // Too deep, before or after the id: skipped without a stack.
  CHECK(facts(map_of({{"id", packed(7)}, {"pattern", p}, {"data", deep}})) ==
        facts_t{7, true, true});
  CHECK(facts(map_of({{"pattern", p}, {"data", deep}, {"id", packed(9)}})) ==
        facts_t{9, true, true});
  // An event: no id, but a whole map with a pattern.
  CHECK(facts(map_of({{"pattern", p}, {"data", deep}})) == facts_t{std::nullopt, true, true});
  // A field of the wrong type.
  CHECK(facts(map_of({{"id", packed(3)}, {"pattern", p}, {"meta", packed(5)}})) ==
        facts_t{3, true, true});
  // Malformed bytes inside: the id read before them still counts.
  CHECK(facts(map_of({{"id", packed(4)}, {"pattern", p}, {"data", "\xc1"}})) ==
        facts_t{4, false, true});
  CHECK(facts(map_of({{"data", "\xc1"}, {"id", packed(4)}})) ==
        facts_t{std::nullopt, false, false});
  // Not a map at all, or an id that is not an unsigned integer.
  CHECK(facts(packed(1)) == facts_t{std::nullopt, false, false});
  CHECK(facts(map_of({{"id", packed(std::string("x"))}, {"pattern", p}})) ==
        facts_t{std::nullopt, true, true});
}
