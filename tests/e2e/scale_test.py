#!/usr/bin/env python3
"""Two users instances behind the gateway under steady load: one killed
(SIGKILL) and started again, one stopped with SIGTERM. What each client
sees: GETs are retried on the other instance, POSTs fail as clear 503s
only when their instance died under them, a drain loses nothing.
Usage: scale_test.py BUILD_DIR [unittest args]"""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack_test  # noqa: E402
from stack_test import Stack  # noqa: E402
from stack_test import Metrics, until  # noqa: E402


class Load:
    """`threads` clients, each sending GET /api-gateway/users at `rate`
    requests a second (and every `post_every`-th request a POST), for at
    most `limit` seconds or until stop(). Every response is kept."""

    def __init__(self, stack, threads=4, rate=50, post_every=10, limit=20.0):
        self.stack, self.rate, self.post_every, self.limit = stack, rate, post_every, limit
        self.results = []  # (method, status, body, seconds taken, sent at)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.workers = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]
        for w in self.workers:
            w.start()

    def run(self, index):
        conn = None
        started = time.monotonic()
        n = 0
        while not self.done.is_set() and time.monotonic() - started < self.limit:
            n += 1
            post = n % self.post_every == 0
            method = "POST" if post else "GET"
            body = json.dumps({"name": f"Load {index}-{n}", "email": f"l{index}x{n}@example.org"}) if post else None
            headers = dict(self.stack.as_admin) if post else {}
            if post:
                headers["Content-Type"] = "application/json"
            sent = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.stack.ports["gateway"], timeout=5)
                conn.request(method, "/api-gateway/users", body=body, headers=headers)
                r = conn.getresponse()
                data = r.read()
                status = r.status
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                status, data = 0, str(e).encode()  # no answer: a hang or a dropped connection
                conn = None
            took = time.monotonic() - sent
            with self.lock:
                self.results.append((method, status, data, took, sent))
            pause = n / self.rate - (time.monotonic() - started)
            if pause > 0:
                time.sleep(pause)
        if conn:
            conn.close()

    def count(self):
        with self.lock:
            return len(self.results)

    def stop(self):
        self.done.set()
        for w in self.workers:
            w.join()
        return self.results


def failures(results, method):
    return [(s, b[:200], round(t, 3)) for m, s, b, t, _ in results if m == method and s not in (200, 201)]


class Dropper:
    """An instance that crashes on every call: it accepts a connection,
    reads the request, and closes the connection without an answer."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", stack_test.free_port()))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                conn.recv(65536)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.sock.close()


class BrokenInstanceTest(unittest.TestCase):
    def test_an_instance_that_drops_every_call_is_retried_around_then_ejected(self):
        dropper = Dropper()
        stack = Stack(policies={"access_log": True}, capture_logs=True, log_level="info",
                      extra_users_endpoints=[f"127.0.0.1:{dropper.port}"])
        threads = int(stack.gateway_threads)
        try:
            port = stack.ports["gateway"]

            def metric(name):
                text = call(stack.admin["gateway"], "GET", "/metrics", raw=True)[1]
                return Metrics(text).value(name, service="users")

            # POSTs are never retried: those that went to the dropper before
            # its ejection are clear 503s.
            posts = [call(port, "POST", "/api-gateway/users",
                          {"name": f"P{i}", "email": f"p{i}@example.org"}, stack.as_admin)
                     for i in range(30)]
            for status, body in posts:
                self.assertIn(status, (201, 503), body)
                if status == 503:
                    self.assertEqual(body["message"], "service users is unavailable")
            dropped_posts = sum(1 for st, _ in posts if st == 503)
            self.assertGreater(dropped_posts, 0)
            # Ejection is each gateway worker's own (docs/gateway.md,
            # "Threads"): the workers whose POSTs met the dropper ejected it.
            ejected = metric("rpc_client_ejections_total")
            self.assertIn(ejected, range(1, threads + 1))
            # Once its ejection is over, GETs reach it again, and each one it
            # drops is retried on the other instance.
            until(lambda: metric("rpc_client_endpoints_ejected") == 0, what="the ejection's end")
            statuses = [call(port, "GET", "/api-gateway/users")[0] for _ in range(100)]
            self.assertEqual(statuses, [200] * 100)
            retries = metric("rpc_client_retries_total")
            print(f"\ndropper: {dropper.accepted} connections, {dropped_posts} of 30 POSTs 503, "
                  f"then {retries:.0f} GETs retried", file=sys.stderr)
            self.assertGreater(retries, 0)
            # Ejected again by the workers whose GETs met it again.
            self.assertIn(metric("rpc_client_ejections_total"), range(int(ejected) + 1, 2 * threads + 1))
            self.assertRegex(stack.log("gateway"), r"users \{\"cmd\":\"get_users\"\} ok \d+us retries=1")
        finally:
            stack.close()
            dropper.close()


def scratch_postgres():
    """The URL of ctest's scratch PostgreSQL server, its demo tables dropped."""
    path = os.environ.get("TERN_TEST_PG")
    if not path:
        raise AssertionError("TERN_TEST_PG is not set: run this with ctest, which starts PostgreSQL")
    with open(path) as f:
        url = f.read().strip()
    subprocess.run(["psql", "-q", url, "-c", "DROP TABLE IF EXISTS users; DROP TABLE IF EXISTS products"],
                   check=True, capture_output=True)
    return url


class SharedDatabaseTest(unittest.TestCase):
    def test_two_users_instances_on_one_postgres_each_read_what_the_gateway_created(self):
        stack = Stack(users_replicas=2, database=scratch_postgres())
        try:
            port = stack.ports["gateway"]
            created = []
            for i in range(50):
                status, user = call(port, "POST", "/api-gateway/users",
                                    {"name": f"Shared {i}", "email": f"shared{i}@example.org"}, stack.as_admin)
                self.assertEqual(status, 201, user)
                created.append(user)
            self.assertEqual(len({u["id"] for u in created}), 50)
            # Straight to each instance, on its own port: every one is there, right away.
            for name in ("users", "users2"):
                for user in created:
                    self.assertEqual(tern_call(stack.ports[name], {"cmd": "get_user"}, {"id": user["id"]}), user)
            status, body = call(port, "POST", "/api-gateway/users",
                                {"name": "Again", "email": "shared7@example.org"}, stack.as_admin)
            self.assertEqual(status, 409)  # one UNIQUE index behind both
            # With a database the services write nothing locally (a read-only
            # root file system will do): no data directory was made.
            self.assertEqual([d for d in os.listdir(stack.dir) if d.startswith("data")], [])
        finally:
            stack.close()


class Forwarder:
    """A TCP forwarder from a free 127.0.0.1 port to `target` (host, port),
    listening only once start() is called: a database that comes up late."""

    def __init__(self, target):
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.sock = None
        self.conns = []

    def start(self):
        self.sock = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            self.conns += [a, b]
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self.pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def pump(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        if self.sock:
            self.sock.close()
        for c in self.conns:
            c.close()


class DatabaseLateTest(unittest.TestCase):
    def test_a_service_started_before_its_database_answers_503_then_serves_once_it_is_up(self):
        url = scratch_postgres()  # postgres://tern@127.0.0.1:PORT/tern, its tables dropped
        host_port = url.split("@", 1)[1].split("/", 1)[0]
        forwarder = Forwarder(("127.0.0.1", int(host_port.rsplit(":", 1)[1])))
        stack = None
        try:
            late = url.replace(host_port, f"127.0.0.1:{forwarder.port}") + "?connect_timeout=2"
            stack = Stack(database=late)  # waits for every process to listen
            port = stack.ports["gateway"]
            # Not ready while the database cannot be reached, and each call a 503 at once.
            for name in ("users", "products"):
                self.assertEqual(call(stack.admin[name], "GET", "/health/ready"),
                                 (503, {"status": "not ready"}))
            status, body = call(port, "GET", "/api-gateway/users/1")
            self.assertEqual((status, body.get("message")), (503, "database unavailable"), body)
            forwarder.start()
            # Each service connects on its own, makes the tables, seeds them, and is ready.
            for name in ("users", "products"):
                until(lambda: call(stack.admin[name], "GET", "/health/ready")[0] == 200,
                      what=f"{name} ready")
            status, user = call(port, "GET", "/api-gateway/users/1")
            self.assertEqual((status, user.get("name")), (200, "Ada Lovelace"), user)
            status, product = call(port, "GET", "/api-gateway/products/1")
            self.assertEqual(status, 200, product)
        finally:
            if stack:
                stack.close()
            forwarder.close()


def tern_call(port, pattern, data):
    out = subprocess.run([os.path.join(stack_test.BUILD, "tools", "tern_call"), "--port", str(port),
                          json.dumps(pattern), json.dumps(data)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class BreakerTest(unittest.TestCase):
    def test_a_service_that_stops_answering_opens_the_breaker_503_with_retry_after_then_recovers(self):
        def edit(cfg):
            cfg["upstreams"]["users"]["breaker"] = {"consecutive_failures": 3, "open_ms": 1500}
        stack = Stack(edit=edit, capture_logs=True, log_level="info")
        threads = int(stack.gateway_threads)
        metrics = lambda: Metrics(call(stack.admin["gateway"], "GET", "/metrics", raw=True)[1])
        try:
            port = stack.ports["gateway"]
            self.assertEqual(call(port, "GET", "/api-gateway/users")[0], 200)
            stack.procs["users"].send_signal(signal.SIGSTOP)  # frozen: every call times out
            try:
                # Timeouts open it (the first GET's 504, and the readiness
                # probes', which go through the same client).
                self.assertEqual(call(port, "GET", "/api-gateway/users")[0], 504)
                until(lambda: call(port, "GET", "/api-gateway/users")[0] == 503, what="the breaker open")
                # Each worker's breaker opens on its own probes' timeouts
                # (docs/gateway.md, "Threads"); the state gauge counts them.
                until(lambda: metrics().value("rpc_client_breaker_state", service="users",
                                              state="open") == threads, what="every worker's breaker open")
                started = time.monotonic()
                status, headers, body = call_with_headers(port, "/api-gateway/users")
                took = time.monotonic() - started
            finally:
                stack.procs["users"].send_signal(signal.SIGCONT)
            self.assertEqual(status, 503)
            self.assertEqual(body["message"], "service users is unavailable (circuit breaker open)")
            self.assertIn(headers["retry-after"], ("1", "2"))
            self.assertLess(took, 0.5)  # at once, not after the 1 s timeout
            self.assertEqual(call(port, "GET", "/api-gateway/products")[0], 200)  # others unaffected
            # After open_ms, a trial call goes through and closes it.
            until(lambda: call(port, "GET", "/api-gateway/users")[0] == 200, what="a 200 after the breaker")
            until(lambda: metrics().value("rpc_client_breaker_state", service="users",
                                          state="closed") == threads, what="every worker's breaker closed")
            self.assertEqual(metrics().value("rpc_client_breaker_opened_total", service="users"), threads)
        except Exception:
            print(stack.log("gateway")[-3000:], "gateway exit:", stack.procs["gateway"].poll(), file=sys.stderr)
            raise
        finally:
            stack.close()


def call_with_headers(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
    finally:
        conn.close()


def call(port, method, path, body=None, headers=None, raw=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        h = dict(headers or {})
        if body is not None:
            h["Content-Type"] = "application/json"
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=h)
        r = conn.getresponse()
        data = r.read()
        return r.status, data.decode() if raw else (json.loads(data) if data else None)
    finally:
        conn.close()


class ReplicasTest(unittest.TestCase):
    def setUp(self):
        # Access log on, to see the retries in it; the users upstream with
        # its production defaults (ejection, breaker, retries).
        self.stack = Stack(users_replicas=2, policies={"access_log": True}, capture_logs=True,
                           log_level="info")

    def tearDown(self):
        self.stack.close()

    def scrape(self, name):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin[name], timeout=5)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return Metrics(text)

    def served(self, name):
        m = self.scrape(name)
        return sum(v for _, v in m.matching("rpc_server_requests_total", pattern='{"cmd":"get_users"}'))

    def test_kill_9_one_replica_under_load_gets_retried_then_restart_takes_traffic(self):
        s = self.stack
        load = Load(s)
        until(lambda: load.count() >= 100, what="100 requests")
        s.kill("users2", signal.SIGKILL)
        killed_at = time.monotonic()
        until(lambda: load.count() >= 300, what="300 more requests")
        s.start("users2")
        before = self.served("users2")
        until(lambda: self.served("users2") > before, limit=10, what="the restarted replica serving")
        back_after = time.monotonic() - killed_at
        until(lambda: load.count() >= 700, what="more requests")
        results = load.stop()
        gets = [r for r in results if r[0] == "GET"]
        posts = [r for r in results if r[0] == "POST"]
        print(f"\nkill -9: {len(gets)} GETs, {len(posts)} POSTs; the restarted replica took "
              f"traffic {back_after:.1f} s after the kill; slowest answer "
              f"{max(r[3] for r in results) * 1000:.0f} ms", file=sys.stderr)
        self.assertEqual(failures(results, "GET"), [])
        for status, body, _ in failures(results, "POST"):
            self.assertEqual(status, 503, body)
            self.assertEqual(json.loads(body)["statusCode"], 503)
        self.assertLess(max(r[3] for r in results), 3.0)  # no request hangs

    def test_sigterm_one_replica_under_load_loses_nothing_posts_included(self):
        s = self.stack
        load = Load(s, post_every=4)
        until(lambda: load.count() >= 100, what="100 requests")
        self.assertEqual(s.kill("users2", signal.SIGTERM), 0)
        until(lambda: load.count() >= 400, what="300 more requests")
        results = load.stop()
        self.assertEqual(failures(results, "GET"), [])
        self.assertEqual(failures(results, "POST"), [])
        self.assertGreater(len([r for r in results if r[0] == "POST"]), 50)


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
