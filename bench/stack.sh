#!/usr/bin/env bash
# Builds Release, starts the demo stack on 127.0.0.1 (fresh data dir), and
# runs wrk against /api-gateway/users and /api-gateway/dashboard, ROUNDS
# times each, alternating; prints every run with each server process's
# user and kernel CPU per request, the medians, and each process's peak RSS
# (VmHWM) at the end.
#   bench/stack.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-10}
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack

declare -A rates p50s p99s
ticks() { for pid in "${pids[@]}"; do awk '{printf "%d %d ", $14, $15}' "/proc/$pid/stat"; done; }
run() {  # route label
  local out rps p50 p99 errors before after
  before=$(ticks)
  out=$(wrk -t1 -c64 -d"${seconds}s" --latency "http://127.0.0.1:13000$1")
  after=$(ticks)
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  echo "$2 rps=$rps p50=$p50 p99=$p99 ${errors:+ERRORS: $errors}"
  # CPU per request of each server process, user and kernel (system) time.
  awk -v reqs="$(awk '/requests in/ {print $1}' <<<"$out")" -v hz="$(getconf CLK_TCK)" \
    -v before="$before" -v after="$after" 'BEGIN {
      split(before, b); split(after, a); split("users_service products_service gateway", name)
      line = "  cpu us/req:"
      for (i = 1; i <= 3; i++) {
        u = (a[2*i-1] - b[2*i-1]) / hz * 1e6 / reqs; s = (a[2*i] - b[2*i]) / hz * 1e6 / reqs
        line = line sprintf(" %s user %.1f sys %.1f;", name[i], u, s); total += u + s
      }
      printf "%s total %.1f\n", line, total }' 
  rates[$2]+="$rps "
  p50s[$2]+="$p50 "
  p99s[$2]+="$p99 "
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
median_ms() {  # wrk prints 1.23ms / 812.00us / 1.01s
  tr ' ' '\n' <<<"$1" | grep -v '^$' | awk '
    /us$/ {sub(/us$/,""); print $1/1000; next}
    /ms$/ {sub(/ms$/,""); print $1; next}
    /s$/  {sub(/s$/,""); print $1*1000}' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)] "ms"}'
}

curl -sf http://127.0.0.1:13000/api-gateway/dashboard >/dev/null
wrk -t1 -c64 -d2s http://127.0.0.1:13000/api-gateway/dashboard >/dev/null  # warm-up
for _ in $(seq "$rounds"); do
  run /api-gateway/users users
  run /api-gateway/dashboard dashboard
done
echo
for label in users dashboard; do
  echo "median $label: $(median "${rates[$label]}") req/s, p50 $(median_ms "${p50s[$label]}"), p99 $(median_ms "${p99s[$label]}")"
done
for i in 0 1 2; do
  name=$(tr '\0' ' ' </proc/${pids[$i]}/cmdline | awk '{print $1}' | xargs basename)
  echo "peak RSS $name: $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/${pids[$i]}/status)"
done
