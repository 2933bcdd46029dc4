#!/usr/bin/env bash
# What a 1 MiB JSON body of 100,000 keys costs the gateway and everyone else:
# POSTs it N times to /api-gateway/users on the Release demo stack while a
# second client sends GET /api-gateway/users/1 back to back, and prints the
# big request's median time and the bystander's median and worst latency.
#   bench/big_body.sh [N]          (default 20)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20}
# shellcheck source=bench/demo-stack.sh
source bench/demo-stack.sh
start_demo_stack
python3 - "$n" <<'PY'
import http.client, statistics, sys, threading, time
n = int(sys.argv[1])
body = "{" + ",".join(f'"{i:x}":1' for i in range(100000)) + "}"
body = body[:-1] + "," + '"pad":"' + "x" * max(0, (1 << 20) - len(body) - 10) + '"}'
assert len(body) <= 1 << 20, len(body)
stop = False
lat = []
def bystander():
    c = http.client.HTTPConnection("127.0.0.1", 13000)
    while not stop:
        t = time.perf_counter()
        c.request("GET", "/api-gateway/users/1")
        r = c.getresponse(); r.read()
        assert r.status == 200
        lat.append(time.perf_counter() - t)
t = threading.Thread(target=bystander); t.start()
big = []
c = http.client.HTTPConnection("127.0.0.1", 13000)
for _ in range(n):
    s = time.perf_counter()
    c.request("POST", "/api-gateway/users", body, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    big.append(time.perf_counter() - s)
stop = True; t.join()
print(f"1 MiB body of 100,000 keys: status {r.status}, median {statistics.median(big)*1000:.1f} ms "
      f"per request ({n} requests)")
print(f"bystander GET meanwhile: {len(lat)} requests, median {statistics.median(lat)*1000:.2f} ms, "
      f"worst {max(lat)*1000:.1f} ms")
PY
