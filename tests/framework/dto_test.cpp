// tern::decode: request data into typed DTOs, errors that name the field,
// constraints, unknown fields.
#include <tern/dto.hpp>

#include <doctest/doctest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace {

// A msgpack value built by a packing function, kept alive with its zone.
struct value {
  msgpack::object_handle handle;
  const msgpack::object& get() const { return handle.get(); }
};

value make(const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& fill) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  fill(pk);
  return {msgpack::unpack(buf.data(), buf.size())};
}

using fill = std::function<void(msgpack::packer<msgpack::sbuffer>&)>;
fill S(std::string x) {
  return [x](auto& pk) { pk.pack(x); };
}
fill D(double x) {
  return [x](auto& pk) { pk.pack(x); };
}
fill U(std::uint64_t x) {
  return [x](auto& pk) { pk.pack(x); };
}
fill A(std::vector<fill> xs) {
  return [xs](auto& pk) {
    pk.pack_array(static_cast<std::uint32_t>(xs.size()));
    for (auto& x : xs) x(pk);
  };
}
using fields = std::map<std::string, fill>;
value object(const fields& m) {
  return make([&](auto& pk) {
    pk.pack_map(static_cast<std::uint32_t>(m.size()));
    for (auto& [k, x] : m) {
      pk.pack(k);
      x(pk);
    }
  });
}

// {"v": <x>} for each kind of msgpack value.
struct kind {
  const char* name;  // as the error messages say it
  std::function<void(msgpack::packer<msgpack::sbuffer>&)> pack;
};

const std::vector<kind>& kinds() {
  static const std::vector<kind> all = {
      {"null", [](auto& pk) { pk.pack_nil(); }},
      {"a boolean", [](auto& pk) { pk.pack(true); }},
      {"an integer", [](auto& pk) { pk.pack(7); }},
      {"an integer", [](auto& pk) { pk.pack(-7); }},
      {"a number", [](auto& pk) { pk.pack(3.5); }},
      {"a number", [](auto& pk) { pk.pack(2.5f); }},
      {"a string", [](auto& pk) { pk.pack(std::string("text")); }},
      {"binary data",
       [](auto& pk) {
         pk.pack_bin(2);
         pk.pack_bin_body("\x01\x02", 2);
       }},
      {"an array",
       [](auto& pk) {
         pk.pack_array(1);
         pk.pack(1);
       }},
      {"an object",
       [](auto& pk) {
         pk.pack_map(1);
         pk.pack(std::string("x"));
         pk.pack(1);
       }},
      {"an extension value", [](auto& pk) { pk.pack_ext(1, 5), pk.pack_ext_body("z", 1); }},
  };
  return all;
}

value field_v(const kind& k) {
  return make([&](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string("v"));
    k.pack(pk);
  });
}

template <class T>
struct holder {
  T v{};
  MSGPACK_DEFINE_MAP(v);
};

struct inner {
  std::optional<int> x;
  MSGPACK_DEFINE_MAP(x);
};

// The error text of decoding `data` as T, or "" when it decodes.
template <class T>
std::string error_of(const msgpack::object& data) {
  try {
    (void)tern::decode<T>(data);
    return "";
  } catch (const tern::rpc_error& e) {
    CHECK(e.status() == 400);
    return e.what();
  }
}

// Every msgpack kind against one field type: the accepted ones decode, the
// others say what was expected and what came.
template <class T>
void matrix(const char* expected, std::set<std::string> accepted, bool null_ok = false) {
  for (const auto& k : kinds()) {
    CAPTURE(k.name);
    auto data = field_v(k);
    auto err = error_of<holder<T>>(data.get());
    bool ok = accepted.count(k.name) || (null_ok && std::string(k.name) == "null");
    if (ok) {
      CHECK(err == "");
    } else {
      CHECK(err == std::string("v: expected ") + expected + ", got " + k.name);
    }
  }
}

}  // namespace

TEST_CASE("dto: every msgpack type against every field type") {
  // 3.5 and 2.5 are not whole numbers: an integer field refuses them.
  SUBCASE("bool") {
    matrix<bool>("a boolean", {"a boolean"});
  }
  SUBCASE("int64") {
    for (const auto& k : kinds()) {
      CAPTURE(k.name);
      auto err = error_of<holder<std::int64_t>>(field_v(k).get());
      if (std::string(k.name) == "an integer") {
        CHECK(err == "");
      } else {
        CHECK(err == std::string("v: expected an integer, got ") + k.name);
      }
    }
  }
  SUBCASE("double") {
    matrix<double>("a number", {"an integer", "a number"});
  }
  SUBCASE("float") {
    matrix<float>("a number", {"an integer", "a number"});
  }
  SUBCASE("string") {
    matrix<std::string>("a string", {"a string"});
  }
  SUBCASE("bytes") {
    matrix<std::vector<unsigned char>>("binary data", {"binary data", "a string"});
  }
  SUBCASE("array") {
    matrix<std::vector<int>>("an array", {"an array"});
  }
  SUBCASE("map") {
    matrix<std::map<std::string, int>>("an object", {"an object"});
  }
  SUBCASE("nested dto") {
    matrix<inner>("an object", {"an object"});
  }
  SUBCASE("optional") {
    matrix<std::optional<bool>>("a boolean", {"a boolean"}, true);
  }
}

TEST_CASE("dto: integers are range-checked for their type, whole floats accepted") {
  auto one = [](auto x) {
    return make([&](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string("v"));
      pk.pack(x);
    });
  };
  CHECK(error_of<holder<std::uint8_t>>(one(300).get()) ==
        "v: expected an integer of at most 255, got 300");
  CHECK(error_of<holder<std::uint8_t>>(one(-1).get()) ==
        "v: expected an integer of at least 0, got -1");
  CHECK(error_of<holder<std::int8_t>>(one(-129).get()) ==
        "v: expected an integer of at least -128, got -129");
  CHECK(error_of<holder<std::int64_t>>(one(std::uint64_t(1) << 63).get()) ==
        "v: expected an integer of at most 9223372036854775807, got 9223372036854775808");
  CHECK(tern::decode<holder<std::int64_t>>(one(3.0).get()).v == 3);
  CHECK(tern::decode<holder<std::uint64_t>>(one(UINT64_MAX).get()).v == UINT64_MAX);
  CHECK(error_of<holder<std::int32_t>>(one(2147483648.0).get()) ==
        "v: expected an integer of at most 2147483647, got 2147483648");
  CHECK(error_of<holder<double>>(one(std::numeric_limits<double>::quiet_NaN()).get()) ==
        "v: expected a finite number, got NaN");
  CHECK(error_of<holder<float>>(one(1e300).get()) ==
        "v: expected a number that fits a float, got 1e+300");
}

TEST_CASE("dto: text must be valid UTF-8") {
  auto bad = make([](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string("v"));
    pk.pack(
        std::string("Mall\xff"
                    "ory"));
  });
  CHECK(error_of<holder<std::string>>(bad.get()) == "v: must be valid UTF-8 text");
}

namespace {

struct address {
  std::string city;
  std::string street;
  MSGPACK_DEFINE_MAP(city, street);
  static auto rules() { return tern::rules(tern::field(&address::city, tern::length(1, 20))); }
};

struct person {
  std::string name;
  std::optional<std::string> nickname;
  address home;
  std::vector<address> past;
  std::map<std::string, std::int64_t> scores;
  MSGPACK_DEFINE_MAP(name, nickname, home, past, scores);
};

}  // namespace

TEST_CASE("dto: nested values name their path") {
  auto with = [](auto fill_home, auto fill_past, auto fill_scores) {
    return make([&](auto& pk) {
      pk.pack_map(4);
      pk.pack(std::string("name"));
      pk.pack(std::string("Ada"));
      pk.pack(std::string("home"));
      fill_home(pk);
      pk.pack(std::string("past"));
      fill_past(pk);
      pk.pack(std::string("scores"));
      fill_scores(pk);
    });
  };
  auto good_home = [](auto& pk) {
    pk.pack(std::map<std::string, std::string>{{"city", "London"}, {"street", "Strand"}});
  };
  auto no_past = [](auto& pk) { pk.pack_array(0); };
  auto no_scores = [](auto& pk) { pk.pack_map(0); };

  auto ok = with(good_home, no_past, no_scores);
  auto p = tern::decode<person>(ok.get());
  CHECK(p.name == "Ada");
  CHECK(!p.nickname);
  CHECK(p.home.city == "London");

  auto city_int = with(
      [](auto& pk) {
        pk.pack_map(2);
        pk.pack(std::string("city"));
        pk.pack(5);
        pk.pack(std::string("street"));
        pk.pack(std::string("x"));
      },
      no_past, no_scores);
  CHECK(error_of<person>(city_int.get()) == "home.city: expected a string, got an integer");

  auto street_missing = with(
      [](auto& pk) {
        pk.pack(std::map<std::string, std::string>{{"city", "Paris"}});
      },
      no_past, no_scores);
  CHECK(error_of<person>(street_missing.get()) == "home.street: missing");

  auto long_city = with(
      [](auto& pk) {
        pk.pack(
            std::map<std::string, std::string>{{"city", std::string(21, 'x')}, {"street", "s"}});
      },
      no_past, no_scores);
  CHECK(error_of<person>(long_city.get()) == "home.city: must be at most 20 characters long");

  auto bad_element = with(
      good_home,
      [](auto& pk) {
        pk.pack_array(2);
        pk.pack(std::map<std::string, std::string>{{"city", "Rome"}, {"street", "Corso"}});
        pk.pack(std::map<std::string, std::string>{{"city", ""}, {"street", "Via"}});
      },
      no_scores);
  CHECK(error_of<person>(bad_element.get()) == "past[1].city: must not be empty");

  auto bad_score = with(good_home, no_past, [](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string("chess"));
    pk.pack(std::string("high"));
  });
  CHECK(error_of<person>(bad_score.get()) == "scores.chess: expected an integer, got a string");

  auto int_key = with(good_home, no_past, [](auto& pk) {
    pk.pack_map(1);
    pk.pack(1);
    pk.pack(2);
  });
  CHECK(error_of<person>(int_key.get()) ==
        "scores: expected an object with string keys, got a key that is an integer");

  // null for an optional field is "absent"; for a required one, the wrong type.
  auto nulls = make([](auto& pk) {
    pk.pack_map(2);
    pk.pack(std::string("nickname"));
    pk.pack_nil();
    pk.pack(std::string("name"));
    pk.pack_nil();
  });
  CHECK(error_of<person>(nulls.get()) == "name: expected a string, got null");
}

TEST_CASE("dto: the request as a whole") {
  // No data is an empty object: the first required field is missing.
  msgpack::object nil;
  CHECK(error_of<person>(nil) == "name: missing");
  auto text = make([](auto& pk) { pk.pack(std::string("hello")); });
  CHECK(error_of<person>(text.get()) == "data: expected an object, got a string");
  CHECK(error_of<std::int64_t>(text.get()) == "data: expected an integer, got a string");
  auto list = make([](auto& pk) { pk.pack(std::vector<std::string>{"a", "b"}); });
  CHECK(error_of<std::vector<std::int64_t>>(list.get()) ==
        "data[0]: expected an integer, got a string");
  CHECK(tern::decode<std::vector<std::string>>(list.get()).size() == 2);
  CHECK(error_of<std::int64_t>(nil) == "data: expected an integer, got null");
  CHECK(!tern::decode<std::optional<std::int64_t>>(nil));
}

namespace {

// Optional fields with defaults, and number bounds.
struct page {
  std::int64_t limit = 50;
  std::int64_t offset = 0;
  std::optional<std::string> cursor;
  MSGPACK_DEFINE_MAP(limit, offset, cursor);
  static auto rules() {
    auto limit = tern::field(&page::limit, tern::optional, tern::range(1, 1000));
    auto offset = tern::field(&page::offset, tern::optional, tern::at_least(0));
    return tern::rules(limit, offset, tern::field(&page::cursor, tern::length(1, 64)));
  }
};

struct signup {
  std::string email;
  std::string password;
  double age = 0;
  std::vector<std::string> tags;
  MSGPACK_DEFINE_MAP(email, password, age, tags);
  static auto rules() {
    return tern::rules(
        tern::unknown_fields::refuse,
        tern::field(&signup::email, tern::length(3, 254),
                    tern::matches(R"([^@\s]+@[^@\s]+\.[^@\s]+)", "must be an email address")),
        tern::field(&signup::password, tern::check(
                                           [](const std::string& p) {
                                             return p.find_first_of("0123456789") !=
                                                    std::string::npos;
                                           },
                                           "must contain a digit")),
        tern::field(&signup::age, tern::at_least(13.5), tern::at_most(200)),
        tern::field(&signup::tags, tern::length(0, 2)));
  }
};

}  // namespace

TEST_CASE("dto: constraints, checked in order, optional fields keep their defaults") {
  msgpack::object nil;
  auto p = tern::decode<page>(nil);
  CHECK(p.limit == 50);
  CHECK(p.offset == 0);
  auto limit = [](std::int64_t n) {
    return make([&](auto& pk) { pk.pack(std::map<std::string, std::int64_t>{{"limit", n}}); });
  };
  CHECK(tern::decode<page>(limit(1000).get()).limit == 1000);
  CHECK(error_of<page>(limit(0).get()) == "limit: must be between 1 and 1000");
  CHECK(error_of<page>(limit(1001).get()) == "limit: must be between 1 and 1000");
  auto offset = make([](auto& pk) { pk.pack(std::map<std::string, int>{{"offset", -1}}); });
  CHECK(error_of<page>(offset.get()) == "offset: must be at least 0");

  fields good{{"email", S("ada@example.org")},
              {"password", S("s3cret")},
              {"age", D(36.0)},
              {"tags", A({S("a")})}};
  CHECK(error_of<signup>(object(good).get()) == "");
  auto with = [&](const char* key, fill x) {
    auto m = good;
    m[key] = std::move(x);
    return object(m);
  };
  CHECK(error_of<signup>(with("email", S("ada")).get()) == "email: must be an email address");
  CHECK(error_of<signup>(with("email", S("a@")).get()) ==
        "email: must be at least 3 characters long");
  CHECK(error_of<signup>(with("password", S("secret")).get()) == "password: must contain a digit");
  CHECK(error_of<signup>(with("age", U(13)).get()) == "age: must be at least 13.5");
  CHECK(error_of<signup>(with("age", D(201.5)).get()) == "age: must be at most 200");
  CHECK(error_of<signup>(with("tags", A({S("t"), S("t"), S("t")})).get()) ==
        "tags: must have at most 2 items");
  auto missing = good;
  missing.erase("age");
  CHECK(error_of<signup>(object(missing).get()) == "age: missing");
  // Type errors come before constraints.
  CHECK(error_of<signup>(with("age", S("old")).get()) == "age: expected a number, got a string");
}

TEST_CASE("dto: unknown fields are ignored or refused, by the DTO's choice") {
  auto extra = object({{"limit", U(5)}, {"admin", S("yes")}});
  CHECK(tern::decode<page>(extra.get()).limit == 5);  // page ignores them
  fields m{{"email", S("ada@example.org")},
           {"password", S("s3cret")},
           {"age", D(36.0)},
           {"tags", A({})},
           {"role", S("admin")}};
  CHECK(error_of<signup>(object(m).get()) == "role: unknown field");
  // A hostile key is shown cut short, and never as invalid UTF-8.
  m.erase("role");
  m[std::string(100, 'k')] = D(1.0);
  CHECK(error_of<signup>(object(m).get()) == std::string(64, 'k') + "...: unknown field");
  m.erase(std::string(100, 'k'));
  m["\xff"] = D(1.0);
  CHECK(error_of<signup>(object(m).get()) == "(a key that is not UTF-8 text): unknown field");
  m.erase("\xff");
  m[std::string("a\0b\n", 4)] = D(1.0);
  CHECK(error_of<signup>(object(m).get()) == "a\\x00b\\x0a: unknown field");
}

namespace {
struct odd {
  int a = 0;
  int b = 0;
  MSGPACK_DEFINE_MAP(a);
  static auto rules() { return tern::rules(tern::field(&odd::b, tern::at_least(0))); }
};
struct named {
  std::string name;
  MSGPACK_DEFINE_MAP(name);
  static auto rules() { return tern::rules(tern::field(&named::name, tern::length(1, 3))); }
};
struct pair_dto {
  std::pair<int, std::string> p;
  MSGPACK_DEFINE_MAP(p);
};
struct arr {
  int a = 0;
  std::string b;
  MSGPACK_DEFINE(a, b);
};
}  // namespace

TEST_CASE("dto: a bad pattern or a rule on an unlisted member fails when prepared") {
  CHECK_THROWS_AS(tern::matches("(unclosed"), std::invalid_argument);
  CHECK_THROWS_AS(tern::prepare_decode<odd>(), std::logic_error);
}

TEST_CASE("dto: lengths count characters, not bytes") {
  auto three = make([](auto& pk) {
    pk.pack(std::map<std::string, std::string>{{"name", "\xc3\xa9\xf0\x9f\x98\x80z"}});  // é😀z
  });
  CHECK(error_of<named>(three.get()) == "");
  auto four = make([](auto& pk) {
    pk.pack(std::map<std::string, std::string>{{"name", "\xc3\xa9\xf0\x9f\x98\x80zz"}});
  });
  CHECK(error_of<named>(four.get()) == "name: must be at most 3 characters long");
}

TEST_CASE("dto: types tern does not decode itself fall back to msgpack-c, named") {
  auto good = make([](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string("p"));
    pk.pack(std::make_pair(1, std::string("a")));
  });
  CHECK(tern::decode<pair_dto>(good.get()).p.second == "a");
  auto bad = make([](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string("p"));
    pk.pack(true);
  });
  CHECK(error_of<pair_dto>(bad.get()) == "p: does not have the expected type (got a boolean)");
  // MSGPACK_DEFINE (an array, no names) is msgpack-c's too.
  auto as_array = make([](auto& pk) { pk.pack(std::make_tuple(4, std::string("x"))); });
  CHECK(tern::decode<arr>(as_array.get()).a == 4);
}

namespace {
struct array_with_rules {
  int a = 0;
  MSGPACK_DEFINE(a);
  static auto rules() { return tern::rules(tern::field(&array_with_rules::a, tern::at_least(0))); }
};
struct bad_inner {
  std::string s;
  MSGPACK_DEFINE_MAP(s);
  static auto rules() { return tern::rules(tern::field(&bad_inner::s, tern::matches("(oops"))); }
};
struct holds_bad {
  std::vector<bad_inner> items;
  MSGPACK_DEFINE_MAP(items);
};
struct big {
  std::optional<int> x;
  char pad[4096] = {};
  MSGPACK_DEFINE_MAP(x);
};
// A hand-written map with a literal in it: not fields of the struct.
struct tagged {
  int n = 0;
  template <class P>
  void msgpack_pack(P& pk) const {
    pk.pack_map(2);
    pk.pack("type");
    pk.pack("tagged");
    pk.pack("n");
    pk.pack(n);
  }
  void msgpack_unpack(const msgpack::object& o) { n = o.via.map.ptr[1].val.as<int>(); }
};
}  // namespace

TEST_CASE("dto: rules that could not run, and nested rules, fail when prepared") {
  CHECK_THROWS_AS(tern::prepare_decode<array_with_rules>(), std::logic_error);
  CHECK_THROWS_AS(tern::prepare_decode<holds_bad>(), std::invalid_argument);
  CHECK_THROWS_AS(tern::prepare_decode<std::optional<holds_bad>>(), std::invalid_argument);
}

TEST_CASE("dto: what a request decodes into is bounded, not only what it sends") {
  // 20,000 empty objects: 20 kB sent, 80 MB as structs.
  std::string packed = "\xdd";
  std::uint32_t n = 20000;
  for (int s = 24; s >= 0; s -= 8) packed += static_cast<char>((n >> s) & 0xff);
  packed.append(n, '\x80');
  auto o = msgpack::unpack(packed.data(), packed.size());
  CHECK(error_of<std::vector<big>>(o.get()) ==
        "data: too large once decoded (its containers would take more than 64 MiB)");
  // Within it, fine; and the budget is per request.
  auto few = msgpack::unpack("\x92\x80\x80", 3);
  CHECK(tern::decode<std::vector<big>>(few.get()).size() == 2);
  CHECK(tern::decode<std::vector<big>>(few.get()).size() == 2);
}

TEST_CASE("dto: map keys are text and shown even when empty, a hand-written pack is msgpack-c's") {
  auto bad_key = make([](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string("\xff"));
    pk.pack(1);
  });
  CHECK(error_of<std::map<std::string, int>>(bad_key.get()) ==
        "data: has a key that is not valid UTF-8 text");
  auto empty_key = make([](auto& pk) {
    pk.pack_map(1);
    pk.pack(std::string(""));
    pk.pack(std::string("x"));
  });
  CHECK(error_of<std::map<std::string, int>>(empty_key.get()) ==
        "(an empty key): expected an integer, got a string");
  auto t = make([](auto& pk) { pk.pack(tagged{5}); });
  CHECK(tern::decode<tagged>(t.get()).n == 5);
}
