#include "auth/jwt.hpp"

#include "config/config.hpp"

#include <tern/json_depth.hpp>

#include <spdlog/spdlog.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

namespace tern::gateway::jwt {

namespace {

using json = nlohmann::json;

// The algorithms of RFC 7518 §3 that are signatures (never "none").
enum class alg : std::uint8_t {
  HS256,
  HS384,
  HS512,
  RS256,
  RS384,
  RS512,
  PS256,
  PS384,
  PS512,
  ES256,
  ES384,
  ES512
};
constexpr std::array<std::string_view, 12> alg_names = {"HS256", "HS384", "HS512", "RS256",
                                                        "RS384", "RS512", "PS256", "PS384",
                                                        "PS512", "ES256", "ES384", "ES512"};

std::optional<alg> alg_from(std::string_view name) {
  for (std::size_t i = 0; i < alg_names.size(); ++i) {
    if (alg_names[i] == name) return static_cast<alg>(i);
  }
  return std::nullopt;
}

std::string_view name_of(alg a) {
  return alg_names[static_cast<std::size_t>(a)];
}

enum class family : std::uint8_t { hmac, rsa_pkcs1, rsa_pss, ecdsa };

family family_of(alg a) {
  auto i = static_cast<int>(a);
  return i < 3 ? family::hmac : i < 6 ? family::rsa_pkcs1 : i < 9 ? family::rsa_pss : family::ecdsa;
}

// SHA-256, -384, -512 by the algorithm's number, fetched from OpenSSL's
// provider once (passing EVP_sha256() makes OpenSSL 3 fetch it again on
// every use). Kept for the process's life.
const EVP_MD* digest_of(alg a) {
  static EVP_MD* const fetched[3] = {EVP_MD_fetch(nullptr, "SHA2-256", nullptr),
                                     EVP_MD_fetch(nullptr, "SHA2-384", nullptr),
                                     EVP_MD_fetch(nullptr, "SHA2-512", nullptr)};
  return fetched[static_cast<int>(a) % 3];
}

constexpr std::array<const char*, 3> digest_names = {"SHA2-256", "SHA2-384", "SHA2-512"};

struct mac_ctx_free {
  void operator()(EVP_MAC_CTX* c) const noexcept { EVP_MAC_CTX_free(c); }
};
using mac_ctx_ptr = std::unique_ptr<EVP_MAC_CTX, mac_ctx_free>;

// An HMAC keyed once: each use copies it, so the key's pads are not
// computed again per token.
mac_ctx_ptr keyed_hmac(const std::string& secret, alg a) {
  static EVP_MAC* const hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  mac_ctx_ptr c(hmac ? EVP_MAC_CTX_new(hmac) : nullptr);
  if (!c) return c;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                       const_cast<char*>(digest_names[static_cast<int>(a) % 3]), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(c.get(), reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                   params) != 1) {
    c.reset();
  }
  return c;
}

// The curve each ES algorithm is defined on (RFC 7518 §3.4), and the size
// of R and S.
struct curve {
  std::string_view jwk_name, openssl_name;
  std::size_t bytes;
};
constexpr std::array<curve, 3> curves = {
    {{"P-256", "prime256v1", 32}, {"P-384", "secp384r1", 48}, {"P-521", "secp521r1", 66}}};

const curve& curve_of(alg a) {
  return curves[static_cast<std::size_t>(a) - 9];
}

struct pkey_free {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

[[noreturn]] void bad(const std::string& where, const std::string& why) {
  throw config_error(where + ": " + why);
}

// A JSON document from outside (a token's header or payload): parsed only
// if shallow, and only if it is an object.
std::optional<json> parse_object(std::string_view text) {
  constexpr int max_depth = 16;
  if (json_depth(text, max_depth) > max_depth) return std::nullopt;
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

std::string read_file(const std::string& path, const std::string& where) {
  std::ifstream in(path, std::ios::binary);
  if (!in) bad(where, "cannot read '" + path + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

// One key: a secret, or an RSA or EC public key; its kid (may be empty);
// the algorithms it may check, each one that fits the key's kind.
struct verifier::key {
  std::string kid;
  std::vector<alg> algorithms;
  std::string secret;
  std::array<mac_ctx_ptr, 3> hmac;  // keyed, for HS256/384/512 (when listed)
  pkey_ptr pkey;
  const curve* ec = nullptr;  // for EC keys

  [[nodiscard]] bool allows(alg a) const {
    return std::find(algorithms.begin(), algorithms.end(), a) != algorithms.end();
  }

  // Whether `a` can be used with this key at all: what stops an RSA public
  // key from being taken as an HMAC secret.
  [[nodiscard]] std::string misfit(alg a) const {
    switch (family_of(a)) {
      case family::hmac:
        if (pkey) return "is a public key, not a secret";
        // RFC 7518 §3.2: a key at least as long as the hash.
        if (secret.size() < static_cast<std::size_t>(EVP_MD_get_size(digest_of(a)))) {
          return "needs a secret of at least " + std::to_string(EVP_MD_get_size(digest_of(a))) +
                 " bytes";
        }
        return {};
      case family::rsa_pkcs1:
      case family::rsa_pss:
        if (!pkey || EVP_PKEY_get_base_id(pkey.get()) != EVP_PKEY_RSA) return "needs an RSA key";
        if (EVP_PKEY_get_bits(pkey.get()) < 2048) return "needs an RSA key of 2048 bits or more";
        return {};
      case family::ecdsa:
        if (!ec || ec != &curve_of(a)) {
          return "needs an EC key on " + std::string(curve_of(a).jwk_name);
        }
        return {};
    }
    return "is unknown";
  }

  [[nodiscard]] bool check(alg a, std::string_view signed_part, std::string_view sig) const {
    const auto* data = reinterpret_cast<const unsigned char*>(signed_part.data());
    const auto* s = reinterpret_cast<const unsigned char*>(sig.data());
    if (family_of(a) == family::hmac) {
      const auto& keyed = hmac[static_cast<std::size_t>(a)];
      if (!keyed) return false;
      mac_ctx_ptr c(EVP_MAC_CTX_dup(keyed.get()));
      unsigned char mac[EVP_MAX_MD_SIZE];
      std::size_t n = 0;
      if (!c || EVP_MAC_update(c.get(), data, signed_part.size()) != 1 ||
          EVP_MAC_final(c.get(), mac, &n, sizeof mac) != 1) {
        return false;
      }
      return sig.size() == n && CRYPTO_memcmp(mac, s, n) == 0;
    }
    std::string der;
    if (family_of(a) == family::ecdsa) {
      // JWS sends R and S side by side; OpenSSL verifies DER.
      if (sig.size() != 2 * ec->bytes) return false;
      ECDSA_SIG* e = ECDSA_SIG_new();
      if (!e) return false;
      BIGNUM* r = BN_bin2bn(s, static_cast<int>(ec->bytes), nullptr);
      BIGNUM* ss = BN_bin2bn(s + ec->bytes, static_cast<int>(ec->bytes), nullptr);
      if (!r || !ss || !ECDSA_SIG_set0(e, r, ss)) {
        BN_free(r);
        BN_free(ss);
        ECDSA_SIG_free(e);
        return false;
      }
      int len = i2d_ECDSA_SIG(e, nullptr);
      if (len > 0) {
        der.resize(static_cast<std::size_t>(len));
        auto* p = reinterpret_cast<unsigned char*>(der.data());
        len = i2d_ECDSA_SIG(e, &p);
      }
      ECDSA_SIG_free(e);
      if (len <= 0) return false;
      s = reinterpret_cast<const unsigned char*>(der.data());
      sig = der;
    }
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    if (!md) return false;
    EVP_PKEY_CTX* pctx = nullptr;
    bool ok = EVP_DigestVerifyInit(md, &pctx, digest_of(a), nullptr, pkey.get()) == 1;
    if (ok && family_of(a) == family::rsa_pss) {
      // RFC 7518 §3.5: MGF1 with the same hash, a salt as long as the hash.
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    ok = ok && EVP_DigestVerify(md, s, sig.size(), data, signed_part.size()) == 1;
    EVP_MD_CTX_free(md);
    if (!ok) ERR_clear_error();  // a refused token leaves nothing for later OpenSSL users
    return ok;
  }
};

namespace {

using key = verifier::key;

pkey_ptr pem_public_key(const std::string& pem, const std::string& where) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) bad(where, "out of memory");
  pkey_ptr p(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  if (!p) bad(where, "is not a PEM public key (-----BEGIN PUBLIC KEY-----)");
  return p;
}

const curve* curve_of_key(EVP_PKEY* p) {
  if (EVP_PKEY_get_base_id(p) != EVP_PKEY_EC) return nullptr;
  char name[64];
  std::size_t len = 0;
  if (!EVP_PKEY_get_utf8_string_param(p, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len)) {
    return nullptr;
  }
  for (const auto& c : curves) {
    if (c.openssl_name == std::string_view(name, len)) return &c;
  }
  return nullptr;
}

std::string b64_field(const json& jwk, const char* name, const std::string& where) {
  std::string out;
  if (!jwk.contains(name) || !jwk[name].is_string() ||
      !base64url_decode(jwk[name].get<std::string>(), out) || out.empty()) {
    bad(where + "." + name, "must be base64url");
  }
  return out;
}

// An RSA or EC public key, or an "oct" secret, from a JWK (RFC 7517).
void from_jwk(const json& jwk, key& k, const std::string& where) {
  if (!jwk.is_object() || !jwk.contains("kty") || !jwk["kty"].is_string()) {
    bad(where, "is not a JWK (no kty)");
  }
  auto kty = jwk["kty"].get<std::string>();
  if (kty == "oct") {
    k.secret = b64_field(jwk, "k", where);
    return;
  }
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  if (!bld) bad(where, "out of memory");
  std::vector<BIGNUM*> numbers;
  std::string point;
  const char* type = nullptr;
  if (kty == "RSA") {
    type = "RSA";
    for (const char* part : {"n", "e"}) {
      auto bytes = b64_field(jwk, part, where);
      numbers.push_back(BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size()), nullptr));
      OSSL_PARAM_BLD_push_BN(bld, *part == 'n' ? OSSL_PKEY_PARAM_RSA_N : OSSL_PKEY_PARAM_RSA_E,
                             numbers.back());
    }
  } else if (kty == "EC") {
    type = "EC";
    auto crv = jwk.value("crv", std::string());
    auto c = std::find_if(curves.begin(), curves.end(), [&](auto& x) { return x.jwk_name == crv; });
    if (c == curves.end()) {
      OSSL_PARAM_BLD_free(bld);
      bad(where + ".crv", "must be P-256, P-384 or P-521");
    }
    auto x = b64_field(jwk, "x", where), y = b64_field(jwk, "y", where);
    if (x.size() != c->bytes || y.size() != c->bytes) {
      OSSL_PARAM_BLD_free(bld);
      bad(where, "x and y must be " + std::to_string(c->bytes) + " bytes for " + crv);
    }
    point = '\x04' + x + y;  // uncompressed SEC1 point
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->openssl_name.data(), 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
  } else {
    OSSL_PARAM_BLD_free(bld);
    bad(where + ".kty", "must be RSA, EC or oct");
  }
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* made = nullptr;
  bool ok = params && ctx && EVP_PKEY_fromdata_init(ctx) == 1 &&
            EVP_PKEY_fromdata(ctx, &made, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  for (auto* n : numbers) BN_free(n);
  if (!ok) bad(where, "is not a valid " + kty + " public key");
  k.pkey.reset(made);
  k.ec = curve_of_key(made);
}

std::vector<alg> read_algorithms(const json& entry, const std::string& where) {
  if (!entry.contains("algorithms") || !entry["algorithms"].is_array() ||
      entry["algorithms"].empty()) {
    bad(where + ".algorithms", "must list the algorithms this key may verify (e.g. [\"HS256\"])");
  }
  std::vector<alg> out;
  for (const auto& a : entry["algorithms"]) {
    auto name = a.is_string() ? a.get<std::string>() : std::string();
    auto parsed = alg_from(name);
    if (!parsed) {
      bad(where + ".algorithms", "'" + name +
                                     "' is not a signature algorithm (HS256/384/512, "
                                     "RS256/384/512, PS256/384/512, ES256/384/512)");
    }
    out.push_back(*parsed);
  }
  return out;
}

// Every algorithm a key allows must fit it: checked once, at start-up,
// when the HMACs are keyed too.
void check_fit(key& k, const std::string& where) {
  for (auto a : k.algorithms) {
    auto why = k.misfit(a);
    if (!why.empty()) bad(where, std::string(name_of(a)) + " " + why);
    if (family_of(a) == family::hmac) {
      k.hmac[static_cast<std::size_t>(a)] = keyed_hmac(k.secret, a);
      if (!k.hmac[static_cast<std::size_t>(a)]) bad(where, "OpenSSL has no HMAC for it");
    }
  }
}

std::string string_field(const json& entry, const char* name, const std::string& where) {
  if (!entry[name].is_string() || entry[name].get<std::string>().empty()) {
    bad(where + "." + name, "must be a non-empty string");
  }
  return entry[name].get<std::string>();
}

void add_keys(const json& entry, const std::string& where,
              std::vector<std::unique_ptr<key>>& keys) {
  if (!entry.is_object()) bad(where, "must be an object");
  static constexpr std::string_view sources[] = {"secret_env", "secret_file", "public_key_file",
                                                 "jwks_file"};
  int given = 0;
  for (const auto& [name, v] : entry.items()) {
    bool known = name == "kid" || name == "algorithms";
    for (auto s : sources) {
      if (s == name) known = true, ++given;
    }
    if (!known) {
      bad(where + "." + name,
          "is not a key setting (kid, algorithms, secret_env, secret_file, public_key_file, "
          "jwks_file)");
    }
  }
  if (given != 1) {
    bad(where, "needs exactly one of secret_env, secret_file, public_key_file, jwks_file");
  }
  auto algorithms = read_algorithms(entry, where);
  std::string kid = entry.contains("kid") ? string_field(entry, "kid", where) : std::string();
  if (entry.contains("jwks_file")) {
    if (!kid.empty()) bad(where + ".kid", "comes from each key of the JWKS");
    auto path = string_field(entry, "jwks_file", where);
    auto text = read_file(path, where + ".jwks_file");
    auto set = parse_object(text);
    if (!set || !set->contains("keys") || !(*set)["keys"].is_array()) {
      bad(where + ".jwks_file", "'" + path + "' is not a JWKS ({\"keys\": [...]})");
    }
    std::size_t used = 0;
    for (std::size_t i = 0; i < (*set)["keys"].size(); ++i) {
      const auto& jwk = (*set)["keys"][i];
      std::string at = where + ".jwks_file[" + std::to_string(i) + "]";
      // Encryption keys are skipped: by "use", or by an "alg" that is not a
      // signature algorithm (RSA-OAEP, ...).
      if (jwk.is_object() && jwk.contains("use") &&
          (!jwk["use"].is_string() || jwk["use"] != "sig")) {
        continue;
      }
      if (jwk.is_object() && jwk.contains("alg") &&
          (!jwk["alg"].is_string() || !alg_from(jwk["alg"].get<std::string>()))) {
        continue;
      }
      auto k = std::make_unique<key>();
      from_jwk(jwk, *k, at);
      k->kid = jwk.contains("kid") ? string_field(jwk, "kid", at) : std::string();
      // The JWK's own "alg", if any, narrows the entry's list.
      auto own = jwk.contains("alg") && jwk["alg"].is_string()
                     ? alg_from(jwk["alg"].get<std::string>())
                     : std::nullopt;
      for (auto a : algorithms) {
        if ((!own || *own == a) && k->misfit(a).empty()) k->algorithms.push_back(a);
      }
      if (k->algorithms.empty()) {
        bad(at, "fits none of the algorithms " + where + ".algorithms allows");
      }
      check_fit(*k, at);
      keys.push_back(std::move(k));
      ++used;
    }
    if (used == 0) bad(where + ".jwks_file", "'" + path + "' has no signature key");
    return;
  }
  auto k = std::make_unique<key>();
  k->kid = kid;
  k->algorithms = std::move(algorithms);
  if (entry.contains("secret_env")) {
    auto name = string_field(entry, "secret_env", where);
    const char* v = std::getenv(name.c_str());
    if (!v || !*v) bad(where + ".secret_env", "the environment variable " + name + " is not set");
    k->secret = v;
  } else if (entry.contains("secret_file")) {
    auto path = string_field(entry, "secret_file", where);
    k->secret = read_file(path, where + ".secret_file");
    while (!k->secret.empty() && (k->secret.back() == '\n' || k->secret.back() == '\r')) {
      k->secret.pop_back();
    }
  } else {
    auto path = string_field(entry, "public_key_file", where);
    k->pkey =
        pem_public_key(read_file(path, where + ".public_key_file"), where + ".public_key_file");
    k->ec = curve_of_key(k->pkey.get());
  }
  // scripts/demo and docker-compose.yml fall back to this published secret:
  // fine on a laptop, a token forgery kit anywhere else. Say so every start.
  if (k->secret == "tern-demo-development-secret-change-me") {
    spdlog::warn(
        "{}: the key's secret is the demo's published DEVELOPMENT secret: anyone can "
        "mint tokens it accepts. Set your own (32+ random bytes) for real use.",
        where);
  }
  check_fit(*k, where);
  keys.push_back(std::move(k));
}

// A NumericDate claim (RFC 7519 §2): a JSON number of seconds.
bool numeric_date(const json& claims, const char* name, double& out) {
  auto it = claims.find(name);
  if (it == claims.end()) return false;
  if (!it->is_number()) throw std::invalid_argument(std::string(name) + " is not a number");
  out = it->get<double>();
  return true;
}

}  // namespace

verifier::verifier(const json& auth, const std::string& where) {
  if (!auth.is_object()) bad(where, "must be an object");
  for (const auto& [name, v] : auth.items()) {
    if (name != "keys" && name != "issuer" && name != "audience" && name != "leeway_s" &&
        name != "token_cache") {
      bad(where + "." + name,
          "is not an auth setting (keys, issuer, audience, leeway_s, token_cache)");
    }
  }
  if (!auth.contains("keys") || !auth["keys"].is_array() || auth["keys"].empty()) {
    bad(where + ".keys", "must list at least one key");
  }
  for (std::size_t i = 0; i < auth["keys"].size(); ++i) {
    add_keys(auth["keys"][i], where + ".keys[" + std::to_string(i) + "]", keys_);
  }
  for (std::size_t i = 0; i < keys_.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (!keys_[i]->kid.empty() && keys_[i]->kid == keys_[j]->kid) {
        bad(where + ".keys", "two keys have the kid '" + keys_[i]->kid + "'");
      }
    }
  }
  if (auth.contains("issuer")) issuer_ = string_field(auth, "issuer", where);
  if (auth.contains("audience")) audience_ = string_field(auth, "audience", where);
  if (auth.contains("leeway_s")) {
    const auto& l = auth["leeway_s"];
    if (!l.is_number_integer() || l.get<std::int64_t>() < 0 || l.get<std::int64_t>() > 300) {
      bad(where + ".leeway_s", "must be a whole number of seconds from 0 to 300");
    }
    leeway_ = l.get<std::int64_t>();
  }
  if (auth.contains("token_cache")) {
    const auto& c = auth["token_cache"];
    if (c == false) {
      cache_entries_ = 0;
    } else if (c.is_object() && c.size() == 1 && c.contains("max_entries") &&
               c["max_entries"].is_number_integer() && c["max_entries"].get<std::int64_t>() > 0 &&
               c["max_entries"].get<std::int64_t>() <= 1000000) {
      cache_entries_ = c["max_entries"].get<std::size_t>();
    } else {
      bad(where + ".token_cache", "must be false or {\"max_entries\": N} (1 to 1000000)");
    }
  }
}

verifier::~verifier() = default;

namespace {

// Roughly what an entry holds: its token, claims about as large, and the
// routes' identities.
std::size_t weight(std::string_view token, const token_cache::entry& e) {
  std::size_t n = 2 * token.size();
  for (const auto& v : e.views) n += v.identity.size() + v.subject.size() + sizeof v;
  return n;
}

}  // namespace

token_cache::entry* token_cache::find(std::string_view token, std::int64_t now) {
  auto it = entries_.find(token);
  if (it == entries_.end()) return nullptr;
  if (static_cast<double>(now) >= it->second.expires) {
    bytes_ -= weight(it->first, it->second);
    entries_.erase(it);
    return nullptr;
  }
  return &it->second;
}

const route_view& token_cache::add_view(entry& e, route_view v) {
  bytes_ += v.identity.size() + v.subject.size() + sizeof v;
  return e.views.emplace_back(std::move(v));
}

token_cache::entry* token_cache::add(std::string_view token, json claims, std::int64_t now) {
  if (max_entries_ == 0) return nullptr;
  // A token's claims take about as many bytes as its text.
  if (entries_.size() >= max_entries_ || bytes_ + 2 * token.size() > max_bytes) {
    std::erase_if(entries_,
                  [&](const auto& kv) { return static_cast<double>(now) >= kv.second.expires; });
    bytes_ = 0;
    for (const auto& kv : entries_) bytes_ += weight(kv.first, kv.second);
    if (entries_.size() >= max_entries_ || bytes_ + 2 * token.size() > max_bytes) {
      entries_.clear();  // all still valid: start again rather than track use
      bytes_ = 0;
    }
  }
  auto exp = claims.find("exp");
  double expires = exp != claims.end() && exp->is_number()
                       ? exp->get<double>() + static_cast<double>(leeway_)
                       : std::numeric_limits<double>::infinity();
  bytes_ += 2 * token.size();
  return &entries_.insert_or_assign(std::string(token), entry{std::move(claims), expires, {}})
              .first->second;
}

result verifier::verify(std::string_view token, std::int64_t now) const {
  result r;
  auto fail = [&r](std::string why) {
    r.reason = std::move(why);
    return std::move(r);
  };
  if (token.size() > max_token_bytes) return fail("token over 8 KiB");
  auto dot1 = token.find('.');
  auto dot2 = dot1 == token.npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == token.npos || token.find('.', dot2 + 1) != token.npos) {
    return fail("not a compact JWS (three parts)");
  }
  std::string header_text, payload_text, sig;
  if (!base64url_decode(token.substr(0, dot1), header_text) ||
      !base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload_text) ||
      !base64url_decode(token.substr(dot2 + 1), sig)) {
    return fail("a part is not base64url");
  }
  auto header = parse_object(header_text);
  if (!header) return fail("header is not a JSON object");
  auto alg_it = header->find("alg");
  if (alg_it == header->end() || !alg_it->is_string()) return fail("header has no alg");
  auto a = alg_from(alg_it->get<std::string>());
  if (!a) return fail("alg '" + alg_it->get<std::string>() + "' refused");  // "none" too
  if (header->contains("crit")) return fail("header has crit extensions");
  std::string_view kid;
  if (auto k = header->find("kid"); k != header->end()) {
    if (!k->is_string()) return fail("kid is not a string");
    kid = k->get_ref<const std::string&>();
  }

  // The key is chosen by kid (or tried in turn when the token has none);
  // the token's alg is only used if that key lists it.
  bool known_kid = kid.empty(), allowed = false, good = false;
  auto signed_part = token.substr(0, dot2);
  for (const auto& k : keys_) {
    if (!kid.empty() && k->kid != kid) continue;
    known_kid = true;
    if (!k->allows(*a)) continue;
    allowed = true;
    if (k->check(*a, signed_part, sig)) {
      good = true;
      break;
    }
  }
  if (!known_kid) return fail("unknown kid");
  if (!allowed) return fail("alg " + std::string(name_of(*a)) + " not allowed for the key");
  if (!good) return fail("bad signature");

  auto claims = parse_object(payload_text);
  if (!claims) return fail("payload is not a JSON object");
  try {
    double t = 0;
    auto clock = static_cast<double>(now);
    if (numeric_date(*claims, "exp", t) && clock >= t + static_cast<double>(leeway_)) {
      return fail("expired");
    }
    if (numeric_date(*claims, "nbf", t) && clock + static_cast<double>(leeway_) < t) {
      return fail("not valid yet (nbf)");
    }
  } catch (const std::invalid_argument& e) {
    return fail(e.what());
  }
  if (!issuer_.empty()) {
    auto it = claims->find("iss");
    if (it == claims->end() || !it->is_string() || it->get_ref<const std::string&>() != issuer_) {
      return fail("wrong iss");
    }
  }
  if (!audience_.empty()) {
    // aud is a string or an array of strings (RFC 7519 §4.1.3).
    auto it = claims->find("aud");
    bool match = false;
    if (it != claims->end() && it->is_string()) match = *it == audience_;
    if (it != claims->end() && it->is_array()) {
      match = std::find(it->begin(), it->end(), json(audience_)) != it->end();
    }
    if (!match) return fail("wrong aud");
  }
  r.ok = true;
  r.claims = std::move(*claims);
  return r;
}

std::string verifier::sign(const json& claims) const {
  for (const auto& k : keys_) {
    if (k->pkey || k->secret.empty()) continue;
    alg a = k->algorithms.front();
    json header = {{"alg", name_of(a)}, {"typ", "JWT"}};
    if (!k->kid.empty()) header["kid"] = k->kid;
    auto text = base64url_encode(header.dump()) + "." + base64url_encode(claims.dump());
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(digest_of(a), k->secret.data(), static_cast<int>(k->secret.size()),
              reinterpret_cast<const unsigned char*>(text.data()), text.size(), mac, &n)) {
      throw std::runtime_error("HMAC failed");
    }
    return text + "." + base64url_encode({reinterpret_cast<const char*>(mac), n});
  }
  throw std::runtime_error("no key in auth.keys holds a secret to sign with");
}

std::string base64url_encode(std::string_view bytes) {
  static constexpr char digits[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::size_t i = 0;
  auto at = [&](std::size_t j) { return static_cast<unsigned char>(bytes[j]); };
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = at(i) << 16 | at(i + 1) << 8 | at(i + 2);
    for (int s = 18; s >= 0; s -= 6) out += digits[(v >> s) & 63];
  }
  if (auto rest = bytes.size() - i; rest > 0) {
    std::uint32_t v = at(i) << 16 | (rest == 2 ? at(i + 1) << 8 : 0);
    out += digits[(v >> 18) & 63];
    out += digits[(v >> 12) & 63];
    if (rest == 2) out += digits[(v >> 6) & 63];
  }
  return out;
}

bool base64url_decode(std::string_view text, std::string& out) {
  // A table, and the output written in place: tokens are decoded on every
  // request the token cache has not seen.
  static constexpr auto table = [] {
    std::array<std::int8_t, 256> t{};
    t.fill(-1);
    for (int i = 0; i < 26; ++i) t[static_cast<std::size_t>('A' + i)] = static_cast<std::int8_t>(i);
    for (int i = 0; i < 26; ++i)
      t[static_cast<std::size_t>('a' + i)] = static_cast<std::int8_t>(26 + i);
    for (int i = 0; i < 10; ++i)
      t[static_cast<std::size_t>('0' + i)] = static_cast<std::int8_t>(52 + i);
    t['-'] = 62;
    t['_'] = 63;
    return t;
  }();
  out.clear();
  if (text.size() % 4 == 1) return false;
  out.resize(text.size() * 3 / 4);
  std::size_t n = 0;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = table[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = static_cast<char>((acc >> bits) & 0xff);
    }
  }
  out.resize(n);
  return true;
}

}  // namespace tern::gateway::jwt
