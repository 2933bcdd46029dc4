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
#include <unordered_map>
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
  [[nodiscard]] std::int64_t leeway() const noexcept { return leeway_; }
  /// auth.token_cache: how many verified tokens to remember (0: off).
  [[nodiscard]] std::size_t token_cache_entries() const noexcept { return cache_entries_; }

  struct key;

 private:
  std::vector<std::unique_ptr<key>> keys_;
  std::string issuer_, audience_;
  std::int64_t leeway_ = 30;
  std::size_t cache_entries_ = 10000;
};

/// What one route's auth policy made of a verified token: whether it may
/// pass, and the identity (packed msgpack) and subject its calls carry.
struct route_view {
  const void* route = nullptr;
  bool allowed = false;
  std::string identity, subject;
};

/// Tokens that verified, with their claims, so a token seen again skips
/// the signature: keyed by the whole token (any other bytes are another
/// key), bounded by entries and by bytes, and never used at or past the
/// token's `exp` plus the leeway (the one check that changes with time: a
/// cached token already passed `nbf`, which stays passed). Keys are fixed
/// at start-up, so nothing else can make a cached answer stale.
/// Thread safety: none (one per event loop).
class token_cache {
 public:
  token_cache(std::size_t max_entries, std::int64_t leeway)
      : max_entries_(max_entries), leeway_(leeway) {}

  struct entry {
    nlohmann::json claims;
    double expires;                 // exp + leeway, or infinity
    std::vector<route_view> views;  // one per route that has seen the token
    [[nodiscard]] const route_view* view(const void* route) const {
      for (const auto& v : views) {
        if (v.route == route) return &v;
      }
      return nullptr;
    }
  };

  /// `token`'s entry if it verified before and has not expired.
  [[nodiscard]] entry* find(std::string_view token, std::int64_t now);
  /// Remembers a token that verified (`claims` as verify() returned them);
  /// its entry, or null when the cache is off.
  entry* add(std::string_view token, nlohmann::json claims, std::int64_t now);
  /// Keeps a route's view of an entry's token.
  const route_view& add_view(entry& e, route_view v);

  static constexpr std::size_t max_bytes = 8 * 1024 * 1024;

 private:
  struct hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, entry, hash, std::equal_to<>> entries_;
  std::size_t max_entries_;
  std::int64_t leeway_;
  std::size_t bytes_ = 0;
};

/// base64url without padding (RFC 7515 §2), both ways; decode() is false
/// for any other character or an impossible length.
std::string base64url_encode(std::string_view bytes);
bool base64url_decode(std::string_view text, std::string& out);

}  // namespace tern::gateway::jwt
