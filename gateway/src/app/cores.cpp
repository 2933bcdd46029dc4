#include "app/cores.hpp"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace tern::gateway {

namespace {

std::optional<std::string> read_line(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  if (!in || !std::getline(in, line)) return std::nullopt;
  return line;
}

std::optional<double> number(const std::string& s) {
  try {
    std::size_t used = 0;
    double v = std::stod(s, &used);
    if (used == 0 || !std::isfinite(v)) return std::nullopt;
    return v;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

// The quota of one cgroup directory, in CPUs, if it has one.
std::optional<double> quota_at(const std::filesystem::path& dir, bool v2) {
  if (v2) {
    auto line = read_line(dir / "cpu.max");  // "max 100000" or "QUOTA PERIOD"
    if (!line) return std::nullopt;
    std::istringstream in(*line);
    std::string quota, period;
    if (!(in >> quota >> period) || quota == "max") return std::nullopt;
    auto q = number(quota), p = number(period);
    if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;
    return *q / *p;
  }
  auto quota = read_line(dir / "cpu.cfs_quota_us");  // -1: none
  auto period = read_line(dir / "cpu.cfs_period_us");
  if (!quota || !period) return std::nullopt;
  auto q = number(*quota), p = number(*period);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;
  return *q / *p;
}

}  // namespace

std::optional<double> cgroup_cpu_quota(const std::filesystem::path& root,
                                       const std::filesystem::path& self) {
  std::ifstream in(self);
  std::string line;
  std::optional<double> least;
  auto walk = [&](const std::filesystem::path& mount, std::string path, bool v2) {
    // From the process's cgroup up to the mount: any level may limit it.
    for (;;) {
      auto dir = mount / std::filesystem::path(path).relative_path();
      if (auto q = quota_at(dir, v2)) least = least ? std::min(*least, *q) : *q;
      if (path.empty() || path == "/") return;
      auto slash = path.find_last_of('/');
      path = slash == std::string::npos || slash == 0 ? "/" : path.substr(0, slash);
    }
  };
  // Lines are "ID:CONTROLLERS:PATH": v2's is "0::PATH", v1's name theirs.
  while (std::getline(in, line)) {
    auto a = line.find(':');
    auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    auto controllers = line.substr(a + 1, b - a - 1);
    auto path = line.substr(b + 1);
    if (controllers.empty() && line.compare(0, a, "0") == 0) {
      if (std::filesystem::exists(root / "cgroup.controllers")) walk(root, path, true);
      continue;
    }
    std::istringstream list(controllers);
    for (std::string c; std::getline(list, c, ',');) {
      if (c != "cpu") continue;
      // v1 mounts the cpu controller alone or with cpuacct.
      for (const char* m : {"cpu", "cpu,cpuacct", "cpuacct,cpu"}) {
        if (std::filesystem::exists(root / m / "cpu.cfs_quota_us")) {
          walk(root / m, path, false);
          break;
        }
      }
    }
  }
  return least;
}

std::size_t usable_cores() {
  std::size_t n = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) {
    n = static_cast<std::size_t>(CPU_COUNT(&set));
  } else {
    n = std::max(1u, std::thread::hardware_concurrency());
  }
  if (auto q = cgroup_cpu_quota()) {
    n = std::min(n, static_cast<std::size_t>(std::max(1.0, std::ceil(*q))));
  }
  return n;
}

std::size_t default_threads(std::size_t cores) {
  return cores <= 2 ? 1 : cores;
}

}  // namespace tern::gateway
