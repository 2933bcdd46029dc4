#!/usr/bin/env bash
# Prices the edge policies: /api-gateway/dashboard through one gateway per
# variant, all in front of the same users and products services, measured
# in the same run, alternating, each round's req/s and gateway CPU per
# request compared with that round's "base" (the benchmark config: request
# ids and metrics on). Every request carries the same headers (an Origin, an
# HS256 or RS256 bearer token), used or not:
#   base        the benchmark config
#   cors        + CORS for the request's origin
#   auth_hs     + auth on every route, HS256 (the verified-token cache on)
#   auth_hs_nc  + auth, HS256, the token cache off
#   auth_rs     + auth, RS256 (2048-bit key), the token cache on
#   auth_rs_nc  + auth, RS256, the token cache off
#   rate_limit  + a rate limit that never triggers (10^6 per second per client)
#   all         + cors, auth (HS256, cache on) and the rate limit; no cache
#   cached      base with the dashboard cached (ttl 60 s)
#   static      the peer: nginx (one worker) answering the dashboard's bytes
#               from its config, what this machine can do for an answer
#               that costs nothing to make
#   bench/edge.sh [ROUNDS] [SECONDS] [VARIANT...]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-5}
shift 2 || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] ||
  variants=(base cors auth_hs auth_hs_nc auth_rs auth_rs_nc rate_limit all cached static)
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack
# The configs and tokens (python3-jwt and python3-cryptography, as the tests).
/usr/bin/python3 bench/edge_configs.py "$work" "${variants[@]}"

declare -A port gw_pid rates cpus ratio_rps ratio_cpu
p=13100
for v in "${variants[@]}"; do
  port[$v]=$p
  p=$((p + 1))
  [ "$v" = static ] && continue
  build-release/gateway/gateway --port "${port[$v]}" --admin-port 0 --config "$work/$v.json" \
    --log-level warn &
  pids+=($!)
  gw_pid[$v]=$!
done
for v in "${variants[@]}"; do
  [ "$v" = static ] && continue
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/"${port[$v]}") 2>/dev/null && break; sleep 0.1; done
done
if [ -n "${port[static]:-}" ]; then
  body=$(curl -sS "http://127.0.0.1:13000/api-gateway/dashboard")
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:${port[static]};
    location / { default_type application/json; return 200 '$body'; }
  }
}
NGINX
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  pids+=($!)
  for _ in $(seq 300); do [ -s "$work/nginx/nginx.pid" ] && pgrep -P "$(cat "$work/nginx/nginx.pid")" >/dev/null && break; sleep 0.1; done
  gw_pid[static]=$(pgrep -P "$(cat "$work/nginx/nginx.pid")")  # the worker
  cp "$work/base.token" "$work/static.token"
fi

run() {  # variant
  local v=$1 pid=${gw_pid[$1]} out before after reqs token
  token=$(cat "$work/$v.token")
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(wrk -t1 -c64 -d"${seconds}s" -H "Origin: http://localhost:8080" \
    -H "Authorization: Bearer $token" "http://127.0.0.1:${port[$v]}/api-gateway/dashboard")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  cpu=$(awk -v t="$((after - before))" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%.2f", t / hz * 1e6 / n}')
  errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
  echo "$v rps=$rps gateway_cpu_us_per_req=$cpu ${errors:+ERRORS: $errors}"
  rates[$v]+="$rps "
  cpus[$v]+="$cpu "
}
last() { tr ' ' '\n' <<<"$1" | grep -v '^$' | tail -1; }
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for v in "${variants[@]}"; do
  wrk -t1 -c64 -d1s -H "Authorization: Bearer $(cat "$work/$v.token")" \
    "http://127.0.0.1:${port[$v]}/api-gateway/dashboard" >/dev/null
done
for _ in $(seq "$rounds"); do
  for v in "${variants[@]}"; do run "$v"; done
  for v in "${variants[@]}"; do
    ratio_rps[$v]+="$(awk -v a="$(last "${rates[$v]}")" -v b="$(last "${rates[base]}")" 'BEGIN {printf "%.4f", a / b}') "
    ratio_cpu[$v]+="$(awk -v a="$(last "${cpus[$v]}")" -v b="$(last "${cpus[base]}")" 'BEGIN {printf "%.4f", a / b}') "
  done
done
echo
for v in "${variants[@]}"; do
  awk -v v="$v" -v r="$(median "${rates[$v]}")" -v c="$(median "${cpus[$v]}")" \
    -v rr="$(median "${ratio_rps[$v]}")" -v rc="$(median "${ratio_cpu[$v]}")" 'BEGIN {
    printf "median %-11s %9.0f req/s  gateway %6.2f us CPU/req   per-round ratio to base: req/s %.3f, CPU/req %.3f\n", v, r, c, rr, rc }'
done
