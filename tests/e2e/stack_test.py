#!/usr/bin/env python3
"""End-to-end tests of the demo stack: the real users, products and gateway
binaries on ephemeral loopback ports with a temporary data directory, driven
over real HTTP. Usage: stack_test.py BUILD_DIR [unittest args]"""

import http.client
import json
import jwt  # Debian's python3-jwt
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from prometheus_client.parser import text_string_to_metric_families

BUILD = None
# The gateway's event-loop threads in the end-to-end tests: 2 unless set, so
# the suite runs it on more than one thread whatever the machine's cores.
GATEWAY_THREADS = os.environ.get("TERN_E2E_GATEWAY_THREADS", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    """A port free now, below the ephemeral range (32768+ on Linux), so the
    outgoing connections of the processes under test cannot take it before
    the process that is given it binds it. Tests running at once may still
    pick the same one: Stack retries a start that finds its port taken."""
    for _ in range(1000):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000")


def listeners(port):
    """The inodes of the sockets listening on `port`, any address (Linux's
    /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)  # the column names
                for line in f:
                    fields = line.split()
                    local, state, inode = fields[1], fields[3], fields[9]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                        found.add(inode)
        except FileNotFoundError:
            pass
    return found


def sockets_of(pid):
    """The inodes of the sockets process `pid` holds."""
    found = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            found.add(link[len("socket:["):-1])
    return found


def wait_port(port, proc, limit=10.0):
    """Waits until `proc` itself listens on `port`, and nothing else does.
    A connect alone could reach another test's process that holds the port
    while `proc` fails to bind it (or, with SO_REUSEPORT, shares it): then
    `proc` is ended and PortTaken raised, for the caller to start again on
    another port."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PortTaken(f"process exited with {proc.returncode} before listening on {port}")
        listening = listeners(port)
        if listening:
            mine = sockets_of(proc.pid)
            if listening <= mine:
                return
            if listening & mine:  # shared with a stranger (SO_REUSEPORT)
                proc.kill()
                proc.wait()
                raise PortTaken(f"another process also listens on {port}")
        time.sleep(0.02)
    if listeners(port):  # a stranger's alone: `proc` never got it
        proc.kill()
        proc.wait()
        raise PortTaken(f"another process listens on {port}")
    raise RuntimeError(f"nothing listening on {port} after {limit} s")


def until(condition, limit=10.0, what="condition"):
    """Polls condition() until it is true; fails after `limit` seconds."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {limit} s")
        time.sleep(0.05)


class Metrics:
    """One scrape: samples by (name, labels) and the families by name."""

    def __init__(self, text):
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name, **labels):
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def matching(self, name, **labels):
        """Samples of `name` whose labels include `labels`: [(labels dict, value)]."""
        want = set(labels.items())
        return [(dict(k), v) for (n, k), v in self.samples.items() if n == name and want <= set(k)]


class PortTaken(RuntimeError):
    """A process could not have its port to itself: most likely another test
    took it first."""


class Stack:
    """users, products and gateway processes; each can be killed and restarted."""

    SECRET = "e2e-secret-that-is-at-least-32-bytes-long"  # the demo key's TERN_JWT_SECRET

    def __init__(self, log_level="error", policies=None, capture_logs=False, edit=None,
                 rate_limits=False, users_replicas=1, extra_users_endpoints=(), database=None,
                 gateway_threads=None, extra_args=None):
        """policies replaces the config's top-level "policies"; edit(cfg)
        may change the rest of the config; the demo's rate limits (5 POSTs
        per 10 s) are off unless rate_limits; with capture_logs each process
        writes its output to log(name)'s file. users_replicas > 1 adds
        users2, users3, ... (each with its own data directory), all of them
        the gateway's users endpoints, with extra_users_endpoints
        ("host:port") after them. database: a PostgreSQL URL the services
        keep their data in (instead of SQLite files). gateway_threads: the
        gateway's --threads (GATEWAY_THREADS by default). extra_args(name):
        more flags for process `name` (a list)."""
        self.extra_args = extra_args or (lambda name: [])
        self.gateway_threads = str(gateway_threads or GATEWAY_THREADS)
        self.database = database
        self.extra_users_endpoints = list(extra_users_endpoints)
        self.dir = tempfile.mkdtemp(prefix="tern-e2e-")
        self.ports = {"users": free_port(), "products": free_port(), "gateway": free_port()}
        for i in range(2, users_replicas + 1):
            self.ports[f"users{i}"] = free_port()
        self.admin = {name: free_port() for name in self.ports}
        self.log_level = log_level
        self.capture_logs = capture_logs
        self.procs = {}
        with open(os.path.join(ROOT, "gateway", "routes.json")) as f:
            cfg = json.load(f)
        cfg["policies"] = policies if policies is not None else {}
        cfg["upstreams"]["users"]["timeout_ms"] = 1000
        cfg["upstreams"]["products"]["timeout_ms"] = 1000
        cfg["server"]["read_timeout_ms"] = 500
        cfg["server"]["idle_timeout_ms"] = 2000
        if not rate_limits:
            for r in cfg["routes"]:
                r.get("policies", {}).pop("rate_limit", None)
        if edit:
            edit(cfg)
        self.admin_token = self.token()
        self.as_admin = {"Authorization": f"Bearer {self.admin_token}"}  # headers for admin calls
        self.config = os.path.join(self.dir, "routes.json")
        with open(self.config, "w") as f:
            json.dump(cfg, f)
        for name in [n for n in self.ports if n != "gateway"] + ["gateway"]:
            for attempt in range(5):
                try:
                    self.start(name)
                    break
                except PortTaken:
                    if attempt == 4:
                        raise
                    self.ports[name], self.admin[name] = free_port(), free_port()

    def token(self, sub="e2e-admin", roles=("admin",), **claims):
        """A token the demo config's key accepts (HS256, kid demo, iss tern-demo)."""
        body = {"sub": sub, "roles": list(roles), "iss": "tern-demo", "exp": int(time.time()) + 600}
        body.update(claims)
        return jwt.encode(body, self.SECRET, algorithm="HS256", headers={"kid": "demo"})

    def command(self, name):
        common = ["--port", str(self.ports[name]), "--admin-port", str(self.admin[name]),
                  "--log-level", self.log_level]
        if name == "gateway":
            return [os.path.join(BUILD, "gateway", "gateway"), "--config", self.config,
                    "--threads", self.gateway_threads] + common + self.extra_args(name)
        service = name.rstrip("0123456789")
        store = ["--database", self.database] if self.database else []
        return [os.path.join(BUILD, "services", service, f"{service}_service"),
                "--data-dir", os.path.join(self.dir, "data" + name[len(service):])] + store + common \
            + self.extra_args(name)

    def log_path(self, name):
        return os.path.join(self.dir, f"{name}.log")

    def log(self, name):
        """What process `name` has written so far (capture_logs=True)."""
        with open(self.log_path(name), errors="replace") as f:
            return f.read()

    def start(self, name):
        env = dict(os.environ)
        env["UPSTREAM_USERS"] = ",".join([f"127.0.0.1:{port}" for name, port in self.ports.items()
                                          if name.rstrip("0123456789") == "users"]
                                         + self.extra_users_endpoints)
        env["UPSTREAM_PRODUCTS"] = f"127.0.0.1:{self.ports['products']}"
        env["TERN_JWT_SECRET"] = self.SECRET
        out = open(self.log_path(name), "a") if self.capture_logs else None
        proc = subprocess.Popen(self.command(name), env=env, stdout=out, stderr=out)
        if out:
            out.close()
        self.procs[name] = proc
        wait_port(self.ports[name], proc)
        wait_port(self.admin[name], proc)

    def metrics(self, name):
        """One scrape of process `name`'s /metrics."""
        conn = http.client.HTTPConnection("127.0.0.1", self.admin[name], timeout=10)
        try:
            conn.request("GET", "/metrics")
            return Metrics(conn.getresponse().read().decode())
        finally:
            conn.close()

    def wait_connected(self, service, limit=10.0):
        """Waits until each of the gateway's workers holds a connection to
        `service` (after a restart, one worker may be back before another:
        each reconnects on its own)."""
        threads = int(self.gateway_threads)
        until(lambda: self.metrics("gateway").value("rpc_client_connections", service=service,
                                                    state="connected") == threads,
              limit=limit, what=f"{threads} connections to {service}")

    def kill(self, name, sig=signal.SIGKILL):
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        if sig == signal.SIGKILL or name == "gateway":
            return proc.wait(timeout=10)
        # A service idle in epoll_wait under ThreadSanitizer may not see the
        # signal (TSan defers it to the next intercepted call): say it again,
        # but only while it is still ready (a service that saw the signal
        # drains, and a second signal would end the drain at once).
        deadline = time.monotonic() + 10
        while True:
            try:
                return proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", self.admin[name], timeout=0.5)
                    conn.request("GET", "/health/ready")
                    if conn.getresponse().status == 200:
                        proc.send_signal(sig)
                    conn.close()
                except OSError:
                    pass

    def close(self):
        for name in list(self.procs):
            self.kill(name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["gateway"], timeout=10)
        try:
            payload = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
            conn.request(method, path, body=payload, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            conn.close()

    def raw(self, data, read_limit=2.0):
        """Sends raw bytes; returns everything received until the server closes (or the limit)."""
        with socket.create_connection(("127.0.0.1", self.ports["gateway"])) as s:
            s.sendall(data)
            s.settimeout(read_limit)
            chunks = []
            try:
                while True:
                    c = s.recv(65536)
                    if not c:
                        break
                    chunks.append(c)
            except socket.timeout:
                pass
            return b"".join(chunks)


def parse_responses(data):
    """Splits a byte stream of HTTP/1.1 responses (Content-Length framed)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v)
        out.append((status, json.loads(rest[:length]) if length else None))
        data = rest[length:]
    return out


class StackTest(unittest.TestCase):
    def setUp(self):
        self.stack = Stack()

    def tearDown(self):
        self.stack.close()

    def test_every_route_answers(self):
        s = self.stack
        status, users = s.request("GET", "/api-gateway/users")
        self.assertEqual(status, 200)
        self.assertEqual([u["name"] for u in users], ["Ada Lovelace", "Alan Turing", "Grace Hopper"])
        self.assertEqual(s.request("GET", "/api-gateway/users/2"),
                         (200, {"id": 2, "name": "Alan Turing", "email": "alan@example.com"}))
        status, products = s.request("GET", "/api-gateway/products")
        self.assertEqual(status, 200)
        self.assertEqual(len(products), 3)
        self.assertEqual(s.request("GET", "/api-gateway/products/3"),
                         (200, {"id": 3, "name": "UNIVAC I", "price": 1951.25}))
        status, page = s.request("GET", "/api-gateway/users?limit=1&offset=2")
        self.assertEqual((status, [u["id"] for u in page]), (200, [3]))

    def test_dashboard_combines_both_services(self):
        status, body = self.stack.request("GET", "/api-gateway/dashboard")
        self.assertEqual(status, 200)
        self.assertEqual(set(body), {"users", "products"})
        self.assertEqual(len(body["users"]), 3)
        self.assertEqual(len(body["products"]), 3)
        self.assertEqual(body["products"][0]["name"], "Analytical Engine")

    def test_create_then_read_back(self):
        s = self.stack
        status, user = s.request("POST", "/api-gateway/users", {"name": "Edsger", "email": "ed@example.org"}, s.as_admin)
        self.assertEqual(status, 201)
        self.assertEqual(s.request("GET", f"/api-gateway/users/{user['id']}"), (200, user))
        status, product = s.request("POST", "/api-gateway/products", {"name": "ENIAC", "price": 0}, s.as_admin)
        self.assertEqual(status, 201)
        self.assertEqual(s.request("GET", f"/api-gateway/products/{product['id']}"), (200, product))

    def test_errors_are_nestjs_shaped_json(self):
        s = self.stack
        self.assertEqual(s.request("GET", "/api-gateway/users/999"),
                         (404, {"statusCode": 404, "message": "user 999 not found", "error": "Not Found"}))
        status, body = s.request("POST", "/api-gateway/users", {"name": "X", "email": "not-an-email"}, s.as_admin)
        self.assertEqual((status, body["error"]), (400, "Bad Request"))
        self.assertIn("email", body["message"])
        status, body = s.request("POST", "/api-gateway/users", {"email": "a@b.co"}, s.as_admin)
        self.assertEqual(status, 400)
        self.assertIn("name", body["message"])
        status, body = s.request("POST", "/api-gateway/users", {"name": "Ada", "email": "ada@example.com"}, s.as_admin)
        self.assertEqual((status, body["statusCode"], body["error"]), (409, 409, "Conflict"))
        status, body = s.request("POST", "/api-gateway/products", {"name": "Cheap", "price": -1}, s.as_admin)
        self.assertEqual(status, 400)
        self.assertIn("price", body["message"])
        status, body = s.request("POST", "/api-gateway/users", "{not json", s.as_admin)
        self.assertEqual((status, body["message"]), (400, "malformed JSON body"))
        self.assertEqual(s.request("GET", "/nowhere"),
                         (404, {"statusCode": 404, "message": "Cannot GET /nowhere", "error": "Not Found"}))
        # A path that exists with other methods: 405 naming them (RFC 9110 §15.5.6).
        for method, path, allow in (("DELETE", "/api-gateway/users", "GET, HEAD, POST"),
                                    ("PUT", "/api-gateway/users/7", "GET, HEAD"),
                                    ("POST", "/api-gateway/dashboard", "GET, HEAD")):
            conn = http.client.HTTPConnection("127.0.0.1", s.ports["gateway"], timeout=10)
            conn.request(method, path)
            r = conn.getresponse()
            self.assertEqual((r.status, r.getheader("Allow"), json.loads(r.read())),
                             (405, allow, {"statusCode": 405, "message": f"Cannot {method} {path}",
                                           "error": "Method Not Allowed"}))
            conn.close()

    def test_a_dead_service_fails_only_its_routes_and_is_reconnected(self):
        s = self.stack
        self.assertEqual(s.request("GET", "/api-gateway/dashboard")[0], 200)
        s.kill("products")
        start = time.monotonic()
        status, body = s.request("GET", "/api-gateway/dashboard")
        self.assertEqual(status, 503)
        self.assertEqual(body["statusCode"], 503)
        self.assertIn("products", body["message"])
        self.assertLess(time.monotonic() - start, 1.5)  # within the 1 s upstream timeout
        for _ in range(5):
            self.assertEqual(s.request("GET", "/api-gateway/users")[0], 200)
            self.assertEqual(s.request("GET", "/api-gateway/products")[0], 503)
        s.start("products")
        s.wait_connected("products", limit=5)
        for _ in range(4):  # whichever worker takes it
            self.assertEqual(s.request("GET", "/api-gateway/dashboard")[0], 200)

    def test_data_survives_a_service_restart(self):
        s = self.stack
        _, user = s.request("POST", "/api-gateway/users", {"name": "Barbara", "email": "bl@example.org"}, s.as_admin)
        self.assertEqual(s.kill("users", signal.SIGTERM), 0)
        s.start("users")
        s.wait_connected("users", limit=5)
        self.assertEqual(s.request("GET", f"/api-gateway/users/{user['id']}"), (200, user))

    def test_malformed_request_line_gets_400_and_close(self):
        out = self.stack.raw(b"THIS IS NOT HTTP\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400 "), out[:80])
        self.assertIn(b"Connection: close", out)

    def test_oversized_headers_get_431(self):
        big = b"GET /api-gateway/users HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        out = self.stack.raw(big)
        self.assertTrue(out.startswith(b"HTTP/1.1 431 "), out[:80])

    def test_oversized_body_gets_413(self):
        req = (b"POST /api-gateway/users HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n" + b"x" * 1000)
        out = self.stack.raw(req)
        self.assertTrue(out.startswith(b"HTTP/1.1 413 "), out[:80])

    def test_a_slow_client_is_dropped(self):
        with socket.create_connection(("127.0.0.1", self.stack.ports["gateway"])) as s:
            s.sendall(b"GET /api-gateway/users HTTP/1.1\r\nHost: x\r\n")  # never finished
            s.settimeout(5)
            start = time.monotonic()
            self.assertEqual(s.recv(100), b"")  # closed by the server
            self.assertLess(time.monotonic() - start, 3)

    def test_1000_keepalive_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.ports["gateway"], timeout=10)
        for i in range(1000):
            conn.request("GET", f"/api-gateway/users/{i % 3 + 1}")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read())["id"], i % 3 + 1)
        conn.close()

    def test_50_pipelined_requests_answered_in_order(self):
        reqs = b"".join(f"GET /api-gateway/users/{i % 3 + 1} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                        for i in range(49))
        reqs += b"GET /api-gateway/products/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        responses = parse_responses(self.stack.raw(reqs, read_limit=5))
        self.assertEqual(len(responses), 50)
        for i, (status, body) in enumerate(responses[:49]):
            self.assertEqual((status, body["id"]), (200, i % 3 + 1))
        self.assertEqual(responses[49][1]["name"], "Analytical Engine")


class BinariesTest(unittest.TestCase):
    def test_help_lists_the_flags(self):
        for path, flags in ((["gateway", "gateway"], ["--config", "--port"]),
                            (["services", "users", "users_service"], ["--data-dir", "--port"]),
                            (["services", "products", "products_service"], ["--data-dir", "--host"])):
            out = subprocess.run([os.path.join(BUILD, *path), "--help"], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0)
            for f in flags:
                self.assertIn(f, out.stdout)

    def test_gateway_refuses_a_bad_config_naming_the_entry(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(ROOT, "gateway", "routes.json")) as f:
                cfg = json.load(f)
            cfg["routes"][3]["service"] = "userz"
            path = os.path.join(d, "bad.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            out = subprocess.run([os.path.join(BUILD, "gateway", "gateway"), "--config", path,
                                  "--port", str(free_port())], capture_output=True, text=True, timeout=10)
            self.assertEqual(out.returncode, 1)
            self.assertIn("routes[3].service", out.stdout + out.stderr)
            self.assertIn("userz", out.stdout + out.stderr)


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
