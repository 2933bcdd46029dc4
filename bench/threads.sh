#!/usr/bin/env bash
# The gateway at 1 and 2 event-loop threads (--threads), in the same run,
# alternating, in front of the same users and products services; each
# variant its own gateway process:
#   dash_t1, dash_t2     /api-gateway/dashboard (two upstream calls a request)
#   hit_t1, hit_t2       /api-gateway/products, a cached route: after the
#                        first request every answer is a cache hit, so the
#                        gateway's own work is all there is (the shared
#                        store's lock taken once a request)
#   rl_t1, rl_t2         the same with a rate limit that never triggers
#                        (10^6 per second, every request from one client: one
#                        bucket, the lock of the route's shared table taken
#                        by every request of both threads: its worst case)
#   static_w1, static_w2 the peer: nginx answering the products' bytes from
#                        its config, with 1 and 2 worker processes: how a
#                        server that needs no work per request scales here
# Each round: req/s, p99 latency and CPU per request (the server's
# processes, and the whole machine's), with wrk -t2 -c64.
#   bench/threads.sh [ROUNDS] [SECONDS] [VARIANT...]
# And what the change costs a request at one thread: the gateway's
# user-space instructions per request (bench/instructions.sh, callgrind) on
# the dashboard and on a cache hit, at BASE (built in a worktree, BASE_TREE,
# default build-threads-base/) and at HEAD, both at --threads 1:
#   bench/threads.sh instructions [BASE] [SECONDS]     (BASE default 53627e5)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = instructions ]; then
  base=${2:-53627e5}
  seconds=${3:-6}
  tree=${BASE_TREE:-build-threads-base}
  if [ ! -e "$tree/.git" ]; then git worktree add --detach "$tree" "$base" >/dev/null; fi
  git -C "$tree" checkout -q --detach "$base"
  echo "BASE $(git -C "$tree" rev-parse --short HEAD), HEAD $(git rev-parse --short HEAD)"
  for route in /api-gateway/dashboard /api-gateway/products; do
    echo "BASE  $( (cd "$tree" && bench/instructions.sh gateway "$route" "$seconds") | tail -1)"
    echo "HEAD  $(GATEWAY_THREADS=1 bench/instructions.sh gateway "$route" "$seconds" | tail -1)"
  done
  exit 0
fi
rounds=${1:-5}
seconds=${2:-5}
shift 2 || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] ||
  variants=(dash_t1 dash_t2 hit_t1 hit_t2 rl_t1 rl_t2 static_w1 static_w2)
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack
python3 - "$work/rl.json" <<'PY'
import json, sys
cfg = json.load(open("gateway/routes.json"))
cfg["policies"] = {}
for r in cfg["routes"]:
    if r["method"] == "GET" and r["path"] == "/api-gateway/products":
        r.setdefault("policies", {})["rate_limit"] = {"limits": [{"requests": 1000000, "per_s": 1}]}
json.dump(cfg, open(sys.argv[1], "w"))
PY

declare -A port pid path rates cpus machine p99s
p=13100
for v in "${variants[@]}"; do
  port[$v]=$p
  p=$((p + 1))
  case $v in
    dash_*) path[$v]=/api-gateway/dashboard ;;
    *) path[$v]=/api-gateway/products ;;
  esac
  case $v in
    static_*) continue ;;
    rl_*) config=$work/rl.json ;;
    *) config=$work/routes.json ;;
  esac
  build-release/gateway/gateway --threads "${v##*_t}" --port "${port[$v]}" --admin-port 0 \
    --config "$config" --log-level warn &
  pids+=($!)
  pid[$v]=$!
done
for v in "${variants[@]}"; do
  [[ $v == static_* ]] && continue
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"${port[$v]}") 2>/dev/null && break; sleep 0.1; done
done
body=$(curl -sS "http://127.0.0.1:13000/api-gateway/products")
for v in "${variants[@]}"; do
  [[ $v == static_* ]] || continue
  mkdir -p "$work/$v"
  cat >"$work/$v/nginx.conf" <<NGINX
worker_processes ${v##*_w};
daemon off;
pid $work/$v/nginx.pid;
error_log $work/$v/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:${port[$v]};
    location / { default_type application/json; return 200 '$body'; }
  }
}
NGINX
  nginx -c "$work/$v/nginx.conf" -p "$work/$v" &
  pids+=($!)
  pid[$v]=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"${port[$v]}") 2>/dev/null && break; sleep 0.1; done
done

ticks() {  # CPU ticks of a process and its children (nginx's workers)
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
run() {  # variant
  local v=$1 out before after m_before m_after reqs rps cpu mcpu p99 hz
  hz=$(getconf CLK_TCK)
  before=$(ticks "${pid[$v]}")
  m_before=$(machine_ticks)
  out=$(wrk -t2 -c64 -d"${seconds}s" --latency "http://127.0.0.1:${port[$v]}${path[$v]}")
  after=$(ticks "${pid[$v]}")
  m_after=$(machine_ticks)
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  cpu=$(awk -v t="$((after - before))" -v n="$reqs" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  mcpu=$(awk -v t="$((m_after - m_before))" -v n="$reqs" -v hz="$hz" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  echo "$v rps=$rps p99=$p99 server_cpu_us_per_req=$cpu machine_cpu_us_per_req=$mcpu ${errors:+ERRORS: $errors}"
  rates[$v]+="$rps "
  cpus[$v]+="$cpu "
  machine[$v]+="$mcpu "
  p99s[$v]+="$p99 "
}
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { tr ' ' '\n' <<<"$1" | grep -v '^$' | awk '/us$/ {sub("us",""); print $1 / 1000; next}
  /ms$/ {sub("ms",""); print $1; next} /s$/ {sub("s",""); print $1 * 1000}'; }

for v in "${variants[@]}"; do wrk -t2 -c64 -d1s "http://127.0.0.1:${port[$v]}${path[$v]}" >/dev/null; done
for _ in $(seq "$rounds"); do
  for v in "${variants[@]}"; do run "$v"; done
done
echo
for v in "${variants[@]}"; do
  awk -v v="$v" -v r="$(median "${rates[$v]}")" -v c="$(median "${cpus[$v]}")" \
    -v m="$(median "${machine[$v]}")" -v l="$(median "$(ms "${p99s[$v]}" | tr '\n' ' ')")" 'BEGIN {
    printf "median %-9s %9.0f req/s  p99 %6.2f ms  server %6.2f us CPU/req  machine %6.2f us CPU/req\n", v, r, l, c, m }'
done
# Per-round ratios (each round's pair measured back to back), then their median.
ratio() {  # A B: median over rounds of A's req/s / B's, and of A's server CPU/req / B's
  local a=$1 b=$2
  [ -n "${rates[$a]:-}" ] && [ -n "${rates[$b]:-}" ] || return 0
  awk -v a="${rates[$a]}" -v b="${rates[$b]}" -v ca="${cpus[$a]}" -v cb="${cpus[$b]}" \
    -v na="$a" -v nb="$b" 'function med(x, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (x[j] < x[i]) { t = x[i]; x[i] = x[j]; x[j] = t }
      return x[int((n + 1) / 2)] }
    BEGIN { n = split(a, ra, " "); split(b, rb, " "); split(ca, xa, " "); split(cb, xb, " ")
      for (i = 1; i <= n; i++) { r[i] = ra[i] / rb[i]; c[i] = xa[i] / xb[i] }
      printf "%s / %s: req/s %.3f, server CPU/req %.3f (median of per-round ratios)\n", na, nb, med(r, n), med(c, n) }'
}
echo
ratio dash_t2 dash_t1
ratio hit_t2 hit_t1
ratio rl_t2 rl_t1
ratio rl_t1 hit_t1
ratio rl_t2 hit_t2
ratio static_w2 static_w1
