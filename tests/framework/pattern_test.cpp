#include "tern/pattern.hpp"

#include "tern/json_depth.hpp"

#include <doctest/doctest.h>
#include <msgpack.hpp>

using tern::pattern;

namespace {
// The canonical form of a pattern as a server receives it from the wire.
std::string received(const std::string& packed) {
  auto oh = msgpack::unpack(packed.data(), packed.size());
  std::string out;
  tern::canonical_pattern(oh.get(), out);
  return out;
}
std::string received_value(const auto& v) {
  msgpack::sbuffer b;
  msgpack::pack(b, v);
  return received(std::string(b.data(), b.size()));
}
}  // namespace

TEST_CASE("a string pattern is itself") {
  CHECK(pattern("ping").canonical() == "ping");
  CHECK(received(pattern("ping").packed()) == "ping");
}

TEST_CASE("object patterns are canonical whatever the key order") {
  pattern a{{"cmd", "get_users"}, {"role", "admin"}};
  pattern b{{"role", "admin"}, {"cmd", "get_users"}};
  CHECK(a.canonical() == R"({"cmd":"get_users","role":"admin"})");
  CHECK(a == b);
  CHECK(a.packed() == b.packed());
}

TEST_CASE("nested objects, numbers, booleans and null") {
  pattern a{{"svc", "users"}, {"op", {{"v", 2}, {"name", "get"}}}, {"cmd", "nested"}};
  CHECK(a.canonical() == R"({"cmd":"nested","op":{"name":"get","v":2},"svc":"users"})");
  pattern b{{"flag", true}, {"none", nullptr}, {"n", -5}};
  CHECK(b.canonical() == R"({"flag":true,"n":-5,"none":null})");
}

TEST_CASE("quotes and backslashes are escaped") {
  pattern a{{"k\"ey", "va\\lue"}};
  CHECK(a.canonical() == R"({"k\"ey":"va\\lue"})");
}

TEST_CASE("a received map gets the same key as the registered pattern") {
  pattern registered{{"cmd", "sum"}, {"role", "math"}};
  // A map sent in the other key order, as a NestJS client might.
  std::map<std::string, std::string> sent{{"role", "math"}, {"cmd", "sum"}};
  CHECK(received_value(sent) == registered.canonical());
  CHECK(received(registered.packed()) == registered.canonical());
}

TEST_CASE("a received map in any key order and with nesting canonicalizes alike") {
  pattern registered{{"op", {{"name", "get"}, {"v", 2}}}, {"cmd", "x"}};
  // msgpack map written by hand in a scrambled order.
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_map(2);
  pk.pack("op");
  pk.pack_map(2);
  pk.pack("v");
  pk.pack(2);
  pk.pack("name");
  pk.pack("get");
  pk.pack("cmd");
  pk.pack("x");
  CHECK(received(std::string(b.data(), b.size())) == registered.canonical());
}

TEST_CASE("a string holding a JSON object matches the object pattern (NestJS rule)") {
  pattern registered{{"cmd", "sum"}};
  CHECK(received_value(std::string(R"({"cmd":"sum"})")) == registered.canonical());
  CHECK(received_value(std::string(R"({ "cmd" : "sum" })")) == registered.canonical());
  CHECK(received_value(std::string("{not json")) == "{not json");
}

TEST_CASE("numbers match their text") {
  CHECK(received_value(42) == pattern("42").canonical());
  CHECK(received_value(-3) == "-3");
}

TEST_CASE("arrays become objects keyed by index, as in NestJS") {
  CHECK(received_value(std::vector<std::string>{"x", "y"}) == R"({"0":"x","1":"y"})");
}

TEST_CASE("very deep patterns are cut off instead of recursing without bound") {
  std::string nested;
  for (int i = 0; i < 100; ++i) nested += "\x81\xa1k";  // {"k": {"k": ...
  nested += "\x01";
  auto out = received(nested);
  CHECK(out.find("[MAX_DEPTH_REACHED]") != std::string::npos);
}

TEST_CASE("patterns from JSON text equal the same patterns written in C++") {
  auto a = pattern::from_json(R"({"role":"math","cmd":"sum"})");
  pattern b{{"cmd", "sum"}, {"role", "math"}};
  CHECK(a.canonical() == b.canonical());
  CHECK(a.packed() == b.packed());
  CHECK(pattern::from_json(R"("ping")").canonical() == "ping");
  CHECK_THROWS_AS(pattern::from_json("[1,2]"), std::invalid_argument);
  CHECK_THROWS_AS(pattern::from_json("{oops"), std::invalid_argument);
}

TEST_CASE("json_depth counts brackets outside strings and stops past its limit") {
  CHECK(tern::json_depth("1", 64) == 0);
  CHECK(tern::json_depth("[[1],{\"a\":[]}]", 64) == 3);
  CHECK(tern::json_depth(R"({"a":"[[[[\"{{"})", 64) == 1);  // brackets in strings, escaped quote
  CHECK(tern::json_depth(std::string(100000, '['), 64) == 65);
  CHECK(tern::json_depth("]]]}}[", 64) == 1);  // stray closers do not go below zero
}

TEST_CASE("deeply nested JSON text is refused or left a string, never parsed into a tree") {
  std::string deep = "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  CHECK_THROWS_AS(pattern::from_json(deep), std::invalid_argument);
  // As a received string pattern: stays itself (no handler has that name).
  CHECK(received_value(deep) == deep);
  // 64 levels are still a pattern.
  std::string ok = "{\"a\":" + std::string(63, '[') + "1" + std::string(63, ']') + "}";
  CHECK(pattern::from_json(ok).canonical().starts_with("{\"a\":{\"0\":"));
}

TEST_CASE("map keys that are maps, nested, do not grow the canonical text without bound") {
  // {{{...{"\"":1}:1...}:1}:1}: each level quotes (escapes) the key text again.
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  constexpr int levels = 15;
  for (int i = 0; i < levels; ++i) pk.pack_map(1);
  pk.pack(std::string(40, '"'));
  for (int i = 0; i < levels; ++i) pk.pack(1);
  auto oh = msgpack::unpack(b.data(), b.size());
  std::string out;
  tern::canonical_pattern(oh.get(), out);
  CHECK(out.size() < 1024 * 1024);
}

TEST_CASE("a pattern of many such keys costs a bounded amount, then matches nothing") {
  // An array of 2000 chains of 14 map keys each: ~30 bytes of input per
  // 64 KiB of text, which would have asked for 128 MiB in all.
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_array(2000);
  for (int n = 0; n < 2000; ++n) {
    for (int i = 0; i < 14; ++i) pk.pack_map(1);
    pk.pack(std::string(2, '"'));
    for (int i = 0; i < 14; ++i) pk.pack_nil();
  }
  auto oh = msgpack::unpack(b.data(), b.size());
  std::string out;
  tern::canonical_pattern(oh.get(), out);
  CHECK(out == "[TOO_LONG]");
  // A JSON text pattern longer than 64 KiB is not parsed: it stays a string.
  std::string text = "{\"a\":[" + std::string(40000, '0') + "]}";
  for (std::size_t i = 7; i + 1 < text.size() - 2; i += 2) text[i] = ',';
  CHECK(received_value(text) == text);
}
