// What a handler may know about the message it is handling.
#pragma once

#include "tern/call_options.hpp"
#include "tern/tls.hpp"

#include <msgpack.hpp>

#include <chrono>
#include <deque>
#include <functional>

#include <string>
#include <string_view>
#include <vector>

namespace tern {

/// Facts about the current message, passed to handlers that take a
/// `const tern::message_context&` parameter. Valid for the whole handler,
/// coroutine handlers included; the string_views it returns point into the
/// message and share that lifetime.
class message_context {
 public:
  message_context(
      const std::string& peer, const std::string& pattern, msgpack::object_handle meta,
      std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max(),
      const tls_peer* identity = nullptr)
      : peer_(&peer),
        pattern_(&pattern),
        identity_(identity),
        owned_(std::move(meta)),
        meta_(owned_.get()),
        deadline_(deadline) {}
  /// A context that borrows `meta` (`std::cref(object)`), which must
  /// outlive it and what it points into: for a handler that runs while the
  /// message's receive buffer is held, so no copy is made.
  message_context(
      const std::string& peer, const std::string& pattern,
      std::reference_wrapper<const msgpack::object> meta,
      std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max(),
      const tls_peer* identity = nullptr)
      : peer_(&peer),
        pattern_(&pattern),
        identity_(identity),
        meta_(meta.get()),
        deadline_(deadline) {}
  message_context(message_context&& o)
      : peer_(o.peer_),
        pattern_(o.pattern_),
        identity_(o.identity_),
        owned_(std::move(o.owned_)),  // its objects stay where they are (in the zone)
        meta_(o.meta_),
        deadline_(o.deadline_),
        forwarded_(std::move(o.forwarded_)) {}
  message_context(const message_context&) = delete;
  message_context& operator=(const message_context&) = delete;
  message_context& operator=(message_context&&) = delete;

  /// The caller's address, "host:port".
  [[nodiscard]] const std::string& peer() const noexcept { return *peer_; }
  /// The caller's certificate, verified in the TLS handshake against the
  /// service's CA (microservice_options::tls): its subject and subject
  /// alternative names. Empty (identified() false) on a plaintext port or
  /// for a caller that sent none. Unlike the identity in `meta`, which the
  /// caller writes, this one is proven: a service that requires client
  /// certificates can take `meta`'s identity only from callers whose
  /// certificate is the gateway's.
  ///
  /// ```
  /// if (ctx.peer_identity().subject != "CN=gateway") throw tern::rpc_error(403, "gateway only");
  /// ```
  [[nodiscard]] const tls_peer& peer_identity() const noexcept;
  /// The canonical pattern the handler was registered for.
  [[nodiscard]] const std::string& pattern() const noexcept { return *pattern_; }
  /// The packet's `meta` map (request id, deadline, trace context), or nil.
  [[nodiscard]] const msgpack::object& meta() const noexcept { return meta_; }

  /// When the caller stops waiting for the reply: the `deadline_ms` it
  /// sent, counted from when the request arrived; time_point::max() when
  /// it sent none (and for events). Work past it is wasted: the caller has
  /// had a timeout (and sent a cancel, docs/protocol.md).
  [[nodiscard]] std::chrono::steady_clock::time_point deadline() const noexcept {
    return deadline_;
  }

  /// The request id the caller sent (the gateway's X-Request-Id), or empty.
  [[nodiscard]] std::string_view request_id() const noexcept;
  /// The W3C trace id (32 hex digits) of a valid `traceparent`, or empty.
  [[nodiscard]] std::string_view trace_id() const noexcept;
  /// The caller's `traceparent` and `tracestate` if valid, or empty.
  [[nodiscard]] std::string_view traceparent() const noexcept;
  [[nodiscard]] std::string_view tracestate() const noexcept;

  /// The caller's verified identity, as the gateway's auth policy put it in
  /// `meta` (docs/protocol.md): whether there is one, its subject (`sub`,
  /// may be empty), its roles and scopes, and the claims its route
  /// propagates. A service can trust it as far as it trusts whoever can
  /// reach its port: only the gateway should (docs/gateway.md,
  /// "Authentication").
  ///
  /// ```
  /// if (!ctx.has_role("admin")) throw tern::rpc_error(403, "create_user needs the admin role");
  /// ```
  [[nodiscard]] bool authenticated() const noexcept;
  [[nodiscard]] std::string_view subject() const noexcept;
  [[nodiscard]] bool has_role(std::string_view role) const noexcept;
  [[nodiscard]] bool has_scope(std::string_view scope) const noexcept;
  [[nodiscard]] std::vector<std::string_view> roles() const;
  [[nodiscard]] std::vector<std::string_view> scopes() const;
  /// A propagated claim (the route's "propagate" list), or null.
  [[nodiscard]] const msgpack::object* claim(std::string_view name) const noexcept;

  /// The `meta` for a call made while handling this message, so the
  /// request id, the identity and the trace go on with it (a new span id, child of the
  /// caller's): pass it as call_options::meta, and keep the string alive
  /// until the call has been sent.
  ///
  /// ```
  /// auto meta = ctx.forward_meta();
  /// auto user = co_await users.send<user_dto>({{"cmd", "get_user"}}, id, {.meta = meta});
  /// ```
  [[nodiscard]] std::string forward_meta() const;

  /// Options for a call made while handling this message: forward_meta()
  /// (kept alive by this context) and this message's deadline, so the
  /// call goes on with the request's identity and trace, and ends when the
  /// caller stops waiting, or at its own timeout if that comes first.
  ///
  /// ```
  /// auto user = co_await users.send<user_dto>({{"cmd", "get_user"}}, id, ctx.forward());
  /// ```
  /// Each call keeps its meta (a few hundred bytes) until the handler ends;
  /// a handler that makes thousands of calls takes one forward() and reuses
  /// it (its calls then share one span id).
  [[nodiscard]] call_options forward() const;

 private:
  [[nodiscard]] const msgpack::object* identity() const noexcept;
  const std::string* peer_;
  const std::string* pattern_;
  const tls_peer* identity_;      // the connection's, which outlives the handler
  msgpack::object_handle owned_;  // the copy meta_ points into, if it is not borrowed
  msgpack::object meta_;
  std::chrono::steady_clock::time_point deadline_;
  mutable std::deque<std::string> forwarded_;  // forward()'s metas, alive with the context
};

}  // namespace tern
