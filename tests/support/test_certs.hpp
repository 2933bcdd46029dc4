// The TLS tests' certificates: made once per test run by the tls_certs
// fixture (tests/support/make_certs.py) into the directory TERN_TEST_CERTS
// names.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <string>

namespace tern::test {

/// The path of one of the fixture's files ("ca.pem", "server.key", ...).
inline std::string cert_file(const std::string& name) {
  const char* dir = std::getenv("TERN_TEST_CERTS");
  REQUIRE_MESSAGE(dir, "TERN_TEST_CERTS names the certificates' directory (the tls_certs fixture)");
  return std::string(dir) + "/" + name;
}

}  // namespace tern::test
