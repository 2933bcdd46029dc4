# Sourced by bench/stack.sh and bench/instructions.sh: builds the Release
# demo binaries, and start_demo_stack starts users, products and the gateway
# on 127.0.0.1:13001/13002/13000 with a fresh data dir. They are stopped by
# pid, and the dir removed, when the sourcing script exits.
scripts/setup bench  # wrk, valgrind, ...
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_BUILD_TESTS=OFF >/dev/null
cmake --build build-release --target users_service products_service gateway >/dev/null

work=$(mktemp -d)
pids=()        # users_service, products_service, gateway, in that order
wrapped_pid=   # the process started under a wrapper, if any
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export UPSTREAM_USERS=127.0.0.1:13001 UPSTREAM_PRODUCTS=127.0.0.1:13002
# One event-loop thread, as every gateway figure in docs/benchmarks.md was
# measured before --threads (bench/threads.sh compares 1 and 2).
export GATEWAY_THREADS=${GATEWAY_THREADS:-1}
export TERN_JWT_SECRET=bench-secret-that-is-at-least-32-bytes  # the demo config's HS256 key
# The benchmark config: the demo's routes with the default policies (request
# ids and metrics on, the access log off). bench_config NAME POLICIES writes
# another one, $work/NAME.json, with the given top-level "policies".
bench_config() {
  python3 - "$work/$1.json" "$2" <<'PY'
import json, sys
cfg = json.load(open("gateway/routes.json"))
cfg["policies"] = json.loads(sys.argv[2])
json.dump(cfg, open(sys.argv[1], "w"))
PY
}
bench_config routes '{}'
declare -A demo_cmd=(
  [users]="build-release/services/users/users_service --port 13001 --admin-port 0 --data-dir $work --log-level warn"
  [products]="build-release/services/products/products_service --port 13002 --admin-port 0 --data-dir $work --log-level warn"
  [gateway]="build-release/gateway/gateway --port 13000 --admin-port 0 --config $work/routes.json --log-level warn")

# start_demo_stack [NAME WRAPPER...]: starts the three, NAME (users,
# products or gateway) under the WRAPPER command, and waits for their ports.
start_demo_stack() {
  local wrapped=${1:-} name port
  for name in users products gateway; do
    if [ "$name" = "$wrapped" ]; then
      # shellcheck disable=SC2086
      "${@:2}" ${demo_cmd[$name]} &
      wrapped_pid=$!
    else
      # shellcheck disable=SC2086
      ${demo_cmd[$name]} &
    fi
    pids+=($!)
  done
  for port in 13001 13002 13000; do
    for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
  done
}
