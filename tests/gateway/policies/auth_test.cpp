// The auth policy's piece (the keys themselves: auth/jwt_test.cpp).
#include "../gateway_fixture.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace tern::gateway;
using tern::gateway::test::chain_error;
using tern::gateway::test::with_policies;

TEST_CASE("an auth piece needs the auth section, and is checked") {
  CHECK(chain_error(with_policies("", R"({"auth": true})")) ==
        R"(routes[0].policies.auth: needs the top-level "auth" section (its keys))");
  CHECK(chain_error(with_policies("", R"({"auth": "yes"})")).find("must be true") !=
        std::string::npos);
}
