#include "routing/route_table.hpp"

#include "render/call_data.hpp"

#include <array>

namespace tern::gateway {

const route_entry* route_table::match(std::string_view method, std::string_view path,
                                      params& captured, bool& path_known) const {
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
    captured.clear();
    bool ok = true;
    for (std::size_t i = 0; i < count && ok; ++i) {
      const auto& want = r.segments[i];
      if (!want.empty() && want[0] == ':') {
        ok = !segs[i].empty();
        if (ok)
          captured.emplace_back(std::string_view(want).substr(1), percent_decode(segs[i], false));
      } else {
        ok = segs[i] == want;
      }
    }
    if (!ok) continue;
    path_known = true;
    if (r.method == method || (method == "HEAD" && r.method == "GET")) return &r;
  }
  captured.clear();
  return nullptr;
}

}  // namespace tern::gateway
