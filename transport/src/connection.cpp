#include "tern/transport/connection.hpp"

#include "tern/transport/log_limit.hpp"

#include "tern/transport/tls_stream.hpp"

#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstring>
#include <vector>

namespace tern::transport {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t initial_read_buffer = 64 * 1024;
constexpr auto forever = std::chrono::steady_clock::time_point::max();

// A TLS record header that opens a handshake (0x16, then version 3.x): a
// TLS client at a plaintext port, most likely. tern's frame would announce
// over 350 MiB, NestJS's a length that is not a number; a codec of one's
// own may take it, so it only changes what a failed first frame is called.
constexpr const char* tls_hello_refusal =
    "the peer began a TLS handshake; this port speaks plaintext";
bool looks_like_tls(const char* data, std::size_t size) noexcept {
  return size >= 3 && data[0] == 0x16 && data[1] == 0x03 &&
         static_cast<unsigned char>(data[2]) <= 0x04;
}
}  // namespace

connection::connection(asio::ip::tcp::socket socket, const codec& wire,
                       const connection_options& options, side s,
                       std::shared_ptr<const tls_context> tls)
    : socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      wire_(wire),
      options_(options),
      writer_wake_(executor_, forever),
      state_changed_(executor_, forever),
      watchdog_timer_(executor_) {
  std::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  peer_ = ec ? "(unknown peer)" : to_string(ep);
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  if (tls) {
    tls_ = std::make_unique<tls_stream>(
        socket_, std::move(tls),
        s == side::server ? tls_stream::side::server : tls_stream::side::client);
    handshaking_ = s == side::server;
  }
}

connection::~connection() = default;

void connection::start() {
  auto log_failure = [peer = peer_](const char* what) {
    return [peer, what](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("[{}] {} failed: {}", peer, what, clip(ex.what()));
      }
    };
  };
  auto self = shared_from_this();
  asio::co_spawn(
      executor_, [self]() { return self->reader(); }, log_failure("reader"));
  asio::co_spawn(
      executor_, [self]() { return self->writer(); }, log_failure("writer"));
  if (options_.incomplete_frame_timeout.count() > 0 || options_.write_timeout.count() > 0) {
    asio::co_spawn(
        executor_, [self]() { return self->watchdog(); }, log_failure("watchdog"));
  }
}

void connection::close(std::string_view reason, bool protocol_error) {
  if (!open_) return;
  open_ = false;
  reading_ = false;
  std::error_code ec;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ec);
  socket_.close(ec);
  writer_wake_.cancel();
  watchdog_timer_.cancel();
  notify_state();
  if (protocol_error) {
    // Many broken or hostile peers at once must not flood the log.
    thread_local log_limiter limit;
    if (std::size_t held = 0; limit.allow(held)) {
      spdlog::warn("[{}] protocol error, connection closed: {}{}", peer_, clip(reason),
                   held_back(held));
    }
  } else {
    spdlog::debug("[{}] connection closed: {}", peer_, clip(reason));
  }
  on_closed_(reason, protocol_error);
}

void connection::stop_reading() {
  // A TLS handshake not yet done has no request to finish: a drain would
  // only wait on it (nothing, not even a goaway, is written before it).
  if (handshaking_) {
    close("shutting down during the TLS handshake");
    return;
  }
  if (!reading_) return;
  reading_ = false;
  stop_read_.emit(asio::cancellation_type::terminal);
}

void connection::flush() {
  if (writer_idle_ && !out_.empty() && !handshaking_) {
    writer_idle_ = false;
    writer_wake_.cancel_one();
  }
}

void connection::notify_state() {
  if (state_waiters_ > 0) state_changed_.cancel();
}

asio::awaitable<void> connection::wait_writable() {
  auto self = shared_from_this();
  while (open_ && congested()) {
    ++state_waiters_;
    struct leave {  // also when the wait is cancelled
      int& n;
      ~leave() { --n; }
    } l{state_waiters_};
    co_await state_changed_.async_wait(nothrow);
    // Read, not awaited: a cancelled waiter stops waiting (an awaitable would throw).
    auto cs = co_await asio::this_coro::cancellation_state;
    if (cs.cancelled() != asio::cancellation_type::none) co_return;
  }
}

asio::awaitable<void> connection::wait_flushed(std::chrono::steady_clock::time_point deadline) {
  auto self = shared_from_this();
  asio::steady_timer limit(executor_, deadline);
  auto expired = std::make_shared<bool>(false);
  limit.async_wait([self, expired](std::error_code ec) {
    if (ec) return;
    *expired = true;
    self->state_changed_.cancel();
  });
  while (open_ && !*expired && (!out_.empty() || writing_bytes_ > 0)) {
    ++state_waiters_;
    co_await state_changed_.async_wait(nothrow);
    --state_waiters_;
  }
}

void connection::request_finished() noexcept {
  if (in_flight_ == 0) return;
  if (in_flight_-- == options_.max_in_flight) notify_state();  // the reader may go on
}

std::size_t connection::deliver(const char* data, std::size_t size) {
  std::size_t pos = 0;
  packet pkt;
  while (open_ && reading_ && !held()) {
    // Not yet as many bytes as the codec said the frame needs at least: it
    // is not asked again (a codec that counts characters would rescan).
    if (size - pos < wanted_) break;
    frame_result fr = wire_.next_frame(data + pos, size - pos);
    if (fr.status == frame_status::too_large) {
      throw protocol_violation("frame of " + std::to_string(fr.length) +
                               " bytes exceeds the limit of " + std::to_string(wire_.max_frame()));
    }
    if (fr.status == frame_status::need_more) {
      wanted_ = fr.header > 0 ? fr.total() : 0;
      break;
    }
    wanted_ = 0;
    const char* body = data + pos + fr.header;
    pos += fr.total();
    try {
      wire_.decode(body, fr.length, zone_, true, pkt);
    } catch (const packet_error& e) {
      zone_.clear();
      on_bad_packet_(e);
      continue;
    }
    tls_hello_ = false;  // a frame the codec took: whatever it began with
    on_packet_(pkt);
    zone_.clear();
  }
  return pos;
}

asio::awaitable<std::string> connection::client_handshake(std::string_view server_name) {
  if (!tls_) co_return std::string();
  try {
    tls_->expect_name(server_name);
  } catch (const tls_error& e) {
    co_return e.what();
  }
  auto why = co_await tls_->handshake();
  if (why.empty()) identity_ = tls_->peer();
  co_return why;
}

// An accepted TLS connection's handshake, timed as a frame is (the
// watchdog cuts off a peer that stalls it). False if it failed (closed).
asio::awaitable<bool> connection::server_handshake() {
  partial_ = true;
  frame_started_ = std::chrono::steady_clock::now();
  auto why = co_await tls_->handshake();
  partial_ = false;
  if (!open_) co_return false;
  if (!why.empty()) {
    close("TLS handshake failed: " + why, true);
    co_return false;
  }
  identity_ = tls_->peer();
  handshaking_ = false;
  spdlog::debug("[{}] TLS: {}{}{}", peer_, tls_->negotiated(),
                identity_.identified() ? ", peer " : "", clip(identity_.subject));
  if (writer_idle_ && !out_.empty()) flush();  // what was queued meanwhile (a goaway)
  co_return true;
}

asio::awaitable<void> connection::reader() {
  using clock = std::chrono::steady_clock;
  if (handshaking_ && !co_await server_handshake()) co_return;
  std::vector<char> buf(initial_read_buffer);
  std::size_t have = 0;  // bytes received and not yet delivered
  clock::time_point read_at{};
  try {
    while (open_ && reading_) {
      if (std::size_t used = deliver(buf.data(), have); used > 0) {
        std::memmove(buf.data(), buf.data() + used, have - used);
        have -= used;
        frame_started_ = read_at;  // what is left began to arrive in the last read
      }
      if (!open_ || !reading_) break;
      if (held()) {
        // Backpressure: the peer is not reading our replies, or has as many
        // requests in hand as it may; take no more until that changes. The
        // time held does not count against the frame being received.
        partial_ = false;
        auto held_since = clock::now();
        ++state_waiters_;
        co_await state_changed_.async_wait(nothrow);
        --state_waiters_;
        auto held_for = clock::now() - held_since;
        read_at += held_for;
        frame_started_ += held_for;
        continue;
      }
      partial_ = have > 0;
      if (have == buf.size()) {
        // A frame longer than the buffer: grow with what has arrived, at
        // most doubling, up to the frame's length (checked against the limit).
        auto fr = wire_.next_frame(buf.data(), have);
        if (fr.header == 0 || fr.total() <= have) {
          throw protocol_violation("the codec cannot tell the length of a frame it holds");
        }
        buf.resize(std::min<std::size_t>(fr.total(), 2 * buf.size()));
      } else if (have == 0 && buf.size() > initial_read_buffer) {
        buf.resize(initial_read_buffer);
        buf.shrink_to_fit();
      }
      std::error_code ec;
      std::size_t n = 0;
      if (tls_) {
        auto r = co_await tls_->read_some(buf.data() + have, buf.size() - have, stop_read_.slot());
        ec = r.first;
        n = r.second;
      } else {
        auto r = co_await socket_.async_read_some(
            asio::buffer(buf.data() + have, buf.size() - have),
            asio::bind_cancellation_slot(stop_read_.slot(), nothrow));
        ec = std::get<0>(r);
        n = std::get<1>(r);
      }
      if (ec) {
        if (!reading_) co_return;  // stop_reading() or close()
        close(ec == asio::error::eof ? "peer closed the connection" : ec.message());
        co_return;
      }
      read_at = clock::now();
      last_read_ = read_at;
      if (have == 0) frame_started_ = read_at;
      have += n;
      if (first_read_) {
        // Said instead of the codec's complaint, if the first frame fails.
        first_read_ = false;
        tls_hello_ = !tls_ && looks_like_tls(buf.data(), have);
      }
    }
  } catch (const protocol_violation& e) {
    close(tls_hello_ ? tls_hello_refusal : e.what(), true);
  } catch (const std::exception& e) {
    close(tls_hello_ ? std::string(tls_hello_refusal) : std::string("receive failed: ") + e.what(),
          true);
  }
}

asio::awaitable<void> connection::writer() {
  while (open_) {
    if (out_.empty() || handshaking_) {
      writer_idle_ = true;
      co_await writer_wake_.async_wait(nothrow);
      writer_idle_ = false;
      continue;
    }
    writing_.swap(out_);
    writing_bytes_ = writing_.size();
    write_started_ = std::chrono::steady_clock::now();
    std::error_code ec;
    if (tls_) {
      ec = (co_await tls_->write(writing_.data(), writing_.size())).first;
    } else {
      ec = std::get<0>(co_await asio::async_write(
          socket_, asio::buffer(writing_.data(), writing_.size()), nothrow));
    }
    writing_.clear();
    writing_bytes_ = 0;
    writing_.shrink_to(options_.write_high_water);
    if (ec) {
      close(ec.message());
      co_return;
    }
    notify_state();
  }
}

asio::awaitable<void> connection::watchdog() {
  // One timer for both ways: a frame must arrive whole within its time,
  // and a write must be taken by the peer within its own.
  using clock = std::chrono::steady_clock;
  const auto read_limit = options_.incomplete_frame_timeout;
  const auto write_limit = options_.write_timeout;
  while (open_) {
    auto now = clock::now();
    auto next = clock::time_point::max();
    if (read_limit.count() > 0) {
      if (partial_ && now - frame_started_ >= read_limit) {
        close((handshaking_ ? "the TLS handshake did not finish within "
                            : "a frame did not arrive whole within ") +
                  std::to_string(read_limit.count()) + " ms",
              true);
        co_return;
      }
      next = std::min(next, partial_ ? frame_started_ + read_limit : now + read_limit / 2);
    }
    if (write_limit.count() > 0) {
      if (writing_bytes_ > 0 && now - write_started_ >= write_limit) {
        close("the peer took none of a write for " + std::to_string(write_limit.count()) +
                  " ms (it does not read its replies)",
              true);
        co_return;
      }
      next =
          std::min(next, writing_bytes_ > 0 ? write_started_ + write_limit : now + write_limit / 2);
    }
    watchdog_timer_.expires_at(next);
    co_await watchdog_timer_.async_wait(nothrow);
  }
}

}  // namespace tern::transport
