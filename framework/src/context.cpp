#include "tern/context.hpp"

#include "tern/trace.hpp"

#include <span>

namespace tern {

namespace {

std::string_view meta_string(const msgpack::object& meta, std::string_view key) noexcept {
  if (meta.type != msgpack::type::MAP) return {};
  for (const auto& kv : std::span(meta.via.map.ptr, meta.via.map.size)) {
    if (kv.key.type != msgpack::type::STR || kv.val.type != msgpack::type::STR) continue;
    if (std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) {
      return {kv.val.via.str.ptr, kv.val.via.str.size};
    }
  }
  return {};
}

}  // namespace

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

std::string message_context::forward_meta() const {
  std::string out;
  trace_parent t;
  bool traced = parse_traceparent(traceparent(), t);
  trace_parent child = traced ? child_of(t) : new_trace();
  append_trace_meta(out, request_id(), &child, traced ? tracestate() : std::string_view());
  return out;
}

}  // namespace tern
