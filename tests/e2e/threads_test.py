#!/usr/bin/env python3
"""The gateway on several event-loop threads (--threads 2), on the real
binaries: connections spread over the workers by the kernel (SO_REUSEPORT),
and what the workers share behaves as one process: metrics add up, a rate
limit is not split by thread, the response cache (entries, single flight,
invalidation) is one. Each test opens many connections, so that both
workers take some, and checks that they did (gateway_worker_connections_total).
Usage: threads_test.py BUILD_DIR [unittest args]"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack_test  # noqa: E402
from stack_test import Stack  # noqa: E402
from stack_test import Metrics, until  # noqa: E402

CONNECTIONS = 24  # all on one worker of two: a chance of 2^-23


def call(port, method, path, body=None, headers=None):
    """(status, headers as a lower-cased dict, parsed JSON body or None), on
    a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data) if data else None
    finally:
        conn.close()


class ThreadsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        def edit(cfg):
            cfg["routes"] += [
                {"method": "GET", "path": "/e2e/limited", "service": "users",
                 "pattern": {"cmd": "get_users"},
                 "policies": {"rate_limit": {"limits": [{"requests": 10, "per_s": 600}]}}},
                {"method": "GET", "path": "/e2e/cached", "service": "users",
                 "pattern": {"cmd": "get_users"}, "policies": {"cache": {"ttl_s": 600}}},
            ]

        cls.stack = Stack(edit=edit, gateway_threads=2, capture_logs=True, log_level="info")

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def metrics(self, name="gateway"):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin[name], timeout=10)
        conn.request("GET", "/metrics")
        m = Metrics(conn.getresponse().read().decode())
        conn.close()
        return m

    def per_worker(self):
        m = self.metrics()
        return [m.value("gateway_worker_connections_total", worker=w) for w in ("0", "1")]

    def spread(self, method, path, body=None, headers=None, n=CONNECTIONS):
        """n requests, one connection each; asserts that both workers took some
        (keep n at CONNECTIONS: with 8, one run in 128 puts all on one worker)."""
        before = self.per_worker()
        answers = [call(self.stack.ports["gateway"], method, path, body, headers) for _ in range(n)]
        took = [after - b for after, b in zip(self.per_worker(), before)]
        self.assertEqual(sum(took), n)
        self.assertTrue(all(t > 0 for t in took), f"connections per worker: {took}")
        return answers

    def served(self, service, pattern):
        """Requests for `pattern` the service itself answered (its own counter)."""
        m = self.metrics(service)
        return sum(v for _, v in m.matching("rpc_server_requests_total", pattern=pattern))

    def test_the_gateway_says_how_many_threads_it_runs(self):
        self.assertIn("routes, 2 threads)", self.stack.log("gateway"))

    def test_every_workers_counts_add_up_in_one_scrape(self):
        labels = {"route": "/api-gateway/users", "method": "GET", "status": "200"}
        before = self.metrics().value("http_server_requests_total", **labels)
        served = self.served("users", '{"cmd":"get_users"}')
        answers = self.spread("GET", "/api-gateway/users")
        self.assertEqual({status for status, _, _ in answers}, {200})
        m = self.metrics()
        self.assertEqual(m.value("http_server_requests_total", **labels) - before, CONNECTIONS)
        self.assertEqual(self.served("users", '{"cmd":"get_users"}') - served, CONNECTIONS)
        # Each family once, each upstream's endpoints counted in every worker.
        self.assertEqual(m.value("rpc_client_connections", service="users", state="connected"), 2)
        self.assertGreaterEqual(m.value("http_server_request_duration_seconds_count",
                                        route="/api-gateway/users"), CONNECTIONS)

    def test_a_rate_limit_is_the_processes_not_split_by_thread(self):
        answers = self.spread("GET", "/e2e/limited")
        statuses = [status for status, _, _ in answers]
        self.assertEqual(statuses.count(200), 10, statuses)
        self.assertEqual(statuses.count(429), CONNECTIONS - 10, statuses)
        self.assertEqual(self.metrics().value("gateway_rate_limited_requests_total",
                                              route="/e2e/limited", mode="enforced"),
                         CONNECTIONS - 10)

    def test_the_cache_is_one_for_every_worker(self):
        served = self.served("users", '{"cmd":"get_users"}')
        answers = self.spread("GET", "/e2e/cached")
        caches = [h["x-cache"] for _, h, _ in answers]
        self.assertEqual(caches, ["MISS"] + ["HIT"] * (CONNECTIONS - 1))
        self.assertEqual(self.served("users", '{"cmd":"get_users"}') - served, 1)
        self.assertEqual(self.metrics().value("gateway_cache_requests_total", route="/e2e/cached",
                                              result="hit"), CONNECTIONS - 1)

    def test_a_write_on_one_worker_invalidates_every_workers_reads(self):
        # The demo's product reads are cached and POST /api-gateway/products
        # invalidates them; each request below is on a connection of its own.
        caches = [h["x-cache"] for _, h, _ in self.spread("GET", "/api-gateway/products")]
        self.assertEqual(caches[1:], ["HIT"] * (CONNECTIONS - 1))
        for i in range(4):  # each write reaches some worker; every worker's reads see it
            name = f"Threaded {i}"
            status, _, _ = call(self.stack.ports["gateway"], "POST", "/api-gateway/products",
                                {"name": name, "price": i}, self.stack.as_admin)
            self.assertEqual(status, 201)
            answers = self.spread("GET", "/api-gateway/products")
            self.assertEqual([h["x-cache"] for _, h, _ in answers][0], "MISS")
            for _, _, body in answers:
                self.assertIn(name, [p["name"] for p in body])

    def test_concurrent_misses_on_both_workers_make_one_upstream_call(self):
        s = self.stack
        path = "/api-gateway/products?limit=2&offset=1"
        before_workers = self.per_worker()
        served = self.served("products", '{"cmd":"get_products"}')
        s.procs["products"].send_signal(signal.SIGSTOP)
        results = []
        try:
            threads = [threading.Thread(target=lambda: results.append(call(s.ports["gateway"], "GET", path)))
                       for _ in range(40)]
            for t in threads:
                t.start()
            until(lambda: self.metrics().value("http_server_active_requests") >= 40,
                  what="40 requests waiting in the gateway")
        finally:
            s.procs["products"].send_signal(signal.SIGCONT)
        for t in threads:
            t.join()
        took = [a - b for a, b in zip(self.per_worker(), before_workers)]
        self.assertTrue(all(t > 0 for t in took), f"connections per worker: {took}")
        self.assertEqual(sorted(h["x-cache"] for _, h, _ in results), ["HIT"] * 39 + ["MISS"])
        self.assertEqual({status for status, _, _ in results}, {200})
        self.assertEqual(self.served("products", '{"cmd":"get_products"}') - served, 1)

    def test_a_port_another_gateway_holds_is_refused(self):
        # SO_REUSEPORT would let a second process of this user share the
        # port; the gateway checks first, as a plain bind would.
        out = subprocess.run(
            [os.path.join(stack_test.BUILD, "gateway", "gateway"), "--config", self.stack.config,
             "--threads", "2", "--port", str(self.stack.ports["gateway"]), "--admin-port", "0"],
            capture_output=True, text=True, timeout=10,
            env=dict(os.environ, TERN_JWT_SECRET=Stack.SECRET))
        self.assertEqual(out.returncode, 1)
        self.assertIn("Address already in use", out.stdout + out.stderr)
        self.assertEqual(call(self.stack.ports["gateway"], "GET", "/api-gateway/users")[0], 200)


class OneThreadTest(unittest.TestCase):
    def test_one_thread_serves_the_demo(self):
        s = Stack(gateway_threads=1, capture_logs=True, log_level="info")
        try:
            status, _, body = call(s.ports["gateway"], "GET", "/api-gateway/dashboard")
            self.assertEqual(status, 200)
            self.assertIn("users", body)
            self.assertIn("routes, 1 thread)", s.log("gateway"))
        finally:
            s.close()


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
