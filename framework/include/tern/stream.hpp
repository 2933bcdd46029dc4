// Streams of replies: several values for one request.
#pragma once

#include "tern/detail/responder.hpp"
#include "tern/rpc_error.hpp"

#include <asio/awaitable.hpp>
#include <msgpack.hpp>

#include <memory>
#include <optional>

namespace tern {

/// Handed to a stream handler: `[](Query q, tern::stream_writer<Item>& out)
/// -> asio::awaitable<void> { co_await out.write(item); ... }`. Each write
/// goes out as its own reply frame; when the handler returns, a final
/// `isDisposed: true` frame ends the stream (an exception ends it with an
/// error instead). write() waits while the connection is congested, so a
/// fast producer cannot fill memory for a slow reader.
template <class T>
class stream_writer {
 public:
  explicit stream_writer(detail::responder& r) : r_(&r) {}

  /// Sends one value. Throws rpc_error(errc::connection_closed) once the
  /// caller's connection is gone, which ends the handler.
  asio::awaitable<void> write(const T& value) {
    if (!r_->open()) throw rpc_error(errc::connection_closed, "caller disconnected");
    r_->next([&](transport::packer& pk) { pk.pack(value); });
    co_await r_->wait_writable();
  }

 private:
  detail::responder* r_;
};

namespace detail {
/// A caller's view of a stream of replies (the typed wrapper is reply_stream).
class raw_stream {
 public:
  struct impl;
  explicit raw_stream(std::unique_ptr<impl> p);
  raw_stream(raw_stream&&) noexcept;
  raw_stream& operator=(raw_stream&&) noexcept;
  ~raw_stream();
  /// The next value, or nullopt after the last. Throws rpc_error.
  asio::awaitable<std::optional<msgpack::object_handle>> next();

 private:
  std::unique_ptr<impl> p_;
};
}  // namespace detail

/// The values of a streamed reply, taken one by one:
/// `while (auto v = co_await s.next()) use(*v);`. Dropping the stream
/// stops listening (later frames are discarded).
template <class T>
class reply_stream {
 public:
  explicit reply_stream(detail::raw_stream raw) : raw_(std::move(raw)) {}

  /// The next value decoded as T, or nullopt when the stream has ended.
  /// Throws rpc_error (the handler's error, timeout, connection loss, or
  /// errc::decode_error when a value does not decode as T).
  asio::awaitable<std::optional<T>> next() {
    auto v = co_await raw_.next();
    if (!v) co_return std::nullopt;
    try {
      co_return v->get().template as<T>();
    } catch (const std::exception& e) {
      throw rpc_error(errc::decode_error, std::string("stream value does not decode: ") + e.what());
    }
  }

 private:
  detail::raw_stream raw_;
};

}  // namespace tern
