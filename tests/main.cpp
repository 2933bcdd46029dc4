#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

int main(int argc, char** argv) {
  // Failures are what matter in test output; set TERN_TEST_LOG=debug to see more.
  const char* level = std::getenv("TERN_TEST_LOG");
  spdlog::set_level(level ? spdlog::level::from_str(level) : spdlog::level::err);
  return doctest::Context(argc, argv).run();
}
