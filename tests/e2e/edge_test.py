#!/usr/bin/env python3
"""The gateway's edge policies on the real binaries: JWT authentication and
roles (tokens made here with Debian's python3-jwt and python3-cryptography,
and by `gateway token`), with the identity carried to the services; rate
limits; the response cache; CORS.
Usage: edge_test.py BUILD_DIR [unittest args]"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stack_test  # noqa: E402
from stack_test import Stack  # noqa: E402
from hostile_test import frame, mp, read_reply  # noqa: E402
from stack_test import Metrics, until  # noqa: E402


def call(port, method, path, body=None, headers=None):
    """(status, headers as a lower-cased dict, parsed JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, path, body=payload, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(data) if data else None
    finally:
        conn.close()


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(header, claims, secret):
    """An HS256 token over any header and any secret bytes (PyJWT refuses a
    PEM as an HMAC secret, which is the attack)."""
    text = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return text + "." + b64(hmac.new(secret, text.encode(), hashlib.sha256).digest())


def pem_public(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def jwk_of(key, kid):
    """The public JWK of an RSA or EC private key. EC coordinates are written
    at the curve's full size, as RFC 7518 6.2.1.2 requires: PyJWT before 2.7
    (Debian's is 2.6) drops their leading zero bytes, which the gateway
    rightly refuses, so it failed this test about once in 128 key draws."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        numbers, size = key.public_key().public_numbers(), (key.curve.key_size + 7) // 8
        jwk = {"kty": "EC", "crv": {256: "P-256", 384: "P-384", 521: "P-521"}[key.curve.key_size],
               "x": b64(numbers.x.to_bytes(size, "big")), "y": b64(numbers.y.to_bytes(size, "big"))}
    jwk["kid"] = kid
    return jwk


class AuthTest(unittest.TestCase):
    """Keys: the demo's HS256 secret (kid demo), an RSA PEM (kid rsa: RS256,
    PS256), an EC P-384 PEM (kid ec384: ES384), and a JWKS file with an RSA
    and an EC P-256 key (RS256, ES256); issuer tern-demo, audience tern-e2e."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tern-auth-")
        cls.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.ec384 = ec.generate_private_key(ec.SECP384R1())
        cls.jwks_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.jwks_ec = ec.generate_private_key(ec.SECP256R1())
        cls.rsa_pem = os.path.join(cls.dir, "rsa.pem")
        with open(cls.rsa_pem, "wb") as f:
            f.write(pem_public(cls.rsa))
        ec_pem = os.path.join(cls.dir, "ec384.pem")
        with open(ec_pem, "wb") as f:
            f.write(pem_public(cls.ec384))
        jwks = os.path.join(cls.dir, "jwks.json")
        with open(jwks, "w") as f:
            json.dump({"keys": [jwk_of(cls.jwks_rsa, "j-rsa"), jwk_of(cls.jwks_ec, "j-ec")]}, f)

        def edit(cfg):
            cfg["auth"]["audience"] = "tern-e2e"
            cfg["auth"]["keys"] += [
                {"kid": "rsa", "algorithms": ["RS256", "PS256"], "public_key_file": cls.rsa_pem},
                {"kid": "ec384", "algorithms": ["ES384"], "public_key_file": ec_pem},
                {"algorithms": ["RS256", "ES256"], "jwks_file": jwks},
            ]
            cfg["routes"].append({"method": "GET", "path": "/e2e/scoped", "service": "users",
                                  "pattern": {"cmd": "whoami"},
                                  "policies": {"auth": {"scopes": {"all": ["read", "list"]}}}})
            # Its own route: refusals are logged at most once a second per route.
            cfg["routes"].append({"method": "GET", "path": "/e2e/logged", "service": "users",
                                  "pattern": {"cmd": "whoami"}, "policies": {"auth": True}})
            cfg["routes"].append({"method": "GET", "path": "/e2e/realm", "service": "users",
                                  "pattern": {"cmd": "whoami"},
                                  "policies": {"auth": {"roles": {"all": ["a", "b"]},
                                                        "roles_claim": "realm.roles"}}})

        cls.stack = Stack(log_level="info", capture_logs=True, edit=edit)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def claims(self, **extra):
        now = int(time.time())
        c = {"sub": "ada", "roles": ["admin"], "iss": "tern-demo", "aud": "tern-e2e",
             "exp": now + 300, "email": "ada@example.com", "secret": "not propagated"}
        c.update(extra)
        return {k: v for k, v in c.items() if v is not None}

    def hs(self, secret=Stack.SECRET, kid="demo", alg="HS256", **extra):
        return jwt.encode(self.claims(**extra), secret, algorithm=alg, headers={"kid": kid})

    def get(self, path, token=None, headers=None):
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return call(self.stack.ports["gateway"], "GET", path, headers=h)

    def assert_invalid(self, token, why, path="/api-gateway/me"):
        status, headers, body = self.get(path, token)
        self.assertEqual(status, 401, why)
        self.assertEqual(headers["www-authenticate"], 'Bearer error="invalid_token"', why)
        # The client learns nothing of the reason; the log has it.
        self.assertEqual(body, {"statusCode": 401, "message": "invalid token",
                                "error": "Unauthorized"}, why)

    def test_a_good_token_reaches_the_service_with_its_identity(self):
        status, _, me = self.get("/api-gateway/me", self.hs())
        self.assertEqual(status, 200)
        # Only the claims the route propagates travel.
        self.assertEqual(me, {"sub": "ada", "roles": ["admin"], "claims": {"email": "ada@example.com"}})

    def test_every_key_kind_verifies_its_algorithms(self):
        cases = [
            ("RS256 PEM", jwt.encode(self.claims(), self.rsa, algorithm="RS256", headers={"kid": "rsa"})),
            ("PS256 PEM", jwt.encode(self.claims(), self.rsa, algorithm="PS256", headers={"kid": "rsa"})),
            ("ES384 PEM", jwt.encode(self.claims(), self.ec384, algorithm="ES384",
                                     headers={"kid": "ec384"})),
            ("RS256 JWKS", jwt.encode(self.claims(), self.jwks_rsa, algorithm="RS256",
                                      headers={"kid": "j-rsa"})),
            ("ES256 JWKS", jwt.encode(self.claims(), self.jwks_ec, algorithm="ES256",
                                      headers={"kid": "j-ec"})),
            ("aud in a list", self.hs(aud=["other", "tern-e2e"])),
            ("expired within the 30 s leeway", self.hs(exp=int(time.time()) - 10)),
        ]
        for what, token in cases:
            status, _, me = self.get("/api-gateway/me", token)
            self.assertEqual((what, status, me["sub"]), (what, 200, "ada"))

    def test_bad_tokens_get_401_invalid_token(self):
        now = int(time.time())
        header_none = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        payload = b64(json.dumps(self.claims()).encode())
        with open(self.rsa_pem, "rb") as f:
            rsa_pem_text = f.read()
        forged = self.hs()[:-4] + ("AAAA" if not self.hs().endswith("AAAA") else "BBBB")
        cases = [
            ("forged signature", forged),
            ("signed with another secret", self.hs(secret="another-secret-that-is-32-bytes-or-more")),
            ("expired", self.hs(exp=now - 120)),
            ("not yet valid", self.hs(nbf=now + 120)),
            ("wrong iss", self.hs(iss="someone-else")),
            ("no iss", self.hs(iss=None)),
            ("wrong aud", self.hs(aud="other")),
            ("alg none", f"{header_none}.{payload}."),
            ("alg none, kid demo", b64(json.dumps({"alg": "none", "kid": "demo"}).encode()) + f".{payload}."),
            ("HS256 with the RSA public key as secret, kid rsa",
             hs256_by_hand({"alg": "HS256", "kid": "rsa"}, self.claims(), rsa_pem_text)),
            ("HS256 with the RSA public key as secret, no kid",
             hs256_by_hand({"alg": "HS256"}, self.claims(), rsa_pem_text)),
            ("RS384 not allowed for kid rsa",
             jwt.encode(self.claims(), self.rsa, algorithm="RS384", headers={"kid": "rsa"})),
            ("ES256 key used for ES384", jwt.encode(self.claims(), self.jwks_ec, algorithm="ES256",
                                                    headers={"kid": "ec384"})),
            ("unknown kid", self.hs(kid="nobody")),
            ("9 KiB token", self.hs(padding="x" * 9 * 1024)),
            ("garbage", "garbage"),
            ("four parts", self.hs() + ".x"),
            ("not base64url", "a*b.c.d"),
            ("exp not a number", self.hs(exp="tomorrow")),
        ]
        for what, token in cases:
            self.assert_invalid(token, what)
        self.assert_invalid("", "Bearer with nothing after it")
        status, headers, _ = self.get("/api-gateway/me", headers={"Authorization": "Basic YTpi"})
        self.assertEqual((status, headers["www-authenticate"]), (401, 'Bearer error="invalid_token"'))

    def test_the_reason_is_logged_not_sent(self):
        self.assert_invalid(self.hs(exp=int(time.time()) - 3600), "expired", "/e2e/logged")
        until(lambda: "refused (401): expired" in self.stack.log("gateway"), what="the 401's log line")

    def test_no_token_gets_401_with_a_bare_challenge(self):
        status, headers, body = self.get("/api-gateway/me")
        self.assertEqual((status, headers["www-authenticate"]), (401, 'Bearer realm="tern"'))
        self.assertEqual(body["message"], "missing bearer token")
        # Public routes need none.
        self.assertEqual(self.get("/api-gateway/users")[0], 200)

    def test_roles_and_scopes(self):
        s = self.stack
        port = s.ports["gateway"]
        user = {"name": "Hedy", "email": "hedy@example.org"}
        status, headers, body = call(port, "POST", "/api-gateway/users", user,
                                     {"Authorization": f"Bearer {self.hs(roles=['reader'])}"})
        self.assertEqual((status, headers["www-authenticate"], body["message"]),
                         (403, 'Bearer error="insufficient_scope"', "Forbidden resource"))
        status, _, created = call(port, "POST", "/api-gateway/users", user,
                                  {"Authorization": f"Bearer {self.hs()}"})
        self.assertEqual(status, 201)
        self.assertEqual(self.get(f"/api-gateway/users/{created['id']}")[2]["name"], "Hedy")

        for what, token, want in [
            ("scope string with both", self.hs(scope="read list write"), 200),
            ("scp array with both", self.hs(scp=["list", "read"]), 200),
            ("one of the two", self.hs(scope="read"), 403),
            ("none", self.hs(), 403),
        ]:
            self.assertEqual((what, self.get("/e2e/scoped", token)[0]), (what, want))
        for what, token, want in [
            ("both roles at the claim path", self.hs(realm={"roles": ["b", "a"]}), 200),
            ("one of them", self.hs(realm={"roles": ["a"]}), 403),
            ("top-level roles do not count", self.hs(roles=["a", "b"]), 403),
        ]:
            self.assertEqual((what, self.get("/e2e/realm", token)[0]), (what, want))

    def test_the_service_refuses_create_user_without_an_admin_identity(self):
        def create(meta):
            with socket.create_connection(("127.0.0.1", self.stack.ports["users"]), timeout=5) as sock:
                packet = {"id": 1, "pattern": {"cmd": "create_user"},
                          "data": {"name": "Mallory", "email": "mallory@example.org"}}
                if meta is not None:
                    packet["meta"] = meta
                sock.sendall(frame(mp(packet)))
                return read_reply(sock)
        self.assertIn(b"create_user needs an admin identity", create(None))
        self.assertIn(b"create_user needs an admin identity",
                      create({"identity": {"sub": "mallory", "roles": ["reader"]}}))
        status, _, users = self.get("/api-gateway/users?limit=100")
        self.assertNotIn("Mallory", [u["name"] for u in users])

    def test_gateway_token_mints_what_the_gateway_accepts(self):
        cfg = os.path.join(self.dir, "token.json")
        with open(stack_test.ROOT + "/gateway/routes.json") as f:
            demo = json.load(f)
        with open(cfg, "w") as f:
            json.dump(demo, f)
        env = dict(os.environ, TERN_JWT_SECRET=Stack.SECRET)
        out = subprocess.run([os.path.join(stack_test.BUILD, "gateway", "gateway"), "token", "--sub", "demo",
                              "--role", "admin", "--ttl", "60", "--config", cfg],
                             capture_output=True, text=True, env=env, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        token = out.stdout.strip()
        claims = jwt.decode(token, Stack.SECRET, algorithms=["HS256"], issuer="tern-demo")
        self.assertEqual((claims["sub"], claims["roles"]), ("demo", ["admin"]))
        self.assertTrue(0 < claims["exp"] - time.time() <= 60)
        # The demo config has no audience; this stack wants one.
        self.assert_invalid(token, "no aud")
        demo_stack = Stack()
        try:
            status, me = demo_stack.request("GET", "/api-gateway/me", headers={"Authorization": f"Bearer {token}"})
            self.assertEqual((status, me["sub"], me["roles"]), (200, "demo", ["admin"]))
        finally:
            demo_stack.close()
        out = subprocess.run([os.path.join(stack_test.BUILD, "gateway", "gateway"), "token", "--sub", "x",
                              "--config", cfg], capture_output=True, text=True,
                             env={k: v for k, v in env.items() if k != "TERN_JWT_SECRET"}, timeout=10)
        self.assertEqual(out.returncode, 1)
        self.assertIn("TERN_JWT_SECRET is not set", out.stderr)
        # The demo's published fallback secret works, and is called out on
        # stderr (stdout holds the token alone).
        out = subprocess.run([os.path.join(stack_test.BUILD, "gateway", "gateway"), "token", "--sub", "x",
                              "--config", cfg], capture_output=True, text=True, timeout=10,
                             env=dict(env, TERN_JWT_SECRET="tern-demo-development-secret-change-me"))
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len(out.stdout.strip().split(".")), 3, out.stdout)
        self.assertIn("published DEVELOPMENT secret", out.stderr)
        self.assertNotIn("DEVELOPMENT", out.stdout)


def users_route(path, **policies):
    return {"method": "GET", "path": path, "service": "users", "pattern": {"cmd": "get_users"},
            "policies": policies}


class RateLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        by_header = {"key": "header:X-Client"}

        def edit(cfg):
            cfg["server"]["trusted_proxies"] = ["127.0.0.1"]
            cfg["routes"] += [
                users_route("/e2e/limited", rate_limit={"limits": [{"requests": 2, "per_s": 1}], **by_header}),
                users_route("/e2e/shadow", rate_limit={"limits": [{"requests": 1, "per_s": 60}], "shadow": True}),
                users_route("/e2e/keys", rate_limit={"limits": [{"requests": 1, "per_s": 60}], "max_keys": 1000,
                                                     **by_header}),
                users_route("/e2e/client", rate_limit={"limits": [{"requests": 1, "per_s": 60}]}),
                users_route("/e2e/subject", auth=True,
                            rate_limit={"limits": [{"requests": 1, "per_s": 60}], "key": "subject"}),
            ]

        cls.stack = Stack(log_level="info", capture_logs=True, edit=edit, rate_limits=True)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def get(self, path, **headers):
        status, h, _ = call(self.stack.ports["gateway"], "GET", path, headers=headers)
        return status, h

    def metrics(self):
        status, _, _ = call(self.stack.admin["gateway"], "GET", "/health/live")
        self.assertEqual(status, 200)
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin["gateway"], timeout=10)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        conn.close()
        return Metrics(text)

    def test_the_demo_posts_allow_5_per_10_s_then_429_with_the_fields(self):
        s = self.stack
        port = s.ports["gateway"]
        for i in range(5):  # invalid bodies: still requests, and nothing is stored
            status, h, _ = call(port, "POST", "/api-gateway/users", {}, s.as_admin)
            self.assertEqual(status, 400)
            self.assertEqual(h["ratelimit-policy"], '"5-per-10s";q=5;w=10')
            self.assertEqual(h["ratelimit"], f'"5-per-10s";r={4 - i};t={2 * (i + 1)}')
        status, h, body = call(port, "POST", "/api-gateway/users", {}, s.as_admin)
        self.assertEqual((status, body["message"]), (429, "Too Many Requests"))
        self.assertEqual(h["retry-after"], "2")
        self.assertEqual(h["ratelimit"], '"5-per-10s";r=0;t=10')
        self.assertGreaterEqual(self.metrics().value("gateway_rate_limited_requests_total",
                                                     route="/api-gateway/users", mode="enforced"), 1)
        # Reads are not limited.
        for _ in range(50):
            status, h = self.get("/api-gateway/users")
            self.assertEqual(status, 200)
            self.assertNotIn("ratelimit", h)

    # The refill, and several limits on one route, are tested in process on
    # a clock the test moves (tests/gateway/policies/rate_limit_test.cpp).
    def test_a_burst_over_the_limit_gets_429_for_its_key_only(self):
        first = self.get("/e2e/limited", **{"X-Client": "burst"})
        self.assertEqual((first[0], first[1]["ratelimit"]), (200, '"2-per-1s";r=1;t=1'))
        self.assertEqual(first[1]["ratelimit-policy"], '"2-per-1s";q=2;w=1')
        self.assertEqual(self.get("/e2e/limited", **{"X-Client": "burst"})[0], 200)
        status, h = self.get("/e2e/limited", **{"X-Client": "burst"})
        self.assertEqual((status, h["retry-after"], h["ratelimit"]), (429, "1", '"2-per-1s";r=0;t=1'))
        self.assertEqual(self.get("/e2e/limited", **{"X-Client": "someone else"})[0], 200)

    def test_shadow_mode_counts_and_logs_but_never_refuses(self):
        for _ in range(5):
            status, h = self.get("/e2e/shadow")
            self.assertEqual(status, 200)
            self.assertNotIn("ratelimit", h)
        self.assertEqual(self.metrics().value("gateway_rate_limited_requests_total",
                                              route="/e2e/shadow", mode="shadow"), 4)
        until(lambda: "let through (shadow mode)" in self.stack.log("gateway"), what="the shadow log line")

    def test_10000_distinct_keys_keep_memory_bounded(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.ports["gateway"], timeout=10)
        statuses = {}
        for i in range(10000):
            conn.request("GET", "/e2e/keys", headers={"X-Client": f"k{i}"})
            r = conn.getresponse()
            r.read()
            statuses[r.status] = statuses.get(r.status, 0) + 1
        conn.close()
        # 1000 keys get buckets; the other 9000 share one (its first request passes).
        self.assertEqual(statuses, {200: 1001, 429: 8999})
        self.assertEqual(self.metrics().value("gateway_rate_limit_keys", route="/e2e/keys"), 1000)
        self.assertEqual(self.get("/e2e/keys", **{"X-Client": "k1"})[0], 429)  # still its own bucket

    def test_a_subject_key_limits_each_user_wherever_they_come_from(self):
        ada = {"Authorization": f"Bearer {self.stack.token(sub='ada')}"}
        ada_again = {"Authorization": f"Bearer {self.stack.token(sub='ada', roles=['other'])}"}
        bob = {"Authorization": f"Bearer {self.stack.token(sub='bob')}"}
        self.assertEqual(self.get("/e2e/subject", **ada)[0], 200)
        self.assertEqual(self.get("/e2e/subject", **ada_again)[0], 429)  # another token, same sub
        self.assertEqual(self.get("/e2e/subject", **bob)[0], 200)  # same address, another sub
        self.assertEqual(self.get("/e2e/subject")[0], 401)  # auth comes first

    def test_x_forwarded_for_names_the_client_only_behind_a_trusted_proxy(self):
        # The peer (127.0.0.1) is trusted here: the rightmost untrusted hop is the client.
        self.assertEqual(self.get("/e2e/client", **{"X-Forwarded-For": "203.0.113.1"})[0], 200)
        self.assertEqual(self.get("/e2e/client", **{"X-Forwarded-For": "203.0.113.2"})[0], 200)
        self.assertEqual(self.get("/e2e/client", **{"X-Forwarded-For": "198.51.100.9, 203.0.113.1"})[0],
                         429)
        self.assertEqual(self.get("/e2e/client", **{"X-Forwarded-For": "203.0.113.2, 127.0.0.1"})[0], 429)
        untrusted = Stack(rate_limits=True, edit=lambda cfg: cfg["routes"].append(
            users_route("/e2e/client", rate_limit={"limits": [{"requests": 1, "per_s": 60}]})))
        try:
            port = untrusted.ports["gateway"]
            self.assertEqual(call(port, "GET", "/e2e/client", headers={"X-Forwarded-For": "203.0.113.1"})[0], 200)
            # Without trusted proxies the header is the client's word: ignored.
            self.assertEqual(call(port, "GET", "/e2e/client", headers={"X-Forwarded-For": "203.0.113.2"})[0], 429)
        finally:
            untrusted.close()


class CacheTest(unittest.TestCase):
    """The demo's cached product reads (5 s, invalidated by POST /api-gateway/products),
    plus a cached authenticated route and a cached aggregate."""

    @classmethod
    def setUpClass(cls):
        def edit(cfg):
            for u in cfg["upstreams"].values():
                u["timeout_ms"] = 5000  # a stopped service keeps calls in flight
            cfg["routes"] += [
                {"method": "GET", "path": "/e2e/cached-me", "service": "users", "pattern": {"cmd": "whoami"},
                 "policies": {"auth": True, "cache": {"ttl_s": 60}}},
                {"method": "GET", "path": "/e2e/cached-dashboard", "policies": {"cache": {"ttl_s": 60}},
                 "aggregate": {"users": {"service": "users", "pattern": {"cmd": "get_users"}},
                               "products": {"service": "products", "pattern": {"cmd": "get_products"}}}},
            ]

        cls.stack = Stack(edit=edit)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def get(self, path, **headers):
        return call(self.stack.ports["gateway"], "GET", path, headers=headers)

    def served(self, service, pattern):
        """How many requests for `pattern` the service itself has answered (its own counter)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin[service], timeout=10)
        conn.request("GET", "/metrics")
        m = Metrics(conn.getresponse().read().decode())
        conn.close()
        return sum(v for labels, v in m.matching("rpc_server_requests_total", pattern=pattern))

    def test_a_cached_get_is_served_without_an_upstream_call(self):
        before = self.served("products", '{"cmd":"get_product"}')
        status, h, first = self.get("/api-gateway/products/2")
        self.assertEqual((status, h["x-cache"]), (200, "MISS"))
        self.assertNotIn("age", h)
        for _ in range(20):
            status, h, body = self.get("/api-gateway/products/2")
            self.assertEqual((status, h["x-cache"], body), (200, "HIT", first))
            self.assertIn(h["age"], ("0", "1"))
            self.assertIn("x-request-id", h)  # per request, not cached
        self.assertEqual(self.served("products", '{"cmd":"get_product"}') - before, 1)
        # Another id is another entry; errors are not cached.
        self.assertEqual(self.get("/api-gateway/products/3")[1]["x-cache"], "MISS")
        for _ in range(2):
            status, h, _ = self.get("/api-gateway/products/999")
            self.assertEqual((status, h["x-cache"]), (404, "MISS"))

    def test_no_store_bypasses_and_no_cache_refetches(self):
        self.get("/api-gateway/products?limit=1")
        before = self.served("products", '{"cmd":"get_products"}')
        status, h, _ = self.get("/api-gateway/products?limit=1", **{"Cache-Control": "no-store"})
        self.assertEqual((status, h["x-cache"]), (200, "MISS"))
        status, h, _ = self.get("/api-gateway/products?limit=1", **{"Cache-Control": "max-age=5, no-cache"})
        self.assertEqual((status, h["x-cache"]), (200, "MISS"))
        self.assertEqual(self.served("products", '{"cmd":"get_products"}') - before, 2)
        self.assertEqual(self.get("/api-gateway/products?limit=1")[1]["x-cache"], "HIT")

    def test_the_query_is_normalized_into_the_key(self):
        self.assertEqual(self.get("/api-gateway/products?limit=2&offset=1")[1]["x-cache"], "MISS")
        self.assertEqual(self.get("/api-gateway/products?offset=1&limit=2")[1]["x-cache"], "HIT")
        self.assertEqual(self.get("/api-gateway/products?offset=%31&limit=2")[1]["x-cache"], "HIT")
        self.assertEqual(self.get("/api-gateway/products?offset=2&limit=2")[1]["x-cache"], "MISS")

    def test_100_concurrent_misses_make_exactly_one_upstream_call(self):
        s = self.stack
        path = "/api-gateway/products?limit=3&offset=0"
        before = self.served("products", '{"cmd":"get_products"}')
        s.procs["products"].send_signal(signal.SIGSTOP)
        results = []
        try:
            threads = [threading.Thread(target=lambda: results.append(self.get(path))) for _ in range(100)]
            for t in threads:
                t.start()

            def in_flight():
                conn = http.client.HTTPConnection("127.0.0.1", s.admin["gateway"], timeout=10)
                conn.request("GET", "/metrics")
                m = Metrics(conn.getresponse().read().decode())
                conn.close()
                return m.value("http_server_active_requests") >= 100
            until(in_flight, what="100 requests waiting in the gateway")
        finally:
            s.procs["products"].send_signal(signal.SIGCONT)
        for t in threads:
            t.join()
        self.assertEqual(len(results), 100)
        bodies = {json.dumps(body) for _, _, body in results}
        self.assertEqual(len(bodies), 1)
        self.assertEqual(sorted({status for status, _, _ in results}), [200])
        self.assertEqual(sorted(h["x-cache"] for _, h, _ in results), ["HIT"] * 99 + ["MISS"])
        self.assertEqual(self.served("products", '{"cmd":"get_products"}') - before, 1)

    def test_two_users_never_share_a_cached_authenticated_response(self):
        ada = {"Authorization": f"Bearer {self.stack.token(sub='ada', roles=['reader'])}"}
        bob = {"Authorization": f"Bearer {self.stack.token(sub='bob', roles=['reader'])}"}
        status, h, me = self.get("/e2e/cached-me", **ada)
        self.assertEqual((status, h["x-cache"], me["sub"]), (200, "MISS", "ada"))
        status, h, me = self.get("/e2e/cached-me", **bob)
        self.assertEqual((status, h["x-cache"], me["sub"]), (200, "MISS", "bob"))
        status, h, me = self.get("/e2e/cached-me", **ada)
        self.assertEqual((status, h["x-cache"], me["sub"]), (200, "HIT", "ada"))
        self.assertEqual(self.get("/e2e/cached-me")[0], 401)  # the cache does not skip auth

    def test_a_post_invalidates_the_reads_it_affects(self):
        self.get("/api-gateway/products")
        self.get("/api-gateway/products/1")
        self.assertEqual(self.get("/api-gateway/products")[1]["x-cache"], "HIT")
        self.assertEqual(self.get("/api-gateway/products/1")[1]["x-cache"], "HIT")
        users_before = self.get("/api-gateway/users")[2]
        status, _, made = call(self.stack.ports["gateway"], "POST", "/api-gateway/products",
                               {"name": "Zuse Z3", "price": 1941}, self.stack.as_admin)
        self.assertEqual(status, 201)
        status, h, products = self.get("/api-gateway/products?limit=100")
        self.assertIn("Zuse Z3", [p["name"] for p in products])
        status, h, listed = self.get("/api-gateway/products")
        self.assertEqual(h["x-cache"], "MISS")
        self.assertEqual(self.get("/api-gateway/products/1")[1]["x-cache"], "MISS")
        self.assertEqual(self.get("/api-gateway/users")[2], users_before)

    def test_an_aggregate_is_cached_only_when_every_part_succeeded(self):
        s = self.stack
        s.kill("products")
        try:
            status, h, _ = self.get("/e2e/cached-dashboard")
            self.assertEqual((status, h["x-cache"]), (503, "MISS"))
        finally:
            s.start("products")
        s.wait_connected("products")  # every worker, not just the one a first 200 came through
        status, h, _ = self.get("/e2e/cached-dashboard")
        self.assertEqual((status, h["x-cache"]), (200, "MISS"))
        status, h, body = self.get("/e2e/cached-dashboard")
        self.assertEqual((status, h["x-cache"]), (200, "HIT"))
        self.assertTrue(body["users"] and body["products"])


class BoundedCacheTest(unittest.TestCase):
    def test_the_cache_keeps_its_bounds_least_recently_used_first(self):
        def edit(cfg):
            cfg["cache"] = {"max_entries": 3, "max_entry_bytes": 600}
            cfg["routes"].append(users_route("/e2e/cached-users", cache={"ttl_s": 60}))
            cfg["routes"][-1]["data"] = "query"

        s = Stack(edit=edit)
        try:
            def x_cache(path):
                status, h, _ = call(s.ports["gateway"], "GET", path)
                self.assertEqual(status, 200)
                return h["x-cache"]

            self.assertEqual([x_cache(f"/api-gateway/products/{i}") for i in (1, 2, 3)], ["MISS"] * 3)
            self.assertEqual(x_cache("/api-gateway/products/1"), "HIT")  # now the most recent
            self.assertEqual(x_cache("/api-gateway/products?limit=1"), "MISS")  # evicts 2
            self.assertEqual(x_cache("/api-gateway/products/2"), "MISS")  # evicts 3
            self.assertEqual(x_cache("/api-gateway/products/1"), "HIT")
            # A response over max_entry_bytes is never stored: 13 users' list.
            for i in range(10):
                status, _, _ = call(s.ports["gateway"], "POST", "/api-gateway/users",
                                    {"name": f"User {i}", "email": f"user{i}@example.org"}, s.as_admin)
                self.assertEqual(status, 201)
            self.assertEqual([x_cache("/e2e/cached-users?limit=100") for _ in range(2)], ["MISS", "MISS"])
            self.assertEqual([x_cache("/e2e/cached-users?limit=1") for _ in range(2)], ["MISS", "HIT"])
            conn = http.client.HTTPConnection("127.0.0.1", s.admin["gateway"], timeout=10)
            conn.request("GET", "/metrics")
            m = Metrics(conn.getresponse().read().decode())
            conn.close()
            self.assertEqual(m.value("gateway_cache_entries"), 3)
            self.assertEqual(m.value("gateway_cache_evictions_total", reason="lru"), 3)
            self.assertGreater(m.value("gateway_cache_bytes"), 0)
            self.assertLessEqual(m.value("gateway_cache_bytes"), 3 * 600)
        finally:
            s.close()


class CorsTest(unittest.TestCase):
    ALLOWED = "http://localhost:8080"

    @classmethod
    def setUpClass(cls):
        def edit(cfg):
            cfg["routes"].append(users_route("/e2e/open", cors={"origins": "*"}))

        cls.stack = Stack(policies={"cors": {"origins": [cls.ALLOWED, "https://app.example"]}}, edit=edit)

    @classmethod
    def tearDownClass(cls):
        cls.stack.close()

    def request(self, method, path, headers):
        return call(self.stack.ports["gateway"], method, path, headers=headers)

    def preflight(self, path, method, origin=ALLOWED, asked_headers=None):
        h = {"Origin": origin, "Access-Control-Request-Method": method}
        if asked_headers:
            h["Access-Control-Request-Headers"] = asked_headers
        return self.request("OPTIONS", path, h)

    def cors_fields(self, headers):
        return {k: v for k, v in headers.items() if k.startswith("access-control-")}

    def served_total(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.stack.admin["users"], timeout=10)
        conn.request("GET", "/metrics")
        m = Metrics(conn.getresponse().read().decode())
        conn.close()
        return sum(v for _, v in m.matching("rpc_server_requests_total"))

    def test_a_preflight_is_answered_by_the_gateway(self):
        before = self.served_total()
        status, h, body = self.preflight("/api-gateway/users", "POST", asked_headers="authorization, Content-Type")
        self.assertEqual((status, body), (204, None))  # no token needed, no call made
        self.assertEqual(self.cors_fields(h), {
            "access-control-allow-origin": self.ALLOWED,
            "access-control-allow-methods": "POST",
            "access-control-allow-headers": "Authorization, Content-Type, X-Request-Id, traceparent, tracestate",
            "access-control-max-age": "600",
        })
        self.assertIn("Origin", h["vary"])
        self.assertEqual(self.served_total(), before)
        status, h, _ = self.preflight("/api-gateway/users/7", "GET")
        self.assertEqual((status, h["access-control-allow-methods"]), (204, "GET, HEAD"))

    def test_a_disallowed_preflight_gets_no_cors_fields(self):
        for what, args in [("origin", dict(origin="https://evil.example")),
                           ("header", dict(asked_headers="X-Secret")),
                           ("origin with a path", dict(origin=self.ALLOWED + "/"))]:
            status, h, body = self.preflight("/api-gateway/users", "POST", **args)
            self.assertEqual((what, status, self.cors_fields(h)), (what, 403, {}))
            self.assertIn("CORS preflight refused", body["message"])
        # A method no route has: nothing to preflight (a plain 405 naming the
        # methods there are, which fails the preflight).
        status, h, _ = self.preflight("/api-gateway/users", "DELETE")
        self.assertEqual((status, h["allow"]), (405, "GET, HEAD, POST"))
        self.assertNotIn("access-control-allow-methods", h)

    def test_answers_carry_the_fields_for_allowed_origins_only(self):
        status, h, _ = self.request("GET", "/api-gateway/users", {"Origin": self.ALLOWED})
        self.assertEqual((status, h["access-control-allow-origin"], h["vary"]), (200, self.ALLOWED, "Origin"))
        self.assertIn("X-Request-Id", h["access-control-expose-headers"])
        status, h, _ = self.request("GET", "/api-gateway/users", {"Origin": "https://evil.example"})
        self.assertEqual((status, self.cors_fields(h), h["vary"]), (200, {}, "Origin"))
        # Errors too, so a script can read why (a 401 here).
        status, h, _ = self.request("POST", "/api-gateway/users", {"Origin": "https://app.example"})
        self.assertEqual((status, h["access-control-allow-origin"]), (401, "https://app.example"))

    def test_a_public_route_may_allow_any_origin(self):
        status, h, _ = self.request("GET", "/e2e/open", {"Origin": "https://anyone.example"})
        self.assertEqual((status, h["access-control-allow-origin"]), (200, "*"))
        self.assertNotIn("vary", h)
        self.assertNotIn("access-control-allow-credentials", h)
        # The same answer without an Origin: nothing for a shared cache to get wrong.
        status, h, _ = self.request("GET", "/e2e/open", {})
        self.assertEqual((status, h["access-control-allow-origin"]), (200, "*"))


if __name__ == "__main__":
    stack_test.BUILD = os.path.abspath(sys.argv.pop(1))
    unittest.main(verbosity=2)
