// NestJS's JSON wire (tern/transport/nestjs_codec.hpp), checked against the
// bytes @nestjs/microservices 12.1.1 writes (frames captured from a real ClientTCP and server).
#include "tern/transport/nestjs_codec.hpp"

#include "tern/transport/wire_error.hpp"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <vector>

using namespace tern::transport;

namespace {

std::string packed(const auto& v) {
  msgpack::sbuffer b;
  msgpack::pack(b, v);
  return {b.data(), b.size()};
}

std::string text(const byte_buffer& b) {
  return {b.data(), b.size()};
}

// `<units>#json`, as NestJS frames it.
std::string frame(std::string_view json) {
  return std::to_string(utf16_length(json)) + "#" + std::string(json);
}

// Decodes the one frame in `bytes`, checking the framing on the way.
packet decode_one(const nestjs_codec& c, std::string_view bytes, msgpack::zone& z) {
  auto r = c.next_frame(bytes.data(), bytes.size());
  REQUIRE(r.status == frame_status::complete);
  REQUIRE(r.total() == bytes.size());
  packet p;
  c.decode(bytes.data() + r.header, r.length, z, true, p);
  return p;
}

packet_error refused(std::string_view json) {
  nestjs_codec c;
  msgpack::zone z;
  packet p;
  try {
    c.decode(json.data(), json.size(), z, true, p);
  } catch (const packet_error& e) {
    return e;
  }
  FAIL("accepted: ", json);
  return packet_error("", std::nullopt, false, false);
}

// next_frame's verdict, for checks that expect it to throw.
frame_status status_of(const nestjs_codec& c, std::string_view bytes) {
  return c.next_frame(bytes.data(), bytes.size()).status;
}

}  // namespace

TEST_CASE("the length prefix counts UTF-16 code units, not bytes") {
  CHECK(utf16_length("abc") == 3);
  CHECK(utf16_length("h\xc3\xa9llo") == 5);      // é: 2 bytes, 1 unit
  CHECK(utf16_length("\xe2\x82\xac") == 1);      // €: 3 bytes, 1 unit
  CHECK(utf16_length("\xf0\x9f\x98\x80") == 2);  // 😀: 4 bytes, a surrogate pair
  CHECK(utf16_length("h\xc3\xa9llo \xf0\x9f\x98\x80") == 8);

  // The frame NestJS 12.1.1 wrote for send('echo', {s: 'héllo 😀'}): a
  // prefix of 71 for 74 bytes of JSON.
  nestjs_codec c;
  byte_buffer out;
  c.encode_response(out, reply_to(0, packed(std::string("bf74cbe316dbfd43ef2fb"))), nullptr, true);
  out.clear();
  auto data = packed(std::map<std::string, std::string>{{"s", "h\xc3\xa9llo \xf0\x9f\x98\x80"}});
  auto write = [&](packer& pk) { pk.pack_packed(data); };
  value_writer w = write;
  c.encode_response(out, reply_to(0, packed(std::string("bf74cbe316dbfd43ef2fb"))), &w, true);
  CHECK(text(out) ==
        "76#{\"response\":{\"s\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"},\"isDisposed\":true,"
        "\"id\":\"bf74cbe316dbfd43ef2fb\"}");
}

TEST_CASE("a frame is whole only once all its characters are, however the bytes are split") {
  nestjs_codec c;
  // NestJS's own request, with a 2-byte and a 4-byte character in it.
  std::string f =
      "71#{\"pattern\":\"echo\",\"data\":{\"s\":\"h\xc3\xa9llo \xf0\x9f\x98\x80\"},"
      "\"id\":\"bf74cbe316dbfd43ef2fb\"}";
  REQUIRE(f.size() == 77);
  for (std::size_t cut = 0; cut < f.size(); ++cut) {
    auto r = c.next_frame(f.data(), cut);
    CHECK_MESSAGE(r.status == frame_status::need_more, "cut at ", cut);
    // What the caller is told it needs is never more than the frame.
    if (r.header > 0) CHECK(r.total() <= f.size());
  }
  // Two frames back to back, the second cut inside its 4-byte character.
  std::string two = f + f;
  auto r = c.next_frame(two.data(), two.size());
  REQUIRE(r.status == frame_status::complete);
  CHECK(r.total() == f.size());
  auto rest = std::string_view(two).substr(r.total());
  for (std::size_t cut = rest.size() - 30; cut < rest.size(); ++cut) {
    CHECK(c.next_frame(rest.data(), cut).status == frame_status::need_more);
  }
  msgpack::zone z;
  auto p = decode_one(c, rest, z);
  CHECK(p.kind == packet_kind::request);
  CHECK(p.data.via.map.ptr[0].val.as<std::string>() == "h\xc3\xa9llo \xf0\x9f\x98\x80");
}

TEST_CASE("prefixes: leading whitespace is accepted as NestJS does, anything else closes") {
  nestjs_codec c(1024);
  std::string spaced = "  \t11#{\"a\":\"bcd\"}";
  auto r = c.next_frame(spaced.data(), spaced.size());
  CHECK(r.status == frame_status::complete);
  CHECK(r.header == 6);
  CHECK(r.length == 11);

  for (std::string bad : {"abc#{}", "#{}", "12x#{\"a\":\"bcdef\"}", "-5#{}", "+5#{}", "5 #{}"}) {
    CHECK_THROWS_AS_MESSAGE(status_of(c, bad), protocol_violation, bad);
  }
  // No '#' within 32 bytes of whitespace and digits.
  std::string no_hash(40, ' ');
  CHECK_THROWS_AS(status_of(c, no_hash), protocol_violation);
  std::string still_short(20, ' ');
  CHECK(c.next_frame(still_short.data(), still_short.size()).status == frame_status::need_more);

  // Over the limit: refused on the digits alone, before anything else arrives.
  std::string big = "1025#";
  CHECK_THROWS_WITH_AS(status_of(c, big), doctest::Contains("over the limit of 1024 bytes"),
                       protocol_violation);
  std::string huge = "99999999999999999999999";
  CHECK_THROWS_AS(status_of(c, huge), protocol_violation);
  // The limit is in bytes: 400 three-byte characters are 1200 bytes.
  std::string wide = "402#\"";
  for (int i = 0; i < 400; ++i) wide += "\xe2\x82\xac";
  wide += '"';
  CHECK_THROWS_WITH_AS(status_of(c, wide), doctest::Contains("exceeds"), protocol_violation);
  // Bytes that are not UTF-8 close at once: each byte counts, so no peer
  // can make a frame that is rescanned without ever completing.
  for (std::string bad : {std::string("1#\x80\x80\x80\x80"),
                          std::string("1#\xe2"
                                      "a"),
                          std::string("2#\xff\"\""), std::string("2#\xc0\x80")}) {
    CHECK_THROWS_WITH_AS(status_of(c, bad), doctest::Contains("not UTF-8"), protocol_violation);
  }
  // A prefix of 32 characters whose '#' is still to come.
  std::string long_prefix = std::string(30, ' ') + "12";
  CHECK(status_of(c, long_prefix) == frame_status::need_more);
  // A length that ends inside a surrogate pair.
  std::string split = "2#\"\xf0\x9f\x98\x80\"";
  CHECK_THROWS_WITH_AS(status_of(c, split), doctest::Contains("inside a character"),
                       protocol_violation);
}

TEST_CASE("requests decode with any JSON id, kept packed for the replies to echo") {
  nestjs_codec c;
  msgpack::zone z;
  // As captured from NestJS 12.1.1's ClientTCP.
  auto p = decode_one(
      c, "69#{\"pattern\":{\"cmd\":\"sum\"},\"data\":[1,2,3],\"id\":\"8049c8b0afbf74cbe316d\"}", z);
  CHECK(p.kind == packet_kind::request);
  CHECK(p.pattern.type == msgpack::type::MAP);
  CHECK(p.data.as<std::vector<int>>() == std::vector<int>{1, 2, 3});
  CHECK(p.packed_id == packed(std::string("8049c8b0afbf74cbe316d")));

  byte_buffer out;
  auto write_six = [](packer& pk) { pk.pack(6); };
  value_writer six = write_six;
  c.encode_response(out, {p.id, p.packed_id}, &six, true);
  CHECK(text(out) == "61#{\"response\":6,\"isDisposed\":true,\"id\":\"8049c8b0afbf74cbe316d\"}");

  // Ids that are numbers or null are echoed as they came.
  for (std::string id : {"7", "null", "-1.5", "\"x\\\"y\""}) {
    auto q = decode_one(c, frame("{\"pattern\":\"p\",\"data\":1,\"id\":" + id + "}"), z);
    CHECK(q.kind == packet_kind::request);
    out.clear();
    c.encode_response(out, {q.id, q.packed_id}, nullptr, true);
    CHECK(text(out) == frame("{\"isDisposed\":true,\"id\":" + id + "}"));
  }
  // Without an id it is an event; extra keys are ignored, as NestJS does.
  auto e = decode_one(c, frame(R"({"pattern":"user_created","data":{"id":7},"extra":[1]})"), z);
  CHECK(e.kind == packet_kind::event);
}

TEST_CASE("replies have NestJS's exact shapes and no other key") {
  nestjs_codec c;
  byte_buffer out;
  auto id = packed(std::string("b0afbf74cbe316dbfd43e"));
  reply_to to(0, id);
  auto write_one = [](packer& pk) { pk.pack(1); };
  value_writer one = write_one;
  c.encode_response(out, to, &one, false);
  CHECK(text(out) == "43#{\"response\":1,\"id\":\"b0afbf74cbe316dbfd43e\"}");
  out.clear();
  c.encode_response(out, to, nullptr, true);
  CHECK(text(out) == "48#{\"isDisposed\":true,\"id\":\"b0afbf74cbe316dbfd43e\"}");

  out.clear();
  c.encode_error(out, reply_to(0, packed(std::string("9c8b0afbf74cbe316dbfd"))), [](packer& pk) {
    write_error(pk, tern::rpc_error(tern::errc::remote, "Invalid input"));
  });
  CHECK(text(out) ==
        "99#{\"err\":{\"status\":\"error\",\"message\":\"Invalid input\"},\"isDisposed\":true,"
        "\"id\":\"9c8b0afbf74cbe316dbfd\"}");
  out.clear();
  c.encode_error(out, reply_to(0, packed(std::string("8b0afbf74cbe316dbfd43"))),
                 [](packer& pk) { write_internal_error(pk); });
  CHECK(text(out) ==
        "107#{\"err\":{\"status\":\"error\",\"message\":\"Internal server error\"},"
        "\"isDisposed\":true,\"id\":\"8b0afbf74cbe316dbfd43\"}");
  out.clear();
  c.encode_no_handler(out, reply_to(0, packed(std::string("49c8b0afbf74cbe316dbf"))));
  CHECK(text(out) ==
        "123#{\"id\":\"49c8b0afbf74cbe316dbf\",\"status\":\"error\",\"err\":\"There is no "
        "matching message handler defined in the remote service.\"}");
  // tern's own ids (a keep-alive's) go as strings.
  out.clear();
  c.encode_response(out, 42, nullptr, true);
  CHECK(text(out) == R"(29#{"isDisposed":true,"id":"42"})");
}

TEST_CASE("requests and events go out as NestJS's client writes them, meta as metadata") {
  nestjs_codec c;
  byte_buffer out;
  auto sum = packed(std::map<std::string, std::string>{{"cmd", "sum"}});
  c.encode_request(out, 5, sum, {}, {}, [](packer& pk) { pk.pack(std::vector<int>{1, 2, 3}); });
  CHECK(text(out) == frame(R"({"pattern":{"cmd":"sum"},"data":[1,2,3],"id":"5"})"));

  out.clear();
  auto meta = packed(std::map<std::string, std::string>{{"request_id", "r-1"}});
  c.encode_request(out, 6, packed(std::string("ctx")), meta, std::chrono::milliseconds(250),
                   [](packer& pk) { pk.pack_nil(); });
  CHECK(
      text(out) ==
      frame(
          R"({"pattern":"ctx","data":null,"metadata":{"deadline_ms":250,"request_id":"r-1"},"id":"6"})"));
  msgpack::zone z;
  auto p = decode_one(c, text(out), z);
  CHECK(p.id == 6);
  REQUIRE(p.has_meta);
  REQUIRE(p.deadline);
  CHECK(p.deadline->count() == 250);

  // An object pattern on an event is flattened to its JSON text (NestJS's
  // capture: 58#{"pattern":"{\"type\":\"obj\",\"v\":1}","data":{"z":true}}).
  out.clear();
  msgpack::sbuffer pb;
  msgpack::packer<msgpack::sbuffer> pk(pb);
  pk.pack_map(2);
  pk.pack("type");
  pk.pack("obj");
  pk.pack("v");
  pk.pack(1);
  c.encode_event(out, std::string_view(pb.data(), pb.size()), {}, [](packer& w) {
    w.pack(std::map<std::string, bool>{{"z", true}});
  });
  CHECK(text(out) == R"(58#{"pattern":"{\"type\":\"obj\",\"v\":1}","data":{"z":true}})");

  // Binaries go as base64; a frame over the limit is refused whole.
  out.clear();
  c.encode_event(out, packed(std::string("b")), {}, [](packer& w) {
    w.pack_bin(3);
    w.pack_bin_body("\x00\xff\x10", 3);
  });
  CHECK(text(out) == frame(R"({"pattern":"b","data":"AP8Q"})"));
  nestjs_codec small(64);
  out.clear();
  CHECK_THROWS_AS(small.encode_event(out, packed(std::string("b")), {},
                                     [](packer& w) { w.pack(std::string(100, 'x')); }),
                  protocol_violation);
  CHECK(out.empty());
}

TEST_CASE("replies from a NestJS service decode for tern's calls") {
  nestjs_codec c;
  msgpack::zone z;
  auto p = decode_one(c, frame(R"({"response":{"s":"x"},"isDisposed":true,"id":"42"})"), z);
  CHECK(p.kind == packet_kind::reply);
  CHECK(p.id == 42);
  CHECK(p.final());
  CHECK(p.response == packed(std::map<std::string, std::string>{{"s", "x"}}));
  // An id that is no number of ours names no call.
  CHECK(decode_one(c, frame(R"({"response":1,"id":"8049c8b0afbf74cbe316d"})"), z).id == 0);
  auto none = decode_one(
      c,
      frame(
          R"({"id":"3","status":"error","err":"There is no matching message handler defined in the remote service."})"),
      z);
  CHECK(none.final());
  CHECK(to_rpc_error(none).kind() == tern::errc::no_handler);
  auto obj = decode_one(
      c,
      frame(
          R"({"err":{"code":"E_BAD","message":"bad thing","details":[1,2]},"isDisposed":true,"id":"4"})"),
      z);
  auto e = to_rpc_error(obj);
  CHECK(e.message() == "bad thing");
  CHECK(e.has_details());
}

TEST_CASE("packets that cannot be taken: answered for their id when it can be read") {
  std::string deep = "{\"pattern\":\"p\",\"data\":" + std::string(100, '[') +
                     std::string(100, ']') + ",\"id\":\"deep-1\"}";
  auto e = refused(deep);
  REQUIRE(e.id());
  CHECK(e.to().packed_id == packed(std::string("deep-1")));
  CHECK(std::string(e.what()).find("deeper than 64") != std::string::npos);

  auto dup = refused(R"({"pattern":"p","data":{"a":1,"a":2},"id":9})");
  REQUIRE(dup.id());
  CHECK(*dup.id() == 9);

  // Not JSON, or not an object: nothing to answer, the connection closes.
  for (std::string bad : {"{abc}", "", "null", "[1]", "{\"pattern\":1", "\"x\""}) {
    auto b = refused(bad);
    CHECK_MESSAGE(!b.id(), bad);
    CHECK_MESSAGE(!b.well_formed(), bad);
  }
  // Not JSON, but its id can be read: answered for it.
  auto typo = refused(R"({"pattern":"p","data":tru,"id":"t-1"})");
  REQUIRE(typo.id());
  CHECK(typo.to().packed_id == packed(std::string("t-1")));
  // An id too long to echo: nothing to answer, and not an event to drop.
  auto long_id = refused("{\"pattern\":\"p\",\"id\":\"" + std::string(2000, 'x') + "\"}");
  CHECK(!long_id.id());
  CHECK(!long_id.well_formed());
}

TEST_CASE("a lone surrogate escape, as JavaScript writes a cut string, reads as U+FFFD") {
  nestjs_codec c;
  msgpack::zone z;
  auto p = decode_one(
      c,
      frame(R"({"pattern":"echo","data":["a\ud800b","\udc00","\ud83d\ude00","\\ud800"],"id":"s"})"),
      z);
  REQUIRE(p.kind == packet_kind::request);
  auto strings = p.data.as<std::vector<std::string>>();
  REQUIRE(strings.size() == 4);
  CHECK(strings[0] ==
        "a\xef\xbf\xbd"
        "b");
  CHECK(strings[1] == "\xef\xbf\xbd");
  CHECK(strings[2] == "\xf0\x9f\x98\x80");  // a proper pair is kept
  CHECK(strings[3] == "\\ud800");           // an escaped backslash, then text
}

TEST_CASE("a value JSON cannot hold is refused as a protocol error, nothing written") {
  nestjs_codec c;
  byte_buffer out;
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += '\x91';  // [[[...
  deep += '\x01';
  CHECK_THROWS_AS(
      c.encode_event(out, packed(std::string("e")), {}, [&](packer& pk) { pk.pack_packed(deep); }),
      protocol_violation);
  CHECK(out.empty());
}
