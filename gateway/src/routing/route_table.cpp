#include "routing/route_table.hpp"

#include <tern/http/url.hpp>

#include <algorithm>
#include <array>

namespace tern::gateway {

namespace {
bool is_capture(std::string_view segment) noexcept {
  return !segment.empty() && segment[0] == ':';
}
}  // namespace

void route_table::add(route_entry e) {
  const std::size_t index = routes_.size();
  routes_.push_back(std::move(e));
  const auto& segs = routes_.back().segments;
  if (std::any_of(segs.begin(), segs.end(), [](const auto& s) { return is_capture(s); })) {
    if (captures_by_count_.size() <= segs.size()) captures_by_count_.resize(segs.size() + 1);
    captures_by_count_[segs.size()].push_back(index);
  } else {
    std::string path;
    for (const auto& s : segs) {
      path += '/';
      path += s;
    }
    auto it = literal_.find(path);
    if (it == literal_.end()) it = literal_.emplace(paths_.emplace_back(std::move(path)), 0).first;
    it->second.push_back(index);
  }
}

template <typename Found>
const route_entry* route_table::each_fit(std::string_view path, params* captured,
                                         Found found) const {
  if (path.empty() || path[0] != '/') return nullptr;
  constexpr std::size_t max_segments = 16;
  const auto count = static_cast<std::size_t>(std::count(path.begin(), path.end(), '/'));
  if (count > max_segments) return nullptr;
  // The routes that may fit, in the order added: those whose path is this
  // one, merged with those with captures and as many segments. The path is
  // split only for the latter.
  static const std::vector<std::size_t> none;
  auto lit = literal_.find(path);
  const auto& literal = lit != literal_.end() ? lit->second : none;
  const auto& capturing = count < captures_by_count_.size() ? captures_by_count_[count] : none;
  std::string_view segs[max_segments];
  if (!capturing.empty()) {
    auto rest = path.substr(1);
    for (std::size_t i = 0; i < count; ++i) {
      auto slash = rest.find('/');
      segs[i] = rest.substr(0, slash);
      rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash + 1);
    }
  }
  std::size_t a = 0, b = 0;
  while (a < literal.size() || b < capturing.size()) {
    const bool take_literal =
        b == capturing.size() || (a < literal.size() && literal[a] < capturing[b]);
    const auto& r = routes_[take_literal ? literal[a++] : capturing[b++]];
    if (!take_literal) {
      bool ok = true;
      for (std::size_t i = 0; i < count && ok; ++i) {
        const auto& want = r.segments[i];
        ok = is_capture(want) ? !segs[i].empty() : segs[i] == want;
      }
      if (!ok) continue;
    }
    if (!found(r)) continue;
    if (captured) {
      captured->clear();
      if (!take_literal) {
        for (std::size_t i = 0; i < count; ++i) {
          const auto& want = r.segments[i];
          if (is_capture(want)) {
            captured->emplace_back(std::string_view(want).substr(1),
                                   http::percent_decode(segs[i], false));
          }
        }
      }
    }
    return &r;
  }
  return nullptr;
}

const route_entry* route_table::match(std::string_view method, std::string_view path,
                                      params& captured) const {
  captured.clear();
  return each_fit(path, &captured, [&](const route_entry& r) {
    return r.method == method || (method == "HEAD" && r.method == "GET");
  });
}

std::string route_table::allowed(std::string_view path) const {
  std::vector<std::string_view> methods;
  each_fit(path, nullptr, [&](const route_entry& r) {
    auto add = [&](std::string_view m) {
      if (std::find(methods.begin(), methods.end(), m) == methods.end()) methods.push_back(m);
    };
    add(r.method);
    if (r.method == "GET") add("HEAD");
    return false;  // every route that has the path
  });
  std::string allow;
  for (auto m : methods) {
    if (!allow.empty()) allow += ", ";
    allow += m;
  }
  return allow;
}

}  // namespace tern::gateway
