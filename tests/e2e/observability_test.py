#!/usr/bin/env python3
"""Observability of the real demo stack: Prometheus metrics (parsed with the
official client's parser), health endpoints, request ids, trace context and
the access log, through the users, products and gateway binaries.
Usage: observability_test.py BUILD_DIR [unittest args]"""

import http.client
import json
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack_test  # noqa: E402
from stack_test import Metrics, Stack, until  # noqa: E402

HEX32 = re.compile(r"^[0-9a-f]{32}$")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def get(port, path, headers=None):
    """(status, headers as a lower-cased dict, body bytes) of one GET."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(log_level="debug", policies={"access_log": True}, capture_logs=True)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def scrape(self, name):
        status, headers, body = get(self.stack.admin[name], "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        return Metrics(body.decode())

    def test_metrics_parse_and_name_the_documented_families(self):
        gateway = self.scrape("gateway")
        for family in ("http_server_requests", "http_server_request_duration_seconds",
                       "http_server_active_requests", "http_server_open_connections",
                       "rpc_client_requests", "rpc_client_request_duration_seconds",
                       "rpc_client_connections", "process_resident_memory_bytes",
                       "process_cpu_seconds", "process_open_fds", "process_start_time_seconds"):
            self.assertIn(family, sorted(gateway.families))
        users = self.scrape("users")
        for family in ("rpc_server_requests", "rpc_server_request_duration_seconds",
                       "rpc_server_active_requests", "rpc_server_connections", "rpc_server_events",
                       "tern_offload_queue_depth", "tern_offload_busy_workers",
                       "process_resident_memory_bytes"):
            self.assertIn(family, sorted(users.families))
        self.assertGreater(users.value("process_resident_memory_bytes"), 1e6)
        self.assertGreater(gateway.value("process_start_time_seconds"), time.time() - 3600)
        # Each of the gateway's workers holds one connection to each upstream
        # (its probes make and keep it: waited for, since each worker's first
        # probe may still be connecting right after the start).
        for service in ("users", "products"):
            self.stack.wait_connected(service)
            self.assertEqual(self.scrape("gateway").value("rpc_client_connections", service=service,
                                                          state="disconnected"), 0)

    def test_counters_move_by_exactly_the_requests_made(self):
        n = 7
        route, pattern = "/api-gateway/users/:id", '{"cmd":"get_user"}'
        before_gw, before_users = self.scrape("gateway"), self.scrape("users")
        for i in range(n):
            self.assertEqual(get(self.stack.ports["gateway"], f"/api-gateway/users/{1 + i % 2}")[0], 200)
        after_gw, after_users = self.scrape("gateway"), self.scrape("users")

        def moved(before, after, name, **labels):
            return after.value(name, **labels) - before.value(name, **labels)

        self.assertEqual(moved(before_gw, after_gw, "http_server_requests_total",
                               route=route, method="GET", status="200"), n)
        self.assertEqual(moved(before_gw, after_gw, "http_server_request_duration_seconds_count",
                               route=route), n)
        self.assertEqual(moved(before_gw, after_gw, "rpc_client_requests_total",
                               service="users", pattern=pattern, outcome="ok"), n)
        self.assertEqual(moved(before_gw, after_gw, "rpc_client_request_duration_seconds_count",
                               service="users", pattern=pattern), n)
        self.assertEqual(moved(before_users, after_users, "rpc_server_requests_total",
                               pattern=pattern, outcome="ok"), n)
        self.assertEqual(moved(before_users, after_users, "rpc_server_request_duration_seconds_count",
                               pattern=pattern), n)

    def test_a_failing_call_moves_its_error_outcome(self):
        before_gw, before_users = self.scrape("gateway"), self.scrape("users")
        self.assertEqual(get(self.stack.ports["gateway"], "/api-gateway/users/999")[0], 404)
        after_gw, after_users = self.scrape("gateway"), self.scrape("users")
        labels = dict(service="users", pattern='{"cmd":"get_user"}')
        self.assertEqual(after_gw.value("rpc_client_requests_total", outcome="remote", **labels) -
                         before_gw.value("rpc_client_requests_total", outcome="remote", **labels), 1)
        self.assertEqual(after_gw.value("rpc_client_requests_total", outcome="ok", **labels),
                         before_gw.value("rpc_client_requests_total", outcome="ok", **labels))
        self.assertEqual(after_gw.value("http_server_requests_total", route="/api-gateway/users/:id",
                                        method="GET", status="404") -
                         before_gw.value("http_server_requests_total", route="/api-gateway/users/:id",
                                         method="GET", status="404"), 1)
        server = dict(pattern='{"cmd":"get_user"}', outcome="remote")
        self.assertEqual(after_users.value("rpc_server_requests_total", **server) -
                         before_users.value("rpc_server_requests_total", **server), 1)

    def test_histograms_are_cumulative_and_count_what_the_counter_counts(self):
        for _ in range(3):
            get(self.stack.ports["gateway"], "/api-gateway/dashboard")
        m = self.scrape("gateway")
        route = "/api-gateway/dashboard"
        buckets = sorted(((float(l["le"]), v) for l, v in
                          m.matching("http_server_request_duration_seconds_bucket", route=route)))
        self.assertGreater(len(buckets), 5)
        values = [v for _, v in buckets]
        self.assertEqual(values, sorted(values))  # cumulative
        self.assertEqual(buckets[-1][0], float("inf"))
        count = m.value("http_server_request_duration_seconds_count", route=route)
        self.assertEqual(buckets[-1][1], count)
        total = sum(v for _, v in m.matching("http_server_requests_total", route=route))
        self.assertEqual(count, total)
        self.assertGreaterEqual(count, 3)

    def test_labels_are_route_templates_never_raw_paths(self):
        get(self.stack.ports["gateway"], "/api-gateway/users/123456")
        get(self.stack.ports["gateway"], "/no/such/path/31337")
        get(self.stack.ports["gateway"], "/api-gateway/users", headers={})
        raw = self.stack.raw(b"FOOBAR /api-gateway/users HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 405"), raw)  # the path has GET and POST routes
        m = self.scrape("gateway")
        routes = {l["route"] for l, _ in m.matching("http_server_requests_total")}
        methods = {l["method"] for l, _ in m.matching("http_server_requests_total")}
        self.assertIn("(unmatched)", routes)
        self.assertIn("other", methods)  # any token is a method: the label is bounded
        self.assertNotIn("FOOBAR", methods)
        for r in routes:
            self.assertNotIn("123456", r)
            self.assertNotIn("31337", r)

    def test_requests_the_parser_refuses_are_counted_and_logged(self):
        before = self.scrape("gateway").value("http_server_requests_total", route="(rejected)",
                                              method="GET", status="400")
        raw = self.stack.raw(b"GET /api-gateway/users HTTP/1.1\r\nX-Request-Id: refused-1\r\n\r\n")
        self.assertTrue(raw.startswith(b"HTTP/1.1 400"), raw)
        after = self.scrape("gateway").value("http_server_requests_total", route="(rejected)",
                                             method="GET", status="400")
        self.assertEqual(after - before, 1)
        line = until(lambda: [l for l in self.stack.log("gateway").splitlines() if "refused-1" in l],
                     what="the refused request's line")[0]
        self.assertIn("route=(rejected) status=400", line)

    def test_the_public_port_serves_no_admin_paths(self):
        for path in ("/metrics", "/health/live", "/health/ready", "/health"):
            self.assertEqual(get(self.stack.ports["gateway"], path)[0], 404, path)

    def test_a_request_id_sent_in_comes_back_and_reaches_the_service_log(self):
        rid = "test-rid.42:abc"
        status, headers, _ = get(self.stack.ports["gateway"], "/api-gateway/users/1",
                                 {"X-Request-Id": rid})
        self.assertEqual((status, headers["x-request-id"]), (200, rid))
        until(lambda: f"request_id={rid}" in self.stack.log("users"), what="the id in users' log")
        until(lambda: f"request_id={rid}" in self.stack.log("gateway"), what="the id in the access log")

    def test_a_malformed_or_missing_request_id_is_replaced(self):
        for sent in ("has space", "x" * 129, "semi;colon", ""):
            status, headers, _ = get(self.stack.ports["gateway"], "/api-gateway/users/1",
                                     {"X-Request-Id": sent} if sent else {})
            self.assertEqual(status, 200)
            self.assertRegex(headers["x-request-id"], HEX32)
        # Errors carry one too, the gateway's own (404) and the parser's (400).
        status, headers, _ = get(self.stack.ports["gateway"], "/nope", {"X-Request-Id": "keep-me"})
        self.assertEqual((status, headers["x-request-id"]), (404, "keep-me"))
        raw = self.stack.raw(b"GET / HTTP/1.1\r\nX-Request-Id: raw-1\r\n\r\n")  # no Host: 400
        self.assertTrue(raw.startswith(b"HTTP/1.1 400"), raw)
        self.assertIn(b"X-Request-Id: raw-1\r\n", raw)
        ids = set()
        for _ in range(3):
            ids.add(get(self.stack.ports["gateway"], "/api-gateway/users/1")[1]["x-request-id"])
        self.assertEqual(len(ids), 3)

    def test_a_valid_traceparent_is_continued_and_an_invalid_one_replaced(self):
        rid = "trace-continued-1"
        get(self.stack.ports["gateway"], "/api-gateway/users/1",
            {"X-Request-Id": rid, "traceparent": TRACEPARENT})
        line = until(lambda: self.line_with(f"request_id={rid}"), what="users' line")
        self.assertIn("trace_id=0af7651916cd43dd8448eb211c80319c", line)

        rid = "trace-new-1"
        bad = "00-00000000000000000000000000000000-b7ad6b7169203331-01"  # all-zero trace id
        get(self.stack.ports["gateway"], "/api-gateway/users/1", {"X-Request-Id": rid, "traceparent": bad})
        line = until(lambda: self.line_with(f"request_id={rid}"), what="users' line")
        trace = re.search(r"trace_id=([0-9a-f]+)", line).group(1)
        self.assertRegex(trace, HEX32)

        rid = "trace-none-1"
        get(self.stack.ports["gateway"], "/api-gateway/users/1", {"X-Request-Id": rid})
        line = until(lambda: self.line_with(f"request_id={rid}"), what="users' line")
        self.assertRegex(re.search(r"trace_id=(\S+)", line).group(1), HEX32)

    def line_with(self, text):
        for line in self.stack.log("users").splitlines():
            if text in line:
                return line
        return None


class HealthTest(unittest.TestCase):
    def setUp(self):
        self.stack = Stack()

    def tearDown(self):
        self.stack.close()

    def ready(self, name="gateway"):
        status, _, body = get(self.stack.admin[name], "/health/ready")
        return status, json.loads(body)

    def test_ready_follows_an_upstream_while_live_stays_up(self):
        until(lambda: self.ready()[0] == 200, what="gateway ready")
        self.assertEqual(self.ready("users"), (200, {"status": "ok"}))
        self.stack.kill("products")
        killed = time.monotonic()
        status, body = until(lambda: (lambda r: r if r[0] == 503 else None)(self.ready()),
                             limit=5, what="gateway not ready")
        self.assertLess(time.monotonic() - killed, 3)
        self.assertEqual(body["failing"], ["products"])
        self.assertEqual(get(self.stack.admin["gateway"], "/health/live")[0], 200)
        # Only the routes that need products fail meanwhile.
        self.assertEqual(self.stack.request("GET", "/api-gateway/users/1")[0], 200)
        self.stack.start("products")
        until(lambda: self.ready()[0] == 200, limit=5, what="gateway ready again")

    def test_admin_paths_answer_get_only_and_unknown_ones_404(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin["users"], timeout=10)
        conn.request("POST", "/health/live", body=b"")
        r = conn.getresponse()
        r.read()
        self.assertEqual((r.status, r.getheader("Allow")), (405, "GET, HEAD"))
        conn.close()
        self.assertEqual(get(self.stack.admin["users"], "/nope")[0], 404)
        self.assertEqual(get(self.stack.admin["gateway"], "/nope")[0], 404)


class AccessLogTest(unittest.TestCase):
    def test_json_lines_name_the_request_and_its_upstream_calls(self):
        stack = Stack(policies={"access_log": {"format": "json"}}, capture_logs=True)
        try:
            rid = "log-json-1"
            stack.request("GET", "/api-gateway/dashboard?x=1", headers={"X-Request-Id": rid})
            stack.request("GET", "/api-gateway/users/999", headers={"X-Request-Id": "log-json-2"})

            def entry(wanted):
                for line in stack.log("gateway").splitlines():
                    if line.startswith("{") and f'"request_id":"{wanted}"' in line:
                        return json.loads(line)
                return None

            e = until(lambda: entry(rid), what="the dashboard's line")
            self.assertEqual((e["method"], e["target"], e["route"], e["status"]),
                             ("GET", "/api-gateway/dashboard?x=1", "/api-gateway/dashboard", 200))
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertTrue(e["client"].startswith("127.0.0.1:"))
            self.assertGreater(e["bytes"], 0)
            self.assertGreater(e["duration_us"], 0)
            self.assertEqual([(c["service"], c["pattern"], c["outcome"]) for c in e["calls"]],
                             [("users", '{"cmd":"get_users"}', "ok"),
                              ("products", '{"cmd":"get_products"}', "ok")])
            for c in e["calls"]:
                self.assertLessEqual(c["duration_us"], e["duration_us"])
            e = until(lambda: entry("log-json-2"), what="the 404's line")
            self.assertEqual((e["status"], e["calls"][0]["outcome"]), (404, "remote"))
        finally:
            stack.close()

    def test_text_lines_by_default(self):
        stack = Stack(policies={"access_log": True}, capture_logs=True)
        try:
            stack.request("GET", "/api-gateway/users/1", headers={"X-Request-Id": "seen-1"})
            until(lambda: "request_id=seen-1" in stack.log("gateway"), what="the text line")
            line = [l for l in stack.log("gateway").splitlines() if "request_id=seen-1" in l][0]
            self.assertIn("route=/api-gateway/users/:id status=200", line)
            self.assertIn('calls=[users {"cmd":"get_user"} ok ', line)
        finally:
            stack.close()


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
