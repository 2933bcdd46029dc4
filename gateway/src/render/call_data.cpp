#include "render/call_data.hpp"

#include <tern/error.hpp>
#include <tern/http/url.hpp>
#include <tern/json.hpp>
#include <tern/packed.hpp>
#include <tern/utf8.hpp>

#include <msgpack.hpp>

#include <charconv>
#include <unordered_map>

namespace tern::gateway {

namespace {

[[noreturn]] void bad_request(std::string message) {
  throw rpc_error(400, std::move(message));
}

// msgpack written into a std::string with msgpack-c's packer (smallest encodings).
class msgpack_out {
 public:
  explicit msgpack_out(std::string& s) : stream_{s}, pk_(stream_) {}
  void uint(std::uint64_t v) { pk_.pack_uint64(v); }
  void sint(std::int64_t v) { pk_.pack_int64(v); }
  void str(std::string_view v) {
    pk_.pack_str(static_cast<std::uint32_t>(v.size()));
    pk_.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
  }
  void map_header(std::size_t n) { pk_.pack_map(static_cast<std::uint32_t>(n)); }

 private:
  struct string_stream {  // msgpack-c's stream concept over a std::string
    std::string& s;
    void write(const char* p, std::size_t n) { s.append(p, n); }
  };
  string_stream stream_;
  msgpack::packer<string_stream> pk_;
};

std::string body_to_msgpack(std::string_view body) {
  std::string out;
  out.reserve(body.size() + 16);
  switch (auto e = json_to_msgpack(body, out, max_body_depth); e.kind) {
    case json_error::none:
      return out;
    case json_error::too_deep:
      bad_request("the JSON body nests deeper than " + std::to_string(max_body_depth) + " levels");
    case json_error::duplicate_key:
      bad_request("duplicate key \"" + e.key + "\" in the JSON body");
    case json_error::out_of_range:
      bad_request("a number in the JSON body is out of range");
    case json_error::malformed:
      break;
  }
  bad_request("malformed JSON body");
}

// Digit-only text that fits a 64-bit integer is that integer; anything
// else (and "-", "", "+1", 21 digits) stays a string.
void scalar(std::string_view v, msgpack_out& w) {
  if (!v.empty() && v.find_first_not_of("0123456789", v[0] == '-' ? 1 : 0) == std::string::npos &&
      v != "-") {
    if (v[0] == '-') {
      std::int64_t i;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
      if (ec == std::errc() && end == v.data() + v.size()) return w.sint(i);
    } else {
      std::uint64_t u;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), u);
      if (ec == std::errc() && end == v.data() + v.size()) return w.uint(u);
    }
  }
  w.str(v);
}

void require_utf8(std::string_view text, const char* what, std::string_view name) {
  if (is_valid_utf8(text)) return;
  if (name.empty() || name.size() > 100 || !is_valid_utf8(name)) {
    bad_request(std::string(what) + " is not valid UTF-8");
  }
  bad_request(std::string(what) + " '" + std::string(name) + "' is not valid UTF-8");
}

// Keeps the first place of each key with the last value given for it.
template <class K, class V>
void last_wins(std::vector<std::pair<K, V>>& entries) {
  if (entries.size() < 2) return;
  std::unordered_map<std::string_view, std::size_t> first;  // key -> its first entry
  first.reserve(entries.size());
  std::vector<std::size_t> last(entries.size(), SIZE_MAX);  // first entry -> its last one
  for (std::size_t i = 0; i < entries.size(); ++i) {
    auto [it, fresh] = first.try_emplace(std::string_view(entries[i].first), i);
    last[it->second] = i;
  }
  std::size_t kept = 0;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (last[i] == SIZE_MAX) continue;  // a repeat, its value taken below
    if (last[i] != i) entries[i].second = std::move(entries[last[i]].second);
    if (kept != i) entries[kept] = std::move(entries[i]);
    ++kept;
  }
  entries.resize(kept);
}

std::string params_map(const std::vector<std::pair<std::string_view, std::string>>& params) {
  std::string out;
  msgpack_out w(out);
  w.map_header(params.size());
  for (const auto& [k, v] : params) {
    require_utf8(v, "path parameter", k);
    w.str(k);
    scalar(v, w);
  }
  return out;
}

std::string query_map(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  while (!query.empty()) {
    auto amp = query.find('&');
    auto part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    auto eq = part.find('=');
    auto key = http::percent_decode(part.substr(0, eq), true);
    auto value = eq == std::string_view::npos ? std::string()
                                              : http::percent_decode(part.substr(eq + 1), true);
    require_utf8(key, "a query parameter name", "");
    require_utf8(value, "query parameter", key);
    pairs.emplace_back(std::move(key), std::move(value));
  }
  last_wins(pairs);
  std::string out;
  msgpack_out w(out);
  w.map_header(pairs.size());
  for (const auto& [k, v] : pairs) {
    w.str(k);
    scalar(v, w);
  }
  return out;
}

// The entries of a packed map (as msgpack bytes), or false if it is not one.
bool map_entries(std::string_view packed,
                 std::vector<std::pair<std::string_view, std::string_view>>& entries) {
  const char* p = packed.data();
  const char* end = p + packed.size();
  tern::msgpack_head h;
  if (p >= end || !(p = tern::read_head(p, end, h)) || h.kind != tern::msgpack_head::map) {
    return false;
  }
  for (std::uint32_t i = 0; i < h.count; ++i) {
    const char* k = p;
    p = tern::skip_value(p, end);
    const char* v = p;
    if (p) p = tern::skip_value(p, end);
    if (!p) return false;  // not from our own writers
    entries.emplace_back(std::string_view(k, static_cast<std::size_t>(v - k)),
                         std::string_view(v, static_cast<std::size_t>(p - v)));
  }
  return true;
}

}  // namespace

std::string build_call_data(const std::vector<data_source>& sources,
                            const std::vector<std::pair<std::string_view, std::string>>& params,
                            std::string_view query, std::string_view body) {
  // The common cases without any merging.
  if (sources.size() == 1 && sources[0] == data_source::none) return std::string(1, '\xc0');
  if (sources.size() == 1 && sources[0] == data_source::query && query.empty()) {
    return std::string(1, '\x80');
  }
  std::vector<std::string> parts;
  parts.reserve(sources.size());
  for (auto source : sources) {
    switch (source) {
      case data_source::none:
        break;
      case data_source::params:
        parts.push_back(params_map(params));
        break;
      case data_source::query:
        parts.push_back(query_map(query));
        break;
      case data_source::body:
        if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) break;
        parts.push_back(body_to_msgpack(body));
        break;
    }
  }
  if (parts.empty()) return std::string(1, '\xc0');
  if (parts.size() == 1) return std::move(parts[0]);

  // Objects merged in order: a later key replaces an earlier one in place.
  std::vector<std::pair<std::string_view, std::string_view>> merged;
  for (const auto& part : parts) {
    if (!map_entries(part, merged)) bad_request("the request body must be a JSON object");
  }
  last_wins(merged);
  std::string out;
  msgpack_out w(out);
  w.map_header(merged.size());
  for (const auto& [k, v] : merged) {
    out.append(k);
    out.append(v);
  }
  return out;
}

}  // namespace tern::gateway
