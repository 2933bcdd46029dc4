#!/usr/bin/env bash
# Where each process of the demo stack spends its CPU a request: user
# space and the kernel, from utime and stime (fields 14 and 15 of
# /proc/PID/stat) read before and after a wrk run, and what one syscall
# costs on this host (bench/syscall_cost). Starts the stack as
# bench/stack.sh does (one gateway loop, the default policies).
#   bench/cpu_split.sh [ROUTE] [SECONDS]     (default /api-gateway/dashboard 8)
set -euo pipefail
cd "$(dirname "$0")/.."
route=${1:-/api-gateway/dashboard}
seconds=${2:-8}
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
cmake -S . -B build-release -DTERN_BUILD_BENCH=ON >/dev/null
cmake --build build-release --target syscall_cost >/dev/null
start_demo_stack
curl -sf "http://127.0.0.1:13000$route" >/dev/null
wrk -t1 -c64 -d2s "http://127.0.0.1:13000$route" >/dev/null  # warm-up
cpu_times() { for p in "${pids[@]}"; do awk '{print $14, $15}' "/proc/$p/stat"; done | tr '\n' ' '; }
before=$(cpu_times)
wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:13000$route" >"$work/wrk"
after=$(cpu_times)
reqs=$(awk '/requests in/ {print $1}' "$work/wrk")
echo "$route: $reqs requests in $seconds s (wrk -t1 -c64), CPU a request:"
python3 - "$before" "$after" "$reqs" "$(getconf CLK_TCK)" <<'PY'
import sys
a, b = (list(map(int, x.split())) for x in sys.argv[1:3])
reqs, tick = int(sys.argv[3]), int(sys.argv[4])
total_user = total_sys = 0.0
for i, name in enumerate(["users_service", "products_service", "gateway"]):
    user = (b[2 * i] - a[2 * i]) / tick * 1e6 / reqs
    kernel = (b[2 * i + 1] - a[2 * i + 1]) / tick * 1e6 / reqs
    total_user += user
    total_sys += kernel
    print(f"  {name:<16} user {user:5.1f} us  kernel {kernel:5.1f} us  ({kernel / (user + kernel):.0%} kernel)")
print(f"  {'all three':<16} user {total_user:5.1f} us  kernel {total_sys:5.1f} us  "
      f"({total_sys / (total_user + total_sys):.0%} kernel)")
PY
build-release/bench/syscall_cost
