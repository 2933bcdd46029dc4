// The @NAME@ service's handlers, called over a real connection in this process.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "handlers.hpp"

#include <tern/testing.hpp>

#include <doctest/doctest.h>

#include <string>

TEST_CASE("greet answers with a greeting") {
  tern::testing::service_under_test svc(@NAME@::register_handlers);
  const @NAME@::greet_request ada{"Ada"};
  CHECK(svc.send<@NAME@::greeting>({{"cmd", "greet"}}, ada).message == "Hello, Ada!");
}

TEST_CASE("greet refuses a request without a name, naming the field") {
  tern::testing::service_under_test svc(@NAME@::register_handlers);
  auto e = svc.error_of({{"cmd", "greet"}});
  CHECK(e.status() == 400);
  CHECK(std::string(e.what()) == "name: missing");
}
