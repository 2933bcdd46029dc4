#include "tern/cli.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

// parse() over these arguments (after the program's name).
std::map<std::string, std::string> parse(std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("prog")};
  for (auto& a : args) argv.push_back(a.data());
  return tern::cli::parse(static_cast<int>(argv.size()), argv.data(), "prog", "A program.",
                          {{"port", "TERN_CLI_TEST_PORT", "3100", "port to listen on"}});
}

// The exit_request `f` throws; fails the test if it throws none.
template <typename F>
tern::cli::exit_request thrown(F f) {
  try {
    f();
  } catch (const tern::cli::exit_request& e) {
    return e;
  }
  FAIL("no exit_request thrown");
  return tern::cli::exit_request(-1, "");
}

}  // namespace

TEST_CASE("flags are parsed, and --help and bad flags are reported to the caller, not exited") {
  CHECK(parse({})["port"] == "3100");
  CHECK(parse({"--port", "1"})["port"] == "1");
  CHECK(parse({"--port=2"})["port"] == "2");

  auto help = thrown([] { parse({"--help"}); });
  CHECK(help.status() == 0);
  CHECK(std::string(help.what()).find("usage: prog [options]\nA program.") == 0);
  CHECK(std::string(help.what()).find("--port VALUE") != std::string::npos);

  auto unknown = thrown([] { parse({"--nope", "x"}); });
  CHECK(unknown.status() == 2);
  CHECK(std::string(unknown.what()).find("prog: unknown option --nope\nusage:") == 0);
  CHECK(thrown([] { parse({"--port"}); }).status() == 2);  // no value
  CHECK(thrown([] { parse({"stray"}); }).status() == 2);

  auto port = thrown([] { tern::cli::port("70000", "--port"); });
  CHECK(std::string(port.what()) == "--port: '70000' is not a port number\n");
  CHECK(tern::cli::millis("250", "--x").count() == 250);
  CHECK(thrown([] { tern::cli::millis("-1", "--x"); }).status() == 2);
  CHECK(thrown([] { tern::cli::wire("grpc"); }).status() == 2);
  CHECK(thrown([] { tern::cli::set_log_level("loud"); }).status() == 2);
}
