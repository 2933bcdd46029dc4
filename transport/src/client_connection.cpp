#include "tern/transport/client_connection.hpp"

#include "tern/transport/control.hpp"
#include "tern/transport/log_limit.hpp"
#include "tern/transport/wire_error.hpp"

#include <spdlog/spdlog.h>
#include <asio/co_spawn.hpp>
#include <asio/connect.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

namespace tern::transport {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr auto never = std::chrono::steady_clock::time_point::max();
// What a keep-alive ping's reply carries does not matter.
const auto ignore_value = [](const value_view&) {};

// The client connections of this thread (one event loop) with calls in
// flight. A connection alone in that is talking in turns with its peer,
// which waits for what its callers send next (run_woken). A hint: a
// connection that ends on another thread may leave it off by one.
thread_local std::size_t busy_connections = 0;

// Ends a connect attempt (a lookup, then the connect) within `timeout`;
// throws errc::connection_refused naming `where`.
template <class Attempt>
asio::awaitable<void> within(Attempt attempt, asio::ip::tcp::socket& sock, const std::string& where,
                             std::chrono::milliseconds timeout) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer timer(sock.get_executor(), timeout);
  auto result = co_await (std::move(attempt) || timer.async_wait(asio::use_awaitable));
  if (result.index() == 1) {
    throw rpc_error(errc::connection_refused, "cannot connect to " + where + ": timed out after " +
                                                  std::to_string(timeout.count()) + " ms");
  }
  if (auto ec = std::get<0>(result)) {
    throw rpc_error(errc::connection_refused, "cannot connect to " + where + ": " + ec.message());
  }
}

asio::awaitable<std::error_code> connect_to(asio::ip::tcp::socket& sock,
                                            asio::ip::tcp::endpoint address) {
  auto [ec] = co_await sock.async_connect(address, nothrow);
  co_return ec;
}

asio::awaitable<std::error_code> resolve_and_connect(asio::ip::tcp::socket& sock,
                                                     const std::string& host, std::uint16_t port) {
  asio::ip::tcp::resolver resolver(sock.get_executor());
  auto [rec, endpoints] = co_await resolver.async_resolve(host, std::to_string(port), nothrow);
  if (rec) co_return rec;
  auto [cec, ep] = co_await asio::async_connect(sock, endpoints, nothrow);
  co_return cec;
}
}  // namespace

client_connection::client_connection(asio::ip::tcp::socket socket, const codec& wire,
                                     const connection_options& options,
                                     std::shared_ptr<const tls_context> tls)
    : connection(std::move(socket), wire, options, side::client, std::move(tls)),
      expiry_(executor(), never),
      ping_sink_(ignore_value) {}

client_connection::~client_connection() {
  if (!calls_.empty() && busy_connections > 0) --busy_connections;
}

asio::awaitable<std::shared_ptr<client_connection>> client_connection::connect(
    std::string host, std::uint16_t port, const codec& wire, const connection_options& options,
    std::chrono::milliseconds timeout, std::shared_ptr<const tls_context> tls) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::ip::tcp::socket sock(co_await asio::this_coro::executor);
  std::string where = host + ":" + std::to_string(port);
  co_await within(resolve_and_connect(sock, host, port), sock, where, timeout);
  co_return co_await started(std::move(sock), wire, options, std::move(tls), host, where, deadline,
                             timeout);
}

asio::awaitable<std::shared_ptr<client_connection>> client_connection::connect(
    const asio::ip::tcp::endpoint& address, const std::string& name, const codec& wire,
    const connection_options& options, std::chrono::milliseconds timeout,
    std::shared_ptr<const tls_context> tls, std::string_view server_name) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  asio::ip::tcp::socket sock(co_await asio::this_coro::executor);
  co_await within(connect_to(sock, address), sock, name, timeout);
  co_return co_await started(std::move(sock), wire, options, std::move(tls), server_name, name,
                             deadline, timeout);
}

asio::awaitable<std::shared_ptr<client_connection>> client_connection::started(
    asio::ip::tcp::socket sock, const codec& wire, const connection_options& options,
    std::shared_ptr<const tls_context> tls, std::string_view server_name, const std::string& where,
    std::chrono::steady_clock::time_point deadline, std::chrono::milliseconds timeout) {
  auto ex = sock.get_executor();
  auto conn = std::make_shared<client_connection>(std::move(sock), wire, options, std::move(tls));
  if (conn->secure()) {
    // The connect's time covers the handshake: a server that stalls it is
    // cut off (closing the socket ends the handshake) at the deadline.
    // (The timer's handler may run after this frame has gone on: it
    // shares the state, and does nothing once the handshake has ended.)
    struct race {
      bool over = false;
      bool late = false;
    };
    auto state = std::make_shared<race>();
    asio::steady_timer limit(ex, deadline);
    limit.async_wait([state, weak = std::weak_ptr<client_connection>(conn)](std::error_code ec) {
      if (ec || state->over) return;
      state->late = true;
      if (auto c = weak.lock()) c->close("the TLS handshake timed out");
    });
    auto why = co_await conn->client_handshake(server_name);
    state->over = true;
    limit.cancel();
    if (state->late) {
      throw rpc_error(errc::connection_refused,
                      "cannot connect to " + where + ": the TLS handshake did not finish within " +
                          "the connect's " + std::to_string(timeout.count()) + " ms");
    }
    if (!why.empty()) {
      conn->close("TLS handshake failed");
      throw rpc_error(errc::connection_refused,
                      "cannot connect to " + where + ": TLS handshake failed: " + why);
    }
  }
  conn->start();
  // The expirer holds the connection, which ends it on close; a failure is
  // logged here, never rethrown into the event loop.
  asio::co_spawn(
      ex, [conn]() { return conn->expirer(); },
      [peer = conn->peer()](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          spdlog::error("[{}] call expirer failed: {}", peer, clip(ex.what()));
        }
      });
  co_return conn;
}

void client_connection::send_request(call_state& s, std::string_view pattern, std::string_view meta,
                                     value_writer data, std::chrono::milliseconds timeout) {
  if (!is_open()) {
    throw rpc_error(errc::connection_closed,
                    "connection to " + peer() + " lost: " + closed_reason_);
  }
  s.id = ++next_id_;
  try {
    wire().encode_request(out(), s.id, pattern, meta, timeout, data);
  } catch (const protocol_violation& e) {
    throw rpc_error(errc::protocol_error,
                    "request " + std::string(s.label) + " not sent: " + e.what());
  }
  if (spare_.empty()) {
    calls_.emplace(s.id, &s);
  } else {  // a node an ended call left: no allocation
    auto node = std::move(spare_.back());
    spare_.pop_back();
    node.key() = s.id;
    node.mapped() = &s;
    calls_.insert(std::move(node));
  }
  if (calls_.size() == 1) ++busy_connections;
  s.owner = this;
  s.timeout = timeout;
  s.deadline = std::chrono::steady_clock::now() + timeout;
  auto& list = deadlines_[timeout];
  s.prev = list.tail;
  s.next = nullptr;
  (list.tail ? list.tail->next : list.head) = &s;
  list.tail = &s;
  if (s.deadline < armed_for_) expiry_.cancel();
  flush();
}

void client_connection::unlink(call_state& s) noexcept {
  if (!s.owner) return;
  auto node = calls_.extract(s.id);
  if (node && calls_.empty() && busy_connections > 0) --busy_connections;
  if (node && spare_.size() < max_spare_nodes) {
    try {
      spare_.push_back(std::move(node));
    } catch (const std::bad_alloc&) {  // the node is freed instead
    }
  }
  auto it = deadlines_.find(s.timeout);
  if (it != deadlines_.end()) {
    auto& list = it->second;
    (s.prev ? s.prev->next : list.head) = s.next;
    (s.next ? s.next->prev : list.tail) = s.prev;
    if (!list.head) deadlines_.erase(it);
  }
  s.prev = s.next = nullptr;
  s.owner = nullptr;
}

void client_connection::abandon(call_state& s) noexcept {
  if (s.owner == this && !s.done) tell_cancelled(s.id);
  unlink(s);
  s.done = true;
  if (s.slot.is_connected()) s.slot.clear();
  s.waiter = {};
}

void client_connection::wake(call_state& s) {
  if (!s.waiter) return;
  if (s.slot.is_connected()) s.slot.clear();
  // The calls a read ends are woken together, from one handler: one post
  // per batch of replies, not one per call.
  woken_.push_back(std::move(s.waiter));
  post_woken();
}

namespace {
// Runs a connection's woken waiters; if it is destroyed unrun (the loop
// stopped), the waiters are destroyed with it, as posted handlers would be:
// they own the frames of the coroutines waiting, which hold the connection.
struct woken_batch {
  std::shared_ptr<client_connection> self;
  void operator()() {
    auto c = std::move(self);
    c->run_woken();
  }
  explicit woken_batch(std::shared_ptr<client_connection> c) : self(std::move(c)) {}
  woken_batch(woken_batch&&) noexcept = default;
  woken_batch& operator=(woken_batch&&) = delete;
  ~woken_batch() {
    if (self) self->drop_woken();
  }
};
}  // namespace

void client_connection::post_woken() {
  if (woken_posted_ || woken_.empty()) return;
  asio::post(executor(),
             woken_batch(std::static_pointer_cast<client_connection>(shared_from_this())));
  woken_posted_ = true;
}

void client_connection::run_woken() {
  woken_posted_ = false;
  std::vector<unique_function<void()>> batch;
  batch.swap(woken_);  // calls a waiter ends (a cancel, a close) go in the next batch
  // A connection alone on its loop with calls in flight takes turns with
  // its peer: the peer waits while this side runs a batch of woken callers,
  // and this side waits while the peer answers what they sent. So its
  // batch is split once: what the first woken_slice callers sent (a caller
  // that got its reply often sends its next request) is written before the
  // rest run, as the writer's wake was posted ahead of them, and the peer
  // works on it meanwhile. With other connections busy the peers are not
  // idle, and a split would only add a write (bench/rpc_bench: 1 x 64 +20 %,
  // 2 x 64 and 4 x 64 -15 % when split; docs/benchmarks.md).
  const bool rest = std::exchange(woken_rest_, false);  // of a batch split once already
  const bool alone = busy_connections <= (calls_.empty() ? 0U : 1U);
  const std::size_t n = rest || !alone ? batch.size() : std::min(batch.size(), woken_slice);
  std::size_t i = 0;
  auto keep_rest = [&](std::size_t from) {  // ahead of later wakes, on the loop's next turn
    woken_.insert(woken_.begin(), std::make_move_iterator(batch.begin() + from),
                  std::make_move_iterator(batch.end()));
    post_woken();
  };
  try {
    for (; i < n; ++i) batch[i]();
  } catch (...) {
    keep_rest(i + 1);
    throw;
  }
  if (n < batch.size()) {
    woken_rest_ = true;
    keep_rest(n);
  } else if (woken_.empty()) {  // keep the storage for the next batch
    batch.clear();
    woken_.swap(batch);
  }
}

void client_connection::drop_woken() noexcept {
  woken_posted_ = false;
  woken_rest_ = false;
  auto batch = std::move(woken_);
  woken_.clear();
}

void client_connection::finish(call_state& s, std::optional<rpc_error> error) {
  unlink(s);
  s.done = true;
  s.error = std::move(error);
  wake(s);
  if (pending() == 0 && !idle_close_reason_.empty()) {
    // Not from inside the reader's delivery of this reply: on the loop's next turn.
    asio::post(executor(),
               [self = std::static_pointer_cast<client_connection>(shared_from_this())] {
                 if (self->pending() == 0) self->close(self->idle_close_reason_);
               });
  }
}

void client_connection::close_when_idle(std::string_view reason) {
  if (!is_open()) return;
  idle_close_reason_ = reason.empty() ? std::string_view("drained") : reason;
  if (pending() == 0) close(idle_close_reason_);
}

void client_connection::send_ping() {
  static const std::string packed_ping = [] {
    msgpack::sbuffer b;
    msgpack::pack(b, ping_pattern);
    return std::string(b.data(), b.size());
  }();
  if (pinging() || !is_open()) return;
  ping_.label = ping_pattern;
  ping_.sink = &ping_sink_;
  ping_.error.reset();
  ping_.done = false;
  auto nil = [](packer& pk) { pk.pack_nil(); };
  send_request(ping_, packed_ping, {}, nil, options().keepalive_timeout);
}

void client_connection::silent() {
  auto why = "the peer is silent: no reply to a keep-alive ping within " +
             std::to_string(options().keepalive_timeout.count()) + " ms";
  spdlog::warn("[{}] {}; closing the connection", peer(), why);
  close(why);
  if (on_silent_) {
    auto f = std::move(on_silent_);
    f();
  }
}

void client_connection::cancel(call_state& s) {
  if (s.done) return;
  tell_cancelled(s.id);
  finish(s, rpc_error(errc::cancelled, std::string(s.label) + " cancelled"));
}

void client_connection::tell_cancelled(std::uint64_t id) noexcept {
  // The service stops the work (a coroutine handler is cancelled, a reply
  // dropped); a peer without cancel frames does it at its own pace.
  if (!is_open()) return;
  try {
    if (wire().encode_cancel(out(), id)) flush();
  } catch (const std::exception& e) {
    spdlog::debug("[{}] cancel of call {} not sent: {}", peer(), id, clip(e.what()));
  }
}

asio::awaitable<void> client_connection::wait(call_state& s) {
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [this, &s](auto handler) {
        s.slot = asio::get_associated_cancellation_slot(handler);
        if (s.slot.is_connected()) {
          s.slot.assign([this, &s](asio::cancellation_type) { cancel(s); });
        }
        s.waiter = [h = std::move(handler)]() mutable { std::move(h)(); };
      },
      asio::use_awaitable);
}

asio::awaitable<void> client_connection::call(std::string_view label, std::string_view pattern,
                                              std::string_view meta, value_writer data,
                                              value_sink on_value,
                                              std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  if (congested()) co_await wait_writable();
  call_state s;
  s.label = label;
  s.sink = &on_value;
  struct guard {
    client_connection* c;
    call_state* s;
    ~guard() { c->abandon(*s); }
  } g{this, &s};
  send_request(s, pattern, meta, data, timeout);
  while (!s.done) co_await wait(s);
  if (s.error) throw *s.error;
}

asio::awaitable<void> client_connection::open_stream(call_state& s, std::string_view label,
                                                     std::string_view pattern,
                                                     std::string_view meta, value_writer data,
                                                     std::chrono::milliseconds timeout) {
  auto self = shared_from_this();
  if (congested()) co_await wait_writable();
  s.label = label;
  s.stream = true;
  send_request(s, pattern, meta, data, timeout);
}

asio::awaitable<std::optional<msgpack::object_handle>> client_connection::next(call_state& s) {
  auto self = shared_from_this();
  while (s.taken == s.values.size() && !s.done) co_await wait(s);
  if (s.taken < s.values.size()) {
    auto v = std::move(s.values[s.taken++]);
    if (s.taken == s.values.size()) {
      s.values.clear();
      s.taken = 0;
    }
    co_return v;
  }
  if (s.error) throw *s.error;
  co_return std::nullopt;
}

asio::awaitable<void> client_connection::emit(std::string_view label, std::string_view pattern,
                                              std::string_view meta, value_writer data) {
  auto self = shared_from_this();
  if (congested()) co_await wait_writable();
  if (!is_open()) {
    throw rpc_error(errc::connection_closed,
                    "connection to " + peer() + " lost: " + closed_reason_);
  }
  try {
    wire().encode_event(out(), pattern, meta, data);
  } catch (const protocol_violation& e) {
    throw rpc_error(errc::protocol_error, "event " + std::string(label) + " not sent: " + e.what());
  }
  flush();
}

void client_connection::on_packet_(packet& p) {
  if (p.kind == packet_kind::goaway) {
    if (!going_away_) spdlog::info("[{}] the service is draining (goaway)", peer());
    going_away_ = true;
    return;
  }
  if (p.kind != packet_kind::reply) {
    throw protocol_violation("a server sent a request or event packet");
  }
  auto it = calls_.find(p.id);
  if (it == calls_.end()) {
    spdlog::debug("[{}] dropped a reply to call {} which already ended", peer(), p.id);
    return;
  }
  call_state& s = *it->second;
  if (p.has_err) {
    finish(s, to_rpc_error(p));
    return;
  }
  if (p.has_response) {
    // A value the caller cannot take fails that call alone.
    try {
      if (s.stream) {
        s.values.push_back(decode_owned(p.response));  // outlives the receive buffer
      } else {
        (*s.sink)(value_view(p.response, *p.zone));
      }
    } catch (const std::exception& e) {
      finish(s, rpc_error(errc::decode_error,
                          "reply to " + std::string(s.label) + " could not be taken: " + e.what()));
      return;
    }
  }
  if (p.disposed) {
    finish(s, std::nullopt);
  } else if (s.stream) {
    wake(s);
  }
}

void client_connection::on_bad_packet_(const packet_error& e) {
  if (!e.id()) throw e;  // a reply that names no call: the server is broken
  auto it = calls_.find(*e.id());
  if (it == calls_.end()) return;
  finish(*it->second, rpc_error(errc::decode_error, "reply to " + std::string(it->second->label) +
                                                        " does not decode: " + e.what()));
}

void client_connection::on_closed_(std::string_view reason, bool protocol_error) {
  closed_reason_ = reason;
  expiry_.cancel();
  std::vector<call_state*> all;
  all.reserve(calls_.size());
  for (auto& [id, s] : calls_) all.push_back(s);
  for (auto* s : all) {
    finish(*s, rpc_error(protocol_error ? errc::protocol_error : errc::connection_closed,
                         std::string(s->label) + ": connection to " + peer() +
                             " lost: " + std::string(reason)));
  }
}

asio::awaitable<void> client_connection::expirer() {
  // Calls' deadlines, and the keep-alive: a ping after keepalive_interval
  // without a byte from the peer.
  auto self = shared_from_this();
  const auto keepalive = options().keepalive_interval;
  const bool pings = keepalive.count() > 0 && options().keepalive_timeout.count() > 0;
  while (is_open()) {
    auto earliest = never;
    for (auto& [t, list] : deadlines_) earliest = std::min(earliest, list.head->deadline);
    if (pings && !pinging()) {
      earliest = std::min(earliest, heard_from() + keepalive);
    }
    armed_for_ = earliest;
    expiry_.expires_at(earliest);
    co_await expiry_.async_wait(nothrow);
    armed_for_ = never;
    if (!is_open()) break;
    auto now = std::chrono::steady_clock::now();
    std::vector<call_state*> expired;
    for (auto& [t, list] : deadlines_) {
      for (auto* s = list.head; s && s->deadline <= now; s = s->next) expired.push_back(s);
    }
    bool unheard = false;  // a call timed out with nothing received since it was sent
    bool quiet = false;    // the ping's time is up, and nothing came
    for (auto* s : expired) {
      if (s == &ping_) {
        // Bytes that came since it was sent (a long reply ahead of the
        // answer) show the peer is alive as well as the answer would.
        // Any reply (a no-handler one from an older peer too) ends it
        // before this; so do bytes that came since it was sent (a long
        // reply ahead of the answer).
        quiet = heard_from() < s->deadline - s->timeout;
        finish(*s, std::nullopt);
        continue;
      }
      unheard = unheard || heard_from() < s->deadline - s->timeout;
      tell_cancelled(s->id);
      finish(*s, rpc_error(errc::timeout, "no reply to " + std::string(s->label) + " within " +
                                              std::to_string(s->timeout.count()) + " ms"));
    }
    if (quiet) {
      silent();
      break;
    }
    if (pings && (unheard || heard_from() + keepalive <= now)) send_ping();
  }
}

}  // namespace tern::transport
