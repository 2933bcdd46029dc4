#!/usr/bin/env python3
"""TLS on the real binaries, with the certificates scripts/tls-certs makes
(openssl): HTTPS at the gateway's edge (Python's ssl as the client: ALPN,
protocol floors, resumption, a plain request at the TLS port), mutual TLS
between the gateway and the services (and a foreign TLS client at a
service, with and without a certificate), certificate reloads by
POST /admin/tls/reload and SIGHUP (a garbage file refused, the old pair
serving on), stalled handshakes cut off, and the TLS metrics.
Usage: tls_test.py BUILD_DIR [unittest args]"""

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack_test  # noqa: E402
from hostile_test import frame, mp, read_reply  # noqa: E402
from stack_test import ROOT, Stack, until  # noqa: E402

CERTS = None  # scripts/tls-certs' directory, made once for the module


def make_certs(into):
    subprocess.run([os.path.join(ROOT, "scripts", "tls-certs"), into], check=True)


def tls_args(name):
    """Every process's flags for the demo's TLS set-up (scripts/demo --tls)."""
    c = lambda f: os.path.join(CERTS, f)  # noqa: E731
    if name == "gateway":
        return ["--tls-cert", c("gateway.pem"), "--tls-key", c("gateway.key"),
                "--upstream-tls-ca", c("ca.pem"), "--upstream-tls-cert", c("gateway.pem"),
                "--upstream-tls-key", c("gateway.key")]
    return ["--tls-cert", c(f"{name}.pem"), "--tls-key", c(f"{name}.key"),
            "--tls-ca", c("ca.pem"), "--tls-require-client-cert"]


def client_context(cert=None, alpn=None, maximum=None):
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(CERTS, cert + ".pem"), os.path.join(CERTS, cert + ".key"))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if maximum:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        with warnings.catch_warnings():  # (that they are deprecated is the point)
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.maximum_version = maximum
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        global CERTS
        cls.dir = tempfile.mkdtemp(prefix="tern-tls-")
        CERTS = os.path.join(cls.dir, "tls")
        make_certs(CERTS)
        cls.stack = Stack(capture_logs=True, log_level="info", extra_args=tls_args)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def https(self, method, path, body=None, headers=None, context=None):
        conn = http.client.HTTPSConnection("localhost", self.stack.ports["gateway"], timeout=10,
                                           context=context or client_context())
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, json.loads(data) if data else None
        finally:
            conn.close()

    def tls_socket(self, port, context, name="localhost"):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return context.wrap_socket(raw, server_hostname=name)

    def test_https_at_the_edge_and_mutual_tls_to_the_services(self):
        status, body = self.https("GET", "/api-gateway/dashboard")
        self.assertEqual(status, 200)
        self.assertEqual((len(body["users"]), len(body["products"])), (3, 3))
        # A write, and the event users_service sends itself over its own TLS port.
        status, user = self.https("POST", "/api-gateway/users",
                                  {"name": "Whitfield", "email": "wd@example.org"},
                                  self.stack.as_admin)
        self.assertEqual(status, 201)
        self.assertEqual(self.https("GET", f"/api-gateway/users/{user['id']}"), (200, user))
        until(lambda: self.stack.metrics("users").value(
            "rpc_server_events_total", pattern="user_created", outcome="ok") >= 1,
            what="user_created handled")

    def test_plain_http_at_the_https_port_is_told_so(self):
        got = self.stack.raw(b"GET /api-gateway/users HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), got[:100])
        self.assertIn(b"This port speaks HTTPS", got)

    def test_alpn_protocol_floor_and_resumption(self):
        port = self.stack.ports["gateway"]
        with self.tls_socket(port, client_context(alpn=["h2", "http/1.1"])) as s:
            self.assertEqual(s.selected_alpn_protocol(), "http/1.1")
            self.assertEqual(s.version(), "TLSv1.3")
        # Only HTTP/2 offered: refused in the handshake (no silent fallback).
        with self.assertRaises(ssl.SSLError):
            self.tls_socket(port, client_context(alpn=["h2"])).close()
        # TLS 1.1 and 1.0 are refused.
        for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            with self.assertRaises(ssl.SSLError):
                self.tls_socket(port, client_context(maximum=old)).close()
        # A second connection resumes the first one's session (TLS 1.3
        # tickets arrive after the handshake: a request fetches them).
        ctx = client_context()
        with self.tls_socket(port, ctx) as s:
            s.sendall(b"GET /api-gateway/users/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertIn(b"200 OK", s.recv(65536))
            session = s.session
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            self.assertTrue(s.session_reused)

    def test_a_service_refuses_callers_without_a_certificate_from_its_ca(self):
        port = self.stack.ports["users"]
        ping = frame(mp({"id": 7, "pattern": {"cmd": "get_user"}, "data": {"id": 1}}))
        # The gateway's certificate: let in, answered.
        with self.tls_socket(port, client_context(cert="gateway"), "127.0.0.1") as s:
            s.sendall(ping)
            self.assertIn(b"Ada Lovelace", read_reply(s))
        # None: TLS 1.3 finishes the client's side, then the service's alert.
        with self.tls_socket(port, client_context(), "127.0.0.1") as s:
            with self.assertRaises((ssl.SSLError, ConnectionError)) as refused:
                s.sendall(ping)
                read_reply(s)
            self.assertIn("CERTIFICATE_REQUIRED", str(refused.exception).upper().replace(" ", "_"))
        # Plaintext at the service's TLS port: closed, nothing answered.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(ping)
            self.assertEqual(s.recv(100), b"")

    def reload_by_admin(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin["gateway"], timeout=10)
        try:
            conn.request("POST", "/admin/tls/reload")
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def served_serial(self):
        with self.tls_socket(self.stack.ports["gateway"], client_context()) as s:
            der = s.getpeercert(binary_form=True)
        out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                             capture_output=True, check=True)
        return out.stdout.strip()

    def test_reload_takes_new_files_and_refuses_garbage(self):
        before = self.served_serial()
        key = os.path.join(CERTS, "gateway.key")
        with open(key, "rb") as f:
            saved = f.read()
        # A key replaced with garbage: refused, said why; the old pair serves on.
        with open(key, "wb") as f:
            f.write(b"not a key\n")
        try:
            status, body = self.reload_by_admin()
            self.assertEqual(status, 500)
            self.assertEqual(body["status"], "refused")
            self.assertIn("gateway.key", body["reason"])
            self.assertEqual(self.served_serial(), before)
            self.assertEqual(self.https("GET", "/api-gateway/users/1")[0], 200)
        finally:
            with open(key, "wb") as f:
                f.write(saved)
        # New files (a new certificate for the gateway), by the admin port...
        for f in ("gateway.pem", "gateway.key"):
            os.remove(os.path.join(CERTS, f))
        make_certs(CERTS)
        self.assertEqual(self.reload_by_admin(), (200, {"status": "reloaded"}))
        after = self.served_serial()
        self.assertNotEqual(after, before)
        # ... and by SIGHUP.
        for f in ("gateway.pem", "gateway.key"):
            os.remove(os.path.join(CERTS, f))
        make_certs(CERTS)
        self.stack.procs["gateway"].send_signal(signal.SIGHUP)
        until(lambda: self.served_serial() != after, what="the SIGHUP's new certificate served")
        self.assertEqual(self.https("GET", "/api-gateway/dashboard")[0], 200)
        # The reload route is the admin port's alone.
        self.assertEqual(self.https("POST", "/admin/tls/reload")[0], 404)

    def test_stalled_handshakes_are_cut_off_and_others_served(self):
        port = self.stack.ports["gateway"]
        failed_before = self.stack.metrics("gateway").value("tls_handshakes_total", result="failed") or 0
        stalled = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"\x16\x03\x01")  # a record header, then nothing
            stalled.append(s)
        try:
            self.assertEqual(self.https("GET", "/api-gateway/users/1")[0], 200)
            # Each is closed at read_timeout (500 ms in this stack).
            began = time.monotonic()
            for s in stalled:
                self.assertEqual(s.recv(10), b"")
            self.assertLess(time.monotonic() - began, 8)
        finally:
            for s in stalled:
                s.close()
        m = self.stack.metrics("gateway")
        self.assertGreaterEqual(m.value("tls_handshakes_total", result="failed"), failed_before + 200)
        self.assertGreater(m.value("tls_handshakes_total", result="ok"), 0)
        # The expiry gauge is the served certificate's notAfter.
        with self.tls_socket(port, client_context()) as s:
            not_after = ssl.cert_time_to_seconds(s.getpeercert()["notAfter"])
        self.assertEqual(m.value("tls_certificate_expiry_seconds"), not_after)


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
