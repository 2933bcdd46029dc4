#!/usr/bin/env python3
"""Hostile input against the real demo stack (users, products, gateway
binaries on loopback): each attack gets a clear error, costs only its
sender, and the stack keeps serving everyone else.
Usage: hostile_test.py BUILD_DIR [unittest args]"""

import http.client
import json
import os
import socket
import struct
import sys
import threading
import unittest

import stack_test
from stack_test import Metrics, until
from stack_test import Stack


def mp(v):
    """A minimal msgpack encoder: dict, list, str, bytes (as str bytes), int, bool, None."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v <= 0x7F:
            return bytes([v])
        if 0 <= v <= 0xFFFFFFFF:
            return b"\xce" + struct.pack(">I", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):  # a msgpack str holding these bytes, valid UTF-8 or not
        if len(v) <= 31:
            return bytes([0xA0 | len(v)]) + v
        return b"\xdb" + struct.pack(">I", len(v)) + v
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        return b"\xdf" + struct.pack(">I", len(v)) + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def frame(body):
    return struct.pack(">I", len(body)) + body


def read_exact(s, n):
    out = b""
    while len(out) < n:
        c = s.recv(n - len(out))
        if not c:
            raise ConnectionError("closed")
        out += c
    return out


def read_reply(s):
    """The reply frame's raw body (tests look for byte strings in it)."""
    (n,) = struct.unpack(">I", read_exact(s, 4))
    return read_exact(s, n)


class HostileTest(unittest.TestCase):
    def setUp(self):
        self.stack = Stack()

    def tearDown(self):
        self.stack.close()

    def service(self, name):
        s = socket.create_connection(("127.0.0.1", self.stack.ports[name]), timeout=5)
        self.addCleanup(s.close)
        return s

    def test_a_body_nested_100000_deep_gets_400_and_the_gateway_lives(self):
        s = self.stack
        body = "[" * 100000 + "]" * 100000  # 200 KB, under the 1 MiB body limit
        status, err = s.request("POST", "/api-gateway/users", body,
                                {**s.as_admin, "Content-Type": "application/json"})
        self.assertEqual(status, 400)
        self.assertEqual(err["message"], "the JSON body nests deeper than 64 levels")
        self.assertEqual(s.request("GET", "/api-gateway/users")[0], 200)

    def test_deep_bodies_cost_only_their_sender(self):
        """An attacker's deep bodies (63 to 100 levels) while others read: every
        attack gets a 4xx, every bystander request a 200."""
        s = self.stack
        failures = []

        def bystander():
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", s.ports["gateway"], timeout=10)
            for _ in range(300):
                conn.request("GET", "/api-gateway/dashboard")
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    failures.append(r.status)
            conn.close()

        threads = [threading.Thread(target=bystander) for _ in range(2)]
        for t in threads:
            t.start()
        statuses = set()
        for levels in range(60, 101):
            body = '{"name":' + "[" * levels + "]" * levels + ',"email":"a@b.co"}'
            statuses.add(s.request("POST", "/api-gateway/users", body, s.as_admin)[0])
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        self.assertEqual(statuses, {400})

    def test_ids_that_fit_64_bits_are_integers(self):
        s = self.stack
        self.assertEqual(s.request("GET", "/api-gateway/users/9223372036854775807"),
                         (404, {"statusCode": 404, "message": "user 9223372036854775807 not found",
                                "error": "Not Found"}))
        status, err = s.request("GET", "/api-gateway/users/18446744073709551615")
        self.assertEqual((status, err["message"]),
                         (400, "id: expected an integer of at most 9223372036854775807, "
                               "got 18446744073709551615"))
        status, err = s.request("GET", "/api-gateway/users/99999999999999999999")
        self.assertEqual((status, err["message"]), (400, "id: expected an integer, got a string"))

    def test_text_that_is_not_utf8_is_refused_and_json_out_stays_valid(self):
        s = self.stack
        # Through the gateway: the body is not JSON (JSON text is UTF-8).
        status, err = s.request("POST", "/api-gateway/users",
                                b'{"name":"\xff\xfe","email":"x@y.co"}', s.as_admin)
        self.assertEqual((status, err["message"]), (400, "malformed JSON body"))
        # Straight to the service's port: refused, naming the field.
        sock = self.service("users")
        sock.sendall(frame(mp({"id": 1, "pattern": {"cmd": "create_user"},
                               "data": {"name": b"Mall\xffory", "email": "m@x.co"},
                               "meta": {"identity": {"sub": "t", "roles": ["admin"]}}})))
        reply = read_reply(sock)
        self.assertIn(b"name: must be valid UTF-8 text", reply)
        # Nothing was stored; what the gateway serves parses as strict JSON.
        conn_status, users = s.request("GET", "/api-gateway/users")
        self.assertEqual(conn_status, 200)
        self.assertEqual(len(users), 3)

    def test_a_deep_pattern_string_and_bad_frames_do_not_stop_a_service(self):
        s = self.stack
        sock = self.service("users")
        deep = '{"a":' + "[" * 100000 + "]" * 100000 + "}"
        sock.sendall(frame(mp({"id": 1, "pattern": deep, "data": None})))
        self.assertIn(b"There is no matching message handler", read_reply(sock))
        # A request nested past the limit: answered for its id, connection kept.
        deep_data = b"\x91" * 100 + b"\xc0"
        body = b"\x83" + mp("id") + mp(2) + mp("pattern") + mp({"cmd": "get_users"}) + mp("data") + deep_data
        sock.sendall(frame(body))
        self.assertIn(b"malformed request", read_reply(sock))
        sock.sendall(frame(mp({"id": 3, "pattern": {"cmd": "health"}, "data": None})))
        self.assertIn(b"ok", read_reply(sock))
        # Announced lengths, garbage: each such connection is cut off alone.
        for junk in (b"\x00\xff\xff\xff", b"\xff\xff\xff\xff", b"GET / HTTP/1.1\r\n\r\n"):
            self.service("users").sendall(junk)
        self.assertEqual(s.request("GET", "/api-gateway/dashboard")[0], 200)


def still_open(sock, wait):
    """True if nothing arrives on `sock` within `wait` seconds (the server
    kept it); False once the server has closed it (an end of stream)."""
    sock.settimeout(wait)
    try:
        return sock.recv(1) != b""
    except socket.timeout:
        return True
    except ConnectionError:
        return False


def sanitized():
    """Whether the build under test runs under ASan or TSan."""
    with open(os.path.join(stack_test.BUILD, "CMakeCache.txt")) as f:
        cache = f.read()
    return any(f"{flag}:BOOL=ON" in cache for flag in ("TERN_SANITIZE", "TERN_TSAN"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def gauge(stack, name):
    """The gateway's metric `name`, summed over its workers."""
    status, body = admin_get(stack.admin["gateway"], "/metrics")
    assert status == 200, status
    return sum(v for _, v in Metrics(body.decode()).matching(name))


def admin_get(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class HoldingTest(unittest.TestCase):
    """Peers that connect and hold connections without using them: the
    public and admin ports stay open to everyone else."""

    def connections(self, port, n, first=b""):
        out = []
        for _ in range(n):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            self.addCleanup(c.close)
            if first:
                c.sendall(first)
            out.append(c)
        return out

    def test_idle_connections_make_room_for_new_clients_oldest_first(self):
        def edit(cfg):
            cfg["server"].update(max_connections=40, idle_timeout_ms=60000, read_timeout_ms=60000)
        stack = Stack(edit=edit, gateway_threads=1)
        self.addCleanup(stack.close)
        port = stack.ports["gateway"]
        # Keep-alive clients that made a request and stay connected ...
        kept = []
        for _ in range(10):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            self.addCleanup(conn.close)
            conn.request("GET", "/api-gateway/users/1")
            r = conn.getresponse()
            self.assertEqual((r.status, json.loads(r.read())["id"]), (200, 1))
            kept.append(conn)
        # ... and 30 that never send a byte: the limit is reached.
        silent = self.connections(port, 30)
        until(lambda: gauge(stack, "http_server_open_connections") == 40, what="40 connections open")
        # Each new client (which stays connected too) is served, in place of
        # the silent connection held longest; the keep-alive ones go only
        # when no silent one is left, the oldest first.
        for i in range(35):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            self.addCleanup(conn.close)
            conn.request("GET", "/api-gateway/users/1")
            r = conn.getresponse()
            self.assertEqual((r.status, json.loads(r.read())["id"]), (200, 1), f"client {i}")
        for i, c in enumerate(silent):
            self.assertFalse(still_open(c, 2), f"silent connection {i} is still open")
        closed = [not still_open(conn.sock, 0.5) for conn in kept]
        self.assertEqual(closed, [True] * 5 + [False] * 5)
        self.assertEqual(gauge(stack, "gateway_worker_connections_reclaimed_total"), 35)

    def test_a_silent_connection_holds_no_read_buffer(self):
        def edit(cfg):
            cfg["server"].update(idle_timeout_ms=60000, read_timeout_ms=60000)
        stack = Stack(edit=edit, gateway_threads=1)
        self.addCleanup(stack.close)
        pid = stack.procs["gateway"].pid
        n = 2000
        before = rss_kib(pid)
        held = self.connections(stack.ports["gateway"], n)
        until(lambda: gauge(stack, "http_server_open_connections") == n, what=f"{n} connections open")
        silent = rss_kib(pid)
        # Then a request on each: now each connection takes its read buffer
        # (a page of it touched, at least, whatever the allocator).
        asked = gauge(stack, "http_server_requests_total")
        for c in held:
            c.sendall(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
        until(lambda: gauge(stack, "http_server_requests_total") >= asked + n, what=f"{n} requests")
        used = rss_kib(pid)
        idle_cost, buffer_cost = (silent - before) / n, (used - silent) / n
        print(f"{idle_cost:.1f} KiB per silent connection, {buffer_cost:.1f} KiB more once it"
              " has sent a request", file=sys.stderr)
        self.assertGreaterEqual(buffer_cost, 3, "the buffers were there before the first byte")
        # The coroutine frame and the request's fields: a sanitizer's redzones
        # and shadow memory multiply them (ASan: 10 to 16 KiB), so the bound
        # is checked on the build users run.
        if not sanitized():
            self.assertLess(idle_cost, 8)
        self.assertEqual(stack.request("GET", "/api-gateway/users/1")[0], 200)

    def test_admin_ports_answer_while_idle_peers_fill_their_budget(self):
        stack = Stack()
        self.addCleanup(stack.close)
        # The gateway's admin port allows 256 connections, a service's 64:
        # twice as many silent peers, and keep-alive ones that made a request.
        for name, budget in (("gateway", 256), ("users", 64)):
            port = stack.admin[name]
            self.connections(port, budget)
            self.connections(port, budget, first=b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            for path in ("/health/live", "/health/ready", "/metrics"):
                status, _ = admin_get(port, path)
                self.assertEqual(status, 200, f"{name} {path}")

    def test_client_text_reaches_the_logs_escaped(self):
        stack = Stack(log_level="info", capture_logs=True)
        self.addCleanup(stack.close)
        # The demo's email rule refuses control characters and separators.
        for bad in ("a\x1b[2J@example.org", "a@exa\u0085mple.org", "a\u2028b@example.org",
                    "a@example.org\u2029", "a\x7f@example.org", "a\x00@example.org"):
            status, body = stack.request("POST", "/api-gateway/users", {"name": "X", "email": bad},
                                         stack.as_admin)
            self.assertEqual(status, 400, bad)
            self.assertIn("email", body["message"], bad)
        # Any peer on the service's port can send it user_created itself.
        forged = "x@y.z\n[2026-12-07 00:00:00.000] [critical] forged\x1b[2J\u2028"
        sock = socket.create_connection(("127.0.0.1", stack.ports["users"]), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(frame(mp({"pattern": "user_created",
                               "data": {"id": 77, "name": "n", "email": forged}})))
        until(lambda: "user 77 created" in stack.log("users"), what="the event's log line")
        log = stack.log("users")
        line = next(l for l in log.splitlines() if "user 77 created" in l)
        self.assertIn("(x@y.z\\x0a[2026-12-07 00:00:00.000] [critical] forged\\x1b[2J\\xe2\\x80\\xa8)",
                      line)
        self.assertNotIn("\x1b", log)
        self.assertNotIn("\u2028", log)
        self.assertFalse(any(l.startswith("[2026-12-07 00:00:00.000]") for l in log.splitlines()))


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
