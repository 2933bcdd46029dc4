#include "routing/route_table.hpp"

#include <tern/http/url.hpp>

#include <algorithm>
#include <array>

namespace tern::gateway {

template <typename Found>
const route_entry* route_table::each_fit(std::string_view path, params* captured,
                                         Found found) const {
  if (path.empty() || path[0] != '/') return nullptr;
  path.remove_prefix(1);
  std::array<std::string_view, 16> segs;
  std::size_t count = 0;
  for (;;) {
    if (count == segs.size()) return nullptr;
    auto slash = path.find('/');
    segs[count++] = path.substr(0, slash);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  for (const auto& r : routes_) {
    if (r.segments.size() != count) continue;
    bool ok = true;
    for (std::size_t i = 0; i < count && ok; ++i) {
      const auto& want = r.segments[i];
      ok = !want.empty() && want[0] == ':' ? !segs[i].empty() : segs[i] == want;
    }
    if (!ok || !found(r)) continue;
    if (captured) {
      captured->clear();
      for (std::size_t i = 0; i < count; ++i) {
        const auto& want = r.segments[i];
        if (!want.empty() && want[0] == ':') {
          captured->emplace_back(std::string_view(want).substr(1),
                                 http::percent_decode(segs[i], false));
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
