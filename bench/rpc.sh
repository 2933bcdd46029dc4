#!/usr/bin/env bash
# Builds Release and runs rpc_bench (client and server in separate processes)
# for a few shapes, ROUNDS times each, printing every run and the median rate.
#   bench/rpc.sh [ROUNDS] [SECONDS] [WIRE]      WIRE: tern (default) or nestjs
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
wire=${3:-tern}
scripts/setup
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERN_BUILD_TESTS=OFF -DTERN_BUILD_BENCH=ON >/dev/null
cmake --build build-release --target rpc_bench >/dev/null
for shape in "1 1" "1 64" "50 1" "4 64"; do
  set -- $shape
  rates=()
  for _ in $(seq "$rounds"); do
    line=$(build-release/bench/rpc_bench --connections "$1" --inflight "$2" --seconds "$seconds" \
      --wire "$wire")
    echo "$line"
    rates+=("$(sed -E 's/.* rate=([0-9]+).*/\1/' <<<"$line")")
  done
  median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "median connections=$1 inflight=$2 rate=${median}/s"
done
