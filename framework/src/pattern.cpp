#include "tern/pattern.hpp"

#include "tern/json_depth.hpp"

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <span>
#include <stdexcept>
#include <vector>

namespace tern {

namespace {

constexpr int max_depth = 16;
// The deepest JSON text parsed as a pattern: what the wire takes in a value.
constexpr int max_json_depth = 64;
// The longest string parsed as a JSON pattern (parsing builds a tree many
// times the text's size); a longer one stays a string.
constexpr std::size_t max_json_pattern_bytes = 64 * 1024;

void quote(std::string_view s, std::string& out) {
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

std::string pack_str(std::string_view s) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
  return {buf.data(), buf.size()};
}

// Builds the canonical text and the msgpack map of an object pattern.
void build_object(std::initializer_list<const pattern_field*> fields, std::string& canonical,
                  std::string& packed) {
  std::vector<const pattern_field*> sorted(fields);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->key < b->key; });
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(static_cast<std::uint32_t>(sorted.size()));
  canonical = "{";
  for (auto* f : sorted) {
    if (canonical.size() > 1) canonical += ',';
    quote(f->key, canonical);
    canonical += ':';
    canonical += f->value.canonical();
    pk.pack_str(static_cast<std::uint32_t>(f->key.size()));
    pk.pack_str_body(f->key.data(), static_cast<std::uint32_t>(f->key.size()));
    buf.write(f->value.packed().data(), f->value.packed().size());
  }
  canonical += '}';
  packed.assign(buf.data(), buf.size());
}

void canonical_json(const nlohmann::json& j, std::string& out, int depth);

// Bytes a received pattern's canonical text may take in all (its key texts
// included): past this it cannot be any registered pattern, and each level of
// non-string keys would double the text again (fuzzing found 51 bytes that
// asked for 1 MiB of text under a budget of that size: the budget bounds the
// work per pattern, so it stays small).
constexpr std::size_t canonical_budget = 64 * 1024;

// quote() that charges `budget` for what it writes, and writes nothing once
// the budget is spent (the caller then gives up on the whole pattern).
void quote_within(std::string_view s, std::string& out, std::size_t& budget) {
  std::size_t before = out.size();
  if (2 * s.size() + 2 > budget) {
    budget = 0;
    return;
  }
  quote(s, out);
  budget -= out.size() - before;
}

// Charges `budget` for sorting n entries (their keys and bookkeeping).
bool charge(std::size_t& budget, std::size_t n) {
  if (n * 48 > budget) {
    budget = 0;
    return false;
  }
  budget -= n * 48;
  return true;
}

void canonical_value(const msgpack::object& o, std::string& out, int depth, std::size_t& budget) {
  if (budget == 0) return;
  if (depth > max_depth) {
    out += "[MAX_DEPTH_REACHED]";
    return;
  }
  switch (o.type) {
    case msgpack::type::STR:
      quote_within({o.via.str.ptr, o.via.str.size}, out, budget);
      break;
    case msgpack::type::POSITIVE_INTEGER:
      out += std::to_string(o.via.u64);
      break;
    case msgpack::type::NEGATIVE_INTEGER:
      out += std::to_string(o.via.i64);
      break;
    case msgpack::type::BOOLEAN:
      out += o.via.boolean ? "true" : "false";
      break;
    case msgpack::type::NIL:
      out += "null";
      break;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      out += nlohmann::json(o.via.f64).dump();
      break;
    case msgpack::type::MAP: {
      if (!charge(budget, o.via.map.size)) return;
      std::vector<std::pair<std::string_view, const msgpack::object*>> fields;
      std::vector<std::string> owned_keys;  // non-string keys, as text
      owned_keys.reserve(o.via.map.size);
      for (const auto& kv : std::span(o.via.map.ptr, o.via.map.size)) {
        if (kv.key.type == msgpack::type::STR) {
          fields.emplace_back(std::string_view(kv.key.via.str.ptr, kv.key.via.str.size), &kv.val);
        } else {
          std::string k;
          canonical_value(kv.key, k, depth + 1, budget);
          if (budget == 0) return;
          owned_keys.push_back(std::move(k));
          fields.emplace_back(owned_keys.back(), &kv.val);
        }
      }
      std::sort(fields.begin(), fields.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      bool first = true;
      for (const auto& [k, v] : fields) {
        if (!first) out += ',';
        first = false;
        quote_within(k, out, budget);
        out += ':';
        canonical_value(*v, out, depth + 1, budget);
        if (budget == 0) return;
      }
      out += '}';
      break;
    }
    case msgpack::type::ARRAY: {
      // As NestJS does: an array is an object keyed "0", "1", ...
      if (!charge(budget, o.via.array.size)) return;
      std::vector<std::pair<std::string, const msgpack::object*>> fields;
      for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
        fields.emplace_back(std::to_string(i), &o.via.array.ptr[i]);
      }
      std::sort(fields.begin(), fields.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      out += '{';
      for (std::size_t i = 0; i < fields.size(); ++i) {
        if (i) out += ',';
        quote(fields[i].first, out);
        out += ':';
        canonical_value(*fields[i].second, out, depth + 1, budget);
        if (budget == 0) return;
      }
      out += '}';
      break;
    }
    default:
      out += "[UNSERIALIZABLE_PATTERN]";
      break;
  }
}

void canonical_json(const nlohmann::json& j, std::string& out, int depth) {
  if (depth > max_depth) {
    out += "[MAX_DEPTH_REACHED]";
    return;
  }
  if (j.is_object()) {
    out += '{';  // nlohmann's object is a std::map: keys already sorted bytewise
    bool first = true;
    for (const auto& [k, v] : j.items()) {
      if (!first) out += ',';
      first = false;
      quote(k, out);
      out += ':';
      canonical_json(v, out, depth + 1);
    }
    out += '}';
  } else if (j.is_string()) {
    quote(j.get_ref<const std::string&>(), out);
  } else if (j.is_array()) {
    nlohmann::json obj = nlohmann::json::object();
    for (std::size_t i = 0; i < j.size(); ++i) obj[std::to_string(i)] = j[i];
    canonical_json(obj, out, depth);
  } else {
    out += j.dump();
  }
}

}  // namespace

pattern_value::pattern_value(string_tag, std::string_view s) : packed_(pack_str(s)) {
  quote(s, canonical_);
}

pattern_value::pattern_value(bool_tag, bool b)
    : canonical_(b ? "true" : "false"), packed_(1, b ? '\xc3' : '\xc2') {}

pattern_value::pattern_value(std::nullptr_t) : canonical_("null"), packed_(1, '\xc0') {}

pattern_value::pattern_value(std::int64_t i, int) : canonical_(std::to_string(i)) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, i);
  packed_.assign(buf.data(), buf.size());
}

pattern_value::pattern_value(fields_tag, std::initializer_list<const pattern_field*> fields) {
  build_object(fields, canonical_, packed_);
}

pattern::pattern(string_tag, std::string_view s) : canonical_(s), packed_(pack_str(s)) {}

pattern::pattern(fields_tag, std::initializer_list<const pattern_field*> fields) {
  build_object(fields, canonical_, packed_);
}

pattern pattern::from_json(std::string_view json_text) {
  if (json_depth(json_text, max_json_depth) > max_json_depth) {
    throw std::invalid_argument("a pattern may nest at most " + std::to_string(max_json_depth) +
                                " levels");
  }
  auto j = nlohmann::json::parse(json_text, nullptr, false);
  if (j.is_string()) return pattern(j.get<std::string>());
  if (!j.is_object()) {
    throw std::invalid_argument("a pattern is a JSON object or string, not: " +
                                std::string(json_text.substr(0, 80)));
  }
  pattern p("");
  p.canonical_.clear();
  canonical_json(j, p.canonical_, 0);
  auto bytes = nlohmann::json::to_msgpack(j);  // std::map object: keys sorted
  p.packed_.assign(bytes.begin(), bytes.end());
  return p;
}

void canonical_pattern(const msgpack::object& o, std::string& out) {
  out.clear();
  if (o.type == msgpack::type::STR) {
    std::string_view s(o.via.str.ptr, o.via.str.size);
    // NestJS parses a string pattern as JSON first: '{"cmd":"x"}' matches
    // {cmd: "x"}. Text nested deeper than the wire allows stays a string
    // (which no handler is registered for).
    if (!s.empty() && s.front() == '{' && s.size() <= max_json_pattern_bytes &&
        json_depth(s, max_json_depth) <= max_json_depth) {
      auto j = nlohmann::json::parse(s, nullptr, false);
      if (!j.is_discarded() && j.is_object()) {
        canonical_json(j, out, 0);
        return;
      }
    }
    out.assign(s);
    return;
  }
  std::size_t budget = canonical_budget;
  canonical_value(o, out, 0, budget);
  if (budget == 0) out.assign("[TOO_LONG]");  // no handler has this name
}

}  // namespace tern
