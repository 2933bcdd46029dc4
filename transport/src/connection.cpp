#include "tern/transport/connection.hpp"

#include <spdlog/spdlog.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/co_spawn.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <cstring>
#include <vector>

namespace tern::transport {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
constexpr std::size_t initial_read_buffer = 64 * 1024;
constexpr auto forever = std::chrono::steady_clock::time_point::max();
}  // namespace

std::string to_string(const asio::ip::tcp::endpoint& ep) {
  auto addr = ep.address().to_string();
  return (ep.address().is_v6() ? "[" + addr + "]" : addr) + ":" + std::to_string(ep.port());
}

connection::connection(asio::ip::tcp::socket socket, const codec& wire,
                       const connection_options& options)
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
}

connection::~connection() = default;

void connection::start() {
  auto log_failure = [peer = peer_](const char* what) {
    return [peer, what](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        spdlog::error("[{}] {} failed: {}", peer, what, ex.what());
      }
    };
  };
  auto self = shared_from_this();
  asio::co_spawn(
      executor_, [self]() { return self->reader(); }, log_failure("reader"));
  asio::co_spawn(
      executor_, [self]() { return self->writer(); }, log_failure("writer"));
  if (options_.incomplete_frame_timeout.count() > 0) {
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
    spdlog::warn("[{}] protocol error, connection closed: {}", peer_, reason);
  } else {
    spdlog::debug("[{}] connection closed: {}", peer_, reason);
  }
  on_closed_(reason, protocol_error);
}

void connection::stop_reading() {
  if (!reading_) return;
  reading_ = false;
  stop_read_.emit(asio::cancellation_type::terminal);
}

void connection::flush() {
  if (writer_idle_ && !out_.empty()) {
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
    co_await state_changed_.async_wait(nothrow);
    --state_waiters_;
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

asio::awaitable<void> connection::reader() {
  std::vector<char> buf(initial_read_buffer);
  std::size_t have = 0;
  packet pkt;
  try {
    while (open_ && reading_) {
      if (congested()) {
        // Backpressure: the peer is not reading our replies; stop taking
        // new requests until the writer catches up.
        co_await wait_writable();
        continue;
      }
      auto [ec, n] = co_await socket_.async_read_some(
          asio::buffer(buf.data() + have, buf.size() - have),
          asio::bind_cancellation_slot(stop_read_.slot(), nothrow));
      if (ec) {
        if (!reading_) co_return;  // stop_reading() or close()
        close(ec == asio::error::eof ? "peer closed the connection" : ec.message());
        co_return;
      }
      have += n;
      last_read_ = std::chrono::steady_clock::now();
      std::size_t pos = 0;
      while (open_) {
        frame_result fr = wire_.next_frame(buf.data() + pos, have - pos);
        if (fr.status == frame_status::too_large) {
          throw protocol_violation("frame of " + std::to_string(fr.length) +
                                   " bytes exceeds the limit of " +
                                   std::to_string(wire_.max_frame()));
        }
        if (fr.status == frame_status::need_more) {
          if (fr.header != 0 && fr.total() > buf.size()) {
            // Grow only once the header has been checked against the limit.
            std::memmove(buf.data(), buf.data() + pos, have - pos);
            have -= pos;
            pos = 0;
            buf.resize(fr.total());
          }
          break;
        }
        wire_.decode(buf.data() + pos + fr.header, fr.length, zone_, true, pkt);
        pos += fr.total();
        on_packet_(pkt);
        zone_.clear();
      }
      if (pos > 0) {
        std::memmove(buf.data(), buf.data() + pos, have - pos);
        have -= pos;
      }
      if (have == buf.size() && have < initial_read_buffer) buf.resize(initial_read_buffer);
      if (have == 0 && buf.size() > initial_read_buffer) {
        buf.resize(initial_read_buffer);
        buf.shrink_to_fit();
      }
      partial_ = have > 0;
    }
  } catch (const protocol_violation& e) {
    close(e.what(), true);
  } catch (const std::exception& e) {
    close(std::string("receive failed: ") + e.what(), true);
  }
}

asio::awaitable<void> connection::writer() {
  while (open_) {
    if (out_.empty()) {
      writer_idle_ = true;
      co_await writer_wake_.async_wait(nothrow);
      writer_idle_ = false;
      continue;
    }
    writing_.swap(out_);
    writing_bytes_ = writing_.size();
    auto [ec, n] = co_await asio::async_write(
        socket_, asio::buffer(writing_.data(), writing_.size()), nothrow);
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
  const auto limit = options_.incomplete_frame_timeout;
  while (open_) {
    auto now = std::chrono::steady_clock::now();
    if (partial_ && now - last_read_ >= limit) {
      close("stalled in the middle of a frame for " + std::to_string(limit.count()) + " ms", true);
      co_return;
    }
    watchdog_timer_.expires_at(partial_ ? last_read_ + limit : now + limit / 2);
    co_await watchdog_timer_.async_wait(nothrow);
  }
}

}  // namespace tern::transport
