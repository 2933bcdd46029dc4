#include "tern/client_proxy.hpp"

#include "tern/microservice.hpp"
#include "tern/transport/client_connection.hpp"
#include "tern/transport/msgpack_codec.hpp"

#include <spdlog/spdlog.h>
#include <asio/experimental/as_tuple.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

namespace tern {

namespace {
constexpr auto nothrow = asio::experimental::as_tuple(asio::use_awaitable);
}

struct client_proxy::impl {
  impl(asio::io_context& io, client_options o)
      : options(std::move(o)),
        wire(options.codec ? options.codec
                           : std::make_shared<transport::msgpack_codec>(options.max_frame)),
        where(options.host + ":" + std::to_string(options.port)),
        connected(io.get_executor(), std::chrono::steady_clock::time_point::max()) {}

  ~impl() {
    if (conn) conn->close("client destroyed");
  }

  // The open connection, connecting first if needed. Concurrent callers
  // share one attempt; during backoff after failures they fail at once.
  asio::awaitable<std::shared_ptr<transport::client_connection>> get() {
    for (;;) {
      if (conn && conn->is_open()) co_return conn;
      if (connecting) {
        ++waiters;
        co_await connected.async_wait(nothrow);
        --waiters;
        if (conn && conn->is_open()) co_return conn;
        if (last_error) throw *last_error;
        continue;
      }
      auto now = std::chrono::steady_clock::now();
      if (now < retry_at && last_error) {
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(retry_at - now);
        throw rpc_error(errc::connection_refused, std::string(last_error->message()) +
                                                      " (next attempt in " +
                                                      std::to_string(wait.count()) + " ms)");
      }
      connecting = true;
      try {
        conn = co_await transport::client_connection::connect(
            options.host, options.port, *wire, options.connection, options.connect_timeout);
        failures = 0;
        last_error.reset();
      } catch (const rpc_error& e) {
        ++failures;
        auto backoff = options.backoff_initial * (1LL << std::min(failures - 1, 16));
        retry_at = std::chrono::steady_clock::now() +
                   std::min<std::chrono::milliseconds>(backoff, options.backoff_max);
        last_error = e;
        spdlog::warn("{}", e.what());
      }
      connecting = false;
      if (waiters > 0) connected.cancel();
      if (last_error) throw *last_error;
    }
  }

  client_options options;
  std::shared_ptr<const transport::codec> wire;
  std::string where;
  std::shared_ptr<transport::client_connection> conn;
  bool connecting = false;
  int waiters = 0;
  asio::steady_timer connected;
  int failures = 0;
  std::chrono::steady_clock::time_point retry_at{};
  std::optional<rpc_error> last_error;
};

client_proxy::client_proxy(client_options options)
    : client_proxy(default_io_context(), std::move(options)) {}

client_proxy::client_proxy(asio::io_context& io, client_options options)
    : impl_(std::make_shared<impl>(io, std::move(options))) {}

client_proxy::~client_proxy() = default;

asio::awaitable<void> client_proxy::connect() {
  auto self = impl_;
  co_await self->get();
}

void client_proxy::close() {
  if (impl_->conn) impl_->conn->close("client closed");
  impl_->conn.reset();
}

std::size_t client_proxy::pending() const noexcept {
  return impl_->conn ? impl_->conn->pending() : 0;
}

client_proxy::connection_state client_proxy::state() const noexcept {
  if (impl_->conn && impl_->conn->is_open()) return connection_state::connected;
  return impl_->connecting ? connection_state::connecting : connection_state::disconnected;
}

asio::awaitable<void> client_proxy::call_(const pattern& p, transport::value_writer data,
                                          transport::value_sink on_value, call_options o) {
  auto self = impl_;
  auto timeout = o.timeout.count() > 0 ? o.timeout : self->options.timeout;
  if (self->conn && self->conn->is_open()) {
    co_await self->conn->call(p.canonical(), p.packed(), o.meta, data, on_value, timeout);
  } else {
    auto conn = co_await self->get();
    co_await conn->call(p.canonical(), p.packed(), o.meta, data, on_value, timeout);
  }
}

asio::awaitable<void> client_proxy::send_raw(const pattern& p, std::string_view packed_data,
                                             transport::value_sink on_value, call_options o) {
  // A coroutine, so the writer lives until the request is encoded.
  auto write = [packed_data](transport::packer& pk) { pk.pack_packed(packed_data); };
  co_await call_(p, write, on_value, o);
}

asio::awaitable<void> send_raw_all(std::span<raw_call> calls) {
  struct slot {
    transport::call_state state;
    std::shared_ptr<transport::client_connection> conn;
  };
  // The calls' states live here, in this one frame, until every call ends.
  std::unique_ptr<slot[]> slots(new slot[calls.size()]);
  struct abandon_all {  // if this frame goes away early, forget the calls
    slot* s;
    std::size_t n;
    ~abandon_all() {
      for (std::size_t i = 0; i < n; ++i) {
        if (s[i].conn) s[i].conn->abandon(s[i].state);
      }
    }
  } guard{slots.get(), calls.size()};

  struct join {
    std::size_t remaining = 0;
    transport::unique_function<void()> resume;
  } all;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto& c = calls[i];
    auto& sl = slots[i];
    c.error.reset();
    try {
      auto& self = *c.client->impl_;
      if (self.conn && self.conn->is_open()) {
        sl.conn = self.conn;
      } else {
        sl.conn = co_await self.get();  // (GCC 12 mis-compiles co_await inside ?:)
      }
      if (sl.conn->congested()) co_await sl.conn->wait_writable();
      auto timeout = c.options.timeout.count() > 0 ? c.options.timeout : self.options.timeout;
      sl.state.label = c.p->canonical();
      sl.state.sink = &c.on_value;
      sl.state.waiter = [&all, &c] {
        c.ended = std::chrono::steady_clock::now();
        if (--all.remaining > 0 || !all.resume) return;
        auto resume = std::move(all.resume);  // the frame holding `all` ends inside
        resume();
      };
      auto write = [&c](transport::packer& pk) { pk.pack_packed(c.packed_data); };
      sl.conn->start_call(sl.state, c.p->packed(), c.options.meta, write, timeout);
      ++all.remaining;
    } catch (const rpc_error& e) {
      c.error = e;
      c.ended = std::chrono::steady_clock::now();
      sl.state.waiter = {};
    }
  }
  if (all.remaining > 0) {
    co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
        [&](auto handler) {
          auto cancel = asio::get_associated_cancellation_slot(handler);
          if (cancel.is_connected()) {
            cancel.assign([&](asio::cancellation_type) {
              for (std::size_t i = 0; i < calls.size(); ++i) {
                if (slots[i].conn) slots[i].conn->cancel(slots[i].state);
              }
            });
          }
          all.resume = [h = std::move(handler), cancel]() mutable {
            if (cancel.is_connected()) cancel.clear();
            auto resume = std::move(h);  // off the frame, which the coroutine ends
            std::move(resume)();
          };
        },
        asio::use_awaitable);
  }
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (slots[i].state.error) calls[i].error = std::move(slots[i].state.error);
  }
}

asio::awaitable<void> client_proxy::emit_packed(const pattern& p, transport::value_writer data) {
  auto self = impl_;
  auto conn = co_await self->get();
  co_await conn->emit(p.canonical(), p.packed(), {}, data);
}

// ---- streams ----

struct detail::raw_stream::impl {
  std::shared_ptr<transport::client_connection> conn;
  transport::call_state state;
  ~impl() {
    if (conn) conn->abandon(state);
  }
};

detail::raw_stream::raw_stream(std::unique_ptr<impl> p) : p_(std::move(p)) {}
detail::raw_stream::raw_stream(raw_stream&&) noexcept = default;
detail::raw_stream& detail::raw_stream::operator=(raw_stream&&) noexcept = default;
detail::raw_stream::~raw_stream() = default;

asio::awaitable<std::optional<msgpack::object_handle>> detail::raw_stream::next() {
  return p_->conn->next(p_->state);
}

asio::awaitable<detail::raw_stream> client_proxy::stream_packed(const pattern& p,
                                                                transport::value_writer data,
                                                                call_options o) {
  auto self = impl_;
  auto s = std::make_unique<detail::raw_stream::impl>();
  s->conn = co_await self->get();
  co_await s->conn->open_stream(s->state, p.canonical(), p.packed(), o.meta, data,
                                o.timeout.count() > 0 ? o.timeout : self->options.timeout);
  co_return detail::raw_stream(std::move(s));
}

}  // namespace tern
