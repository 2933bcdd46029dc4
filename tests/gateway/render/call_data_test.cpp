// Call data: path captures, query and JSON body to the call's msgpack.
#include "render/call_data.hpp"

#include <tern/error.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

using namespace tern::gateway;

namespace {

nlohmann::json decoded(const std::string& packed) {
  return nlohmann::json::from_msgpack(packed);
}

// The rpc_error message build_call_data throws for a body (none: "").
std::string refusal(std::string_view body, std::vector<data_source> sources = {data_source::body}) {
  try {
    build_call_data(sources, {}, "", body);
  } catch (const tern::rpc_error& e) {
    CHECK(e.status() == 400);
    return std::string(e.message());
  }
  return "";
}
std::string nested_array(int levels) {
  return std::string(static_cast<std::size_t>(levels), '[') +
         std::string(static_cast<std::size_t>(levels), ']');
}

}  // namespace

TEST_CASE("call data: params, query and body, merged in order") {
  std::vector<std::pair<std::string_view, std::string>> params{{"id", "42"}, {"slug", "a b"}};
  CHECK(decoded(build_call_data({data_source::params}, params, "", "")) ==
        nlohmann::json{{"id", 42}, {"slug", "a b"}});
  CHECK(decoded(
            build_call_data({data_source::query}, {}, "limit=5&name=J%C3%BCrgen+X&neg=-3&x", "")) ==
        nlohmann::json{{"limit", 5}, {"name", "Jürgen X"}, {"neg", -3}, {"x", ""}});
  CHECK(build_call_data({data_source::query}, {}, "", "") == std::string(1, '\x80'));
  CHECK(build_call_data({data_source::none}, {}, "a=1", "{}") == std::string(1, '\xc0'));
  CHECK(decoded(build_call_data({data_source::body}, {}, "", R"({"name":"x","n":[1]})")) ==
        nlohmann::json{{"name", "x"}, {"n", {1}}});
  CHECK(decoded(build_call_data({data_source::params, data_source::body}, params, "",
                                R"({"name":"x","id":7})")) ==
        nlohmann::json{{"id", 7}, {"slug", "a b"}, {"name", "x"}});
  CHECK_THROWS_AS(build_call_data({data_source::body}, {}, "", "{oops"), tern::rpc_error);
  CHECK_THROWS_AS(build_call_data({data_source::params, data_source::body}, params, "", "[1]"),
                  tern::rpc_error);
}

TEST_CASE("a JSON body nested past the wire's limit is refused before anything recurses") {
  CHECK(refusal(nested_array(100000)) == "the JSON body nests deeper than 64 levels");
  CHECK(refusal("{\"a\":" + nested_array(64) + "}") == "the JSON body nests deeper than 64 levels");
  CHECK(refusal(nested_array(64)) == "");
  auto ok =
      decoded(build_call_data({data_source::body}, {}, "", "{\"a\":" + nested_array(63) + "}"));
  CHECK(ok.is_object());
}

TEST_CASE("a JSON body becomes the same value nlohmann reads, with the smallest encodings") {
  const char* body = R"({"s":"x\u00e9\ud83d\ude00","n":[0,-1,-33,127,128,-129,65536,-2147483649,
    18446744073709551615,-9223372036854775808,1.5,-0.25,1e300],"t":true,"f":false,"z":null,
    "o":{"k":{}},"a":[[],{}],"long":"0123456789012345678901234567890123456789"})";
  auto packed = build_call_data({data_source::body}, {}, "", body);
  CHECK(decoded(packed) == nlohmann::json::parse(body));
  CHECK(build_call_data({data_source::body}, {}, "", "[1,2,3]") == "\x93\x01\x02\x03");
  CHECK(build_call_data({data_source::body}, {}, "", "{}") == "\x80");
  auto wide = "[" + std::string(17 * 2 - 1, ',') + "]";  // 17 empty slots: malformed
  CHECK(refusal(wide) == "malformed JSON body");
  std::string many = "[";
  for (int i = 0; i < 70000; ++i) many += i ? ",1" : "1";
  many += "]";
  auto big = build_call_data({data_source::body}, {}, "", many);
  CHECK(big.substr(0, 5) == std::string("\xdd\x00\x01\x11\x70", 5));  // array32 of 70000
  CHECK(decoded(big).size() == 70000);
}

TEST_CASE("a JSON body with a key twice in one object is refused") {
  CHECK(refusal(R"({"a":1,"a":2})") == "duplicate key \"a\" in the JSON body");
  CHECK(refusal(R"({"o":{"b":[{"c":1,"c":1}]}})") == "duplicate key \"c\" in the JSON body");
  CHECK(refusal(R"({"a":{"a":1},"b":{"a":2}})") == "");  // one per object is fine
  std::string body = "{";
  for (int i = 0; i < 100000; ++i) body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
  CHECK(decoded(build_call_data({data_source::body}, {}, "", body + "}")).size() == 100000);
  CHECK(refusal(body + ",\"k99999\":2}") == "duplicate key \"k99999\" in the JSON body");
}

TEST_CASE("a JSON body with a number out of range, bad text or trailing bytes is refused") {
  CHECK(refusal("[1e400]") == "malformed JSON body");              // nlohmann's number overflow
  CHECK(refusal("{\"name\":\"\xff\"}") == "malformed JSON body");  // not UTF-8
  CHECK(refusal("{\"a\":1} x") == "malformed JSON body");
}

TEST_CASE("path and query values: 64-bit integers, UTF-8 checked, last repeat wins") {
  std::vector<std::pair<std::string_view, std::string>> ids{{"a", "18446744073709551615"},
                                                            {"b", "18446744073709551616"},
                                                            {"c", "-9223372036854775808"},
                                                            {"d", "-"},
                                                            {"e", "+1"},
                                                            {"f", "007"}};
  CHECK(decoded(build_call_data({data_source::params}, ids, "", "")) ==
        nlohmann::json{{"a", 18446744073709551615ull},
                       {"b", "18446744073709551616"},
                       {"c", INT64_MIN},
                       {"d", "-"},
                       {"e", "+1"},
                       {"f", 7}});
  CHECK(decoded(build_call_data({data_source::query}, {}, "a=1&b=2&a=3", "")) ==
        nlohmann::json{{"a", 3}, {"b", 2}});
  std::vector<std::pair<std::string_view, std::string>> bad{{"id", "\xc3\x28"}};
  CHECK_THROWS_WITH(build_call_data({data_source::params}, bad, "", ""),
                    "path parameter 'id' is not valid UTF-8");
  CHECK_THROWS_WITH(build_call_data({data_source::query}, {}, "name=%ff", ""),
                    "query parameter 'name' is not valid UTF-8");
  CHECK_THROWS_WITH(build_call_data({data_source::query}, {}, "%ff=1", ""),
                    "a query parameter name is not valid UTF-8");
}
