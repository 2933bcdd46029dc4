#!/usr/bin/env python3
"""Runs tern side by side with its peers on this machine and prints one
table per protocol; with --write, puts them (and PNG charts) into
docs/benchmarks.md and docs/img/. Called by scripts/bench, which installs
and builds everything first.

HTTP: tern's demo stack, the NestJS reference stack (bench/nestjs-reference),
the two mixed stacks of a migration (tern's gateway in front of the NestJS
services, and the NestJS gateway in front of tern's services, both over
NestJS's TCP wire; docs/nestjs-migration.md) and nginx `return 200`, loaded with wrk -t1 -c64 --latency; rounds are
interleaved (A B C A B C ...) so drift hits all alike. RPC: bench/rpc_bench
against redis-server with redis-benchmark PING at the same connection
count and requests in flight. Server CPU per request is the servers'
utime+stime during a run divided by the requests it completed."""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(ROOT, "build-release")
TICK = os.sysconf("SC_CLK_TCK")


def wait_port(port, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {limit} s")


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class System:
    """A set of server processes started together and stopped by pid."""

    def __init__(self, name, commands, ports, env=None, cwd=None):
        self.name, self.ports = name, ports
        self.procs = []
        for cmd in commands:
            e = dict(os.environ, **(env or {}))
            self.procs.append(subprocess.Popen(cmd, env=e, cwd=cwd, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))
        try:
            for p in ports:
                wait_port(p)
        except BaseException:
            self.stop()  # none of them may outlive a failed start
            raise

    @property
    def pids(self):
        """The started processes and their descendants (nginx's worker, say)."""
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    pass
        found = [p.pid for p in self.procs]
        for pid in found:
            found += [c for c, pp in parents.items() if pp == pid and c not in found]
        return found

    def rss(self):
        """Peak RSS of each started process plus its descendants."""
        out = []
        for p in self.procs:
            name = p.args[-1] if p.args[0] == "node" else os.path.basename(p.args[0])
            mine = [p.pid]
            for pid in mine:
                mine += [c for c in self.pids if c not in mine and _ppid(c) == pid]
            out.append((name, sum(peak_rss_mib(pid) for pid in mine)))
        return out

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wrk(url, seconds):
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    def ms(tok):
        v = float(re.match(r"[\d.]+", tok).group())
        return v / 1000 if tok.endswith("us") else v * 1000 if tok.endswith("s") and not tok.endswith("ms") else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p50 = ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    return {"rps": rps, "total": total, "p50": p50, "p99": p99, "errors": errors}


def fetch_json(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def measure(system, run):
    before = cpu_seconds(system.pids)
    result = run()
    result["cpu_us"] = (cpu_seconds(system.pids) - before) * 1e6 / max(result["total"], 1)
    return result


def summarize(runs):
    ok = [r for r in runs if r["errors"] == 0]
    pick = ok or runs
    med = lambda k: statistics.median(r[k] for r in pick)
    return {"rps": med("rps"), "p50": med("p50"), "p99": med("p99"), "cpu_us": med("cpu_us"),
            "errors": sum(r["errors"] for r in runs), "runs": [r["rps"] for r in runs]}


# What the run found out about the systems it measured, for the report.
FACTS = {}


def gateway_workers(admin_port):
    """The event-loop threads a tern gateway runs: its workers, as
    /metrics counts them (gateway_worker_connections_total{worker})."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return len(set(re.findall(r'^gateway_worker_connections_total\{worker="(\d+)"', text, re.M)))


def http_bench(args):
    data = tempfile.mkdtemp(prefix="tern-bench-")
    systems = {}
    try:
        env = {"UPSTREAM_USERS": "127.0.0.1:23001", "UPSTREAM_PRODUCTS": "127.0.0.1:23002",
               "TERN_JWT_SECRET": "bench-secret-that-is-at-least-32-bytes"}
        systems["tern"] = System("tern", [
            [f"{REL}/services/users/users_service", "--port", "23001", "--data-dir", data, "--log-level", "warn"],
            [f"{REL}/services/products/products_service", "--port", "23002", "--data-dir", data, "--log-level", "warn"],
            [f"{REL}/gateway/gateway", "--port", "23000", "--config", f"{ROOT}/gateway/routes.json", "--log-level", "warn"],
        ], [23001, 23002, 23000], env)
        # --threads unset: the default on this machine (docs/gateway.md, "Threads").
        FACTS["gateway_threads"] = gateway_workers(9100)
        nest = os.path.join(ROOT, "bench", "nestjs-reference")
        nenv = {"NODE_ENV": "production", "HOST": "127.0.0.1", "PORT": "24000", "USERS_PORT": "24001",
                "PRODUCTS_PORT": "24002", "USERS_HOST": "127.0.0.1", "PRODUCTS_HOST": "127.0.0.1"}
        systems["nestjs"] = System("nestjs", [
            ["node", "dist/users.js"], ["node", "dist/products.js"], ["node", "dist/gateway.js"],
        ], [24001, 24002, 24000], nenv, cwd=nest)
        # The migration's two mixed stacks, on NestJS's wire: tern's gateway
        # (the demo config, its upstreams "wire": "nestjs") in front of the
        # NestJS services, and the NestJS gateway in front of tern's.
        with open(os.path.join(ROOT, "gateway", "routes.json")) as f:
            cfg = json.load(f)
        for u in cfg["upstreams"].values():
            u["wire"] = "nestjs"
        mixed_cfg = os.path.join(data, "routes-nestjs.json")
        with open(mixed_cfg, "w") as f:
            json.dump(cfg, f)
        menv = dict(nenv, USERS_PORT="26001", PRODUCTS_PORT="26002", UPSTREAM_USERS="127.0.0.1:26001",
                    UPSTREAM_PRODUCTS="127.0.0.1:26002", TERN_JWT_SECRET=env["TERN_JWT_SECRET"])
        systems["tern gw + NestJS svcs"] = System("tern gw + NestJS svcs", [
            ["node", "dist/users.js"], ["node", "dist/products.js"],
            [f"{REL}/gateway/gateway", "--port", "26000", "--admin-port", "0", "--config", mixed_cfg,
             "--log-level", "warn"],
        ], [26001, 26002, 26000], menv, cwd=nest)
        mdata = os.path.join(data, "mixed")
        systems["NestJS gw + tern svcs"] = System("NestJS gw + tern svcs", [
            [f"{REL}/services/users/users_service", "--port", "27001", "--admin-port", "0", "--data-dir", mdata,
             "--log-level", "warn", "--wire", "nestjs"],
            [f"{REL}/services/products/products_service", "--port", "27002", "--admin-port", "0",
             "--data-dir", mdata, "--log-level", "warn", "--wire", "nestjs"],
            ["node", "dist/gateway.js"],
        ], [27001, 27002, 27000], dict(nenv, PORT="27000", USERS_PORT="27001", PRODUCTS_PORT="27002"),
            cwd=nest)
        ngx_dir = os.path.join(data, "nginx")
        os.makedirs(ngx_dir)
        with open(os.path.join(ngx_dir, "nginx.conf"), "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {ngx_dir}/nginx.pid; error_log {ngx_dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off; server {{ listen 127.0.0.1:25000;
  location / {{ default_type application/json; return 200 '{{"status":"ok"}}'; }} }} }}
""")
        systems["nginx"] = System("nginx", [["nginx", "-c", f"{ngx_dir}/nginx.conf", "-p", ngx_dir]], [25000])

        # The same payloads on every stack, or the comparison means nothing.
        for route, ports in (("/api-gateway/users", (24000, 26000, 27000)),
                             ("/api-gateway/dashboard", (24000, 26000, 27000))):
            a = fetch_json(f"http://127.0.0.1:23000{route}")
            for port in ports:
                b = fetch_json(f"http://127.0.0.1:{port}{route}")
                if a != b:
                    raise RuntimeError(f"{route}: tern and :{port} answer differently:\n{a}\n{b}")
        cases = [("tern", "/api-gateway/users", 23000), ("tern", "/api-gateway/dashboard", 23000),
                 ("nestjs", "/api-gateway/users", 24000), ("nestjs", "/api-gateway/dashboard", 24000),
                 ("tern gw + NestJS svcs", "/api-gateway/dashboard", 26000),
                 ("NestJS gw + tern svcs", "/api-gateway/dashboard", 27000),
                 ("nginx", "return 200", 25000)]
        for name, route, port in cases:  # warm-up (JIT, caches, connections)
            path = "/" if name == "nginx" else route
            wrk(f"http://127.0.0.1:{port}{path}", 3)
        runs = {(n, r): [] for n, r, _ in cases}
        for rnd in range(args.rounds):
            for name, route, port in cases:
                path = "/" if name == "nginx" else route
                res = measure(systems[name], lambda: wrk(f"http://127.0.0.1:{port}{path}", args.seconds))
                runs[(name, route)].append(res)
                print(f"  round {rnd + 1} {name} {route}: {res['rps']:.0f} req/s p99 {res['p99']:.2f} ms "
                      f"cpu {res['cpu_us']:.0f} us/req errors {res['errors']}", flush=True)
        rss = {n: s.rss() for n, s in systems.items()}
        return {k: summarize(v) for k, v in runs.items()}, rss
    finally:
        for s in systems.values():
            s.stop()
        shutil.rmtree(data, ignore_errors=True)


def fetch_raw(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read()


PROXY_CASES = ("tern gateway", "nginx", "HAProxy")


def syscalls_per_request(pids, url, seconds=3):
    """The syscalls `pids` make a request while wrk loads `url`: perf counts
    raw_syscalls:sys_enter from just before wrk starts until it ends (nan
    if perf cannot: no tracepoints here)."""
    r = subprocess.run(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p",
                        ",".join(str(p) for p in pids), "--", "wrk", "-t1", "-c64", f"-d{seconds}s", url],
                       capture_output=True, text=True)
    m = re.search(r"(\d+) requests in", r.stdout)
    n = re.search(r"^(\d+),", r.stderr, re.M)
    return int(n.group(1)) / int(m.group(1)) if m and n else float("nan")


def proxy_bench(args):
    """The gateway's own cost as a reverse proxy: tern's gateway in front of
    bench/memory_users (the users list from memory, on tern's wire), beside
    nginx and HAProxy (one worker, one thread each, no access log) in front
    of an nginx that answers the same bytes from memory. CPU per request is
    the proxy's alone, not its upstream's."""
    data = tempfile.mkdtemp(prefix="tern-proxy-")
    systems, upstreams = {}, []
    try:
        upstreams.append(System("memory_users", [[f"{REL}/bench/memory_users", "--port", "28001"]], [28001]))
        cfg = {"upstreams": {"users": {"host": "127.0.0.1", "port": 28001, "timeout_ms": 3000}},
               "routes": [{"method": "GET", "path": "/api-gateway/users", "service": "users",
                           "pattern": {"cmd": "get_users"}, "data": "query"}]}
        with open(os.path.join(data, "proxy.json"), "w") as f:
            json.dump(cfg, f)
        systems["tern gateway"] = System("tern gateway", [
            [f"{REL}/gateway/gateway", "--port", "28000", "--admin-port", "28009", "--config",
             os.path.join(data, "proxy.json"), "--log-level", "warn"]], [28000, 28009])
        FACTS["proxy_gateway_threads"] = gateway_workers(28009)
        body = fetch_raw("http://127.0.0.1:28000/api-gateway/users").decode()
        if any(c in body for c in "'\\$"):
            raise RuntimeError(f"the users list needs quoting in nginx's config: {body}")
        with open(os.path.join(data, "upstream.conf"), "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {data}/upstream.pid; error_log {data}/upstream.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off; server {{ listen 127.0.0.1:28100;
  location = /api-gateway/users {{ default_type application/json; return 200 '{body}'; }} }} }}
""")
        upstreams.append(System("upstream nginx", [["nginx", "-c", f"{data}/upstream.conf", "-p", data]], [28100]))
        with open(os.path.join(data, "proxy.conf"), "w") as f:
            f.write(f"""worker_processes 1; daemon off; pid {data}/proxy.pid; error_log {data}/proxy.log warn;
events {{ worker_connections 1024; }}
http {{ access_log off; upstream users {{ server 127.0.0.1:28100; keepalive 64; }}
  server {{ listen 127.0.0.1:28200; location / {{ proxy_pass http://users;
    proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
        systems["nginx"] = System("nginx", [["nginx", "-c", f"{data}/proxy.conf", "-p", data]], [28200])
        with open(os.path.join(data, "haproxy.cfg"), "w") as f:
            f.write("""global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend api
  bind 127.0.0.1:28300
  default_backend users
backend users
  http-reuse always
  server users 127.0.0.1:28100
""")
        systems["HAProxy"] = System("HAProxy", [["haproxy", "-db", "-f", f"{data}/haproxy.cfg"]], [28300])
        ports = {"tern gateway": 28000, "nginx": 28200, "HAProxy": 28300}
        for name, port in ports.items():  # the same bytes through each, or it means nothing
            got = fetch_raw(f"http://127.0.0.1:{port}/api-gateway/users").decode()
            if got != body:
                raise RuntimeError(f"{name} answers differently from tern's gateway:\n{got}\n{body}")
            wrk(f"http://127.0.0.1:{port}/api-gateway/users", 3)  # warm-up
        runs = {n: [] for n in PROXY_CASES}
        for rnd in range(args.rounds):
            for name in PROXY_CASES:
                url = f"http://127.0.0.1:{ports[name]}/api-gateway/users"
                res = measure(systems[name], lambda: wrk(url, args.seconds))
                runs[name].append(res)
                print(f"  round {rnd + 1} {name} as a proxy: {res['rps']:.0f} req/s p99 {res['p99']:.2f} ms "
                      f"proxy cpu {res['cpu_us']:.1f} us/req errors {res['errors']}", flush=True)
        rss = {n: sum(m for _, m in systems[n].rss()) for n in PROXY_CASES}
        out = {k: summarize(v) for k, v in runs.items()}
        for name in PROXY_CASES:  # one more run, its syscalls counted (perf's tracepoints)
            out[name]["syscalls"] = syscalls_per_request(
                systems[name].pids, f"http://127.0.0.1:{ports[name]}/api-gateway/users")
        return out, rss
    finally:
        for s in list(systems.values()) + upstreams:
            s.stop()
        shutil.rmtree(data, ignore_errors=True)


def rpc_bench(args):
    shapes = [(1, 1), (1, 16), (1, 64), (50, 1)]
    tern = System("tern-rpc", [[f"{REL}/bench/rpc_bench", "--serve", "--port", "26000"]], [26000])
    redis = System("redis", [["redis-server", "--port", "26379", "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"]], [26379])
    runs = {}
    try:
        def ours(c, m):
            out = subprocess.run([f"{REL}/bench/rpc_bench", "--connect", "127.0.0.1:26000", "--connections",
                                  str(c), "--inflight", str(m), "--seconds", str(args.rpc_seconds),
                                  "--warmup", "0.5"], capture_output=True, text=True, check=True).stdout
            g = lambda k: float(re.search(rf"{k}=([\d.]+)", out).group(1))
            return {"rps": g("rate"), "total": int(g("round_trips")), "p50": g("p50") / 1000,
                    "p99": g("p99") / 1000, "errors": int(g("errors"))}

        def theirs(c, m):
            n = int(max(50000, runs_estimate.get((c, m), 100000) * args.rpc_seconds))
            out = subprocess.run(["redis-benchmark", "-p", "26379", "-c", str(c), "-P", str(m), "-n", str(n),
                                  "-t", "ping_mbulk", "-q"], capture_output=True, text=True, check=True).stdout
            last = out.strip().splitlines()[-1]
            rps = float(re.search(r"([\d.]+) requests per second", last).group(1))
            p50 = float(re.search(r"p50=([\d.]+) msec", last).group(1))
            return {"rps": rps, "total": n, "p50": p50, "p99": float("nan"), "errors": 0}

        runs_estimate = {}
        for rnd in range(args.rounds):
            for c, m in shapes:
                for name, system, fn in (("tern", tern, ours), ("redis", redis, theirs)):
                    res = measure(system, lambda: fn(c, m))
                    if name == "redis":
                        runs_estimate[(c, m)] = res["rps"]
                    runs.setdefault((name, c, m), []).append(res)
                    print(f"  round {rnd + 1} {name} {c}x{m}: {res['rps']:.0f}/s cpu {res['cpu_us']:.2f} us/req",
                          flush=True)
        rss = {"tern": tern.rss(), "redis": redis.rss()}
        return {k: summarize(v) for k, v in runs.items()}, rss, shapes
    finally:
        tern.stop()
        redis.stop()


def versions():
    def first(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return [f"{os.cpu_count()} cores ({cpu}), {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB, "
            f"{platform.platform()}",
            f"g++: {first(['g++', '--version'])}", f"node: {first(['node', '--version'])}",
            "NestJS: @nestjs/core 12.5.1, @nestjs/microservices 12.1.1 (bench/nestjs-reference)",
            f"nginx: {first(['nginx', '-v'])}", f"HAProxy: {first(['haproxy', '-v'])}",
            f"redis: {first(['redis-server', '--version'])}",
            f"wrk: {first(['wrk', '--version'])}"]


def fmt_ratio(a, b):
    return f"{a / b:.2f}×" if b else "–"


def render_proxy(proxy, proxy_rss):
    lines = ["### The gateway as a reverse proxy (wrk -t1 -c64 --latency, `/api-gateway/users`)", "",
             "Each proxy in front of an upstream that answers the users list from memory: tern's gateway "
             f"({FACTS.get('proxy_gateway_threads', '?')} event-loop thread(s), default policies: request id, "
             "trace context, metrics; no access log) in front of `bench/memory_users` on tern's wire; "
             "nginx (`worker_processes 1`, `proxy_pass` with upstream keepalive) and HAProxy (`nbthread 1`, "
             "`http-reuse always`) in front of an nginx that returns the same bytes. "
             "CPU per request is the proxy's own, not its upstream's.", "",
             "| proxy | req/s | p50 ms | p99 ms | proxy CPU µs/req | × nginx CPU | syscalls/req | peak RSS MiB | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    ngp = proxy["nginx"]["cpu_us"]
    for name in PROXY_CASES:
        s = proxy[name]
        lines.append(f"| {name} | {s['rps']:,.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['cpu_us']:.1f} | "
                     f"{s['cpu_us'] / ngp:.2f}× | {s.get('syscalls', float('nan')):.2f} | {proxy_rss[name]:.1f} | "
                     f"{s['errors']} |")
    return lines + ["", "![Proxy CPU per request](img/bench-proxy.png)", ""]

def render(http, http_rss, proxy, proxy_rss, rpc, rpc_rss, shapes, args):
    lines = [f"Run {datetime.date.today().isoformat()} by `scripts/bench` "
             f"({args.rounds} interleaved rounds, {args.seconds} s per HTTP run, {args.rpc_seconds} s per RPC run; "
             "medians).", "", "Machine and versions:", ""]
    lines += [f"- {v}" for v in versions()]
    if "gateway_threads" in FACTS:
        n = FACTS["gateway_threads"]
        lines.append(f"- tern's gateway: {n} event-loop thread{'s' if n != 1 else ''} "
                     "(`--threads` unset: its default on this machine)")
    lines += ["", "### HTTP (wrk -t1 -c64 --latency; wrk shares the cores with the servers)", "",
              "| system | route | req/s | p50 ms | p99 ms | server CPU µs/req | ×NestJS req/s | ×nginx req/s | errors |",
              "|---|---|---|---|---|---|---|---|---|"]
    ng = http[("nginx", "return 200")]["rps"]
    for (name, route), s in http.items():
        nest = http.get(("nestjs", route))
        lines.append(f"| {name} | {route} | {s['rps']:,.0f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['cpu_us']:.0f} | "
                     f"{fmt_ratio(s['rps'], nest['rps']) if nest else '–'} | {fmt_ratio(s['rps'], ng)} | {s['errors']} |")
    t, n = http[("tern", "/api-gateway/dashboard")], http[("nestjs", "/api-gateway/dashboard")]
    lines += ["", f"Dashboard, tern vs NestJS: {t['rps'] / n['rps']:.1f}× the req/s, p99 {t['p99'] / n['p99']:.3f}× "
              f"(1/{n['p99'] / t['p99']:.0f}), server CPU per request {t['cpu_us'] / n['cpu_us']:.3f}× "
              f"(1/{n['cpu_us'] / t['cpu_us']:.0f}). `/api-gateway/users`: "
              f"{http[('tern', '/api-gateway/users')]['rps'] / ng * 100:.0f}% of nginx's `return 200`.", "",
              "The migration's steps (docs/nestjs-migration.md), dashboard: " + "; ".join(
                  f"{name} {http[(name, '/api-gateway/dashboard')]['rps']:,.0f} req/s "
                  f"(p99 {http[(name, '/api-gateway/dashboard')]['p99']:.2f} ms, "
                  f"{http[(name, '/api-gateway/dashboard')]['cpu_us']:.0f} µs CPU/req)"
                  for name in ("nestjs", "tern gw + NestJS svcs", "NestJS gw + tern svcs", "tern")) + ".", "",
              "Peak RSS after the runs (VmHWM): " + "; ".join(
                  f"{sys_}: " + ", ".join(f"{p} {m:.1f} MiB" for p, m in procs) for sys_, procs in http_rss.items()) + ".",
              "", "![HTTP requests per second](img/bench-http.png)", "",
              ] + render_proxy(proxy, proxy_rss) + [
              "### RPC round trips (1 process each side; tern: rpc_bench `ping`, redis: redis-benchmark PING)", "",
              "| connections × in flight | tern rt/s | redis rt/s | tern / redis | tern p50 ms | redis p50 ms | tern server CPU µs | redis server CPU µs |",
              "|---|---|---|---|---|---|---|---|"]
    for c, m in shapes:
        a, b = rpc[("tern", c, m)], rpc[("redis", c, m)]
        lines.append(f"| {c} × {m} | {a['rps']:,.0f} | {b['rps']:,.0f} | {a['rps'] / b['rps'] * 100:.0f}% | "
                     f"{a['p50']:.3f} | {b['p50']:.3f} | {a['cpu_us']:.2f} | {b['cpu_us']:.2f} |")
    lines += ["", "redis pipelines: with `-P M` one connection writes M commands at once; tern keeps M "
              "independent `send` coroutines in flight on one connection.", "",
              "Peak RSS: " + "; ".join(f"{sys_}: " + ", ".join(f"{p} {m:.1f} MiB" for p, m in procs)
                                      for sys_, procs in rpc_rss.items()) + ".", "",
              "![RPC round trips per second](img/bench-rpc.png)"]
    return "\n".join(lines)


def charts(http, proxy, rpc, shapes):
    img = os.path.join(ROOT, "docs", "img")
    os.makedirs(img, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        with open(f"{d}/http.dat", "w") as f:
            for (name, route), s in http.items():
                f.write(f'"{name}\\n{route.replace("/api-gateway/", "")}" {s["rps"]:.0f}\n')
        with open(f"{d}/proxy.dat", "w") as f:
            for name in PROXY_CASES:
                f.write(f'"{name}" {proxy[name]["cpu_us"]:.2f}\n')
        with open(f"{d}/rpc.dat", "w") as f:
            for c, m in shapes:
                f.write(f'"{c}x{m}" {rpc[("tern", c, m)]["rps"]:.0f} {rpc[("redis", c, m)]["rps"]:.0f}\n')
        script = f"""set terminal png size 900,440 font ",10"
set bmargin 4
set style fill solid 0.8
set boxwidth 0.6
set grid ytics
set logscale y
set output "{img}/bench-http.png"
set title "HTTP requests/s (wrk -t1 -c64), log scale"
plot "{d}/http.dat" using 2:xtic(1) with boxes notitle
set output "{img}/bench-proxy.png"
set title "Proxy CPU per proxied request, microseconds (lower is better)"
unset logscale y
set yrange [0:*]
plot "{d}/proxy.dat" using 2:xtic(1) with boxes notitle
set logscale y
set yrange [*:*]
set output "{img}/bench-rpc.png"
set title "RPC round trips/s (connections x in flight), log scale"
set style data histograms
set style histogram clustered
plot "{d}/rpc.dat" using 2:xtic(1) title "tern", "" using 3 title "redis PING"
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rpc-seconds", type=int, default=5)
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md and docs/img/")
    ap.add_argument("--only", choices=["proxy"], help="run one part and print its table (no --write)")
    args = ap.parse_args()
    if args.only == "proxy":
        if args.write:
            ap.error("--only prints; it does not write the docs")
        proxy, proxy_rss = proxy_bench(args)
        print("\n".join(render_proxy(proxy, proxy_rss)))
        return 0
    print("HTTP:", flush=True)
    http, http_rss = http_bench(args)
    print("Proxies:", flush=True)
    proxy, proxy_rss = proxy_bench(args)
    print("RPC:", flush=True)
    rpc, rpc_rss, shapes = rpc_bench(args)
    text = render(http, http_rss, proxy, proxy_rss, rpc, rpc_rss, shapes, args)
    print()
    print(text)
    if args.write:
        charts(http, proxy, rpc, shapes)
        path = os.path.join(ROOT, "docs", "benchmarks.md")
        doc = open(path).read()
        begin, end = "<!-- scripts/bench:begin -->", "<!-- scripts/bench:end -->"
        block = f"{begin}\n{text}\n{end}"
        if begin in doc:
            doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
        else:
            doc += "\n## Side by side with the peers (`scripts/bench`)\n\n" + block + "\n"
        open(path, "w").write(doc)
        print(f"\nwrote {path} and docs/img/bench-*.png")


if __name__ == "__main__":
    sys.exit(main())
