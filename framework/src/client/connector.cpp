#include "connector.hpp"

#include "tern/transport/client_connection.hpp"
#include "tern/wire.hpp"

namespace tern::detail {

namespace {
class tcp final : public connector {
 public:
  explicit tcp(const client_options& o)
      : wire_(o.codec ? o.codec : make_codec(o.wire, o.max_frame)),
        options_(o.connection),
        timeout_(o.connect_timeout),
        tls_(o.tls ? transport::tls_context::client(*o.tls) : nullptr),
        server_name_(o.tls ? o.tls->server_name : std::string()) {}

  asio::awaitable<std::shared_ptr<transport::client_connection>> connect(
      const asio::ip::tcp::endpoint& address, const std::string& label,
      const std::string& host) override {
    return transport::client_connection::connect(address, label, *wire_, options_, timeout_, tls_,
                                                 server_name_.empty() ? host : server_name_);
  }

 private:
  std::shared_ptr<const transport::codec> wire_;
  transport::connection_options options_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<const transport::tls_context> tls_;
  std::string server_name_;
};
}  // namespace

std::unique_ptr<connector> tcp_connector(const client_options& o) {
  return std::make_unique<tcp>(o);
}

}  // namespace tern::detail
