#include "tern/microservice.hpp"

#include "admin_endpoint.hpp"
#include "service_metrics.hpp"
#include "tern/context.hpp"
#include "tern/offload.hpp"

#include "tern/transport/json.hpp"
#include "tern/transport/log_limit.hpp"
#include "tern/transport/msgpack_codec.hpp"
#include "tern/transport/server.hpp"
#include "tern/transport/wire_error.hpp"

#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/signal_set.hpp>

#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <cstdlib>
#include <cstring>

#include <map>
#include <unordered_map>
#include <vector>

namespace tern {

asio::io_context& default_io_context() {
  // Never destroyed: handler frames still suspended at exit (past the drain
  // timeout) must not be torn down after the logger and the service.
  // One thread runs it and touches its sockets and timers, so Asio need
  // not lock each I/O object; the offload pool's completions are posts,
  // which still go through the scheduler's lock.
  static auto* io = new asio::io_context(ASIO_CONCURRENCY_HINT_UNSAFE_IO);
  return *io;
}

namespace detail {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}

class service_core final : public transport::request_sink,
                           public std::enable_shared_from_this<service_core> {
 public:
  service_core(asio::io_context& io, microservice_options o)
      : io_(io),
        options_(std::move(o)),
        wire_(options_.codec ? options_.codec : make_codec(options_.wire, options_.max_frame)),
        server_(io.get_executor(), *this, *wire_, options_.connection, options_.max_connections),
        stats_(metrics_) {
    metrics_.add_gauge("rpc_server_active_requests", "Requests and coroutine events in hand.",
                       [this] { return static_cast<double>(in_flight_); });
    metrics_.add_gauge("rpc_server_connections", "Open client connections.",
                       [this] { return static_cast<double>(server_.connections()); });
    metrics_.add_gauge("tern_offload_queue_depth",
                       "Jobs handed to tern::offload() waiting for a worker thread.",
                       [] { return static_cast<double>(offload_stats().queued); });
    metrics_.add_gauge("tern_offload_busy_workers", "Worker threads running an offloaded job.",
                       [] { return static_cast<double>(offload_stats().busy); });
  }

  void on_request(const std::shared_ptr<transport::server_session>& s,
                  transport::packet& p) override {
    // Callers send the same few patterns byte for byte, so the handler is
    // looked up by those bytes first; canonicalizing (key order, NestJS's
    // JSON-in-a-string form) is only needed the first time.
    // The caller's remaining time counts from the read that brought the
    // request, so time it waited here (behind other frames, or held by
    // backpressure) is spent from it.
    auto deadline =
        p.deadline ? s->last_read() + *p.deadline : std::chrono::steady_clock::time_point::max();
    auto known = by_bytes_.find(p.packed_pattern);
    if (known != by_bytes_.end()) {
      auto& [pattern, entry] = *known->second;
      entry.handler->invoke(p.data, p.meta, responder(s, p, this, &pattern, entry.stats, deadline));
      return;
    }
    pattern_key(p);
    auto it = handlers_.find(key_);
    if (it == handlers_.end()) {
      spdlog::debug("[{}] no handler for {}", s->peer(), transport::clip(key_));
      service_metrics::record(*stats_.unknown(), outcome_of(errc::no_handler), {});
      s->wire().encode_no_handler(s->out(), {p.id, p.packed_id});
      s->flush();
      return;
    }
    if (by_bytes_.size() < max_pattern_spellings && p.packed_pattern.size() <= max_spelling_bytes) {
      by_bytes_.emplace(p.packed_pattern, &*it);
    }
    it->second.handler->invoke(p.data, p.meta,
                               responder(s, p, this, &it->first, it->second.stats, deadline));
  }

  void on_event(const std::shared_ptr<transport::server_session>& s,
                transport::packet& p) override {
    pattern_key(p);
    auto it = events_.find(key_);
    if (it == events_.end()) {
      if (std::size_t held = 0; unknown_events_.allow(held)) {
        spdlog::warn("[{}] no event handler for {}{}", s->peer(), transport::clip(key_),
                     transport::held_back(held));
      }
      return;
    }
    for (auto& h : it->second) h->invoke(p.data, p.meta, it->first, this, s);
  }

  // The canonical pattern of a packet into key_; a pattern this long is no
  // registered one, so it is not worth canonicalizing.
  void pattern_key(const transport::packet& p) {
    if (p.packed_pattern.size() > max_pattern_bytes) {
      key_.assign("(a pattern of " + std::to_string(p.packed_pattern.size()) + " bytes)");
    } else {
      canonical_pattern(p.pattern, key_);
    }
  }

  void on_bad_request(const std::shared_ptr<transport::server_session>& s, transport::reply_to to,
                      std::string_view why) override {
    if (std::size_t held = 0; bad_requests_.allow(held)) {
      // A NestJS peer's id as it sent it (JSON), tern's as its number.
      std::string id;
      if (to.packed_id.empty()) {
        id = std::to_string(to.id);
      } else {
        transport::append_json(to.packed_id, id);
      }
      spdlog::warn("[{}] request {} refused: {}{}", s->peer(), transport::clip(id), why,
                   transport::held_back(held));
    }
    service_metrics::record(*stats_.malformed(), outcome_of(errc::decode_error), {});
    rpc_error e(400, "malformed request: " + std::string(why));
    s->wire().encode_error(s->out(), to,
                           [&](transport::packer& pk) { transport::write_error(pk, e); });
    s->flush();
  }

  // The drain: not ready, goaway to every caller, still serving for the
  // grace period (for callers that have not seen it yet), then no new
  // connections; in-flight work finishes within drain_timeout; replies
  // are flushed and the connections closed.
  asio::awaitable<void> shutdown() {
    if (stopping_) co_return;
    stopping_ = true;
    server_.goaway();
    spdlog::info("draining: not ready, goaway sent on {} connection(s), accepting for {} ms more",
                 server_.connections(), options_.drain_grace.count());
    asio::steady_timer tick(io_, options_.drain_grace);
    co_await tick.async_wait(nothrow);
    // Then no new connections and no new requests (a caller that ignores
    // goaway would otherwise hold the drain to its bound).
    server_.stop_accepting();
    server_.stop_reading();
    auto deadline = std::chrono::steady_clock::now() + options_.drain_timeout;
    if (in_flight_ > 0) {
      spdlog::info("draining {} in-flight request(s)", in_flight_);
    }
    while (in_flight_ > 0 && std::chrono::steady_clock::now() < deadline) {
      tick.expires_after(std::chrono::milliseconds(5));
      co_await tick.async_wait(nothrow);
    }
    if (in_flight_ > 0) {
      spdlog::warn("drain timeout: {} request(s) still running are abandoned", in_flight_);
    }
    co_await server_.flush(deadline);
    server_.close_all();
    if (admin_) admin_->stop();
    spdlog::info("stopped");
  }

  asio::io_context& io_;
  microservice_options options_;
  std::shared_ptr<const transport::codec> wire_;
  transport::server server_;
  transport::log_limiter unknown_events_, bad_requests_, cancelled_log_;
  std::unique_ptr<asio::signal_set> signals_;  // listen()'s, until the service goes
  metrics_registry metrics_;
  service_metrics stats_;
  std::unique_ptr<admin_endpoint> admin_;
  std::uint16_t admin_port_ = 0;
  struct registered {
    std::unique_ptr<message_handler> handler;
    call_stats* stats = nullptr;
  };
  using handler_map = std::unordered_map<std::string, registered>;
  handler_map handlers_;
  // Handlers by the exact bytes of patterns seen; bounded, since one pattern
  // has many spellings (key order, integer widths) and peers choose them.
  struct bytes_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  static constexpr std::size_t max_pattern_bytes = 64 * 1024;
  static constexpr std::size_t max_pattern_spellings = 256;
  static constexpr std::size_t max_spelling_bytes = 256;
  std::unordered_map<std::string, handler_map::value_type*, bytes_hash, std::equal_to<>> by_bytes_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<event_handler>>> events_;
  std::string key_;  // reused for every lookup
  std::size_t in_flight_ = 0;
  std::uint16_t port_ = 0;  // once listening
  bool stopping_ = false;
  std::function<bool()> ready_check_;
  // Why the service is not ready (draining, or its own check), or null.
  [[nodiscard]] const char* not_ready() const {
    if (stopping_) return "draining";
    if (ready_check_ && !ready_check_()) return "not ready";
    return nullptr;
  }
};

// ---- responder ----

responder::responder(std::shared_ptr<transport::server_session> session,
                     const transport::packet& request, service_core* core,
                     const std::string* pattern, call_stats* stats,
                     std::chrono::steady_clock::time_point deadline)
    : session_(std::move(session)),
      id_(request.id),
      packed_id_(request.packed_id),
      core_(core),
      pattern_(pattern),
      stats_(stats),
      start_(std::chrono::steady_clock::now()),
      deadline_(deadline) {
  ++core_->in_flight_;
  session_->request_started();
}

responder::responder(responder&& o) noexcept
    : session_(std::move(o.session_)),
      id_(o.id_),
      packed_id_(std::move(o.packed_id_)),
      core_(o.core_),
      pattern_(o.pattern_),
      stats_(o.stats_),
      context_(o.context_),
      task_(o.task_),
      start_(o.start_),
      deadline_(o.deadline_),
      done_(o.done_) {
  o.done_ = true;
}

responder::~responder() {
  if (!done_) fail_internal("the handler ended without replying");
}

void responder::finished(std::size_t outcome) noexcept {
  done_ = true;
  if (task_) session_->untrack(id_, *task_);
  --core_->in_flight_;
  session_->request_finished();
  auto took = std::chrono::steady_clock::now() - start_;
  try {
    if (stats_) service_metrics::record(*stats_, outcome, took);
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("[{}] {} {} in {} us{}", session_->peer(), *pattern_, outcome_name(outcome),
                    std::chrono::duration_cast<std::chrono::microseconds>(took).count(), log_tag());
    }
  } catch (...) {  // a metric or a log line is not worth failing a reply over
  }
}

std::string responder::log_tag() const {
  if (!context_) return {};
  std::string tag;
  if (auto id = context_->request_id(); !id.empty()) {
    tag += " request_id=";
    tag += id;
  }
  if (auto t = context_->trace_id(); !t.empty()) {
    tag += " trace_id=";
    tag += t;
  }
  return tag;
}

bool responder::open() const noexcept {
  return session_->is_open();
}
const std::string& responder::peer() const noexcept {
  return session_->peer();
}
const tls_peer& responder::peer_identity() const noexcept {
  return session_->peer_identity();
}

asio::awaitable<void> responder::wait_writable() {
  return session_->wait_writable();
}

void responder::reply(transport::value_writer value) {
  if (done_ || stopped()) return;
  try {
    session_->wire().encode_response(session_->out(), to(), &value, true);
  } catch (const std::exception& e) {
    fail_internal(std::string("reply not sent: ") + e.what());
    return;
  }
  session_->flush();
  finished(outcome_ok);
}

void responder::reply_void() {
  if (done_ || stopped()) return;
  session_->wire().encode_response(session_->out(), to(), nullptr, true);
  session_->flush();
  finished(outcome_ok);
}

void responder::next(transport::value_writer value) {
  if (done_ || stopped()) return;
  session_->wire().encode_response(session_->out(), to(), &value, false);
  session_->flush();
}

void responder::fail(const rpc_error& e) {
  // A call the handler made timed out once this request's own deadline had
  // passed: it ran out of the time it inherited. Its caller is told that
  // (504), as when the request expires before it runs, whichever of the two
  // timers fires first.
  if (e.kind() == errc::timeout && deadline_ != std::chrono::steady_clock::time_point::max() &&
      std::chrono::steady_clock::now() >= deadline_) {
    auto message = *pattern_ + ": the deadline passed while the handler ran (";
    message += e.message();
    message += ')';
    fail(rpc_error(errc::deadline_exceeded, message));
    return;
  }
  fail_as(e, outcome_of(e.kind()));
}

void responder::fail_as(const rpc_error& e, std::size_t outcome) {
  if (done_ || stopped()) return;
  auto write_err = [&](transport::packer& pk) { transport::write_error(pk, e); };
  try {
    session_->wire().encode_error(session_->out(), to(), write_err);
  } catch (const std::exception& ex) {
    fail_internal(std::string("error reply not sent: ") + ex.what());
    return;
  }
  session_->flush();
  finished(outcome);
}

std::shared_ptr<transport::cancellable> responder::make_cancellable() {
  auto c = std::make_shared<transport::cancellable>();
  task_ = c.get();
  session_->track(id_, *c);
  return c;
}

bool responder::stopped() {
  if (!task_ || task_->stopped == transport::cancellable::reason::none) return false;
  if (!done_) {
    bool closed = task_->stopped == transport::cancellable::reason::closed;
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start_)
                    .count();
    if (std::size_t held = 0; core_->cancelled_log_.allow(held)) {
      spdlog::info("[{}] {} cancelled after {} ms ({}): its work was stopped, no reply sent{}{}",
                   session_->peer(), *pattern_, took,
                   closed ? "the connection closed" : "the caller gave up", log_tag(),
                   transport::held_back(held));
    }
    finished(outcome_of(errc::cancelled));
  }
  return true;
}

bool responder::drop_if_expired() {
  if (done_ || deadline_ == std::chrono::steady_clock::time_point::max()) return false;
  auto now = std::chrono::steady_clock::now();
  if (now < deadline_) return false;
  auto late = std::chrono::duration_cast<std::chrono::milliseconds>(now - deadline_).count();
  spdlog::debug("[{}] {} dropped: its deadline passed {} ms before it could run{}",
                session_->peer(), *pattern_, late, log_tag());
  fail(rpc_error(errc::deadline_exceeded, *pattern_ + ": the deadline passed " +
                                              std::to_string(late) +
                                              " ms before the handler could run"));
  return true;
}

void responder::fail_internal(std::string_view detail) {
  if (done_ || stopped()) return;
  spdlog::error("[{}] handler for {} failed: {}{}", session_->peer(), *pattern_,
                transport::clip(detail), log_tag());
  session_->wire().encode_error(session_->out(), to(),
                                [](transport::packer& pk) { transport::write_internal_error(pk); });
  session_->flush();
  finished(outcome_of(errc::internal));
}

void responder::fail_decode(const rpc_error& e) {
  // A 400 on the wire, counted as what it is: data that does not decode.
  fail_as(e, outcome_of(errc::decode_error));
}

// ---- helpers for the handler templates ----

namespace {

// A deep copy of a decoded object in one zone chunk, sized in one walk:
// msgpack::clone() walks it twice with a heap-allocated stack each time,
// 1.1k instructions for the gateway's meta against about 300 here. The
// object was decoded within the codec's depth limit, so recursion is bounded.
std::size_t deep_size(const msgpack::object& o) noexcept {
  switch (o.type) {
    case msgpack::type::STR:
      return o.via.str.size;
    case msgpack::type::BIN:
      return o.via.bin.size;
    case msgpack::type::EXT:
      return o.via.ext.size + 1;
    case msgpack::type::ARRAY: {
      std::size_t n = o.via.array.size * sizeof(msgpack::object) + alignof(msgpack::object);
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) n += deep_size(o.via.array.ptr[i]);
      return n;
    }
    case msgpack::type::MAP: {
      std::size_t n = o.via.map.size * sizeof(msgpack::object_kv) + alignof(msgpack::object_kv);
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        n += deep_size(o.via.map.ptr[i].key) + deep_size(o.via.map.ptr[i].val);
      }
      return n;
    }
    default:
      return 0;
  }
}

const char* copy_bytes(const char* from, std::size_t n, msgpack::zone& z) {
  if (n == 0) return "";  // not a pointer into what the copy outlives
  auto* to = static_cast<char*>(z.allocate_no_align(n));
  std::memcpy(to, from, n);
  return to;
}

void deep_copy(const msgpack::object& from, msgpack::object& to, msgpack::zone& z) {
  to = from;
  switch (from.type) {
    case msgpack::type::STR:
      to.via.str.ptr = copy_bytes(from.via.str.ptr, from.via.str.size, z);
      break;
    case msgpack::type::BIN:
      to.via.bin.ptr = copy_bytes(from.via.bin.ptr, from.via.bin.size, z);
      break;
    case msgpack::type::EXT:
      to.via.ext.ptr = copy_bytes(from.via.ext.ptr, from.via.ext.size + 1, z);
      break;
    case msgpack::type::ARRAY: {
      auto n = from.via.array.size;
      if (n == 0) break;
      auto* items = static_cast<msgpack::object*>(
          z.allocate_align(n * sizeof(msgpack::object), alignof(msgpack::object)));
      for (std::uint32_t i = 0; i < n; ++i) deep_copy(from.via.array.ptr[i], items[i], z);
      to.via.array.ptr = items;
      break;
    }
    case msgpack::type::MAP: {
      auto n = from.via.map.size;
      if (n == 0) break;
      auto* kvs = static_cast<msgpack::object_kv*>(
          z.allocate_align(n * sizeof(msgpack::object_kv), alignof(msgpack::object_kv)));
      for (std::uint32_t i = 0; i < n; ++i) {
        deep_copy(from.via.map.ptr[i].key, kvs[i].key, z);
        deep_copy(from.via.map.ptr[i].val, kvs[i].val, z);
      }
      to.via.map.ptr = kvs;
      break;
    }
    default:
      break;
  }
}

}  // namespace

msgpack::object_handle clone_meta(const msgpack::object& meta) {
  std::size_t size = deep_size(meta);
  if (size == 0) return {meta, nullptr};  // nil, a number: nothing to point into
  auto z = std::make_unique<msgpack::zone>(size);
  msgpack::object copy;
  deep_copy(meta, copy, *z);
  return {copy, std::move(z)};
}

void spawn(asio::awaitable<void> task, service_core* core,
           std::shared_ptr<transport::cancellable> stop) {
  auto done = [keep = core->shared_from_this(), stop](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("handler task failed: {}", transport::clip(ex.what()));
    }
  };
  if (!stop) {
    asio::co_spawn(core->io_, std::move(task), std::move(done));
    return;
  }
  // The signal lives in `stop`, which the completion holds: as long as the task.
  asio::co_spawn(core->io_, std::move(task),
                 asio::bind_cancellation_slot(stop->signal.slot(), std::move(done)));
}

void event_done(service_core* core, const std::string& pattern, const std::string& peer,
                errc outcome_if_failed, const char* what) {
  if (what) {
    spdlog::error("[{}] event handler for {} failed: {}", peer, pattern, transport::clip(what));
  }
  core->stats_.event_stats(pattern)->count(what ? outcome_of(outcome_if_failed) : outcome_ok);
}

const std::string& peer_of(const transport::server_session& session) noexcept {
  return session.peer();
}

const tls_peer& identity_of(const transport::server_session& session) noexcept {
  return session.peer_identity();
}

event_token::event_token(std::shared_ptr<transport::server_session> session, service_core* core)
    : session_(std::move(session)), core_(core) {
  ++core_->in_flight_;
  session_->request_started();
}

event_token::event_token(event_token&& o) noexcept
    : session_(std::move(o.session_)), core_(o.core_) {}

event_token::~event_token() {
  if (!session_) return;  // moved from
  --core_->in_flight_;
  session_->request_finished();
}

}  // namespace detail

// ---- microservice ----

microservice::microservice(microservice_options options)
    : microservice(default_io_context(), std::move(options)) {}

microservice::microservice(asio::io_context& io, microservice_options options)
    : core_(std::make_shared<detail::service_core>(io, std::move(options))) {
  auto* core = core_.get();
  message_pattern(health_pattern, [core] {
    if (const char* why = core->not_ready()) throw rpc_error(503, why);
    return std::map<std::string, std::string>{{"status", "ok"}};
  });
}

microservice::~microservice() = default;

microservice& microservice::ready_when(std::function<bool()> check) {
  core_->ready_check_ = std::move(check);
  return *this;
}

namespace {
// tern.ping and tern.cancel are answered below the handlers (docs/protocol.md).
void refuse_control_pattern(const std::string& key) {
  for (auto reserved : {transport::ping_pattern, transport::cancel_pattern}) {
    if (key == reserved) {
      throw std::invalid_argument(std::string(reserved) + " is tern's own pattern; choose another");
    }
  }
}
}  // namespace

void microservice::add_message_handler(const pattern& p,
                                       std::unique_ptr<detail::message_handler> h) {
  auto key = p.canonical();
  refuse_control_pattern(key);
  bool health = key == pattern(health_pattern).canonical();
  if (health && core_->handlers_.count(key)) {
    throw std::invalid_argument(std::string(health_pattern) +
                                " is tern's own pattern (readiness); choose another");
  }
  auto& entry = core_->handlers_[key];
  entry.handler = std::move(h);
  // Readiness probes arrive several times a second: they are not traffic.
  entry.stats = health ? nullptr : core_->stats_.request_stats(key);
}

void microservice::add_event_handler(const pattern& p, std::unique_ptr<detail::event_handler> h) {
  auto key = p.canonical();
  refuse_control_pattern(key);
  core_->events_[key].push_back(std::move(h));
  core_->stats_.event_stats(key);  // its ok series exists from now on
}

std::uint16_t microservice::start() {
  if (core_->port_ != 0) return core_->port_;
  auto& o = core_->options_;
  if (o.tls) core_->server_.use_tls(transport::tls_context::server(*o.tls));
  auto port = core_->server_.listen(o.host, o.port);
  if (o.tls) {
    spdlog::info("listening on {} (TLS{})", core_->server_.address(),
                 o.tls->check == peer_check::require    ? ", client certificates required"
                 : o.tls->check == peer_check::optional ? ", client certificates checked if sent"
                                                        : "");
  } else {
    spdlog::info("listening on {}", core_->server_.address());
  }
  if (o.admin_port) {
    auto* core = core_.get();
    core->admin_ = std::make_unique<detail::admin_endpoint>(core->io_, core->metrics_,
                                                            [core] { return core->not_ready(); });
    const auto& host = o.admin_host.empty() ? o.host : o.admin_host;
    core->admin_port_ = core->admin_->listen(host, *o.admin_port);
    spdlog::info("admin (metrics, health) on {}:{}", host, core->admin_port_);
  }
  core_->port_ = port;
  return port;
}

asio::awaitable<void> microservice::shutdown() {
  return core_->shutdown();
}

int microservice::listen(const std::function<void(std::uint16_t port)>& ready) {
  auto& io = core_->io_;
  // Kept by the core, not this frame: a repeated signal that comes as the
  // service ends is absorbed, instead of killing it with the default action.
  core_->signals_ = std::make_unique<asio::signal_set>(io, SIGINT, SIGTERM);
  auto& signals = *core_->signals_;
  auto port = start();
  if (ready) ready(port);
  signals.async_wait([this, &io, &signals](std::error_code ec, int sig) {
    if (ec) return;
    spdlog::info("received signal {}, shutting down", sig);
    asio::co_spawn(io, core_->shutdown(), [&io](std::exception_ptr) { io.stop(); });
    // A second signal ends the drain at once: what is still running is lost.
    signals.async_wait([](std::error_code ec2, int again) {
      if (ec2) return;
      spdlog::warn("received signal {} while draining: exiting now", again);
      spdlog::default_logger()->flush();
      std::_Exit(1);
    });
  });
  io.run();
  return 0;
}

std::size_t microservice::in_flight() const noexcept {
  return core_->in_flight_;
}
std::size_t microservice::connections() const noexcept {
  return core_->server_.connections();
}
std::uint16_t microservice::admin_port() const noexcept {
  return core_->admin_port_;
}
metrics_registry& microservice::metrics() noexcept {
  return core_->metrics_;
}

}  // namespace tern
