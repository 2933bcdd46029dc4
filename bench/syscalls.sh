#!/usr/bin/env bash
# Syscalls per request on each process of the demo stack under load: starts
# it (bench/demo-stack.sh: one gateway loop, default policies), loads ROUTE
# with wrk -t1 -c64 for SECONDS while `perf stat` counts each process's
# syscall tracepoints, and prints every syscall made at least 0.01 times a
# request, per process, with the total. perf's tracepoints cost little, so
# the batching under load is what it would be without them (strace would
# slow each process and change it).
#   bench/syscalls.sh [ROUTE] [SECONDS]     (default /api-gateway/dashboard 5)
set -euo pipefail
cd "$(dirname "$0")/.."
route=${1:-/api-gateway/dashboard}
seconds=${2:-5}
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack
curl -sf "http://127.0.0.1:13000$route" >/dev/null
wrk -t1 -c64 -d2s "http://127.0.0.1:13000$route" >/dev/null  # warm-up

calls=(read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl
       futex accept4 close openat fstat newfstatat lseek pread64 pwrite64 fdatasync fsync
       io_uring_enter clock_nanosleep nanosleep sched_yield madvise mmap munmap brk getrandom)
events="raw_syscalls:sys_enter"
for c in "${calls[@]}"; do
  [ -e "/sys/kernel/tracing/events/syscalls/sys_enter_$c" ] && events+=",syscalls:sys_enter_$c"
done
names=(users_service products_service gateway)
# Each thread of each process, by its tid, for adding up per process.
for i in 0 1 2; do
  for t in /proc/"${pids[$i]}"/task/*; do echo "${t##*/},${names[$i]}"; done
done >"$work/tids"
# perf enables its counters before it starts wrk, and stops when wrk ends.
perf stat -x, --per-thread -e "$events" -p "$(IFS=,; echo "${pids[*]}")" -o "$work/perf" \
  -- wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:13000$route" >"$work/wrk"
reqs=$(awk '/requests in/ {print $1}' "$work/wrk")
echo "$route: $reqs requests in ${seconds} s (wrk -t1 -c64), syscalls per request:"
awk -F, -v reqs="$reqs" '
  NR == FNR { proc[$1] = $2; next }
  $4 ~ /sys_enter/ && $2 ~ /^[0-9]+$/ {
    tid = $1; sub(/.*-/, "", tid); name = proc[tid]; if (name == "") next
    ev = $4; sub(/.*sys_enter_?/, "", ev); if (ev == "") ev = "all"
    n[name, ev] += $2; seen[ev] = 1 }
  END {
    split("users_service products_service gateway", order, " ")
    for (i = 1; i <= 3; i++) {
      name = order[i]; line = sprintf("  %-16s all %.2f:", name, n[name, "all"] / reqs)
      for (ev in seen) if (ev != "all" && n[name, ev] / reqs >= 0.01) line = line sprintf(" %s %.2f", ev, n[name, ev] / reqs)
      print line } }' "$work/tids" "$work/perf"
