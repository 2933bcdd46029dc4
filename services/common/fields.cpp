#include "fields.hpp"

#include <tern/utf8.hpp>

#include <cmath>

namespace tern::demo {

namespace {
[[noreturn]] void bad(std::string_view name, std::string_view why) {
  throw rpc_error(400, std::string(name) + " " + std::string(why));
}
}  // namespace

fields::fields(const msgpack::object& data) : data_(data) {
  if (data.type != msgpack::type::MAP && data.type != msgpack::type::NIL) {
    throw rpc_error(400, "data must be an object");
  }
}

const msgpack::object* fields::find(std::string_view name) const {
  if (data_.type != msgpack::type::MAP) return nullptr;
  for (const auto& kv : std::span(data_.via.map.ptr, data_.via.map.size)) {
    if (kv.key.type == msgpack::type::STR &&
        std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == name) {
      return kv.val.type == msgpack::type::NIL ? nullptr : &kv.val;
    }
  }
  return nullptr;
}

std::optional<std::string> fields::text(std::string_view name) const {
  auto* v = find(name);
  if (!v) return std::nullopt;
  if (v->type != msgpack::type::STR) bad(name, "must be a string");
  std::string_view text(v->via.str.ptr, v->via.str.size);
  if (!is_valid_utf8(text)) bad(name, "must be valid UTF-8 text");
  return std::string(text);
}

std::optional<std::int64_t> fields::integer(std::string_view name) const {
  auto* v = find(name);
  if (!v) return std::nullopt;
  if (v->type == msgpack::type::POSITIVE_INTEGER) {
    if (v->via.u64 > static_cast<std::uint64_t>(INT64_MAX)) bad(name, "is too large");
    return static_cast<std::int64_t>(v->via.u64);
  }
  if (v->type == msgpack::type::NEGATIVE_INTEGER) return v->via.i64;
  bad(name, "must be an integer");
}

std::optional<double> fields::number(std::string_view name) const {
  auto* v = find(name);
  if (!v) return std::nullopt;
  switch (v->type) {
    case msgpack::type::POSITIVE_INTEGER:
      return static_cast<double>(v->via.u64);
    case msgpack::type::NEGATIVE_INTEGER:
      return static_cast<double>(v->via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      if (!std::isfinite(v->via.f64)) bad(name, "must be a finite number");
      return v->via.f64;
    default:
      bad(name, "must be a number");
  }
}

std::string fields::required_text(std::string_view name, std::size_t max) const {
  auto v = text(name);
  if (!v || v->empty()) bad(name, "is required");
  if (v->size() > max) bad(name, "must be at most " + std::to_string(max) + " characters");
  return *v;
}

page read_page(const fields& f) {
  page p;
  if (auto limit = f.integer("limit")) {
    if (*limit < 1 || *limit > 1000) throw rpc_error(400, "limit must be between 1 and 1000");
    p.limit = *limit;
  }
  if (auto offset = f.integer("offset")) {
    if (*offset < 0) throw rpc_error(400, "offset must not be negative");
    p.offset = *offset;
  }
  return p;
}

std::int64_t read_id(const fields& f) {
  auto id = f.integer("id");
  if (!id) throw rpc_error(400, "id is required");
  if (*id < 1) throw rpc_error(400, "id must be a positive integer");
  return *id;
}

}  // namespace tern::demo
