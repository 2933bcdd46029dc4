#!/usr/bin/env bash
# Counts the user-space instructions one process of the demo stack spends
# per HTTP request, under callgrind, while wrk loads the gateway. Unlike
# req/s or CPU time, the count hardly moves with the machine's load, so it
# shows what a code change bought even on a noisy machine.
#   bench/instructions.sh [gateway|users|products] [ROUTE] [SECONDS]
# Example: bench/instructions.sh gateway /api-gateway/dashboard 10
# POLICIES='{"metrics": false}' sets the gateway config's top-level policies
# (default: the benchmark config's, request ids and metrics on, no access log);
# CONFIG=FILE uses that gateway config instead; HEADERS (one per line) are
# sent with every request.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-gateway}
route=${2:-/api-gateway/dashboard}
seconds=${3:-10}
case "$which" in
  users | products | gateway) ;;
  *) echo "instructions.sh: gateway, users or products" >&2; exit 2 ;;
esac
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
if [ -n "${CONFIG:-}" ]; then
  cp "$CONFIG" "$work/routes.json"
else
  bench_config routes "${POLICIES:-{\}}"
fi
headers=()
while IFS= read -r h; do [ -n "$h" ] && headers+=(-H "$h"); done <<<"${HEADERS:-}"
# Time runs ~50x slower under callgrind, and a process waiting for a core
# counts as slow too: the services' quick paths (tern::quick_path, 200 us)
# get 1 s, to measure the path a real run takes (SQLite reads on the loop).
start_demo_stack "$which" env TERN_QUICK_LIMIT_US="${TERN_QUICK_LIMIT_US:-1000000}" valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$work/callgrind.out" --log-file="$work/valgrind.log"
target=$wrapped_pid
wrk -t1 -c64 -d2s "${headers[@]}" "http://127.0.0.1:13000$route" >/dev/null  # warm-up, not counted
callgrind_control -i on "$target" >/dev/null 2>&1
out=$(wrk -t1 -c64 -d"${seconds}s" "${headers[@]}" "http://127.0.0.1:13000$route")
callgrind_control -i off "$target" >/dev/null 2>&1
kill -TERM "$target"
wait "$target" || true
requests=$(awk '/requests in/ {print $1}' <<<"$out")
instructions=$(awk '/^totals:/ {print $2}' "$work/callgrind.out")
echo "$which, $route: $requests requests, $instructions instructions, $((instructions / requests)) per request"
if [ "${KEEP_PROFILE:-}" ]; then cp "$work/callgrind.out" callgrind.out && echo "profile: callgrind.out"; fi
