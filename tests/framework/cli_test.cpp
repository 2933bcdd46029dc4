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

namespace {
// service_flags() parsed over these arguments, then service_tls().
std::optional<tern::tls_options> service_tls(std::vector<std::string> args) {
  std::vector<char*> argv{const_cast<char*>("svc")};
  for (auto& a : args) argv.push_back(a.data());
  auto values = tern::cli::parse(static_cast<int>(argv.size()), argv.data(), "svc", "A service.",
                                 tern::cli::service_flags("3100", "9200"));
  return tern::cli::service_tls(values);
}
}  // namespace

TEST_CASE("a service's --tls-* flags: plaintext without them, mutual TLS with the switch") {
  CHECK_FALSE(service_tls({}).has_value());
  auto one_way = service_tls({"--tls-cert", "s.pem", "--tls-key", "s.key"});
  REQUIRE(one_way.has_value());
  CHECK(one_way->cert_file == "s.pem");
  CHECK(one_way->key_file == "s.key");
  CHECK(one_way->check == tern::peer_check::none);
  // A CA alone checks the certificates callers send; the switch requires one.
  CHECK(service_tls({"--tls-cert=s.pem", "--tls-key=s.key", "--tls-ca=ca.pem"})->check ==
        tern::peer_check::optional);
  auto mutual = service_tls(
      {"--tls-cert=s.pem", "--tls-key=s.key", "--tls-ca=ca.pem", "--tls-require-client-cert"});
  CHECK(mutual->check == tern::peer_check::require);
  CHECK(mutual->ca_file == "ca.pem");
  CHECK(service_tls({"--tls-cert=s.pem", "--tls-key=s.key", "--tls-ca=ca.pem",
                     "--tls-require-client-cert=false"})
            ->check == tern::peer_check::optional);
  // The switch shows without VALUE in --help.
  auto help = thrown([] { service_tls({"--help"}); });
  CHECK(std::string(help.what()).find("--tls-require-client-cert\n") != std::string::npos);
  CHECK(std::string(help.what()).find("--tls-cert VALUE") != std::string::npos);
  // What cannot work is refused with the flag named.
  auto no_key = thrown([] { service_tls({"--tls-cert=s.pem"}); });
  CHECK(no_key.status() == 2);
  CHECK(std::string(no_key.what()).find("--tls-key") != std::string::npos);
  auto no_ca = thrown([] {
    service_tls({"--tls-cert=s.pem", "--tls-key=s.key", "--tls-require-client-cert"});
  });
  CHECK(std::string(no_ca.what()).find("--tls-ca") != std::string::npos);
  auto no_cert = thrown([] { service_tls({"--tls-ca=ca.pem"}); });
  CHECK(std::string(no_cert.what()).find("need --tls-cert") != std::string::npos);
  auto not_bool = thrown([] {
    service_tls({"--tls-cert=s.pem", "--tls-key=s.key", "--tls-ca=ca.pem",
                 "--tls-require-client-cert=maybe"});
  });
  CHECK(std::string(not_bool.what()).find("'maybe' is not true or false") != std::string::npos);
}
