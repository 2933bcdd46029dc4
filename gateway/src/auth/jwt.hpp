// JSON Web Tokens (RFC 7519, JWS compact form of RFC 7515) checked against
// the keys of the config's "auth" section, each key with its own explicit
// list of algorithms; and signed with a secret, for `gateway token`.
// Signatures are OpenSSL's (EVP); docs/gateway.md says why no JWT library.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tern::gateway::jwt {

/// The longest token looked at: longer ones are refused unread.
inline constexpr std::size_t max_token_bytes = 8192;

/// What verify() found: the claims when the token is good, else the reason
/// (for the log only: clients are told "invalid token").
struct result {
  bool ok = false;
  std::string reason;
  nlohmann::json claims;  ///< the payload object, when ok
};

class verifier {
 public:
  /// From the config's "auth" object: keys (each a secret from an env
  /// variable or a file, a PEM public key file, or a JWKS file, with the
  /// algorithms it may verify), and the optional issuer, audience and
  /// leeway. Reads the files and the environment now; throws config_error
  /// naming `where` and the entry when one is wrong.
  verifier(const nlohmann::json& auth, const std::string& where);
  ~verifier();
  verifier(const verifier&) = delete;
  verifier& operator=(const verifier&) = delete;

  /// Checks a compact JWS: size, form, the header's `alg` against the
  /// chosen key's allow-list (`kid` chooses the key when the token has one),
  /// the signature, then `exp`, `nbf` (with the leeway), `iss` and `aud`
  /// (when configured). `now` is seconds since the epoch.
  [[nodiscard]] result verify(std::string_view token, std::int64_t now) const;

  /// A token for `claims`, signed with the first key that holds a secret
  /// (its first algorithm, its kid in the header). Throws
  /// std::runtime_error when no key can sign.
  [[nodiscard]] std::string sign(const nlohmann::json& claims) const;

  [[nodiscard]] const std::string& issuer() const noexcept { return issuer_; }
  [[nodiscard]] const std::string& audience() const noexcept { return audience_; }

  struct key;

 private:
  std::vector<std::unique_ptr<key>> keys_;
  std::string issuer_, audience_;
  std::int64_t leeway_ = 30;
};

/// base64url without padding (RFC 7515 §2), both ways; decode() is false
/// for any other character or an impossible length.
std::string base64url_encode(std::string_view bytes);
bool base64url_decode(std::string_view text, std::string& out);

}  // namespace tern::gateway::jwt
