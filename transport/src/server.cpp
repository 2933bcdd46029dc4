#include "tern/transport/server.hpp"

#include "tern/transport/log_limit.hpp"

#include <spdlog/spdlog.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <vector>

namespace tern::transport {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);

bool is_string(const msgpack::object& o, std::string_view s) noexcept {
  return o.type == msgpack::type::STR && std::string_view(o.via.str.ptr, o.via.str.size) == s;
}
}  // namespace

server_session::server_session(asio::ip::tcp::socket socket, const codec& wire,
                               const connection_options& o, server& owner,
                               std::shared_ptr<const tls_context> tls)
    : connection(std::move(socket), wire, o, side::server, std::move(tls)), owner_(&owner) {
  owner_->sessions_.insert(this);
}

server_session::~server_session() {
  if (owner_) owner_->sessions_.erase(this);
}

void server_session::on_packet_(packet& p) {
  if (!owner_) return;
  auto self = std::static_pointer_cast<server_session>(shared_from_this());
  switch (p.kind) {
    case packet_kind::request:
      if (is_string(p.pattern, ping_pattern)) {
        answer_ping({p.id, p.packed_id});
      } else {
        owner_->sink_.on_request(self, p);
      }
      break;
    case packet_kind::event:
      if (is_string(p.pattern, cancel_pattern)) {
        if (p.data.type == msgpack::type::POSITIVE_INTEGER) {
          stop(p.data.via.u64, cancellable::reason::cancelled);
        }
      } else {
        owner_->sink_.on_event(self, p);
      }
      break;
    case packet_kind::reply:
      throw protocol_violation("a client sent a reply packet");
    case packet_kind::goaway:
      break;  // only services drain; a client's is ignored
  }
}

void server_session::on_bad_packet_(const packet_error& e) {
  if (!owner_) return;
  if (e.id()) {
    owner_->sink_.on_bad_request(std::static_pointer_cast<server_session>(shared_from_this()),
                                 e.to(), e.what());
    return;
  }
  if (!e.well_formed() || !e.has_pattern()) throw e;  // nothing to answer: a broken peer
  // An event (no id, so no one to answer) that cannot be taken: dropped.
  thread_local log_limiter limit;
  if (std::size_t held = 0; limit.allow(held)) {
    spdlog::warn("[{}] dropped an event that does not decode: {}{}", peer(), clip(e.what()),
                 held_back(held));
  }
}

void server_session::on_closed_(std::string_view, bool) {
  if (owner_) owner_->sessions_.erase(this);
  owner_ = nullptr;
  // Nobody is left to take the replies: the work stops.
  std::vector<std::uint64_t> ids;
  ids.reserve(tracked_.size());
  for (const auto& [id, c] : tracked_) ids.push_back(id);
  for (auto id : ids) stop(id, cancellable::reason::closed);  // a repeated id: a no-op
}

void server_session::track(std::uint64_t id, cancellable& c) {
  tracked_.emplace(id, &c);
}

void server_session::untrack(std::uint64_t id, const cancellable& c) noexcept {
  auto [first, last] = tracked_.equal_range(id);
  for (auto it = first; it != last; ++it) {
    if (it->second == &c) {
      tracked_.erase(it);
      return;
    }
  }
}

void server_session::stop(std::uint64_t id, cancellable::reason why) {
  // Every request of that id (a peer that reuses a pending one cancels both).
  std::vector<cancellable*> hit;
  auto [first, last] = tracked_.equal_range(id);
  for (auto it = first; it != last; ++it) hit.push_back(it->second);
  tracked_.erase(id);
  for (auto* c : hit) {
    c->stopped = why;
    c->signal.emit(asio::cancellation_type::terminal);
  }
}

void server_session::answer_ping(reply_to to) {
  wire().encode_response(out(), to, nullptr, true);
  flush();
}

server::server(asio::any_io_executor ex, request_sink& sink, const codec& wire,
               const connection_options& options, std::size_t max_connections)
    : executor_(ex),
      sink_(sink),
      wire_(wire),
      options_(options),
      max_connections_(max_connections),
      acceptor_(std::make_shared<asio::ip::tcp::acceptor>(ex)),
      tasks_(ex, "server") {}

server::~server() {
  stop_accepting();
  close_all();
  tasks_.cancel();
}

std::uint16_t open_acceptor(asio::ip::tcp::acceptor& acceptor, const std::string& host,
                            std::uint16_t port, bool reuse_port) {
  asio::ip::tcp::resolver resolver(acceptor.get_executor());
  asio::ip::tcp::endpoint ep =
      *resolver.resolve(host, std::to_string(port), asio::ip::resolver_base::passive).begin();
  acceptor.open(ep.protocol());
  acceptor.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  if (reuse_port) {
    acceptor.set_option(asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true));
  }
  acceptor.bind(ep);
  acceptor.listen(asio::socket_base::max_listen_connections);
  return acceptor.local_endpoint().port();
}

std::uint16_t server::listen(const std::string& host, std::uint16_t port) {
  auto bound = open_acceptor(*acceptor_, host, port);
  tasks_.spawn(accept_loop(acceptor_));
  return bound;
}

std::string server::address() const {
  std::error_code ec;
  auto ep = acceptor_->local_endpoint(ec);
  return ec ? std::string("(not listening)") : to_string(ep);
}

// The loop holds the acceptor it waits on: the server's destructor closes
// it (stop_accepting), and a loop that resumes after that finds it closed
// and ends without touching the server. While the acceptor is open the
// server exists: only the server closes it, on this thread.
asio::awaitable<void> server::accept_loop(std::shared_ptr<asio::ip::tcp::acceptor> acceptor) {
  asio::steady_timer pause(executor_);
  log_limiter over_limit;
  while (acceptor->is_open()) {
    auto [ec, sock] = co_await acceptor->async_accept(nothrow);
    if (!acceptor->is_open()) co_return;
    if (ec) {
      // Out of descriptors and the like: keep serving the connections we
      // have and try again shortly.
      spdlog::warn("accept on {} failed: {}", address(), ec.message());
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(nothrow);
      continue;
    }
    if (sessions_.size() >= max_connections_) {
      if (std::size_t held = 0; over_limit.allow(held)) {
        std::error_code pec;
        auto ep = sock.remote_endpoint(pec);
        spdlog::warn("connection from {} closed: {} connections open, the most allowed{}",
                     pec ? std::string("(unknown peer)") : to_string(ep), sessions_.size(),
                     held_back(held));
      }
      std::error_code cec;
      sock.close(cec);
      continue;
    }
    auto session = std::make_shared<server_session>(std::move(sock), wire_, options_, *this, tls_);
    spdlog::debug("[{}] connected", session->peer());
    session->start();
    if (going_away_) send_goaway(*session);
  }
}

void server::send_goaway(server_session& s) {
  if (s.is_open() && wire_.encode_goaway(s.out())) s.flush();
}

void server::goaway() {
  going_away_ = true;
  for (auto* s : sessions_) send_goaway(*s);
}

void server::stop_accepting() {
  std::error_code ec;
  acceptor_->close(ec);
}

void server::stop_reading() {
  // (One still in its TLS handshake closes, leaving sessions_.)
  std::vector<std::shared_ptr<connection>> all;
  for (auto* s : sessions_) all.push_back(s->shared_from_this());
  for (auto& s : all) s->stop_reading();
}

asio::awaitable<void> server::flush(std::chrono::steady_clock::time_point deadline) {
  std::vector<std::shared_ptr<connection>> all;
  for (auto* s : sessions_) all.push_back(s->shared_from_this());
  for (auto& s : all) co_await s->wait_flushed(deadline);
}

void server::close_all() {
  std::vector<std::shared_ptr<connection>> all;
  for (auto* s : sessions_) all.push_back(s->shared_from_this());
  for (auto& s : all) s->close("server shutting down");
  for (auto* s : sessions_) s->owner_ = nullptr;
  sessions_.clear();
}

}  // namespace tern::transport
