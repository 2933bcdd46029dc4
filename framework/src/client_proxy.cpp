#include "tern/client_proxy.hpp"

#include "client/call_join.hpp"
#include "tern/endpoint.hpp"
#include "tern/microservice.hpp"
#include "tern/transport/client_connection.hpp"

namespace tern {

using detail::clock;

// What the copies of a client_proxy share. The last one to go stops the
// client's tasks, which hold the core until they end.
struct client_proxy::impl {
  explicit impl(std::shared_ptr<detail::client_core> c) : core(std::move(c)) {}
  ~impl() { core->shutdown(); }
  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;
  std::shared_ptr<detail::client_core> core;
};

client_proxy::client_proxy(client_options options)
    : client_proxy(default_io_context(), std::move(options)) {}

client_proxy::client_proxy(asio::io_context& io, client_options options)
    : impl_(std::make_shared<impl>(std::make_shared<detail::client_core>(io, std::move(options)))) {
}

client_proxy::~client_proxy() = default;

asio::awaitable<void> client_proxy::connect() {
  auto self = impl_;
  co_await self->core->acquire();
}

void client_proxy::close() {
  impl_->core->close();
}

std::size_t client_proxy::pending() const noexcept {
  std::size_t n = 0;
  for (const auto& ep : impl_->core->endpoints.list()) n += ep->conn ? ep->conn->pending() : 0;
  return n;
}

client_proxy::connection_state client_proxy::state() const noexcept {
  auto best = connection_state::disconnected;
  for (const auto& ep : impl_->core->endpoints.list()) {
    auto s = ep->state();
    if (s == connection_state::connected) return s;
    if (s == connection_state::connecting) best = s;
  }
  return best;
}

std::vector<client_proxy::endpoint_status> client_proxy::endpoints() const {
  std::vector<endpoint_status> out;
  for (const auto& ep : impl_->core->endpoints.list()) {
    out.push_back({ep->text, ep->state(), ep->conn ? ep->conn->pending() : 0, ep->ejected()});
  }
  return out;
}

client_proxy::breaker_state client_proxy::breaker() const noexcept {
  switch (impl_->core->breaker.current(clock::now())) {
    case detail::circuit_breaker::state::open:
      return breaker_state::open;
    case detail::circuit_breaker::state::half_open:
      return breaker_state::half_open;
    case detail::circuit_breaker::state::closed:
      break;
  }
  return breaker_state::closed;
}

std::chrono::milliseconds client_proxy::retry_after() const noexcept {
  return impl_->core->breaker.retry_after(clock::now());
}

client_proxy::counters client_proxy::stats() const noexcept {
  auto s = impl_->core->stats;
  s.ejections = impl_->core->outliers.ejections();
  return s;
}

asio::awaitable<void> client_proxy::call_(const pattern& p, transport::value_writer data,
                                          transport::value_sink on_value, call_options o) {
  auto self = impl_;
  detail::call_slot sl;
  sl.owner = self->core.get();
  sl.p = &p;
  sl.writer = &data;
  sl.sink = &on_value;
  sl.meta = o.meta;
  sl.idempotent = o.idempotent;
  auto now = clock::now();
  sl.deadline = detail::deadline_of(o, sl.owner->options, now);
  if (sl.deadline <= now) throw detail::past_deadline(p);
  co_await detail::run(std::span(&sl, 1));
  if (sl.error) throw *sl.error;
}

asio::awaitable<void> client_proxy::send_raw(const pattern& p, std::string_view packed_data,
                                             transport::value_sink on_value, call_options o) {
  // A coroutine, so the writer lives until the request is encoded.
  auto write = [packed_data](transport::packer& pk) { pk.pack_packed(packed_data); };
  co_await call_(p, write, on_value, o);
}

asio::awaitable<void> send_raw_all(std::span<raw_call> calls) {
  if (calls.empty()) co_return;
  // The calls' states live here, in this one frame, until every call ends.
  std::unique_ptr<detail::call_slot[]> slots(new detail::call_slot[calls.size()]);
  auto now = clock::now();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    auto& c = calls[i];
    auto& sl = slots[i];
    sl.owner = c.client->impl_->core.get();
    sl.p = c.p;
    sl.packed = c.packed_data;
    sl.sink = &c.on_value;
    sl.meta = c.options.meta;
    sl.idempotent = c.options.idempotent;
    sl.deadline = detail::deadline_of(c.options, sl.owner->options, now);
  }
  co_await detail::run(std::span(slots.get(), calls.size()));
  for (std::size_t i = 0; i < calls.size(); ++i) {
    calls[i].error = std::move(slots[i].error);
    calls[i].ended = slots[i].ended;
    calls[i].retries = slots[i].retries;
  }
}

asio::awaitable<void> client_proxy::emit_packed(const pattern& p, transport::value_writer data) {
  auto self = impl_;
  auto ep = co_await self->core->acquire();
  auto conn = ep->conn;
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
  auto deadline = detail::deadline_of(o, self->core->options, clock::now());
  if (deadline <= clock::now()) throw detail::past_deadline(p);
  auto s = std::make_unique<detail::raw_stream::impl>();
  s->conn = (co_await self->core->acquire())->conn;
  if (deadline <= clock::now()) throw detail::past_deadline(p);  // spent connecting
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - clock::now());
  co_await s->conn->open_stream(s->state, p.canonical(), p.packed(), o.meta, data,
                                std::max(left, std::chrono::milliseconds(1)));
  co_return detail::raw_stream(std::move(s));
}

}  // namespace tern
