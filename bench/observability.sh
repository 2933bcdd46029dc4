#!/usr/bin/env bash
# Prices the gateway's observability: the demo stack's /api-gateway/dashboard
# through three gateways in front of the same users and products services,
# measured in the same run, alternating: "off" (no request ids, no metrics),
# "on" (request ids, trace context and metrics: the default) and "on+log"
# (and the access log, text lines to a file). Prints each run's req/s and the
# gateway's CPU per request, then the medians, and the medians of each
# round's ratio to that round's "off" (rounds are back to back, so the
# ratios hold up better than the absolute figures on a noisy machine).
#   bench/observability.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-10}
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack  # the "on" gateway is 13000
bench_config off '{"request_id": false, "metrics": false}'
bench_config log "{\"access_log\": {\"format\": \"text\", \"path\": \"$work/access.log\"}}"
declare -A port=([off]=13010 [on]=13000 [log]=13020) gw_pid=([on]=${pids[2]})
for v in off log; do
  build-release/gateway/gateway --port "${port[$v]}" --admin-port 0 --config "$work/$v.json" \
    --log-level warn &
  pids+=($!)
  gw_pid[$v]=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"${port[$v]}") 2>/dev/null && break; sleep 0.1; done
done

declare -A rates cpus ratio_rps ratio_cpu
run() {  # variant
  local pid=${gw_pid[$1]} out before after reqs
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:${port[$1]}/api-gateway/dashboard")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  cpu=$(awk -v t="$((after - before))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  echo "$1 rps=$rps gateway_cpu_us_per_req=$cpu ${errors:+ERRORS: $errors}"
  rates[$1]+="$rps "
  cpus[$1]+="$cpu "
}
last() { tr ' ' '\n' <<<"$1" | grep -v '^$' | tail -1; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for v in off on log; do wrk -t1 -c64 -d2s "http://127.0.0.1:${port[$v]}/api-gateway/dashboard" >/dev/null; done
for _ in $(seq "$rounds"); do
  for v in off on log; do run "$v"; done
  for v in on log; do
    ratio_rps[$v]+="$(awk -v a="$(last "${rates[$v]}")" -v b="$(last "${rates[off]}")" 'BEGIN {printf "%.4f", a / b}') "
    ratio_cpu[$v]+="$(awk -v a="$(last "${cpus[$v]}")" -v b="$(last "${cpus[off]}")" 'BEGIN {printf "%.4f", a / b}') "
  done
done
echo
for v in off on log; do
  r=$(median "${rates[$v]}")
  c=$(median "${cpus[$v]}")
  awk -v v="$v" -v r="$r" -v c="$c" 'BEGIN {
    printf "median %-4s %9.0f req/s  gateway %.2f us CPU/req\n", v, r, c }'
done
for v in on log; do
  echo "median of per-round ratios, $v/off: req/s $(median "${ratio_rps[$v]}"), gateway CPU/req $(median "${ratio_cpu[$v]}")"
done
echo "access log lines written: $(wc -l <"$work/access.log")"
