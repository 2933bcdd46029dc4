// msgpack values to JSON text (tern/transport/json.hpp): what the gateway
// writes into HTTP bodies and the NestJS wire into its frames.
#include "tern/transport/json.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

using namespace tern::transport;

namespace {

std::string json_of(const auto& v) {
  msgpack::sbuffer b;
  msgpack::pack(b, v);
  std::string out;
  append_json(std::string_view(b.data(), b.size()), out);
  return out;
}

}  // namespace

TEST_CASE("msgpack values become JSON") {
  CHECK(json_of(std::map<std::string, int>{{"a", 1}}) == R"({"a":1})");
  CHECK(json_of(std::vector<double>{1.5, -2}) == "[1.5,-2]");
  CHECK(json_of(std::string("q\"\\\n\x01")) == R"("q\"\\\n\u0001")");
  CHECK(json_of(msgpack::type::nil_t()) == "null");
  CHECK(json_of(true) == "true");
  CHECK(json_of(-7) == "-7");
  CHECK(json_of(std::map<int, int>{{1, 2}}) == R"({"1":2})");
}

TEST_CASE("every msgpack kind becomes JSON straight from its bytes") {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(7);
  pk.pack("f32");
  pk.pack_float(0.5f);
  pk.pack("bin");
  pk.pack_bin(2);
  pk.pack_bin_body("hi", 2);
  pk.pack("ext");
  pk.pack_ext(1, 5);
  pk.pack_ext_body("x", 1);
  pk.pack("big");
  pk.pack_uint64(18446744073709551615ull);
  pk.pack("min");
  pk.pack_int64(-9223372036854775807ll - 1);
  pk.pack("nan");
  pk.pack_double(std::nan(""));
  pk.pack(std::vector<int>{1});  // a key that is not a string
  pk.pack_map(0);
  std::string out = "keep:";
  append_json(std::string_view(b.data(), b.size()), out);
  CHECK(out == R"(keep:{"f32":0.5,"bin":"hi","ext":"x","big":18446744073709551615,)"
               R"("min":-9223372036854775808,"nan":null,"[1]":{}})");
  // Long output grows the string as it goes.
  std::vector<std::string> many(500, std::string(30, '"'));
  CHECK(nlohmann::json::parse(json_of(many)) == nlohmann::json(many));
}

TEST_CASE("bytes that are not one msgpack value are refused and leave the output as it was") {
  msgpack::sbuffer b;
  msgpack::pack(b, std::map<std::string, std::vector<int>>{{"a", {1, 2, 3}}});
  std::string whole(b.data(), b.size());
  for (std::size_t cut = 0; cut < whole.size(); ++cut) {
    std::string out = "before";
    CHECK_THROWS_AS(append_json(std::string_view(whole.data(), cut), out), std::invalid_argument);
    CHECK(out == "before");
  }
  std::string out;
  CHECK_THROWS_AS(append_json(whole + '\x01', out), std::invalid_argument);  // trailing byte
  CHECK_THROWS_AS(append_json("\xc1", out), std::invalid_argument);          // never-used byte
  CHECK(out.empty());
}

TEST_CASE("doubles are written as std::to_chars writes them") {
  auto expected = [](double v) {
    char buf[64];
    return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
  };
  std::vector<double> values{0.0,
                             -0.0,
                             1843,
                             1939.5,
                             1951.25,
                             -0.001,
                             0.001,
                             99999.999,
                             100000,
                             99999.9995,
                             1e-7,
                             0.1,
                             0.3,
                             12.345,
                             -12.5,
                             1e15,
                             123456.5,
                             5e-324,
                             1.7976931348623157e308};
  std::mt19937_64 rng(3);
  for (int i = 0; i < 20000; ++i) {
    auto k = static_cast<std::int64_t>(rng() % 200000000) - 100000000;
    values.push_back(static_cast<double>(k) / 1000);  // up to three decimals
    values.push_back(static_cast<double>(k) / 997);   // most are not
    values.push_back(
        std::bit_cast<double>((rng() & ~(0x7ffull << 52)) | (0x3ffull + rng() % 20) << 52));
  }
  for (double v : values) {
    std::string out;
    append_json_number(v, out);
    REQUIRE_MESSAGE(out == expected(v), v);
  }
  std::string out;
  append_json_number(std::numeric_limits<double>::infinity(), out);
  CHECK(out == "null");
}

TEST_CASE("strings are escaped wherever the special character falls") {
  // Long strings take the 8-bytes-at-a-time path; put each special
  // character at every offset of a 20-byte string.
  for (char special : {'"', '\\', '\n', '\x01', '\x1f', ' ', '~', '\x7f'}) {
    for (std::size_t at = 0; at < 20; ++at) {
      std::string s = "Grace Hopper, COBOL.";
      s[at] = special;
      std::string out;
      append_json_string(s, out);
      INFO("special ", int(special), " at ", at);
      CHECK(nlohmann::json::parse(out) == s);
      if (special == ' ' || special == '~' || special == '\x7f') CHECK(out == '"' + s + '"');
    }
  }
  std::string utf8 =
      "J\xc3\xbcrgen \xe2\x82\xac 12 \xf0\x9f\x90\xa6";  // multi-byte text passes as is
  std::string out;
  append_json_string(utf8, out);
  CHECK(out == '"' + utf8 + '"');
}

TEST_CASE("strings inside packed values are escaped at every length and offset") {
  // Short strings are tested and copied as one word that reaches back into
  // the bytes before them; long ones a word at a time with an overlapping
  // tail. Exact-size heap copies let ASan catch any read out of the value.
  for (std::size_t len = 0; len <= 20; ++len) {
    for (char special : {'"', '\\', '\n', '\x01', '\x1f', '~'}) {
      for (std::size_t at = 0; at <= len; ++at) {
        std::string text(len, 'a');
        if (at < len) text[at] = special;
        for (bool first : {true, false}) {
          msgpack::sbuffer b;
          msgpack::packer<msgpack::sbuffer> pk(b);
          if (first) {
            pk.pack(text);  // nothing before it but its header
          } else {
            pk.pack_map(1);
            pk.pack(text);
            pk.pack(text);
          }
          std::vector<char> bytes(b.data(), b.data() + b.size());
          std::string out;
          append_json(std::string_view(bytes.data(), bytes.size()), out);
          INFO("len ", len, " special ", int(special), " at ", at, " first ", first);
          auto parsed = nlohmann::json::parse(out);
          CHECK(parsed == (first ? nlohmann::json(text) : nlohmann::json{{text, text}}));
        }
      }
    }
  }
}

TEST_CASE("long strings with escapes far apart come out whole") {
  // The writer makes room run by run, not six bytes per input byte up front.
  std::string text(200000, 'x');
  for (std::size_t at : {0u, 7u, 4096u, 100001u, 199999u}) text[at] = '\x01';
  text[150000] = '"';
  msgpack::sbuffer b;
  msgpack::pack(b, text);
  std::string out;
  append_json(std::string_view(b.data(), b.size()), out);
  CHECK(nlohmann::json::parse(out) == text);
  CHECK(out.size() == text.size() + 2 + 5 * 5 + 1);  // five \u0001, one \"
}

TEST_CASE("invalid UTF-8 in a reply becomes U+FFFD, so the JSON is always valid") {
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(json_of(std::string("a\xff"
                            "b")) == "\"a" + fffd + "b\"");
  CHECK(json_of(std::string("\xc0\xaf")) == "\"" + fffd + fffd + "\"");               // overlong
  CHECK(json_of(std::string("\xed\xa0\x80")) == "\"" + fffd + fffd + fffd + "\"");    // surrogate
  CHECK(json_of(std::string("x\xe2\x82")) == "\"x" + fffd + fffd + "\"");             // cut short
  CHECK(json_of(std::string("\xf4\x90\x80\x80")).find("\xf4") == std::string::npos);  // > U+10FFFF
  const std::string good = "Jürgen € 😀 日本";
  CHECK(json_of(good) == "\"" + good + "\"");
  CHECK(json_of(std::map<std::string, int>{{"k\xfe", 1}}) == "{\"k" + fffd + "\":1}");
  // At every length and offset, through each of the writer's paths.
  for (std::size_t n = 1; n <= 40; ++n) {
    for (std::size_t at = 0; at < n; ++at) {
      std::string s(n, 'a');
      s[at] = '\x80';
      auto out = json_of(s);
      CHECK_MESSAGE(out == "\"" + s.substr(0, at) + fffd + s.substr(at + 1) + "\"", n, " ", at);
      CHECK(nlohmann::json::accept(out));
    }
  }
}

TEST_CASE("map keys that are themselves maps, nested deep, are refused, not expanded") {
  // Each level escapes the key text inside it again, doubling its backslashes:
  // 40 levels in under 200 bytes would otherwise be a 2^40-byte key.
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  for (int level = 0; level < 40; ++level) pk.pack_map(1);  // each key is the next map
  pk.pack("a");
  pk.pack(1);
  for (int level = 0; level < 40; ++level) pk.pack(1);  // the values, innermost first
  REQUIRE(b.size() < 200);
  std::string out;
  CHECK_THROWS_AS(append_json(std::string_view(b.data(), b.size()), out), std::invalid_argument);
  CHECK(out.empty());
  // A few levels are fine.
  msgpack::sbuffer small;
  msgpack::packer<msgpack::sbuffer> sp(small);
  sp.pack_map(1);
  sp.pack_map(1);
  sp.pack("a");
  sp.pack(1);
  sp.pack(2);
  append_json(std::string_view(small.data(), small.size()), out);
  CHECK(out == R"({"{\"a\":1}":2})");
}

TEST_CASE("binaries become base64 strings when asked, text by default") {
  auto bin = [](std::string_view bytes, json_binary mode) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> pk(b);
    pk.pack_bin(static_cast<std::uint32_t>(bytes.size()));
    pk.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
    std::string out;
    append_json(std::string_view(b.data(), b.size()), out, mode);
    return out;
  };
  CHECK(bin("", json_binary::base64) == R"("")");
  CHECK(bin(std::string_view("\x00", 1), json_binary::base64) == R"("AA==")");
  CHECK(bin(std::string_view("\x00\xff", 2), json_binary::base64) == R"("AP8=")");
  CHECK(bin(std::string_view("\x00\xff\x10", 3), json_binary::base64) == R"("AP8Q")");
  CHECK(bin("hello world", json_binary::base64) == R"("aGVsbG8gd29ybGQ=")");
  CHECK(bin("hi", json_binary::text) == R"("hi")");
}

TEST_CASE("JSON text becomes msgpack: exact integers, doubles beyond, refusals named") {
  auto packed = [](std::string_view text) {
    std::string out = "keep";
    auto e = json_to_msgpack(text, out, 64);
    REQUIRE_MESSAGE(!e, text);
    return nlohmann::json::from_msgpack(out.substr(4));
  };
  CHECK(packed(R"({"a":[1,-2,1.5,"x",true,null]})") ==
        nlohmann::json::parse(R"({"a":[1,-2,1.5,"x",true,null]})"));
  // Beyond 2^53 an integer stays exact while it fits 64 bits (JavaScript
  // would round it); beyond 64 bits it is the nearest double, as JSON.parse gives.
  CHECK(packed("9007199254740993").get<std::uint64_t>() == 9007199254740993ull);
  CHECK(packed("-9223372036854775808").get<std::int64_t>() == INT64_MIN);
  CHECK(packed("18446744073709551616").get<double>() == 18446744073709551616.0);
  CHECK(packed(R"("h\u00e9 \ud83d\ude00")").get<std::string>() == "h\xc3\xa9 \xf0\x9f\x98\x80");

  auto refused = [](std::string_view text, int depth = 64) {
    std::string out = "keep";
    auto e = json_to_msgpack(text, out, depth);
    CHECK_MESSAGE(e, text);
    CHECK(out == "keep");
    return e;
  };
  CHECK(refused("[[[1]]]", 2).kind == json_error::too_deep);
  std::string two = "keep";
  CHECK(!json_to_msgpack("[[1]]", two, 2));
  auto dup = refused(R"({"k":1,"k":2})");
  CHECK(dup.kind == json_error::duplicate_key);
  CHECK(dup.key == "k");
  CHECK(refused("1e400").kind == json_error::malformed);  // nlohmann's lexer refuses it
  CHECK(refused("{").kind == json_error::malformed);
  CHECK(refused("1 2").kind == json_error::malformed);
  CHECK(refused("\"\xff\"").kind == json_error::malformed);
  CHECK(refused("").kind == json_error::malformed);
}
