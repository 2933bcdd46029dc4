#!/usr/bin/env bash
# The gateway's instructions per dashboard request (callgrind, see
# bench/instructions.sh) for bench/edge.sh's variants: what JWT verification
# costs with HS256 and RS256, with and without the verified-token cache.
# Requests carry bench/edge.sh's headers (an Origin, a bearer token).
#   bench/edge_instructions.sh [SECONDS] [VARIANT...]   (default: base auth_hs auth_hs_nc auth_rs auth_rs_nc)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
shift || true
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(base auth_hs auth_hs_nc auth_rs auth_rs_nc)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export TERN_JWT_SECRET=bench-secret-that-is-at-least-32-bytes  # as bench/demo-stack.sh
/usr/bin/python3 bench/edge_configs.py "$dir" "${variants[@]}"
for v in "${variants[@]}"; do
  echo -n "$v: "
  CONFIG="$dir/$v.json" HEADERS="Origin: http://localhost:8080
Authorization: Bearer $(cat "$dir/$v.token")" \
    bench/instructions.sh gateway /api-gateway/dashboard "$seconds" | tail -1
done
