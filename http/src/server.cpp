#include "tern/http/server.hpp"

#include "tern/transport/log_limit.hpp"
#include "tern/transport/server.hpp"
#include "tern/transport/task_group.hpp"
#include "tern/transport/tls_stream.hpp"
#include "tern/transport/unique_function.hpp"

#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <optional>
#include <unordered_set>

namespace tern::http {

namespace {

constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
using clock_type = std::chrono::steady_clock;

// A lingering close discards at most this much of what the client still sends.
constexpr std::size_t linger_bytes = 1024 * 1024;
constexpr std::chrono::milliseconds max_linger{2000};
// Responses to pipelined requests queued before they are written.
constexpr std::size_t max_queued_response_bytes = 64 * 1024;
// A session's read buffer, taken when its first bytes arrive.
constexpr std::size_t read_buffer_bytes = 16 * 1024;

// The socket has neither bytes nor an end of stream to report now.
bool nothing_to_read(asio::ip::tcp::socket& s) {
  char byte;
  auto n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void append_response(std::string& out, const response& r, bool keep_alive, bool head) {
  char num[16];
  out += "HTTP/1.1 ";
  out.append(num, std::to_chars(num, num + sizeof num, r.status).ptr);
  out += ' ';
  out += reason_phrase(r.status);
  out += "\r\nContent-Type: ";
  out += r.content_type;
  out += "\r\nContent-Length: ";
  out.append(num, std::to_chars(num, num + sizeof num, r.body.size()).ptr);
  out += keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n";
  for (const auto& [k, v] : r.headers) {
    out += k;
    out += ": ";
    out += v;
    out += "\r\n";
  }
  out += "\r\n";
  if (!head) out += r.body;  // HEAD: the headers GET would have, no body (RFC 9110 §9.3.2)
}

}  // namespace

// The server's state and its tasks (the accept and sweep loops, one
// session per connection), which hold it: it goes once none runs.
struct server::impl : std::enable_shared_from_this<server::impl> {
  impl(asio::io_context& io, limits l, handler h, error_renderer render);

  struct session_info;
  struct client_watch;
  // A connection counted in open_: released when the session's frame goes,
  // or at once when the connection is reclaimed.
  class connection_slot {
   public:
    explicit connection_slot(std::shared_ptr<std::atomic<std::size_t>> open)
        : open_(std::move(open)) {}
    connection_slot(connection_slot&&) noexcept = default;
    connection_slot& operator=(connection_slot&&) = delete;
    ~connection_slot() { release(); }
    void release() noexcept {
      if (open_) open_->fetch_sub(1, std::memory_order_relaxed);
      open_.reset();
    }

   private:
    std::shared_ptr<std::atomic<std::size_t>> open_;
  };
  // Idle sessions in the order they became idle (an intrusive list).
  struct idle_list {
    session_info* head = nullptr;
    session_info* tail = nullptr;
  };

  std::uint16_t listen(const std::string& host, std::uint16_t port, bool reuse_port);
  void stop();
  asio::awaitable<void> drain(std::chrono::milliseconds bound);
  // `counted`: the connection is in open_ already (the accept loop's check).
  void start_session(asio::ip::tcp::socket socket, bool counted = false);
  // The tasks: each holds the impl (`keep`), so `this` outlives it.
  asio::awaitable<void> accept_loop(std::shared_ptr<impl> keep);
  asio::awaitable<void> sweep_loop(std::shared_ptr<impl> keep);
  asio::awaitable<void> session(std::shared_ptr<impl> keep, asio::ip::tcp::socket socket,
                                std::shared_ptr<client_watch> watch, connection_slot slot);
  // At drain, how long a TLS connection without a request yet may take to
  // finish its handshake or send its first request.
  [[nodiscard]] std::chrono::milliseconds drain_grace() const {
    return std::min(limits_.read_timeout, std::chrono::milliseconds(2000));
  }
  // An HTTPS session's handshake, counted; false (logged) if it failed.
  asio::awaitable<bool> handshake(transport::tls_stream& tls, asio::ip::tcp::socket& socket,
                                  session_info& info);
  // Starts the session's wait for bytes unless one is pending.
  static void wait_readable(const std::shared_ptr<client_watch>& w);
  // Files `s` under the idle list its state calls for (none while it is
  // reading a request, handling, writing or closing). Called before each of
  // the session's waits: reclaim() runs only while sessions wait.
  void track(session_info& s) noexcept;
  void untrack(session_info& s) noexcept;
  // Closes the idle connection held longest, one that never sent a byte
  // before one between requests, and frees its slot; false if none is idle.
  bool reclaim();

  asio::io_context& io_;
  limits limits_;
  std::shared_ptr<const transport::tls_context> tls_;  // new connections' (none: plain)
  std::uint64_t handshakes_ = 0;
  std::uint64_t failed_handshakes_ = 0;
  handler handler_;
  error_renderer render_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer sweeper_;
  asio::steady_timer drained_;  // drain() waits on it; the last session to end cancels it
  bool running_ = false;
  bool draining_ = false;
  clock_type::time_point drain_began_{};
  std::size_t starting_ = 0;  // sessions spawned that have not registered yet
  std::uint64_t accepted_ = 0;
  std::uint64_t reclaimed_ = 0;
  std::unordered_set<session_info*> sessions_;
  idle_list fresh_;                                 // connected, not a byte received yet
  idle_list between_;                               // keep-alive, between requests
  std::shared_ptr<std::atomic<std::size_t>> open_;  // connections, maybe other servers' too
  transport::task_group tasks_;                     // the loops and the sessions
};

struct server::impl::session_info {
  impl* owner;
  asio::ip::tcp::socket* socket;
  const transport::ip_endpoint* peer;
  connection_slot slot;
  // The idle list this session is on (track()), and its neighbours there.
  idle_list* listed = nullptr;
  session_info* prev = nullptr;
  session_info* next = nullptr;
  bool fresh = true;     // not a byte received yet
  bool busy = false;     // a handler is working on a response
  bool writing = false;  // responses are being written (the client must take them)
  clock_type::time_point write_since{};
  bool in_message = false;   // a request has begun and is not complete
  bool lingering = false;    // closing: discarding what the client still sends
  bool handshaking = false;  // TLS: the handshake runs (timed as a request; reclaimable)
  bool reading = false;      // TLS: bytes came; the session decrypts them (timed as a request)
  clock_type::time_point read_since{};   // when that read began (`since` stays the idle clock's)
  transport::tls_stream* tls = nullptr;  // the session's, over TLS
  // When the request began (in_message), the lingering began, or else the
  // last response was done: the start of the running deadline.
  clock_type::time_point since{};
  [[nodiscard]] bool idle() const {
    return !busy && !writing && !in_message && !lingering && !reading;
  }
  // Bytes have come that no read has taken: in the socket, or (TLS) in the session.
  [[nodiscard]] bool has_bytes() const {
    std::error_code ec;
    return (socket->available(ec) > 0 && !ec) || (tls && tls->buffered());
  }
};

// The session's one wait for bytes, which serves two ends. While a handler
// runs (`info` set), it notices a client that leaves: the session's signal
// (its coroutine is bound to it) then cancels what the handler awaits.
// Between requests, it is what the session awaits. One wait does both, kept
// pending from a handler's start to the next request: Asio starts every
// wait with an EPOLL_CTL_MOD, and one per request is all this costs.
struct server::impl::client_watch {
  transport::task_group::task_ref session;  // the session's task
  asio::ip::tcp::socket* socket = nullptr;
  session_info* info = nullptr;  // while a handler runs
  request* req = nullptr;
  bool waiting = false;  // a wait is pending on the socket
  // How the wait ended, when it did with the session not parked on it.
  std::optional<std::error_code> ended;
  // The session parked on the wait (between requests). Parked, the session
  // holds no reference to the watch, which is then the pending wait's
  // alone: the watch holds the session's coroutine, and a loop of
  // references would outlive an io_context destroyed with the wait pending.
  // The watch comes back to the session with the wait's end.
  transport::unique_function<void(std::error_code, std::shared_ptr<client_watch>)> resume;

  // The wait ended: to the parked session, or kept for it.
  static void finish(const std::shared_ptr<client_watch>& w, std::error_code ec) {
    if (w->resume) {
      auto r = std::move(w->resume);  // leaves it empty
      r(ec, w);
    } else {
      w->ended = ec;
    }
  }
};

void server::impl::wait_readable(const std::shared_ptr<client_watch>& w) {
  if (w->waiting || w->ended) return;
  w->waiting = true;
  w->socket->async_wait(asio::socket_base::wait_read, [w](std::error_code ec) {
    w->waiting = false;
    if (ec || !w->info) {  // cancelled or closed, or between requests
      client_watch::finish(w, ec);
      return;
    }
    // Readable while its request is in hand: more requests (pipelining:
    // it is there), or the end of its stream (gone).
    char byte;
    auto n = ::recv(w->socket->native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    // A pipelined request: the client is there, and the wait is done (Asio
    // starts a wait with EPOLL_CTL_MOD, which reports bytes already there,
    // so waiting again would wake at once, over and over, while the handler
    // runs). A client that leaves after it is noticed when it is answered.
    if (n > 0) {
      client_watch::finish(w, ec);
      return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      wait_readable(w);  // a spurious wake
      return;
    }
    spdlog::debug("[{}] the client left before its response: its calls are cancelled",
                  transport::to_string(*w->info->peer));
    w->req->client_gone = true;
    w->info = nullptr;
    client_watch::finish(w, asio::error::eof);
    w->session.cancel();
  });
}

std::string_view reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 413:
      return "Payload Too Large";
    case 417:
      return "Expectation Failed";
    case 422:
      return "Unprocessable Entity";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 499:
      return "Client Closed Request";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
  }
}

response text_response(int status, std::string_view message) {
  response r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.body.reserve(message.size() + 1);
  r.body.append(message);
  r.body += '\n';
  return r;
}

limits admin_limits(std::size_t max_connections) {
  return limits{.max_header_bytes = 8 * 1024,
                .max_body_bytes = 0,
                .max_headers = 50,
                .read_timeout = std::chrono::seconds(3),
                .idle_timeout = std::chrono::seconds(30),
                .max_connections = max_connections};
}

server::impl::impl(asio::io_context& io, limits l, handler h, error_renderer render)
    : io_(io),
      limits_(l),
      handler_(std::move(h)),
      render_(render ? std::move(render) : [](int status, std::string_view message, const request&)
                  -> asio::awaitable<response> { co_return text_response(status, message); }),
      acceptor_(io),
      sweeper_(io),
      drained_(io),
      open_(std::make_shared<std::atomic<std::size_t>>(0)),
      tasks_(io.get_executor(), "http server") {}

server::server(asio::io_context& io, limits l, handler h, error_renderer render)
    : impl_(std::make_shared<impl>(io, l, std::move(h), std::move(render))) {}

server::~server() {
  impl_->stop();
}

std::uint16_t server::listen(const std::string& host, std::uint16_t port, bool reuse_port) {
  return impl_->listen(host, port, reuse_port);
}

void server::share_connection_count(std::shared_ptr<std::atomic<std::size_t>> open) {
  impl_->open_ = std::move(open);
}

void server::stop() {
  impl_->stop();
}

asio::awaitable<void> server::drain(std::chrono::milliseconds bound) {
  auto self = impl_;
  co_await self->drain(bound);
}

asio::awaitable<bool> server::join(std::chrono::steady_clock::time_point deadline) {
  auto self = impl_;
  co_return co_await self->tasks_.join(deadline);
}

std::size_t server::connections() const noexcept {
  return impl_->sessions_.size();
}

std::uint64_t server::accepted() const noexcept {
  return impl_->accepted_;
}

std::uint64_t server::reclaimed() const noexcept {
  return impl_->reclaimed_;
}

void server::use_tls(std::shared_ptr<const transport::tls_context> context) {
  impl_->tls_ = std::move(context);
}

std::uint64_t server::handshakes() const noexcept {
  return impl_->handshakes_;
}

std::uint64_t server::failed_handshakes() const noexcept {
  return impl_->failed_handshakes_;
}

void server::impl::untrack(session_info& s) noexcept {
  auto* list = s.listed;
  if (!list) return;
  (s.prev ? s.prev->next : list->head) = s.next;
  (s.next ? s.next->prev : list->tail) = s.prev;
  s.prev = s.next = nullptr;
  s.listed = nullptr;
}

void server::impl::track(session_info& s) noexcept {
  auto* want = !s.idle() ? nullptr : s.fresh ? &fresh_ : &between_;
  if (want == s.listed) return;
  untrack(s);
  if (!want) return;
  s.prev = want->tail;
  (want->tail ? want->tail->next : want->head) = &s;
  want->tail = &s;
  s.listed = want;
}

bool server::impl::reclaim() {
  // A listed session waits for bytes; one whose bytes have come (its wait
  // done, its turn to run not yet) is about to be busy, and one already
  // closed (timed out) frees its slot by itself: neither is taken.
  auto usable = [](session_info* s) { return s->socket->is_open() && !s->has_bytes(); };
  session_info* victim = nullptr;
  for (auto* list : {&fresh_, &between_}) {
    for (auto* s = list->head; s && !victim; s = s->next) {
      if (usable(s)) victim = s;
    }
  }
  if (!victim) return false;
  untrack(*victim);
  victim->slot.release();
  ++reclaimed_;
  spdlog::debug("[{}] idle connection closed to admit a new one (max_connections)",
                transport::to_string(*victim->peer));
  std::error_code ec;
  victim->socket->close(ec);  // its read fails and the session ends
  return true;
}

std::uint16_t server::impl::listen(const std::string& host, std::uint16_t port, bool reuse_port) {
  auto bound = transport::open_acceptor(acceptor_, host, port, reuse_port);
  running_ = true;
  tasks_.spawn(accept_loop(shared_from_this()));
  tasks_.spawn(sweep_loop(shared_from_this()));
  return bound;
}

void server::impl::stop() {
  running_ = false;
  std::error_code ec;
  acceptor_.close(ec);
  sweeper_.cancel();
  for (auto* s : sessions_) s->socket->close(ec);
  tasks_.cancel();  // handlers still running see it
}

asio::awaitable<void> server::impl::drain(std::chrono::milliseconds bound) {
  auto deadline = clock_type::now() + bound;
  draining_ = true;
  drain_began_ = clock_type::now();
  std::error_code ec;
  if (acceptor_.is_open()) {
    // Connections the kernel has already accepted may carry a request:
    // serve them (as drained sessions) instead of resetting them.
    acceptor_.non_blocking(true, ec);
    for (;;) {
      asio::ip::tcp::socket s(io_);
      acceptor_.accept(s, ec);
      if (ec) break;
      start_session(std::move(s));
    }
    acceptor_.close(ec);
  }
  // An accept that completed before the close may still be queued: let it
  // start its session before the sessions are counted.
  co_await asio::post(io_, asio::use_awaitable);
  // Idle sessions wake, find nothing to read, and close; see session().
  for (auto* s : sessions_) {
    // (A TLS handshake is left to finish: its request is served.)
    if (s->idle() && !s->handshaking) s->socket->cancel(ec);
  }
  while ((!sessions_.empty() || starting_ > 0) && clock_type::now() < deadline) {
    drained_.expires_at(deadline);
    co_await drained_.async_wait(nothrow);
  }
  if (!sessions_.empty()) {
    spdlog::warn("drain: {} connections still open after {} ms, closing them", sessions_.size(),
                 bound.count());
  }
  stop();
  // What is left was cancelled, handlers included: it ends at once.
  if (!co_await tasks_.join(clock_type::now() + max_linger)) {
    spdlog::warn("drain: {} sessions did not end when cancelled", sessions_.size());
  }
}

asio::awaitable<void> server::impl::sweep_loop(std::shared_ptr<impl> /*keep*/) {
  // One timer for every connection, instead of one re-armed per request:
  // a deadline is noticed within one tick of passing.
  auto tick = std::clamp(std::min(limits_.read_timeout, limits_.idle_timeout) / 8,
                         std::chrono::milliseconds(5), std::chrono::milliseconds(1000));
  auto linger = std::min(limits_.read_timeout, max_linger);
  while (running_) {
    sweeper_.expires_after(tick);
    co_await sweeper_.async_wait(nothrow);
    auto now = clock_type::now();
    for (auto* s : sessions_) {
      if (s->busy) continue;  // a handler is working: the client is not the one being slow
      // A client must take what is written to it as it must send a request:
      // within read_timeout.
      auto deadline = s->writing                        ? s->write_since + limits_.read_timeout
                      : s->in_message || s->handshaking ? s->since + limits_.read_timeout
                      : s->reading                      ? s->read_since + limits_.read_timeout
                      : s->lingering                    ? s->since + linger
                                                        : s->since + limits_.idle_timeout;
      // Draining, a TLS connection with no request yet (in its handshake,
      // or waiting for its first) has a short grace, not a full read_timeout.
      if (draining_ && (s->handshaking || (s->reading && s->fresh))) {
        deadline = std::min(deadline, drain_began_ + drain_grace());
      }
      if (now >= deadline) {
        spdlog::debug("[{}] http connection timed out", transport::to_string(*s->peer));
        std::error_code ec;
        s->socket->close(ec);  // its read fails and the session ends
      }
    }
  }
}

void server::impl::start_session(asio::ip::tcp::socket socket, bool counted) {
  ++starting_;
  ++accepted_;
  if (!counted) open_->fetch_add(1, std::memory_order_relaxed);
  // The watch lives as long as the session's coroutine; it cancels the
  // session's task when the client leaves (only while a handler runs).
  auto watch = std::make_shared<client_watch>();
  watch->session =
      tasks_.spawn(session(shared_from_this(), std::move(socket), watch, connection_slot(open_)));
}

asio::awaitable<void> server::impl::accept_loop(std::shared_ptr<impl> /*keep*/) {
  asio::steady_timer pause(io_);
  transport::log_limiter over_limit;
  while (running_ && !draining_) {
    auto [ec, sock] = co_await acceptor_.async_accept(nothrow);
    // Accepted just before the drain: served. (Not after stop(): nothing
    // would cancel it.)
    if (!ec && draining_ && running_) start_session(std::move(sock));
    if (!running_ || draining_) co_return;
    if (ec) {
      spdlog::warn("http accept failed: {}", ec.message());
      pause.expires_after(std::chrono::milliseconds(50));
      co_await pause.async_wait(nothrow);
      continue;
    }
    // Counted before the check: servers sharing the count never pass the
    // limit together. At the limit, an idle connection of this server's
    // makes room (its slot is freed at once, so the count stays).
    if (auto open = open_->fetch_add(1, std::memory_order_relaxed);
        open >= limits_.max_connections && !reclaim()) {
      open_->fetch_sub(1, std::memory_order_relaxed);
      if (std::size_t held = 0; over_limit.allow(held)) {
        spdlog::warn(
            "http connection refused: {} open, the most allowed (max_connections), none idle{}",
            open, transport::held_back(held));
      }
      std::error_code cec;
      sock.close(cec);
      continue;
    }
    start_session(std::move(sock), true);
  }
}

asio::awaitable<bool> server::impl::handshake(transport::tls_stream& tls,
                                              asio::ip::tcp::socket& socket, session_info& info) {
  info.handshaking = true;
  track(info);
  auto why = co_await tls.handshake();
  info.handshaking = false;
  info.since = clock_type::now();
  if (why.empty()) {
    ++handshakes_;
    co_return true;
  }
  ++failed_handshakes_;
  // Scanners and broken clients come in crowds: debug, and rate-limited.
  thread_local transport::log_limiter limit;
  if (std::size_t held = 0; limit.allow(held)) {
    spdlog::debug("[{}] TLS handshake failed: {}{}", transport::to_string(*info.peer), why,
                  transport::held_back(held));
  }
  // Plain HTTP at this port: say so in plain HTTP (nginx does too).
  if (why.find("http request") != std::string::npos && socket.is_open()) {
    static constexpr std::string_view refusal =
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Content-Length: 48\r\nConnection: close\r\n\r\n"
        "This port speaks HTTPS: send the request again.\n";
    info.writing = true;
    info.write_since = clock_type::now();
    track(info);
    co_await asio::async_write(socket, asio::buffer(refusal), nothrow);
    info.writing = false;
  }
  co_return false;
}

asio::awaitable<void> server::impl::session(std::shared_ptr<impl> /*keep*/,
                                            asio::ip::tcp::socket socket,
                                            std::shared_ptr<client_watch> watch,
                                            connection_slot slot) {
  std::error_code ec;
  socket.set_option(asio::ip::tcp::no_delay(true), ec);
  auto remote = socket.remote_endpoint(ec);
  request req;
  if (!ec) req.peer = transport::to_ip_endpoint(remote);
  request_parser parser(limits_);
  session_info info{this, &socket, &req.peer, std::move(slot)};
  watch->socket = &socket;
  info.since = clock_type::now();
  --starting_;
  sessions_.insert(&info);
  struct unregister {
    session_info* info;
    ~unregister() {
      auto* s = info->owner;
      s->untrack(*info);
      s->sessions_.erase(info);
      if (s->draining_ && s->sessions_.empty() && s->starting_ == 0) s->drained_.cancel();
    }
  } guard{&info};

  // No read buffer until the first bytes have come.
  std::unique_ptr<char[]> in;
  auto read_into = [&] {
    if (!in) in = std::make_unique_for_overwrite<char[]>(read_buffer_bytes);
    return asio::buffer(in.get(), read_buffer_bytes);
  };
  // Idle reads are non-blocking ones after a wait (below).
  socket.non_blocking(true, ec);
  if (ec) co_return;  // a blocking read_some would stall every session
  // HTTPS: the handshake first. Every read then goes through the TLS
  // session, idle ones included: bytes it has taken from the socket and
  // not yet returned are not the socket's to report (no wait-then-read).
  std::unique_ptr<transport::tls_stream> tls;
  tls_facts facts;
  if (tls_) {
    tls =
        std::make_unique<transport::tls_stream>(socket, tls_, transport::tls_stream::side::server);
    if (!co_await handshake(*tls, socket, info)) {
      socket.close(ec);
      co_return;
    }
    facts.negotiated = tls->negotiated();
    facts.alpn = tls->alpn();
    facts.peer = tls->peer();
    req.tls = &facts;
    info.tls = tls.get();
  }
  std::string out;
  bool close_after = false;  // the last response said Connection: close
  bool sent_continue = false;
  // Writes what is queued; false if the client is gone (or too slow).
  auto write_out = [&]() -> asio::awaitable<bool> {
    info.writing = true;
    info.write_since = clock_type::now();
    track(info);
    std::error_code wec;
    if (tls) {
      wec = (co_await tls->write(out.data(), out.size())).first;
    } else {
      wec = std::get<0>(co_await asio::async_write(socket, asio::buffer(out), nothrow));
    }
    info.writing = false;
    if (!info.in_message) info.since = clock_type::now();
    out.clear();
    co_return !wec;
  };
  bool gone = false;
  while (!close_after) {
    // Draining: a connection between requests closes, unless the next
    // request is already waiting (in the socket, or in the TLS session).
    // A TLS connection's first request comes a round trip after its
    // handshake: it is waited for, within read_timeout.
    const bool first_tls =
        tls && info.fresh && (!draining_ || clock_type::now() - info.since < drain_grace());
    if (draining_ && !info.in_message && !first_tls && !info.has_bytes()) break;
    std::error_code rec;
    std::size_t n = 0;
    if (info.in_message || (tls && (tls->buffered() || (draining_ && first_tls)))) {
      // The rest of a request, or (TLS) bytes the session already holds.
      info.reading = tls && !info.in_message;
      if (info.reading) info.read_since = clock_type::now();
      track(info);
      if (tls) {
        auto buf = read_into();
        std::tie(rec, n) = co_await tls->read_some(static_cast<char*>(buf.data()), buf.size(), {});
      } else {
        std::tie(rec, n) = co_await socket.async_read_some(read_into(), nothrow);
      }
      info.reading = false;
      // The bytes a pending wait saw may be these: it must not leave the
      // next handler unwatched, thinking the client has more.
      if (!rec && watch->ended && !*watch->ended) watch->ended.reset();
      if (!rec) info.fresh = false;
    } else {
      // Idle (connected, or between requests): wait for bytes with no read
      // pending and no buffer held, listed for reclaim() meanwhile, which
      // leaves a session alone once bytes have come for it (has_bytes()).
      // The wait may be the one the last handler started (client_watch).
      track(info);
      if (watch->ended) {
        rec = *watch->ended;
        watch->ended.reset();
      } else {
        wait_readable(watch);
        auto* parked = watch.get();
        watch.reset();  // the pending wait's alone until it ends (client_watch::resume)
        std::tie(rec, watch) =
            co_await asio::async_initiate<decltype(nothrow),
                                          void(std::error_code, std::shared_ptr<client_watch>)>(
                [&](auto handler) {
                  // A cancelled session stops waiting: the wait ends aborted.
                  auto slot = asio::get_associated_cancellation_slot(handler);
                  if (slot.is_connected()) {
                    slot.assign([s = &socket](asio::cancellation_type) {
                      std::error_code cec;
                      s->cancel(cec);
                    });
                  }
                  parked->resume = [h = std::move(handler)](
                                       std::error_code wec,
                                       std::shared_ptr<client_watch> w) mutable {
                    auto slot = asio::get_associated_cancellation_slot(h);
                    if (slot.is_connected()) slot.clear();
                    std::move(h)(wec, std::move(w));
                  };
                },
                nothrow);
      }
      if (!rec && tls) {
        // Bytes came: a TLS record, maybe in part. The session reads it,
        // timed as a request is and no longer idle (not reclaimed).
        if (!info.has_bytes() && nothing_to_read(socket)) continue;  // a stale end: wait again
        info.reading = true;
        info.read_since = clock_type::now();
        track(info);
        auto buf = read_into();
        std::tie(rec, n) = co_await tls->read_some(static_cast<char*>(buf.data()), buf.size(), {});
        info.reading = false;
        if (!rec && watch->ended && !*watch->ended) watch->ended.reset();
      } else if (!rec) {
        n = socket.read_some(read_into(), rec);
        if (rec == asio::error::would_block) continue;  // woken with nothing to read
      }
      // (A TLS connection's wait that drain cancelled leaves it fresh: its
      // first request, a round trip behind its handshake, is waited for.)
      if (!rec || !tls) info.fresh = false;
    }
    if (rec) {
      // drain() cancels the waits of idle connections so they look again.
      if (rec == asio::error::operation_aborted && draining_ && !info.in_message &&
          socket.is_open()) {
        continue;
      }
      break;
    }
    const char* data = in.get();
    std::size_t pos = 0;
    while (pos < n && !close_after) {
      auto [state, used] = parser.parse(req, std::string_view(data + pos, n - pos));
      pos += used;
      if (state == request_parser::result::need_more) {
        if (!info.in_message && parser.in_progress()) {
          info.in_message = true;
          info.since = clock_type::now();
        }
        if (parser.headers_complete() && parser.expects_continue() && !sent_continue) {
          out += "HTTP/1.1 100 Continue\r\n\r\n";
          sent_continue = true;
        }
        continue;
      }
      info.in_message = false;
      sent_continue = false;
      if (state == request_parser::result::error) {
        spdlog::debug("[{}] bad request ({}): {}", transport::to_string(req.peer),
                      parser.error_status(), parser.error_message());
        info.busy = true;
        track(info);
        response refused = co_await render_(parser.error_status(), parser.error_message(), req);
        info.busy = false;
        append_response(out, refused, false, req.method == "HEAD");
        close_after = true;
        break;
      }
      info.busy = true;
      track(info);
      response r;
      bool failed = false;
      watch->info = &info;
      watch->req = &req;
      wait_readable(watch);
      try {
        r = co_await handler_(req);
      } catch (const std::exception& e) {
        if (!req.client_gone && running_) {  // (not a handler cancelled by stop())
          spdlog::error("[{}] {} {} failed: {}", transport::to_string(req.peer), req.method,
                        transport::clip(req.target), transport::clip(e.what()));
        }
        failed = true;
      }
      // The wait, if still pending, goes on: it is the next request's.
      watch->info = nullptr;
      watch->req = nullptr;
      if (req.client_gone ||
          !running_) {  // nobody to answer, or stopped; the session is cancelled too
        gone = true;
        break;
      }
      if (failed) {
        r = co_await render_(500, "Internal server error", req);
      }
      info.busy = false;
      info.since = clock_type::now();
      bool keep = req.keep_alive && !draining_;
      append_response(out, r, keep, req.method == "HEAD");
      close_after = !keep;
      // Pipelined requests are answered in batches, but a client that does
      // not read gets no more than this queued for it.
      if (out.size() >= max_queued_response_bytes && !close_after && !co_await write_out()) {
        gone = true;
        break;
      }
    }
    if (gone || (!out.empty() && !co_await write_out())) {
      close_after = false;  // nothing to linger for
      break;
    }
  }
  if (close_after && socket.is_open()) {
    // Closing with unread bytes would reset the connection, and the client
    // could lose the response: stop sending, read until the client closes.
    socket.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
    info.lingering = true;
    info.since = clock_type::now();
    track(info);
    std::size_t discarded = 0;
    while (discarded < linger_bytes) {
      auto [lec, ln] = co_await socket.async_read_some(read_into(), nothrow);
      if (lec) break;
      discarded += ln;
    }
  }
  socket.close(ec);
}

}  // namespace tern::http
