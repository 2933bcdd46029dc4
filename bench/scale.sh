#!/usr/bin/env bash
# Prices scaling out, in one run, alternating variant by variant each round:
#   one    the dashboard, one users and one products instance (SQLite)
#   two    the dashboard, two of each (SQLite), balanced per call
#   pg1    the dashboard, one of each on PostgreSQL
#   pg2    the dashboard, two of each on one PostgreSQL (what compose runs)
#   get    GET /api-gateway/users/1, one users instance on SQLite
#   getpg  the same route on PostgreSQL
# Each variant has its own gateway (one per upstream layout; get and getpg
# share one and pg1's). Prints each run's req/s, the gateway's CPU per
# request and the whole machine's (every process, wrk and PostgreSQL
# included), then the medians and each round's ratio to its reference
# (one for the dashboards, get for getpg).
# Then the cost of picking an endpoint and of the resilience features,
# in user-space instructions per request of the gateway (callgrind, steady
# on a loaded machine): one endpoint, two endpoints, and two endpoints with
# ejection, breaker and retries off.
#   bench/scale.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-5}
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
# A scratch PostgreSQL (durability off: every route measured here reads),
# outside $work, which its server's user cannot enter.
pg_dir=$(mktemp -u /tmp/tern-bench-pg.XXXXXX)
scripts/pg-scratch start "$pg_dir" >/dev/null
trap 'cleanup; scripts/pg-scratch stop "$pg_dir" >/dev/null 2>&1 || true' EXIT
pg_url=$(cat "$pg_dir/url")

wait_port() {
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "scale.sh: nothing listens on 127.0.0.1:$1 after 30 s" >&2
  exit 1
}
service() {  # NAME PORT [--database URL]: a Release service, its own data dir
  mkdir -p "$work/data-$2"
  "build-release/services/$1/$1_service" --port "$2" --admin-port 0 --data-dir "$work/data-$2" \
    --log-level warn "${@:3}" &
  pids+=($!)
}
service users 13001
service products 13002
service users 13011
service products 13012
service users 13021 --database "$pg_url"
service products 13022 --database "$pg_url"
service users 13031 --database "$pg_url"
service products 13032 --database "$pg_url"
for p in 13001 13002 13011 13012 13021 13022 13031 13032; do wait_port "$p"; done

declare -A port gw_pid users products route rates cpus sys ratio_rps ratio_cpu ratio_sys
users=([one]=13001 [two]=13001,13011 [pg1]=13021 [pg2]=13021,13031)
products=([one]=13002 [two]=13002,13012 [pg1]=13022 [pg2]=13022,13032)
gateway() {  # LAYOUT PORT [CONFIG]: a gateway over that layout's instances
  local u p
  u=$(tr ',' '\n' <<<"${users[$1]}" | sed 's/^/127.0.0.1:/' | paste -sd,)
  p=$(tr ',' '\n' <<<"${products[$1]}" | sed 's/^/127.0.0.1:/' | paste -sd,)
  UPSTREAM_USERS=$u UPSTREAM_PRODUCTS=$p ${GATEWAY_WRAPPER:-} build-release/gateway/gateway \
    --port "$2" --admin-port 0 --config "${3:-$work/routes.json}" --log-level warn &
  pids+=($!)
  gw_pid[$1]=$!
}
port=([one]=13100 [two]=13110 [pg1]=13120 [pg2]=13130)
for v in one two pg1 pg2; do gateway "$v" "${port[$v]}"; done
for v in one two pg1 pg2; do wait_port "${port[$v]}"; done
variants=(one two pg1 pg2 get getpg)
declare -A via=([one]=one [two]=two [pg1]=pg1 [pg2]=pg2 [get]=one [getpg]=pg1)
declare -A reference=([two]=one [pg1]=one [pg2]=one [getpg]=get)
for v in one two pg1 pg2; do route[$v]=/api-gateway/dashboard; done
route[get]=/api-gateway/users/1
route[getpg]=/api-gateway/users/1

busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }  # user nice system irq softirq
run() {  # variant
  local g=${via[$1]} pid out before after sys_before sys_after reqs rps cpu all
  pid=${gw_pid[$g]}
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  sys_before=$(busy)
  out=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:${port[$g]}${route[$1]}")
  sys_after=$(busy)
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  cpu=$(awk -v t="$((after - before))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  all=$(awk -v t="$((sys_after - sys_before))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  echo "$1 rps=$rps gateway_cpu_us_per_req=$cpu machine_cpu_us_per_req=$all ${errors:+ERRORS: $errors}"
  rates[$1]+="$rps "
  cpus[$1]+="$cpu "
  sys[$1]+="$all "
}
last() { tr ' ' '\n' <<<"$1" | grep -v '^$' | tail -1; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$(last "$1")" -v b="$(last "$2")" 'BEGIN {printf "%.4f", a / b}'; }

for v in "${variants[@]}"; do wrk -t1 -c64 -d2s "http://127.0.0.1:${port[${via[$v]}]}${route[$v]}" >/dev/null; done
for _ in $(seq "$rounds"); do
  for v in "${variants[@]}"; do run "$v"; done
  for v in "${!reference[@]}"; do
    r=${reference[$v]}
    ratio_rps[$v]+="$(ratio "${rates[$v]}" "${rates[$r]}") "
    ratio_cpu[$v]+="$(ratio "${cpus[$v]}" "${cpus[$r]}") "
    ratio_sys[$v]+="$(ratio "${sys[$v]}" "${sys[$r]}") "
  done
done
echo
for v in "${variants[@]}"; do
  line=$(awk -v v="$v" -v r="$(median "${rates[$v]}")" -v c="$(median "${cpus[$v]}")" -v s="$(median "${sys[$v]}")" \
    'BEGIN { printf "median %-6s %9.0f req/s  gateway %6.2f us CPU/req  machine %6.2f us CPU/req", v, r, c, s }')
  if [ -n "${reference[$v]:-}" ]; then
    line+=$(printf "   per-round ratio to %s: req/s %s, gateway CPU/req %s, machine CPU/req %s" "${reference[$v]}" \
      "$(median "${ratio_rps[$v]}")" "$(median "${ratio_cpu[$v]}")" "$(median "${ratio_sys[$v]}")")
  fi
  echo "$line"
done

# --- instructions per request: endpoint picking and resilience ----------------
# The dashboard through a gateway under callgrind, over one endpoint per
# upstream, two, and two with ejection, breaker and retries off.
python3 - "$work/routes.json" "$work/bare.json" <<'PY'
import json, sys
cfg = json.load(open(sys.argv[1]))
for u in cfg["upstreams"].values():
    u.update(ejection=False, breaker=False, retry=False)
json.dump(cfg, open(sys.argv[2], "w"))
PY
count() {  # LABEL LAYOUT CONFIG
  local out pid requests instructions
  GATEWAY_WRAPPER="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.$1 --log-file=$work/vg.$1" \
    gateway "$2" 13200 "$3"
  pid=${gw_pid[$2]}
  wait_port 13200
  wrk -t1 -c64 -d2s "http://127.0.0.1:13200/api-gateway/dashboard" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  out=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:13200/api-gateway/dashboard")
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"
  wait "$pid" || true
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  instructions=$(awk '/^totals:/ {print $2}' "$work/cg.$1")
  echo "instructions $1: $requests requests, $((instructions / requests)) per request"
}
count one-endpoint one "$work/routes.json"
count two-endpoints two "$work/routes.json"
count two-endpoints-no-resilience two "$work/bare.json"
