// JWT verification: keys checked at start-up, times, base64url, the
// verified-token cache.
#include "auth/jwt.hpp"

#include "config/config.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>

using namespace tern::gateway;

namespace {

// What constructing a verifier from `auth` throws ("" when it does not).
std::string auth_error(const nlohmann::json& auth) {
  try {
    jwt::verifier v(auth, "auth");
  } catch (const config_error& e) {
    return e.what();
  }
  return "";
}

nlohmann::json hs_key(std::string env, nlohmann::json algorithms = {"HS256"}) {
  return {{"kid", "k"}, {"algorithms", std::move(algorithms)}, {"secret_env", std::move(env)}};
}

}  // namespace

TEST_CASE("auth keys are checked at start-up, naming the entry") {
  ::setenv("TERN_TEST_SHORT", "only-31-bytes-of-secret-here!!!", 1);
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  ::unsetenv("TERN_TEST_UNSET");
  using json = nlohmann::json;
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}}).empty());
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_UNSET")}}}) ==
        "auth.keys[0].secret_env: the environment variable TERN_TEST_UNSET is not set");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_SHORT")}}}) ==
        "auth.keys[0]: HS256 needs a secret of at least 32 bytes");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG", {"HS512"})}}}) ==
        "auth.keys[0]: HS512 needs a secret of at least 64 bytes");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG", {"none"})}}})
            .find("'none' is not a signature algorithm") != std::string::npos);
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG", json::array())}}})
            .find("auth.keys[0].algorithms: must list") == 0);
  CHECK(auth_error({{"keys", {{{"algorithms", {"HS256"}}}}}}) ==
        "auth.keys[0]: needs exactly one of secret_env, secret_file, public_key_file, jwks_file");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG"), hs_key("TERN_TEST_LONG")}}}) ==
        "auth.keys: two keys have the kid 'k'");
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"leeway_s", 1000}})
            .find("auth.leeway_s") == 0);
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"audiense", "x"}})
            .find("auth.audiense: is not an auth setting") == 0);
  CHECK(auth_error({{"keys", json::array()}}) == "auth.keys: must list at least one key");
  CHECK(
      auth_error({{"keys", {{{"algorithms", {"RS256"}}, {"public_key_file", "/nonexistent"}}}}}) ==
      "auth.keys[0].public_key_file: cannot read '/nonexistent'");
}

TEST_CASE("exp and nbf are checked with the leeway, to the second") {
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  jwt::verifier v({{"keys", {hs_key("TERN_TEST_LONG")}}, {"leeway_s", 30}}, "auth");
  auto exp = v.sign({{"sub", "a"}, {"exp", 1000}});
  CHECK(v.verify(exp, 1029).ok);
  CHECK(v.verify(exp, 1030).reason == "expired");
  auto nbf = v.sign({{"sub", "a"}, {"nbf", 1000}});
  CHECK(v.verify(nbf, 970).ok);
  CHECK(v.verify(nbf, 969).reason == "not valid yet (nbf)");
  CHECK(v.verify(nbf, 969).claims.is_null());
  auto good = v.verify(v.sign({{"sub", "a"}, {"n", 1}}), 0);
  REQUIRE(good.ok);
  CHECK(good.claims == nlohmann::json{{"sub", "a"}, {"n", 1}});
}

TEST_CASE("base64url round-trips every length and refuses other alphabets") {
  std::string bytes, back;
  for (int n = 0; n < 64; ++n) {
    CHECK(jwt::base64url_decode(jwt::base64url_encode(bytes), back));
    CHECK(back == bytes);
    bytes += static_cast<char>(n * 37);
  }
  CHECK(jwt::base64url_encode("\xfb\xff") == "-_8");
  CHECK_FALSE(jwt::base64url_decode("ab+c", back));
  CHECK_FALSE(jwt::base64url_decode("abc=", back));
  CHECK_FALSE(jwt::base64url_decode("a", back));
}

TEST_CASE("the verified-token cache is keyed by the whole token and never outlives exp") {
  ::setenv("TERN_TEST_LONG", "a-secret-of-thirty-two-bytes-ok!", 1);
  jwt::token_cache cache(3, 30);
  nlohmann::json claims{{"sub", "a"}, {"exp", 1000}};
  cache.add("t1", claims, 900);
  REQUIRE(cache.find("t1", 900) != nullptr);
  CHECK(cache.find("t1", 1029)->claims == claims);
  CHECK(cache.find("t1x", 900) == nullptr);
  CHECK(cache.find("t", 900) == nullptr);
  CHECK(cache.find("t1", 1030) == nullptr);  // exp + leeway: gone, and stays gone
  CHECK(cache.find("t1", 900) == nullptr);
  // Without exp it lasts; over max_entries the table starts again.
  cache.add("a", {{"sub", "a"}}, 0);
  cache.add("b", {{"sub", "b"}}, 0);
  cache.add("c", {{"sub", "c"}}, 0);
  CHECK(cache.find("a", 1'000'000'000) != nullptr);
  cache.add("d", {{"sub", "d"}}, 0);
  CHECK(cache.find("a", 0) == nullptr);
  CHECK(cache.find("d", 0) != nullptr);
  jwt::token_cache off(0, 30);
  off.add("t1", claims, 900);
  CHECK(off.find("t1", 900) == nullptr);
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"token_cache", false}}).empty());
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"token_cache", {{"max_entries", 5}}}})
            .empty());
  CHECK(auth_error({{"keys", {hs_key("TERN_TEST_LONG")}}, {"token_cache", true}})
            .find("auth.token_cache: must be false") == 0);
}
