#!/usr/bin/env bash
# Prices issue #13's time on the wire: deadline_ms in every request's meta
# (written by the gateway, read by the services), cancellation tracking, the
# gateway's watch on a busy client's socket, and keep-alive pings. Compares
# the demo stack at BASE (default ccafad1, the commit before the issue) with
# HEAD on /api-gateway/dashboard:
#   1. user-space instructions per request under callgrind
#      (bench/instructions.sh) of the gateway and of users_service, at BASE,
#      at HEAD, and at HEAD with the upstreams' keep-alive off;
#   2. req/s and gateway CPU per request, the BASE stack (ports 14000-14002)
#      and the HEAD stack (13000-13002) alternating, ROUNDS rounds of SECONDS.
#   bench/wire_time.sh [BASE] [ROUNDS] [SECONDS]
# BASE is built in a worktree, BASE_TREE (default build-wire-base/).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-ccafad1}
rounds=${2:-5}
seconds=${3:-5}
tree=${BASE_TREE:-build-wire-base}
if [ ! -e "$tree/.git" ]; then git worktree add --detach "$tree" "$base" >/dev/null; fi
git -C "$tree" checkout -q --detach "$base"
echo "BASE $(git -C "$tree" rev-parse --short HEAD), HEAD $(git rev-parse --short HEAD)"

noka=$(mktemp)
trap 'rm -f "$noka"' EXIT
python3 - "$noka" <<'PY'
import json, sys
cfg = json.load(open("gateway/routes.json"))
cfg["policies"] = {}
for u in cfg["upstreams"].values():
    u["keepalive"] = False
json.dump(cfg, open(sys.argv[1], "w"))
PY

echo "== instructions per request (callgrind, $seconds s under wrk -c64)"
for which in gateway users; do
  echo "BASE  $( (cd "$tree" && bench/instructions.sh "$which" /api-gateway/dashboard "$seconds") | tail -1)"
  echo "HEAD  $(bench/instructions.sh "$which" /api-gateway/dashboard "$seconds" | tail -1)"
done
echo "HEAD, keepalive off  $(CONFIG=$noka bench/instructions.sh gateway /api-gateway/dashboard "$seconds" | tail -1)"

echo "== req/s, BASE and HEAD stacks alternating"
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack
head_gw=${pids[2]}
for name in users products; do
  bin="$tree/build-release/services/$name/${name}_service"
  mkdir -p "$work/base-$name"
  port=$([ "$name" = users ] && echo 14001 || echo 14002)
  "$bin" --port "$port" --admin-port 0 --data-dir "$work/base-$name" --log-level warn &
  pids+=($!)
done
UPSTREAM_USERS=127.0.0.1:14001 UPSTREAM_PRODUCTS=127.0.0.1:14002 \
  "$tree/build-release/gateway/gateway" --port 14000 --admin-port 0 --config "$work/routes.json" \
  --log-level warn &
pids+=($!)
base_gw=$!
for port in 14001 14002 14000; do
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
declare -A port=([base]=14000 [head]=13000) gw=([base]=$base_gw [head]=$head_gw) rates cpus ratios
run() {
  local pid=${gw[$1]} out before after reqs rps cpu
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:${port[$1]}/api-gateway/dashboard")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  cpu=$(awk -v t="$((after - before))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  echo "$1 rps=$rps gateway_cpu_us_per_req=$cpu $(grep -E 'Non-2xx|Socket errors' <<<"$out" || true)"
  rates[$1]+="$rps "
  cpus[$1]+="$cpu "
  last_rps=$rps
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for v in base head; do wrk -t1 -c64 -d2s "http://127.0.0.1:${port[$v]}/api-gateway/dashboard" >/dev/null; done
for _ in $(seq "$rounds"); do
  run base
  b=$last_rps
  run head
  ratios[head]+="$(awk -v a="$last_rps" -v b="$b" 'BEGIN {printf "%.4f", a / b}') "
done
for v in base head; do
  echo "median $v $(median "${rates[$v]}") req/s, gateway $(median "${cpus[$v]}") us CPU/req"
done
echo "median of each round's HEAD/BASE req/s: $(median "${ratios[head]}")"
