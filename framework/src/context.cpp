#include "tern/context.hpp"

#include "tern/trace.hpp"

#include <span>

namespace tern {

namespace {

const msgpack::object* find(const msgpack::object& map, std::string_view key) noexcept {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (const auto& kv : std::span(map.via.map.ptr, map.via.map.size)) {
    if (kv.key.type != msgpack::type::STR) continue;
    if (std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) return &kv.val;
  }
  return nullptr;
}

std::string_view as_string(const msgpack::object* o) noexcept {
  if (!o || o->type != msgpack::type::STR) return {};
  return {o->via.str.ptr, o->via.str.size};
}

std::string_view meta_string(const msgpack::object& meta, std::string_view key) noexcept {
  return as_string(find(meta, key));
}

std::vector<std::string_view> strings_of(const msgpack::object* list) {
  std::vector<std::string_view> out;
  if (!list || list->type != msgpack::type::ARRAY) return out;
  for (const auto& o : std::span(list->via.array.ptr, list->via.array.size)) {
    if (o.type == msgpack::type::STR) out.push_back(as_string(&o));
  }
  return out;
}

bool contains(const msgpack::object* list, std::string_view item) noexcept {
  if (!list || list->type != msgpack::type::ARRAY) return false;
  for (const auto& o : std::span(list->via.array.ptr, list->via.array.size)) {
    if (o.type == msgpack::type::STR && as_string(&o) == item) return true;
  }
  return false;
}

}  // namespace

const tls_peer& message_context::peer_identity() const noexcept {
  static const tls_peer none;
  return identity_ ? *identity_ : none;
}

std::string_view message_context::request_id() const noexcept {
  auto id = meta_string(meta(), meta_request_id);
  return valid_request_id(id) ? id : std::string_view();
}

std::string_view message_context::traceparent() const noexcept {
  trace_parent t;
  auto text = meta_string(meta(), meta_traceparent);
  return parse_traceparent(text, t) ? text : std::string_view();
}

std::string_view message_context::tracestate() const noexcept {
  auto s = meta_string(meta(), meta_tracestate);
  return valid_tracestate(s) ? s : std::string_view();
}

std::string_view message_context::trace_id() const noexcept {
  auto text = traceparent();
  return text.empty() ? text : text.substr(3, 32);
}

const msgpack::object* message_context::identity() const noexcept {
  const auto* id = find(meta(), meta_identity);
  return id && id->type == msgpack::type::MAP ? id : nullptr;
}

bool message_context::authenticated() const noexcept {
  return identity() != nullptr;
}

std::string_view message_context::subject() const noexcept {
  const auto* id = identity();
  return id ? as_string(find(*id, "sub")) : std::string_view();
}

bool message_context::has_role(std::string_view role) const noexcept {
  const auto* id = identity();
  return id && contains(find(*id, "roles"), role);
}

bool message_context::has_scope(std::string_view scope) const noexcept {
  const auto* id = identity();
  return id && contains(find(*id, "scopes"), scope);
}

std::vector<std::string_view> message_context::roles() const {
  const auto* id = identity();
  return id ? strings_of(find(*id, "roles")) : std::vector<std::string_view>();
}

std::vector<std::string_view> message_context::scopes() const {
  const auto* id = identity();
  return id ? strings_of(find(*id, "scopes")) : std::vector<std::string_view>();
}

const msgpack::object* message_context::claim(std::string_view name) const noexcept {
  const auto* id = identity();
  const auto* claims = id ? find(*id, "claims") : nullptr;
  return claims ? find(*claims, name) : nullptr;
}

std::string message_context::forward_meta() const {
  std::string out;
  trace_parent t;
  bool traced = parse_traceparent(traceparent(), t);
  trace_parent child = traced ? child_of(t) : new_trace();
  std::string packed_identity;
  if (const auto* id = identity()) {
    msgpack::sbuffer buf;
    msgpack::pack(buf, *id);
    packed_identity.assign(buf.data(), buf.size());
  }
  append_trace_meta(out, request_id(), &child, traced ? tracestate() : std::string_view(),
                    packed_identity);
  return out;
}

call_options message_context::forward() const {
  const auto& meta = forwarded_.emplace_back(forward_meta());
  return {.deadline = deadline_, .meta = meta};
}

}  // namespace tern
