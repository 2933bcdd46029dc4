#include "tern/transport/tls_stream.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/ssl/error.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

namespace tern::transport {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}  // namespace

struct tls_stream::impl {
  impl(asio::ip::tcp::socket& socket, std::shared_ptr<const tls_context> c, side s)
      : context(std::move(c)), stream(socket, context->asio()), role(s) {}
  std::shared_ptr<const tls_context> context;  // outlives the stream (the ALPN choice reads it)
  asio::ssl::stream<asio::ip::tcp::socket&> stream;
  side role;
};

tls_stream::tls_stream(asio::ip::tcp::socket& socket, std::shared_ptr<const tls_context> context,
                       side s)
    : impl_(std::make_unique<impl>(socket, std::move(context), s)) {}

tls_stream::~tls_stream() = default;

void tls_stream::expect_name(std::string_view server_name) {
  impl_->context->prepare_client(impl_->stream.native_handle(), server_name);
}

asio::awaitable<std::string> tls_stream::handshake() {
  auto& s = impl_->stream;
  auto type =
      impl_->role == side::server ? asio::ssl::stream_base::server : asio::ssl::stream_base::client;
  auto [ec] = co_await s.async_handshake(type, nothrow);
  if (!ec) co_return std::string();
  std::string why;
  if (ec == asio::ssl::error::stream_truncated || ec == asio::error::eof) {
    why = "the peer closed the connection during the handshake";
  } else if (ec.category() == asio::error::get_ssl_category()) {
    // OpenSSL's reason ("certificate verify failed", "wrong version number",
    // "peer did not return a certificate"), without the library's codes.
    const char* reason = ERR_reason_error_string(static_cast<unsigned long>(ec.value()));
    why = reason ? reason : ec.message();
  } else {
    why = ec.message();
  }
  long verify = SSL_get_verify_result(s.native_handle());
  if (verify != X509_V_OK) {
    why += " (";
    why += X509_verify_cert_error_string(verify);
    why += ")";
  }
  co_return why;
}

asio::awaitable<std::pair<std::error_code, std::size_t>> tls_stream::read_some(
    char* data, std::size_t size, asio::cancellation_slot slot) {
  std::tuple<std::error_code, std::size_t> r;
  if (slot.is_connected()) {
    r = co_await impl_->stream.async_read_some(asio::buffer(data, size),
                                               asio::bind_cancellation_slot(slot, nothrow));
  } else {
    r = co_await impl_->stream.async_read_some(asio::buffer(data, size), nothrow);
  }
  auto [ec, n] = r;
  // A peer that closes without TLS's close_notify: for length-prefixed
  // frames nothing is lost that the framing would not notice.
  if (ec == asio::ssl::error::stream_truncated) ec = asio::error::eof;
  co_return std::pair{ec, n};
}

asio::awaitable<std::pair<std::error_code, std::size_t>> tls_stream::write(const char* data,
                                                                           std::size_t size) {
  auto [ec, n] = co_await asio::async_write(impl_->stream, asio::buffer(data, size), nothrow);
  co_return std::pair{ec, n};
}

bool tls_stream::buffered() const noexcept {
  // Asio's stream reads the socket into its own buffer, then feeds
  // OpenSSL's through a BIO pair: bytes may wait in either.
  auto* ssl = const_cast<asio::ssl::stream<asio::ip::tcp::socket&>&>(impl_->stream).native_handle();
  return SSL_has_pending(ssl) == 1 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
}

tls_peer tls_stream::peer() const {
  return peer_of(impl_->stream.native_handle());
}

std::string tls_stream::negotiated() const {
  return transport::negotiated(impl_->stream.native_handle());
}

std::string tls_stream::alpn() const {
  return alpn_of(impl_->stream.native_handle());
}

}  // namespace tern::transport
