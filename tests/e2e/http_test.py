#!/usr/bin/env python3
"""End-to-end HTTP conformance and graceful drain of the gateway, over raw
sockets to the real binaries (the Stack of stack_test.py).
Usage: http_test.py BUILD_DIR [unittest args]"""

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
from stack_test import Stack, until  # noqa: E402


class Closed(Exception):
    """The server closed (or reset) the connection; `partial` is what had arrived of the response."""

    def __init__(self, partial):
        super().__init__(f"closed after {len(partial)} bytes of a response")
        self.partial = partial


def read_response(sock, buf=b"", head=False):
    """One response from sock: (status, headers, body, bytes after it). A HEAD
    response (head=True) has a Content-Length but no body. Raises Closed."""
    try:
        while b"\r\n\r\n" not in buf:
            c = sock.recv(65536)
            if not c:
                raise Closed(buf)
            buf += c
        top, _, rest = buf.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        if not lines[0].startswith("HTTP/1.1 "):
            raise AssertionError(f"not an HTTP/1.1 status line: {lines[0]!r}")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        length = 0 if head else int(headers.get("content-length", "0"))
        while len(rest) < length:
            c = sock.recv(65536)
            if not c:
                raise Closed(top + rest)
            rest += c
        return status, headers, rest[:length], rest[length:]
    except (ConnectionResetError, BrokenPipeError) as e:
        raise Closed(buf) from e


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def admin_post(stack, extra=b""):
    """The start of a POST /api-gateway/users with the admin's token."""
    return (b"POST /api-gateway/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s"
            % (stack.admin_token.encode(), extra))


def chunked_post(stack):
    return admin_post(stack, b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")


class HttpTest(unittest.TestCase):
    """The conformance fixes, through the whole gateway."""

    def setUp(self):
        self.stack = Stack()

    def tearDown(self):
        self.stack.close()

    def one(self, request):
        """Sends one request on a new connection; returns (status, headers, body)."""
        with connect(self.stack.ports["gateway"]) as s:
            s.sendall(request)
            status, headers, body, _ = read_response(s)
            return status, headers, body

    def test_chunk_data_must_end_where_its_size_says(self):
        status, headers, _ = self.one(chunked_post(self.stack) + b"3\r\nabcdef\r\n0\r\n\r\n")
        self.assertEqual((status, headers["connection"]), (400, "close"))

    def test_a_chunked_body_with_extensions_and_trailers_is_read(self):
        body = b'{"name": "Chunky", "email": "chunky@example.org"}'
        chunks = b"%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n" % (
            10, body[:10], len(body) - 10, body[10:])
        status, _, reply = self.one(chunked_post(self.stack) + chunks)
        self.assertEqual(status, 201)
        self.assertEqual(json.loads(reply)["name"], "Chunky")

    def test_host_is_required_once_in_http_1_1(self):
        self.assertEqual(self.one(b"GET /api-gateway/users HTTP/1.1\r\n\r\n")[0], 400)
        self.assertEqual(self.one(b"GET /api-gateway/users HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n")[0], 400)
        status, headers, _ = self.one(b"GET /api-gateway/users HTTP/1.0\r\n\r\n")
        self.assertEqual((status, headers["connection"]), (200, "close"))

    def test_an_absolute_form_target_is_routed_by_path_and_query(self):
        status, _, body = self.one(
            b"GET http://example.com/api-gateway/users?limit=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
        self.assertEqual(status, 200)
        self.assertEqual([u["id"] for u in json.loads(body)], [1])
        self.assertEqual(self.one(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")[0], 404)

    def test_expect_100_continue(self):
        body = b'{"name": "Patient", "email": "patient@example.org"}'
        with connect(self.stack.ports["gateway"]) as s:
            s.sendall(admin_post(self.stack, b"Expect: 100-continue\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(body)))
            status, headers, interim, rest = read_response(s)
            self.assertEqual((status, headers, interim, rest), (100, {}, b"", b""))
            s.sendall(body)
            status, _, reply, _ = read_response(s)
            self.assertEqual(status, 201)
            self.assertEqual(json.loads(reply)["name"], "Patient")
        status, headers, _ = self.one(b"POST /api-gateway/users HTTP/1.1\r\nHost: x\r\n"
                                      b"Expect: 100-continue\r\nContent-Length: 2000000\r\n\r\n")
        self.assertEqual((status, headers["connection"]), (413, "close"))
        self.assertEqual(self.one(b"GET /health HTTP/1.1\r\nHost: x\r\nExpect: tea\r\n\r\n")[0], 417)

    def test_head_leaves_the_keep_alive_connection_in_sync(self):
        with connect(self.stack.ports["gateway"]) as s:
            s.sendall(b"HEAD /api-gateway/users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, _, rest = read_response(s, head=True)
            self.assertIn(status, (200, 404))  # 404 while HEAD matches no GET route
            self.assertGreater(int(headers["content-length"]), 0)
            self.assertEqual(headers["connection"], "keep-alive")
            s.sendall(b"GET /api-gateway/users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            status, _, body, _ = read_response(s, rest)  # a HEAD body would come first here
            self.assertEqual((status, json.loads(body)["id"]), (200, 1))

    def test_framing_that_could_be_read_two_ways_is_refused(self):
        cases = [
            (b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", 400),
            (b"Transfer-Encoding: gzip, chunked\r\n", 501),
            (b"Content-Length: 3, 4\r\n", 400),
            (b"Content-Length: +3\r\n", 400),
            (b"Content-Length : 3\r\n", 400),
            (b"X-Folded: a\r\n b\r\n", 400),
        ]
        for fields, want in cases:
            status, headers, _ = self.one(b"POST /api-gateway/users HTTP/1.1\r\nHost: x\r\n" + fields +
                                          b"\r\nabc")
            self.assertEqual((fields, status, headers["connection"]), (fields, want, "close"))
        self.assertEqual(self.one(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")[0], 505)


class DrainStack(Stack):
    drain_ms = 3000

    def command(self, name):
        cmd = super().command(name)
        if name == "gateway":
            cmd += ["--drain-timeout-ms", str(self.drain_ms)]
        return cmd


class DrainTest(unittest.TestCase):
    def setUp(self):
        self.stack = DrainStack()

    def tearDown(self):
        self.stack.close()

    def test_sigterm_answers_every_request_sent_before_it_and_exits_0(self):
        port = self.stack.ports["gateway"]
        request = b"GET /api-gateway/dashboard HTTP/1.1\r\nHost: x\r\n\r\n"
        lock = threading.Condition()
        signalled_at = [None]  # monotonic time just before the SIGTERM
        stats = {"ok": 0, "ok_close": 0, "dropped_after": 0, "refused_after": 0}
        failures = []

        def client():
            deadline = time.monotonic() + 30
            sock = None
            buf = b""
            try:
                while time.monotonic() < deadline:
                    if sock is None:
                        try:
                            sock = connect(port)
                        except OSError:
                            with lock:
                                if signalled_at[0] is None:
                                    failures.append("connect refused before the signal")
                                else:
                                    stats["refused_after"] += 1
                            return
                        buf = b""
                    try:
                        sock.sendall(request)
                    except OSError:
                        sent_at = None  # not fully written: not a request the server has
                    else:
                        sent_at = time.monotonic()
                    try:
                        status, headers, body, buf = read_response(sock, buf)
                    except Closed as e:
                        with lock:
                            # Closed before the signal, or without answering a
                            # request written before it: a request lost.
                            lost = signalled_at[0] is None or (sent_at is not None and
                                                               sent_at < signalled_at[0])
                            if e.partial:
                                failures.append(f"incomplete response: {e.partial[:80]!r}")
                            elif lost:
                                failures.append(f"connection closed without an answer (sent at {sent_at}, "
                                                f"signal at {signalled_at[0]})")
                            else:
                                stats["dropped_after"] += 1
                        return
                    with lock:
                        if status != 200 or set(json.loads(body)) != {"users", "products"}:
                            failures.append(f"bad response {status}: {body[:80]!r}")
                            return
                        stats["ok"] += 1
                        lock.notify_all()
                        if headers.get("connection") == "close":
                            stats["ok_close"] += 1
                    if headers.get("connection") == "close":
                        sock.close()
                        sock = None
                with lock:
                    failures.append("the load outlived its 30 s deadline")
            finally:
                if sock is not None:
                    sock.close()

        threads = [threading.Thread(target=client) for _ in range(4)]
        load_started = time.monotonic()
        for t in threads:
            t.start()
        with lock:  # about 1 s of steady load
            self.assertTrue(lock.wait_for(lambda: stats["ok"] >= 5000 or failures, timeout=20),
                            f"load did not get going: {stats}")
            signalled_at[0] = time.monotonic()
        gateway = self.stack.procs.pop("gateway")
        gateway.send_signal(signal.SIGTERM)
        deadline = signalled_at[0] + DrainStack.drain_ms / 1000 + 2
        try:
            gateway.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass  # checked below
        exited_after = time.monotonic() - signalled_at[0]
        for t in threads:
            t.join(timeout=15)
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()
            self.fail(f"the gateway did not exit within {DrainStack.drain_ms} ms of SIGTERM")
        print(f"\ndrain: {stats}; SIGTERM after {(signalled_at[0] - load_started) * 1000:.0f} ms of load, "
              f"exit {exited_after * 1000:.0f} ms after it", file=sys.stderr)
        self.assertEqual(gateway.returncode, 0)
        self.assertLess(exited_after, DrainStack.drain_ms / 1000)
        self.assertEqual(failures, [])
        self.assertGreaterEqual(stats["ok"], 5000)
        self.assertFalse(any(t.is_alive() for t in threads))


def unread_bytes_at(port):
    """Whether an established loopback connection to `port` holds unread bytes."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if int(local.split(":")[1], 16) == port and state == "01":
                if int(queues.split(":")[1], 16) > 0:
                    return True
    return False


class ShortDrainStack(DrainStack):
    drain_ms = 300


class FrozenServiceTest(unittest.TestCase):
    """A stack whose users service the test freezes (SIGSTOP) under a call."""

    def tearDown(self):
        users = self.stack.procs.get("users")
        if users:
            users.send_signal(signal.SIGCONT)
        self.stack.close()

    def hang_a_call(self):
        """Freezes users and sends GET /api-gateway/users on a raw
        connection, which the test then owns: its call hangs."""
        s = self.stack
        self.assertEqual(s.request("GET", "/api-gateway/users")[0], 200)  # connected
        s.procs["users"].send_signal(signal.SIGSTOP)
        client = socket.create_connection(("127.0.0.1", s.ports["gateway"]))
        self.addCleanup(client.close)
        client.sendall(b"GET /api-gateway/users HTTP/1.1\r\nHost: x\r\n\r\n")
        return client


class DrainBoundTest(FrozenServiceTest):
    def setUp(self):
        self.stack = ShortDrainStack()

    def test_a_call_to_a_frozen_service_does_not_hold_the_exit(self):
        """The users service is stopped (SIGSTOP) with a call to it in flight:
        the drain's bound passes, the call is ended, and the gateway exits 0."""
        s = self.stack
        self.hang_a_call()
        # Wait until the gateway's call sits unread in the frozen service's socket.
        until(lambda: unread_bytes_at(s.ports["users"]), limit=5, what="the call reaching the service")
        gateway = s.procs.pop("gateway")
        gateway.send_signal(signal.SIGTERM)
        self.assertEqual(gateway.wait(timeout=5), 0)


class SecondSignalTest(FrozenServiceTest):
    def setUp(self):
        def edit(cfg):  # the call must still be pending when the second signal comes
            cfg["upstreams"]["users"]["timeout_ms"] = 30000
        self.stack = DrainStack(edit=edit)

    def test_a_second_signal_ends_the_drain_at_once_and_the_gateway_exits_0(self):
        """A call hangs on a frozen service; the first SIGTERM starts a 3 s
        drain, the second ends it: the handler is cancelled and joined,
        the client's connection closed unanswered, and the gateway exits 0
        well before the drain's bound."""
        s = self.stack
        client = self.hang_a_call()
        until(lambda: s.metrics("gateway").value("http_server_active_requests") >= 1, limit=5,
              what="the request in its handler")
        gateway = s.procs.pop("gateway")
        self.addCleanup(lambda: gateway.poll() is None and gateway.kill())
        gateway.send_signal(signal.SIGTERM)

        def draining():
            conn = http.client.HTTPConnection("127.0.0.1", s.admin["gateway"], timeout=5)
            try:
                conn.request("GET", "/health/ready")
                return json.loads(conn.getresponse().read())["status"] == "draining"
            finally:
                conn.close()
        until(draining, limit=5, what="the drain begun")
        signalled = time.monotonic()
        gateway.send_signal(signal.SIGTERM)
        self.assertEqual(gateway.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - signalled, DrainStack.drain_ms / 1000 / 2)
        client.settimeout(5)
        self.assertEqual(client.recv(100), b"")  # closed, not answered: the stop was asked for


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
