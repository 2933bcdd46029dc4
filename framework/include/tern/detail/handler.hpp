// Turns user callables into type-erased handlers: decodes the data
// argument, calls, encodes the result or the error.
#pragma once

#include "tern/context.hpp"
#include "tern/detail/responder.hpp"
#include "tern/dto.hpp"
#include "tern/rpc_error.hpp"
#include "tern/stream.hpp"

#include <asio/awaitable.hpp>
#include <msgpack.hpp>

#include <exception>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace tern::detail {

// ---- callable introspection ----

template <class F>
struct callable_traits : callable_traits<decltype(&std::remove_cvref_t<F>::operator())> {};
template <class R, class... A>
struct callable_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<A...>;
};
template <class R, class... A>
struct callable_traits<R (*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...)> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) noexcept> : callable_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct callable_traits<R (C::*)(A...) const noexcept> : callable_traits<R (*)(A...)> {};

template <class T>
struct awaitable_value {
  static constexpr bool coroutine = false;
  using type = T;
};
template <class T, class E>
struct awaitable_value<asio::awaitable<T, E>> {
  static constexpr bool coroutine = true;
  using type = T;
};

template <class T>
struct stream_value {
  static constexpr bool is_stream = false;
  using type = void;
};
template <class T>
struct stream_value<stream_writer<T>> {
  static constexpr bool is_stream = true;
  using type = T;
};

template <class P>
using bare = std::remove_cvref_t<P>;
template <class P>
inline constexpr bool is_context_param = std::is_same_v<bare<P>, message_context>;
template <class P>
inline constexpr bool is_stream_param = stream_value<bare<P>>::is_stream;
template <class P>
inline constexpr bool is_data_param = !is_context_param<P> && !is_stream_param<P>;

template <class... P>
struct find_data {
  using type = msgpack::type::nil_t;
};
template <class P, class... Rest>
struct find_data<P, Rest...> {
  using type = std::conditional_t<is_data_param<P>, bare<P>, typename find_data<Rest...>::type>;
};
template <class... P>
struct find_stream {
  using type = void;
};
template <class P, class... Rest>
struct find_stream<P, Rest...> {
  using type = std::conditional_t<is_stream_param<P>, typename stream_value<bare<P>>::type,
                                  typename find_stream<Rest...>::type>;
};

template <class Tuple>
struct signature;
template <class... P>
struct signature<std::tuple<P...>> {
  static constexpr int data_params = (0 + ... + int(is_data_param<P>));
  static constexpr int context_params = (0 + ... + int(is_context_param<P>));
  static constexpr int stream_params = (0 + ... + int(is_stream_param<P>));
  using data = typename find_data<P...>::type;
  using stream_item = typename find_stream<P...>::type;
};

/// Converts request data to a handler's argument type (tern::decode: a
/// DTO's errors name the field). msgpack::object is passed through (sync
/// handlers only); msgpack::object_handle is a deep copy.
template <class T>
T convert_data(const msgpack::object& o) {
  if constexpr (std::is_same_v<T, msgpack::object>) {
    return o;
  } else if constexpr (std::is_same_v<T, msgpack::object_handle>) {
    return msgpack::clone(o);
  } else if constexpr (std::is_same_v<T, msgpack::type::nil_t>) {
    return {};
  } else {
    return decode<T>(o);
  }
}

msgpack::object_handle clone_meta(const msgpack::object& meta);
inline constexpr auto no_deadline = std::chrono::steady_clock::time_point::max();

/// Everything a handler call needs, kept together (in a coroutine frame
/// for coroutine handlers).
/// Not movable: the stream writer points at the responder.
template <class Data, class Item>
struct invocation {
  /// `meta`: a copy (coroutine handlers), or the packet's own, borrowed
  /// while the receive buffer is held (a plain handler, which ends first).
  template <class Meta>
  invocation(Data d, responder r, Meta&& meta)
      : data(std::move(d)),
        out(std::move(r)),
        context(out.peer(), out.pattern(), std::forward<Meta>(meta), out.deadline(),
                &out.peer_identity()) {
    out.set_context(&context);
  }
  ~invocation() { out.set_context(nullptr); }
  invocation(const invocation&) = delete;
  invocation& operator=(const invocation&) = delete;
  Data data;
  responder out;
  message_context context;
  stream_writer<std::conditional_t<std::is_void_v<Item>, int, Item>> writer{out};

  template <class P>
  decltype(auto) arg() {
    if constexpr (is_context_param<P>) {
      return (context);
    } else if constexpr (is_stream_param<P>) {
      return (writer);
    } else if constexpr (std::is_rvalue_reference_v<P> || !std::is_reference_v<P>) {
      return std::move(data);
    } else {
      return (data);
    }
  }
};

template <class F, class Inv, class... P>
decltype(auto) call_with(F& f, Inv& inv, std::tuple<P...>*) {
  return f(inv.template arg<P>()...);
}

/// A registered message handler, type-erased.
class message_handler {
 public:
  virtual ~message_handler() = default;
  virtual void invoke(const msgpack::object& data, const msgpack::object& meta, responder r) = 0;
};

/// Hands a handler coroutine to the service's executor; the task keeps the
/// service's core alive (defined in the .cpp so Asio's spawning machinery
/// stays out of this header). With `stop`, the task is bound to its
/// signal (a request's caller can cancel it).
void spawn(asio::awaitable<void> task, service_core* core,
           std::shared_ptr<transport::cancellable> stop = {});

template <class F>
class typed_message_handler final : public message_handler {
  using traits = callable_traits<F>;
  using sig = signature<typename traits::args>;
  using result = awaitable_value<typename traits::result>;
  using value = typename result::type;
  using data_type = typename sig::data;
  using item = typename sig::stream_item;
  using inv_t = invocation<data_type, item>;

  static_assert(sig::data_params <= 1, "a handler takes at most one data parameter");
  static_assert(sig::context_params <= 1, "a handler takes at most one message_context");
  static_assert(sig::stream_params <= 1, "a handler takes at most one stream_writer");
  static_assert(sig::stream_params == 0 || (result::coroutine && std::is_void_v<value>),
                "a stream handler is a coroutine returning asio::awaitable<void>");
  static_assert(!result::coroutine || !std::is_same_v<data_type, msgpack::object>,
                "a coroutine handler cannot take msgpack::object (it points into the receive "
                "buffer); take msgpack::object_handle");

 public:
  explicit typed_message_handler(F f) : f_(std::move(f)) { prepare_decode<data_type>(); }

  void invoke(const msgpack::object& data, const msgpack::object& meta, responder r) override {
    if (r.drop_if_expired()) return;
    data_type arg;
    try {
      arg = convert_data<data_type>(data);
    } catch (const rpc_error& e) {
      r.fail_decode(e);
      return;
    } catch (const std::exception& e) {
      r.fail_internal(e.what());
      return;
    }
    if constexpr (result::coroutine) {
      service_core* core = r.core();
      auto stop = r.make_cancellable();
      spawn(run(f_, std::move(arg), std::move(r), clone_meta(meta)), core, std::move(stop));
    } else {
      inv_t inv(std::move(arg), std::move(r), std::cref(meta));
      try {
        if constexpr (std::is_void_v<value>) {
          call_with(f_, inv, static_cast<typename traits::args*>(nullptr));
          inv.out.reply_void();
        } else {
          const value& v = call_with(f_, inv, static_cast<typename traits::args*>(nullptr));
          inv.out.reply([&](transport::packer& pk) { pk.pack(v); });
        }
      } catch (const rpc_error& e) {
        inv.out.fail(e);
      } catch (const std::exception& e) {
        inv.out.fail_internal(e.what());
      }
    }
  }

 private:
  static asio::awaitable<void> run(F& f, data_type arg, responder r, msgpack::object_handle meta) {
    if (r.drop_if_expired()) co_return;  // it waited for its turn on the loop
    inv_t inv(std::move(arg), std::move(r), std::move(meta));
    try {
      if constexpr (std::is_void_v<value>) {
        co_await call_with(f, inv, static_cast<typename traits::args*>(nullptr));
        inv.out.reply_void();
      } else {
        value v = co_await call_with(f, inv, static_cast<typename traits::args*>(nullptr));
        inv.out.reply([&](transport::packer& pk) { pk.pack(v); });
      }
    } catch (const rpc_error& e) {
      inv.out.fail(e);
    } catch (const std::exception& e) {
      inv.out.fail_internal(e.what());
    }
  }

  F f_;
};

/// A registered event handler, type-erased. Failures are logged.
class event_handler {
 public:
  virtual ~event_handler() = default;
  virtual void invoke(const msgpack::object& data, const msgpack::object& meta,
                      const std::string& pattern, service_core* core,
                      const std::shared_ptr<transport::server_session>& session) = 0;
};

/// Counts an event handled (and logs a failure: `what` not null).
void event_done(service_core* core, const std::string& pattern, const std::string& peer,
                errc outcome_if_failed, const char* what);
const std::string& peer_of(const transport::server_session& session) noexcept;
const tls_peer& identity_of(const transport::server_session& session) noexcept;

template <class F>
class typed_event_handler final : public event_handler {
  using traits = callable_traits<F>;
  using sig = signature<typename traits::args>;
  using result = awaitable_value<typename traits::result>;
  using data_type = typename sig::data;

  static_assert(sig::data_params <= 1, "an event handler takes at most one data parameter");
  static_assert(sig::stream_params == 0, "an event handler cannot stream (events get no reply)");
  static_assert(std::is_void_v<typename result::type>,
                "an event handler returns void or asio::awaitable<void>");

 public:
  explicit typed_event_handler(F f) : f_(std::move(f)) { prepare_decode<data_type>(); }

  void invoke(const msgpack::object& data, const msgpack::object& meta, const std::string& pattern,
              service_core* core,
              const std::shared_ptr<transport::server_session>& session) override {
    const std::string& peer = peer_of(*session);
    data_type arg;
    try {
      arg = convert_data<data_type>(data);
    } catch (const rpc_error& e) {
      event_done(core, pattern, peer, errc::decode_error, e.what());
      return;
    } catch (const std::exception& e) {
      event_done(core, pattern, peer, errc::internal, e.what());
      return;
    }
    try {
      if constexpr (result::coroutine) {
        message_context ctx(peer, pattern, clone_meta(meta), no_deadline, &identity_of(*session));
        spawn(run(f_, std::move(arg), std::move(ctx), event_token(session, core), core), core);
      } else {
        message_context ctx(peer, pattern, std::cref(meta), no_deadline, &identity_of(*session));
        call(f_, arg, ctx, static_cast<typename traits::args*>(nullptr));
        event_done(core, pattern, peer, errc::internal, nullptr);
      }
    } catch (const std::exception& e) {
      event_done(core, pattern, peer, errc::internal, e.what());
    }
  }

 private:
  template <class... P>
  static decltype(auto) call(F& f, data_type& arg, const message_context& ctx, std::tuple<P...>*) {
    auto pick = [&]<class Q>() -> decltype(auto) {
      if constexpr (is_context_param<Q>) {
        return (ctx);
      } else {
        return (arg);
      }
    };
    return f(pick.template operator()<P>()...);
  }

  // `token` counts the event as in hand until this frame ends.
  static asio::awaitable<void> run(F& f, data_type arg, message_context ctx,
                                   [[maybe_unused]] event_token token, service_core* core) {
    try {
      co_await call(f, arg, ctx, static_cast<typename traits::args*>(nullptr));
      event_done(core, ctx.pattern(), ctx.peer(), errc::internal, nullptr);
    } catch (const std::exception& e) {
      event_done(core, ctx.pattern(), ctx.peer(), errc::internal, e.what());
    }
  }

  F f_;
};

}  // namespace tern::detail
