#!/usr/bin/env python3
"""Per-request instruction budgets: measures the user-space instructions
the paths users pay for cost, each under callgrind as bench/instructions.sh
does, and fails when one exceeds its budget in bench/budgets.json by more
than the tolerance there (3 %). Run through bench/budgets, which builds the
Release binaries first.

  bench/budgets.py BUILD_DIR [--update] [--seconds S] [NAME...]

NAME selects paths (default: all). --update writes the measured figures
into bench/budgets.json as the new budgets: a change that must grow a path
raises its budget in the same commit and says by how much, and why, in the
commit message and in docs/benchmarks.md.

What is measured, with the demo's routes and the default policies (request
ids and metrics on, no access log), one gateway loop:
  gateway.*   the gateway's instructions per HTTP request (wrk, 64
              connections): the dashboard (two calls), one call, a cache
              hit, a 401 (no token) and a 429 (limit spent)
  users.*     the users service's instructions per call, as the gateway
              sends them for /api-gateway/users/1 and /api-gateway/users
  rpc.*       one ping round trip (rpc_bench, 1 connection, 64 in flight)
              on the server's side and on the client's
"""

import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGETS = os.path.join(ROOT, "bench", "budgets.json")
# Ports of their own (bench/demo-stack.sh has 13000-13002), checked free first.
GATEWAY, USERS, PRODUCTS = 13400, 13401, 13402
RPC_PORT = 13403

# name: (process under callgrind, route, the status every answer has)
HTTP_PATHS = {
    "gateway.dashboard": ("gateway", "/api-gateway/dashboard", 200),
    "gateway.one_call": ("gateway", "/api-gateway/users/1", 200),
    "gateway.cache_hit": ("gateway", "/api-gateway/products", 200),
    "gateway.refused_401": ("gateway", "/api-gateway/me", 401),
    "gateway.refused_429": ("gateway", "/budget/limited", 429),
    "users.get_user": ("users", "/api-gateway/users/1", 200),
    "users.get_users": ("users", "/api-gateway/users", 200),
}
RPC_PATHS = ("rpc.ping_server", "rpc.ping_client")


def fail(msg):
    print(f"budgets: {msg}", file=sys.stderr)
    sys.exit(2)


def gateway_config(path):
    """The demo's routes with the default policies; the products' cache
    outlives the run, and /budget/limited allows one request an hour."""
    with open(os.path.join(ROOT, "gateway", "routes.json")) as f:
        cfg = json.load(f)
    cfg["policies"] = {}
    for r in cfg["routes"]:
        if r["path"] == "/api-gateway/products" and r["method"] == "GET":
            r["policies"]["cache"]["ttl_s"] = 3600
    cfg["routes"].append({
        "method": "GET", "path": "/budget/limited", "service": "users",
        "pattern": {"cmd": "get_users"},
        "policies": {"rate_limit": {"limits": [{"requests": 1, "per_s": 3600}]}}})
    with open(path, "w") as f:
        json.dump(cfg, f)


class Stack:
    """Processes started by this run, stopped by pid at the end."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, port=None, callgrind=None):
        if callgrind:
            # Time runs ~50x slower under callgrind, and a process waiting
            # for a core counts as slow too: a service's quick paths
            # (tern::quick_path, 200 us) get 1 s, so that the path measured
            # is the one a real run takes (SQLite reads on the loop).
            cmd = ["env", "TERN_QUICK_LIMIT_US=1000000",
                   "valgrind", "--tool=callgrind", "--instr-atstart=no",
                   f"--callgrind-out-file={callgrind}",
                   f"--log-file={callgrind}.log"] + cmd
        if port:
            check_free(port)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.procs.append(p)
        if port:
            wait_port(port, p)
        return p

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


def check_free(port):
    """Fails if something listens on PORT already: what answered would not
    be the process this run starts."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return
    fail(f"port {port} is taken by another process; budgets needs 13400-13403")


def wait_port(port, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"{' '.join(proc.args)} exited with {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            if proc.poll() is not None:
                fail(f"{' '.join(proc.args)} exited with {proc.returncode}")
            return
        except OSError:
            time.sleep(0.05)
    fail(f"nothing listens on {port} after {seconds} s")


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, timeout=60,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dump(pid, out):
    """Dumps the counts since the last dump; returns their total."""
    before = set(glob.glob(out + ".*[0-9]"))
    control(pid, "-d")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = set(glob.glob(out + ".*[0-9]")) - before
        for f in new:
            with open(f) as fh:
                text = fh.read()
            m = re.search(r"^totals: (\d+)\n", text, re.M)
            if m:
                return int(m.group(1))
        time.sleep(0.05)
    fail(f"no callgrind dump from {pid}")


def status_of(route):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{GATEWAY}{route}", timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def wrk(route, seconds, status=None):
    """Loads ROUTE for SECONDS; returns the number of answers, each STATUS
    when one is given."""
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}s",
                          f"http://127.0.0.1:{GATEWAY}{route}"],
                         check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"(\d+) requests in", out)
    if not m:
        fail(f"wrk printed no request count:\n{out}")
    # Only 2xx and 3xx answers pass wrk unremarked; a refusal path's every
    # answer is one, or the count would price something else.
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    non_2xx = int(non_2xx.group(1)) if non_2xx else 0
    if status is not None and ("Socket errors" in out or int(m.group(1)) == 0):
        fail(f"{route}: wrk had errors or no answers:\n{out}")
    if status is None:
        pass
    elif (status < 300 and non_2xx) or (status >= 300 and non_2xx != int(m.group(1))):
        fail(f"{route}: expected every answer {status}; wrk says:\n{out}")
    return int(m.group(1))


def measure_http(build, work, names, seconds):
    results = {}
    for who in ("gateway", "users"):
        mine = [n for n in names if HTTP_PATHS[n][0] == who]
        if not mine:
            continue
        stack = Stack()
        data = tempfile.mkdtemp(dir=work)
        out = os.path.join(work, f"{who}.callgrind")
        cmds = {
            "users": ([f"{build}/services/users/users_service", "--port", str(USERS)], USERS),
            "products": ([f"{build}/services/products/products_service", "--port",
                          str(PRODUCTS)], PRODUCTS),
            "gateway": ([f"{build}/gateway/gateway", "--port", str(GATEWAY), "--config",
                         os.path.join(work, "routes.json")], GATEWAY),
        }
        try:
            procs = {}
            for name in ("users", "products", "gateway"):
                cmd, port = cmds[name]
                cmd = cmd + ["--admin-port", "0", "--log-level", "warn"]
                if name != "gateway":
                    cmd += ["--data-dir", data]
                procs[name] = stack.start(cmd, port, out if name == who else None)
            pid = procs[who].pid
            for n in mine:
                _, route, status = HTTP_PATHS[n]
                wrk(route, 1)  # warm-up, not counted
                if status_of(route) != status:
                    fail(f"{route} answers {status_of(route)}, not {status}")
                # Two runs, short and long: the difference leaves out what
                # each run costs once (64 connections set up, the requests
                # still in flight when wrk stops, which it does not count).
                counts = []
                for s in (1, seconds):
                    control(pid, "-i", "on")
                    requests = wrk(route, s, status)
                    control(pid, "-i", "off")
                    counts.append((dump(pid, out), requests))
                instructions = counts[1][0] - counts[0][0]
                requests = counts[1][1] - counts[0][1]
                if requests <= 0:
                    fail(f"{route}: the longer run answered no more requests than the shorter")
                results[n] = (instructions, requests)
                report(n, instructions, requests)
        finally:
            stack.stop_all()
    return results


def measure_rpc(build, work, names, round_trips=20000):
    results = {}
    bench = f"{build}/bench/rpc_bench"
    shape = ["--connections", "1", "--inflight", "64"]
    if "rpc.ping_server" in names:
        stack = Stack()
        out = os.path.join(work, "rpc_server.callgrind")
        try:
            server = stack.start([bench, "--serve", "--port", str(RPC_PORT)], RPC_PORT, out)
            client = [bench, "--connect", f"127.0.0.1:{RPC_PORT}"] + shape
            subprocess.run(client + ["--round-trips", "2000"], check=True, capture_output=True,
                           timeout=300)
            control(server.pid, "-i", "on")
            subprocess.run(client + ["--round-trips", str(round_trips)], check=True,
                           capture_output=True, timeout=300)
            control(server.pid, "-i", "off")
            instructions = dump(server.pid, out)
            results["rpc.ping_server"] = (instructions, round_trips)
            report("rpc.ping_server", instructions, round_trips)
        finally:
            stack.stop_all()
    if "rpc.ping_client" in names:
        # The client's whole run under callgrind, twice: the difference
        # between N and 3N round trips leaves out starting and stopping.
        stack = Stack()
        try:
            stack.start([bench, "--serve", "--port", str(RPC_PORT)], RPC_PORT)
            totals = []
            for n in (round_trips // 2, round_trips * 3 // 2):
                out = os.path.join(work, f"rpc_client.{n}.callgrind")
                subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                f"--log-file={out}.log", bench, "--connect",
                                f"127.0.0.1:{RPC_PORT}"] + shape + ["--round-trips", str(n)],
                               check=True, capture_output=True, timeout=300)
                with open(out) as fh:
                    totals.append(int(re.search(r"^totals: (\d+)", fh.read(), re.M).group(1)))
            instructions = totals[1] - totals[0]
            results["rpc.ping_client"] = (instructions, round_trips)
            report("rpc.ping_client", instructions, round_trips)
        finally:
            stack.stop_all()
    return results


def report(name, instructions, requests):
    print(f"  {name}: {requests} requests, {instructions} instructions, "
          f"{instructions // max(requests, 1)} a request", flush=True)


def main():
    args = sys.argv[1:]
    if not args:
        fail("usage: budgets.py BUILD_DIR [--update] [--seconds S] [NAME...]")
    build, args = os.path.abspath(args[0]), args[1:]
    update = "--update" in args
    args = [a for a in args if a != "--update"]
    seconds = 4
    if "--seconds" in args:
        i = args.index("--seconds")
        seconds = int(args[i + 1])
        del args[i:i + 2]
    with open(BUDGETS) as f:
        book = json.load(f)
    known = list(HTTP_PATHS) + list(RPC_PATHS)
    names = args or known
    for n in names:
        if n not in known:
            fail(f"unknown path {n!r}; known: {', '.join(known)}")
    os.environ.update({
        "UPSTREAM_USERS": f"127.0.0.1:{USERS}", "UPSTREAM_PRODUCTS": f"127.0.0.1:{PRODUCTS}",
        "GATEWAY_THREADS": "1", "TERN_JWT_SECRET": "bench-secret-that-is-at-least-32-bytes"})
    with tempfile.TemporaryDirectory() as work:
        gateway_config(os.path.join(work, "routes.json"))
        print("budgets: user-space instructions per request (callgrind)", flush=True)
        results = measure_http(build, work, [n for n in names if n in HTTP_PATHS], seconds)
        results.update(measure_rpc(build, work, [n for n in names if n in RPC_PATHS]))

    tolerance = book["tolerance_percent"]
    budgets = book["budgets"]
    over = []
    print(f"\n{'path':24} {'budget':>8} {'measured':>9} {'change':>8}")
    for n in names:
        instructions, requests = results[n]
        measured = instructions // requests
        budget = budgets.get(n)
        if budget is None:
            print(f"{n:24} {'-':>8} {measured:>9,}")
            over.append(f"{n}: no budget in bench/budgets.json (measured {measured})")
            continue
        change = 100.0 * (measured - budget) / budget
        mark = ""
        if change > tolerance:
            mark = "  OVER"
            over.append(f"{n}: {measured:,} instructions a request, budget {budget:,} "
                        f"(+{change:.1f} %, more than {tolerance} %)")
        elif change < -tolerance:
            mark = "  under: lower the budget (--update)"
        print(f"{n:24} {budget:>8,} {measured:>9,} {change:>+7.1f}%{mark}")
    if update:
        for n in names:
            instructions, requests = results[n]
            budgets[n] = instructions // requests
        with open(BUDGETS, "w") as f:
            json.dump(book, f, indent=2)
            f.write("\n")
        print(f"budgets: wrote {BUDGETS}")
        return 0
    if over:
        print("\nbudgets: over budget:\n  " + "\n  ".join(over), file=sys.stderr)
        return 1
    print("budgets: every path within its budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
