// The JWT verifier on any bytes: a token, or (first byte 'P') a payload the
// target signs itself, so the claim checks after the signature see any
// text too. Never a crash; a result with a reason, or claims.
#include "auth/jwt.hpp"

#include <tern/json_depth.hpp>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace {

const tern::gateway::jwt::verifier& keys() {
  static const auto* v = [] {
    ::setenv("TERN_FUZZ_SECRET", "fuzz-secret-that-is-at-least-32-bytes", 1);
    return new tern::gateway::jwt::verifier(
        {{"keys", {{{"kid", "k"}, {"algorithms", {"HS256"}}, {"secret_env", "TERN_FUZZ_SECRET"}}}},
         {"issuer", "tern"},
         {"audience", "fuzz"}},
        "auth");
  }();
  return *v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  const auto& v = keys();
  if (!text.empty() && text[0] == 'P') {
    // sign() dumps the claims recursively: only shallow ones (ours always are).
    if (tern::json_depth(text.substr(1), 16) > 16) return 0;
    auto claims = nlohmann::json::parse(text.substr(1), nullptr, false);
    if (claims.is_discarded() || !claims.is_object() || claims.size() > 64) return 0;
    auto r = v.verify(v.sign(claims), 1'000'000);
    (void)r.ok;
    return 0;
  }
  auto r = v.verify(text, 1'000'000);
  (void)r.reason.size();
  return 0;
}
