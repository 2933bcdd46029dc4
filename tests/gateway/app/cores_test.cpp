// How many event loops the gateway runs by default: the cgroup CPU quota
// read from a hierarchy laid out as the kernel does (v2 and v1), and the
// rule for small machines.
#include "app/cores.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using tern::gateway::cgroup_cpu_quota;

namespace {

// A directory of the test's own, removed at the end.
struct scratch {
  fs::path dir;
  scratch() {
    std::string t = (fs::temp_directory_path() / "tern-cores-XXXXXX").string();
    REQUIRE(mkdtemp(t.data()) != nullptr);
    dir = t;
  }
  ~scratch() { fs::remove_all(dir); }
  void write(const fs::path& rel, const std::string& text) const {
    fs::create_directories((dir / rel).parent_path());
    std::ofstream(dir / rel) << text;
  }
};

}  // namespace

TEST_CASE("cgroup v2: cpu.max of the process's cgroup, and of any parent that is lower") {
  scratch s;
  s.write("root/cgroup.controllers", "cpu memory\n");
  s.write("self", "0::/kubepods/pod1/gw\n");
  s.write("root/kubepods/pod1/gw/cpu.max", "max 100000\n");
  CHECK_FALSE(cgroup_cpu_quota(s.dir / "root", s.dir / "self"));  // no limit anywhere

  s.write("root/kubepods/pod1/gw/cpu.max", "250000 100000\n");
  CHECK(cgroup_cpu_quota(s.dir / "root", s.dir / "self") == doctest::Approx(2.5));
  s.write("root/kubepods/pod1/cpu.max", "150000 100000\n");  // the pod's, lower
  CHECK(cgroup_cpu_quota(s.dir / "root", s.dir / "self") == doctest::Approx(1.5));
  s.write("root/kubepods/cpu.max", "nonsense\n");  // unreadable levels are skipped
  CHECK(cgroup_cpu_quota(s.dir / "root", s.dir / "self") == doctest::Approx(1.5));

  // In a container's cgroup namespace the process's cgroup is the root.
  s.write("self", "0::/\n");
  s.write("root/cpu.max", "50000 100000\n");
  CHECK(cgroup_cpu_quota(s.dir / "root", s.dir / "self") == doctest::Approx(0.5));
}

TEST_CASE("cgroup v1: cpu.cfs_quota_us over cpu.cfs_period_us, -1 for none") {
  scratch s;
  s.write("self", "4:memory:/x\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n");
  s.write("root/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  s.write("root/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  s.write("root/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
  s.write("root/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  CHECK_FALSE(cgroup_cpu_quota(s.dir / "root", s.dir / "self"));
  s.write("root/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "300000\n");
  CHECK(cgroup_cpu_quota(s.dir / "root", s.dir / "self") == doctest::Approx(3.0));
}

TEST_CASE("no cgroup file, or none with a cpu controller: no quota") {
  scratch s;
  CHECK_FALSE(cgroup_cpu_quota(s.dir / "root", s.dir / "missing"));
  s.write("self", "4:memory:/x\n");
  CHECK_FALSE(cgroup_cpu_quota(s.dir / "root", s.dir / "self"));
}

TEST_CASE("the default: a loop per usable CPU, one on two CPUs or fewer") {
  using tern::gateway::default_threads;
  CHECK(default_threads(1) == 1);
  CHECK(default_threads(2) == 1);
  CHECK(default_threads(3) == 3);
  CHECK(default_threads(16) == 16);
  CHECK(tern::gateway::usable_cores() >= 1);
}
