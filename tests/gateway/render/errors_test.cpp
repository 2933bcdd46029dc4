// Service failures to NestJS-shaped HTTP errors.
#include "render/errors.hpp"
#include "config/config.hpp"

#include <tern/error.hpp>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace tern::gateway;

TEST_CASE("service failures map to HTTP statuses") {
  upstream u{"users", {"h:1"}, std::chrono::milliseconds(250)};
  CHECK(error_for(tern::rpc_error(404, "user 1 not found"), u).status == 404);
  CHECK(error_for(tern::rpc_error(418, "teapot"), u).status == 418);
  CHECK(error_for(tern::rpc_error(7, "odd status"), u).status == 500);
  CHECK(error_for({tern::errc::internal, "x", 500}, u).status == 500);
  CHECK(error_for({tern::errc::timeout, "x"}, u).status == 504);
  CHECK(error_for({tern::errc::connection_refused, "x"}, u).status == 503);
  CHECK(error_for({tern::errc::connection_closed, "x"}, u).status == 503);
  CHECK(error_for({tern::errc::no_handler, "x"}, u).status == 502);
  auto r = error_for(tern::rpc_error(409, "taken"), u);
  CHECK(nlohmann::json::parse(r.body) ==
        nlohmann::json{{"statusCode", 409}, {"message", "taken"}, {"error", "Conflict"}});
}
