#include "tern/transport/tls.hpp"

#include "tern/transport/endpoint.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <asio/ssl/context.hpp>

#include <cstring>
#include <ctime>

namespace tern::transport {

namespace {

// OpenSSL's error queue as one line (and emptied, so the next call starts
// clean).
std::string openssl_reasons() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no reason given" : out;
}

[[noreturn]] void fail(const std::string& what) {
  throw tls_error("TLS: " + what + ": " + openssl_reasons());
}

// Mozilla's "intermediate" TLS 1.2 suites: forward secret, AEAD only.
constexpr const char* default_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// A client's check of the server's leaf: refused unless the connection was
// given a name or an address to match it against (prepare_client), so a
// connection set up without one fails closed instead of taking any
// certificate its CAs signed.
int verify_named(int ok, X509_STORE_CTX* store) {
  if (!ok || X509_STORE_CTX_get_error_depth(store) != 0) return ok;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  X509_VERIFY_PARAM* param = ssl ? SSL_get0_param(ssl) : nullptr;
  if (param && X509_VERIFY_PARAM_get0_host(param, 0)) return 1;
  ERR_set_mark();  // asking for an address there is none of queues an error
  char* ip = param ? X509_VERIFY_PARAM_get1_ip_asc(param) : nullptr;
  ERR_pop_to_mark();
  if (ip) {
    OPENSSL_free(ip);
    return 1;
  }
  X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

// The key's passphrase, from the string given as user data; none (an
// encrypted key then fails to load) rather than OpenSSL's default, which
// prompts on the terminal.
int passphrase(char* buf, int size, int /*rwflag*/, void* user) {
  const auto* p = static_cast<const std::string*>(user);
  if (!p || p->empty() || p->size() > static_cast<std::size_t>(size)) return 0;
  std::memcpy(buf, p->data(), p->size());
  return static_cast<int>(p->size());
}

std::string name_text(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return {};
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);  // UTF-8 as is
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n > 0 ? n : 0));
  BIO_free(bio);
  return out;
}

std::vector<std::string> alt_names(X509* x) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    auto text = [](const ASN1_STRING* s) {
      return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                         static_cast<std::size_t>(ASN1_STRING_length(s)));
    };
    if (g->type == GEN_DNS) {
      out.push_back("DNS:" + text(g->d.dNSName));
    } else if (g->type == GEN_URI) {
      out.push_back("URI:" + text(g->d.uniformResourceIdentifier));
    } else if (g->type == GEN_EMAIL) {
      out.push_back("email:" + text(g->d.rfc822Name));
    } else if (g->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* ip = g->d.iPAddress;
      ip_address a{};
      if (ASN1_STRING_length(ip) == 4) {
        a[10] = a[11] = 0xff;  // mapped, as parse_ip keeps IPv4
        std::memcpy(a.data() + 12, ASN1_STRING_get0_data(ip), 4);
        out.push_back("IP:" + to_string(a));
      } else if (ASN1_STRING_length(ip) == 16) {
        std::memcpy(a.data(), ASN1_STRING_get0_data(ip), 16);
        out.push_back("IP:" + to_string(a));
      }
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

// ALPN's wire form: each protocol as a length byte and its bytes.
std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protocols) {
  std::vector<unsigned char> out;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) {
      throw tls_error("TLS: an ALPN protocol must be 1 to 255 bytes long");
    }
    out.push_back(static_cast<unsigned char>(p.size()));
    out.insert(out.end(), p.begin(), p.end());
  }
  return out;
}

}  // namespace

struct tls_context::impl {
  explicit impl(SSL_CTX* c) : ctx(c) {}
  asio::ssl::context ctx;  // owns the SSL_CTX
  std::vector<unsigned char> alpn;
  std::chrono::system_clock::time_point not_after{};
  std::string subject;

  // A server's ALPN choice: the first of its own protocols the client
  // offers; a client that offers only others is refused.
  static int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen,
                         const unsigned char* in, unsigned int inlen, void* arg) {
    auto* self = static_cast<impl*>(arg);
    unsigned char* chosen = nullptr;
    if (SSL_select_next_proto(&chosen, outlen, self->alpn.data(),
                              static_cast<unsigned int>(self->alpn.size()), in,
                              inlen) != OPENSSL_NPN_NEGOTIATED) {
      return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    *out = chosen;
    return SSL_TLSEXT_ERR_OK;
  }
};

std::unique_ptr<tls_context::impl> tls_context::make(bool server, const tls_options& o) {
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!raw) fail("cannot make a context");
  auto i = std::make_unique<tls_context::impl>(raw);
  SSL_CTX* c = i->ctx.native_handle();
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  // The client's order of suites wins (all are strong), as Mozilla's
  // intermediate profile has it.
  SSL_CTX_set_options(c, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_cipher_list(c, o.ciphers.empty() ? default_ciphers : o.ciphers.c_str()) != 1) {
    fail("no cipher suite in \"" + o.ciphers + "\"");
  }

  if (o.cert_file.empty() != o.key_file.empty()) {
    throw tls_error("TLS: a certificate needs its key and a key its certificate (cert_file " +
                    (o.cert_file.empty() ? std::string("missing") : o.cert_file) + ", key_file " +
                    (o.key_file.empty() ? std::string("missing") : o.key_file) + ")");
  }
  if (server && o.cert_file.empty()) {
    throw tls_error("TLS: a server needs a certificate and its key (cert_file, key_file)");
  }
  if (!o.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(c, o.cert_file.c_str()) != 1) {
      fail("cannot read the certificate chain " + o.cert_file);
    }
    EVP_PKEY* key = nullptr;
    if (BIO* in = BIO_new_file(o.key_file.c_str(), "r")) {
      key = PEM_read_bio_PrivateKey(in, nullptr, passphrase,
                                    const_cast<std::string*>(&o.key_passphrase));
      BIO_free(in);
    }
    if (!key) {
      fail("cannot read the key " + o.key_file +
           (o.key_passphrase.empty() ? " (if it is encrypted, its passphrase is missing)"
                                     : " (or its passphrase is wrong)"));
    }
    int used = SSL_CTX_use_PrivateKey(c, key);
    EVP_PKEY_free(key);
    if (used != 1 || SSL_CTX_check_private_key(c) != 1) {
      fail("the key " + o.key_file + " does not match the certificate " + o.cert_file);
    }
    X509* leaf = SSL_CTX_get0_certificate(c);
    std::tm tm{};
    if (leaf && ASN1_TIME_to_tm(X509_get0_notAfter(leaf), &tm) == 1) {
      i->not_after = std::chrono::system_clock::from_time_t(timegm(&tm));
    }
    if (leaf) i->subject = name_text(X509_get_subject_name(leaf));
  }

  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(c, o.ca_file.c_str(), nullptr) != 1) {
      fail("cannot read the CA file " + o.ca_file);
    }
  } else if (!server) {
    if (!o.trust_system_store) {
      throw tls_error(
          "TLS: a client needs the CA file that signs its servers' certificates (ca_file), or "
          "to trust the system's store (trust_system_store)");
    }
    if (SSL_CTX_set_default_verify_paths(c) != 1) fail("cannot read the system's CA store");
  }

  if (server) {
    // Sessions resume only on this context's own listeners.
    static const unsigned char id[] = "tern";
    SSL_CTX_set_session_id_context(c, id, sizeof id - 1);
    if (o.check != peer_check::none) {
      if (o.ca_file.empty()) {
        throw tls_error("TLS: checking clients' certificates needs the CA file that signs them");
      }
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.ca_file.c_str());
      if (!names) fail("cannot read the CA names in " + o.ca_file);
      SSL_CTX_set_client_CA_list(c, names);
      SSL_CTX_set_verify(
          c,
          SSL_VERIFY_PEER | (o.check == peer_check::require ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
          nullptr);
    } else {
      SSL_CTX_set_verify(c, SSL_VERIFY_NONE, nullptr);
    }
    if (!o.alpn.empty()) {
      i->alpn = alpn_wire(o.alpn);
      SSL_CTX_set_alpn_select_cb(c, &tls_context::impl::select_alpn, i.get());
    }
  } else {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, verify_named);
    if (!o.alpn.empty()) {
      i->alpn = alpn_wire(o.alpn);
      // 0 is success here.
      if (SSL_CTX_set_alpn_protos(c, i->alpn.data(), static_cast<unsigned int>(i->alpn.size())) !=
          0) {
        fail("cannot set ALPN");
      }
    }
  }
  return i;
}

tls_context::tls_context(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
tls_context::~tls_context() = default;

std::shared_ptr<const tls_context> tls_context::server(const tls_options& o) {
  return std::shared_ptr<const tls_context>(new tls_context(make(true, o)));
}

std::shared_ptr<const tls_context> tls_context::client(tls_options o) {
  return std::shared_ptr<const tls_context>(new tls_context(make(false, o)));
}

asio::ssl::context& tls_context::asio() const noexcept {
  return impl_->ctx;
}

void tls_context::prepare_client(ssl_st* ssl, std::string_view server_name) const {
  if (server_name.empty()) {
    throw tls_error("TLS: a client needs the server's name, to check its certificate");
  }
  if (server_name.size() > 2 && server_name.front() == '[' && server_name.back() == ']') {
    server_name = server_name.substr(1, server_name.size() - 2);  // [::1]
  }
  std::string name(server_name);
  ERR_clear_error();
  if (ip_address ip; parse_ip(name, ip)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) {
      fail("cannot check the address " + name);
    }
    return;
  }
  if (SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) fail("bad server name " + name);
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set1_host(ssl, name.c_str()) != 1) fail("cannot check the name " + name);
}

std::chrono::system_clock::time_point tls_context::not_after() const noexcept {
  return impl_->not_after;
}

const std::string& tls_context::subject() const noexcept {
  return impl_->subject;
}

tls_peer peer_of(const ssl_st* ssl) {
  tls_peer peer;
  X509* x = SSL_get0_peer_certificate(ssl);
  if (!x || SSL_get_verify_result(ssl) != X509_V_OK) return peer;
  peer.subject = name_text(X509_get_subject_name(x));
  peer.names = alt_names(x);
  return peer;
}

std::string negotiated(const ssl_st* ssl) {
  return std::string(SSL_get_version(ssl)) + " " + SSL_CIPHER_get_name(SSL_get_current_cipher(ssl));
}

std::string alpn_of(const ssl_st* ssl) {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  SSL_get0_alpn_selected(ssl, &p, &n);
  return p ? std::string(reinterpret_cast<const char*>(p), n) : std::string();
}

}  // namespace tern::transport
