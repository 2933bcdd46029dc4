// How many event loops the gateway runs when not told: the CPUs it may
// use, as its affinity mask and its cgroup's CPU quota (a container's
// limit) allow.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>

namespace tern::gateway {

/// The CPU quota of the cgroup this process is in, in CPUs (2.5 for
/// "250000 100000"), the smallest along its path to the hierarchy's root;
/// nullopt if there is none. Reads cgroup v2's cpu.max, or v1's
/// cpu.cfs_quota_us and cpu.cfs_period_us, under `root` (the cgroup
/// mount), for the path `self` (/proc/self/cgroup) names.
[[nodiscard]] std::optional<double> cgroup_cpu_quota(
    const std::filesystem::path& root = "/sys/fs/cgroup",
    const std::filesystem::path& self = "/proc/self/cgroup");

/// The number of CPUs this process may run on: its affinity mask (which
/// `--cpuset-cpus` narrows), capped by its cgroup's CPU quota rounded up
/// (`--cpus`, a Kubernetes `limits.cpu`); at least 1.
[[nodiscard]] std::size_t usable_cores();

/// The default --threads for `cores` usable CPUs: one event loop per CPU,
/// but a single one on two or fewer, where the gateway shares the CPUs
/// with the kernel's network work and usually with its services, and a
/// second loop costs a fifth more CPU a request for no more requests
/// (docs/benchmarks.md, "Threads on small machines").
[[nodiscard]] std::size_t default_threads(std::size_t cores);

}  // namespace tern::gateway
