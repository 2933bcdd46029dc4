#!/usr/bin/env bash
# Counts the user-space instructions one process of the demo stack spends
# per HTTP request, under callgrind, while wrk loads the gateway. Unlike
# req/s or CPU time, the count hardly moves with the machine's load, so it
# shows what a code change bought even on a noisy machine.
#   bench/instructions.sh [gateway|users|products] [ROUTE] [SECONDS]
# Example: bench/instructions.sh gateway /api-gateway/dashboard 10
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-gateway}
route=${2:-/api-gateway/dashboard}
seconds=${3:-10}
scripts/setup bench  # wrk, valgrind
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_BUILD_TESTS=OFF >/dev/null
cmake --build build-release --target users_service products_service gateway >/dev/null

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export UPSTREAM_USERS=127.0.0.1:13001 UPSTREAM_PRODUCTS=127.0.0.1:13002
declare -A cmd=(
  [users]="build-release/services/users/users_service --port 13001 --data-dir $work --log-level warn"
  [products]="build-release/services/products/products_service --port 13002 --data-dir $work --log-level warn"
  [gateway]="build-release/gateway/gateway --port 13000 --config gateway/routes.json --log-level warn")
[ -n "${cmd[$which]:-}" ] || { echo "instructions.sh: gateway, users or products" >&2; exit 2; }
target=
for name in users products gateway; do
  if [ "$name" = "$which" ]; then
    # shellcheck disable=SC2086
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/callgrind.out" \
      ${cmd[$name]} 2>"$work/valgrind.log" &
    target=$!
  else
    # shellcheck disable=SC2086
    ${cmd[$name]} &
  fi
  pids+=($!)
done
for port in 13001 13002 13000; do
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
wrk -t1 -c64 -d2s "http://127.0.0.1:13000$route" >/dev/null  # warm-up, not counted
callgrind_control -i on "$target" >/dev/null
out=$(wrk -t1 -c64 -d"${seconds}s" "http://127.0.0.1:13000$route")
callgrind_control -i off "$target" >/dev/null
kill -TERM "$target"
wait "$target" || true
requests=$(awk '/requests in/ {print $1}' <<<"$out")
instructions=$(awk '/^totals:/ {print $2}' "$work/callgrind.out")
echo "$which, $route: $requests requests, $instructions instructions, $((instructions / requests)) per request"
if [ "${KEEP_PROFILE:-}" ]; then cp "$work/callgrind.out" callgrind.out && echo "profile: callgrind.out"; fi
