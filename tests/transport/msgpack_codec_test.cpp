#include "tern/transport/msgpack_codec.hpp"

#include "tern/transport/client_connection.hpp"

#include <doctest/doctest.h>

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

std::string framed(const std::string& body) {
  std::string f(4, '\0');
  write_frame_header(f.data(), static_cast<std::uint32_t>(body.size()));
  return f + body;
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
  c.encode_request(buf, 42, pattern, meta, [](packer& pk) { pk.pack(std::vector<int>{1, 2}); });
  msgpack::zone z;
  auto p = decode_one(c, buf, z);
  CHECK(p.kind == packet_kind::request);
  CHECK(p.id == 42);
  CHECK(p.pattern.as<std::map<std::string, std::string>>().at("cmd") == "get_user");
  CHECK(p.data.as<std::vector<int>>() == std::vector<int>{1, 2});
  REQUIRE(p.has_meta);
  CHECK(p.meta.as<std::map<std::string, std::string>>().at("request_id") == "r-1");
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
    CHECK(p.response.as<int>() == 7);
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
  c.encode_request(buf, 1, packed(std::string("ping")), {}, [](packer& pk) { pk.pack_nil(); });
  std::string bytes(buf.data(), buf.size());
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    CHECK(c.next_frame(bytes.data(), cut).status == frame_status::need_more);
  }
  CHECK(framed(bytes.substr(4)) == bytes);
}
