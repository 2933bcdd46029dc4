#!/usr/bin/env python3
"""tern and NestJS on one wire, for real: NestJS 12 from npm (tests/interop,
bench/nestjs-reference; scripts/node-peers installs them) against tern's
binaries, both ways, over NestJS's own TCP transport. Usage: nestjs_test.py BUILD_DIR"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from stack_test import GATEWAY_THREADS, ROOT, free_port, until, wait_port  # noqa: E402

BUILD = None
INTEROP = os.path.join(ROOT, "tests", "interop")
REFERENCE = os.path.join(ROOT, "bench", "nestjs-reference")
SECRET = "e2e-secret-that-is-at-least-32-bytes-long"

USERS = [
    {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com"},
    {"id": 2, "name": "Alan Turing", "email": "alan@example.com"},
    {"id": 3, "name": "Grace Hopper", "email": "grace@example.com"},
]
PRODUCTS = [
    {"id": 1, "name": "Analytical Engine", "price": 1843},
    {"id": 2, "name": "Bombe", "price": 1939.5},
    {"id": 3, "name": "UNIVAC I", "price": 1951.25},
]


def get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        data = r.read()
        return r.status, json.loads(data) if data else None
    finally:
        conn.close()


class Processes:
    """The processes of one test, on free loopback ports, stopped at the end."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="tern-nestjs-")
        self.procs = []

    def start(self, argv, port, env=None, admin=None):
        e = dict(os.environ)
        e.update(env or {})
        log = open(os.path.join(self.dir, f"{len(self.procs)}.log"), "w")
        proc = subprocess.Popen(argv, env=e, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs.append(proc)
        wait_port(port, proc, limit=20)
        if admin:
            wait_port(admin, proc, limit=20)
        return proc

    def tern_service(self, name, wire):
        port, admin = free_port(), free_port()
        data = os.path.join(self.dir, f"data-{name}-{port}")
        self.start([os.path.join(BUILD, "services", name, f"{name}_service"), "--port", str(port),
                    "--admin-port", str(admin), "--data-dir", data, "--log-level", "warn",
                    "--wire", wire], port, admin=admin)
        return port

    def nest_service(self, name):
        """bench/nestjs-reference's users or products, unchanged NestJS."""
        port = free_port()
        self.start(["node", os.path.join(REFERENCE, "dist", f"{name}.js")], port,
                   env={"NODE_ENV": "production", "HOST": "127.0.0.1",
                        f"{name.upper()}_PORT": str(port)})
        return port

    def tern_gateway(self, users, products, wire):
        """tern's gateway on the demo routes (no policies), its upstreams on `wire`."""
        with open(os.path.join(ROOT, "gateway", "routes.json")) as f:
            cfg = json.load(f)
        cfg["policies"] = {}
        for r in cfg["routes"]:
            r.get("policies", {}).pop("rate_limit", None)
        for name, port in (("users", users), ("products", products)):
            cfg["upstreams"][name].update({"port": port, "timeout_ms": 2000, "wire": wire})
        path = os.path.join(self.dir, f"routes-{wire}-{users}.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        port, admin = free_port(), free_port()
        self.start([os.path.join(BUILD, "gateway", "gateway"), "--config", path, "--port", str(port),
                    "--admin-port", str(admin), "--threads", GATEWAY_THREADS, "--log-level", "warn"],
                   port, env={"TERN_JWT_SECRET": SECRET}, admin=admin)
        return port, admin

    def close(self):
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self):
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    out.append(f"--- {name}\n{f.read()[-3000:]}")
        return "\n".join(out)


class NestjsInteropTest(unittest.TestCase):
    def setUp(self):
        for d in (INTEROP, REFERENCE):
            self.assertTrue(os.path.isdir(os.path.join(d, "node_modules", "@nestjs")),
                            f"{d} has no node_modules: run scripts/node-peers (scripts/test does)")
        self.assertTrue(os.path.exists(os.path.join(REFERENCE, "dist", "gateway.js")),
                        "bench/nestjs-reference is not built: run scripts/node-peers")
        self.p = Processes()

    def tearDown(self):
        self.p.close()

    def nest_client(self, *args):
        r = subprocess.run(["node", os.path.join(INTEROP, "nest_client.mjs"), *args],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0,
                         f"nest_client {' '.join(args)}:\n{r.stdout}\n{r.stderr[-3000:]}\n{self.p.logs()}")
        self.assertNotIn("FAIL", r.stdout)
        return r.stdout

    def test_a_nestjs_client_proxy_calls_the_tern_users_service(self):
        port = self.p.tern_service("users", "nestjs")
        out = self.nest_client("--port", str(port))
        for case in ("send", "stream", "rpc_error", "unknown_pattern", "emit", "forbidden",
                     "metadata", "non_ascii", "astral", "concurrent"):
            self.assertIn(f"ok {case}", out)

    def test_garbage_and_oversized_frames_cost_only_their_connection(self):
        port = self.p.tern_service("users", "nestjs")
        out = self.nest_client("--port", str(port), "--hostile", "--max-frame", str(16 * 1024 * 1024))
        for case in ("garbage_prefix", "bad_json", "oversized_announced", "oversized_payload",
                     "deep_json", "split_utf8"):
            self.assertIn(f"ok {case}", out)
        # Still serving after all of it, to a new client too.
        self.nest_client("--port", str(port))

    def test_the_nestjs_gateway_in_front_of_tern_services(self):
        users = self.p.tern_service("users", "nestjs")
        products = self.p.tern_service("products", "nestjs")
        port = free_port()
        self.p.start(["node", os.path.join(REFERENCE, "dist", "gateway.js")], port,
                     env={"NODE_ENV": "production", "HOST": "127.0.0.1", "PORT": str(port),
                          "USERS_HOST": "127.0.0.1", "USERS_PORT": str(users),
                          "PRODUCTS_HOST": "127.0.0.1", "PRODUCTS_PORT": str(products)})
        self.assertEqual(get(port, "/api-gateway/dashboard"),
                         (200, {"users": USERS, "products": PRODUCTS}))
        self.assertEqual(get(port, "/api-gateway/users/2"), (200, USERS[1]))
        self.assertEqual(get(port, "/api-gateway/products/3"), (200, PRODUCTS[2]))
        # Its exception filter turns tern's {status: 404, message} into HTTP.
        self.assertEqual(get(port, "/api-gateway/users/999"),
                         (404, {"statusCode": 404, "message": "user 999 not found"}))

    def test_the_tern_gateway_in_front_of_unchanged_nestjs_services(self):
        # The same routes through tern's gateway twice: against tern's own
        # services, and against bench/nestjs-reference's NestJS services.
        ours, _ = self.p.tern_gateway(self.p.tern_service("users", "tern"),
                                      self.p.tern_service("products", "tern"), "tern")
        theirs, admin = self.p.tern_gateway(self.p.nest_service("users"),
                                            self.p.nest_service("products"), "nestjs")
        routes = ["/api-gateway/users", "/api-gateway/users/1", "/api-gateway/users/3",
                  "/api-gateway/users/999", "/api-gateway/products", "/api-gateway/products/2",
                  "/api-gateway/products/999", "/api-gateway/dashboard"]
        for path in routes:
            with self.subTest(path=path):
                self.assertEqual(get(theirs, path), get(ours, path))
        self.assertEqual(get(theirs, "/api-gateway/dashboard"),
                         (200, {"users": USERS, "products": PRODUCTS}))
        self.assertEqual(get(theirs, "/api-gateway/users/999")[0], 404)
        # NestJS services have no health pattern; answering at all (with the
        # no-handler error) makes them ready.
        try:
            until(lambda: get(admin, "/health/ready")[0] == 200, what="readiness")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.p.logs()}") from None


if __name__ == "__main__":
    BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main()
