#!/usr/bin/env python3
"""Writes bench/edge.sh's gateway configs and tokens: DIR/VARIANT.json and
DIR/VARIANT.token for each VARIANT named (see bench/edge.sh), from the
demo's routes with the benchmark's defaults (request ids and metrics on, no
access log). Usage: edge_configs.py DIR VARIANT..."""

import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

out, variants = sys.argv[1], sys.argv[2:]
secret = os.environ["TERN_JWT_SECRET"]  # bench/demo-stack.sh sets it
claims = {"sub": "bench", "roles": ["admin"], "iss": "tern-demo", "exp": int(time.time()) + 3600}
hs_token = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": "demo"})

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = os.path.join(out, "rsa.pem")
with open(pem, "wb") as f:
    f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo))
rs_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "rsa"})

with open("gateway/routes.json") as f:
    demo = json.load(f)

cors = {"origins": ["http://localhost:8080"]}
auth = True
limit = {"limits": [{"requests": 1000000, "per_s": 1}]}
policies = {
    "base": {}, "cors": {"cors": cors}, "auth_hs": {"auth": auth}, "auth_hs_nc": {"auth": auth},
    "auth_rs": {"auth": auth}, "auth_rs_nc": {"auth": auth}, "rate_limit": {"rate_limit": limit},
    "all": {"cors": cors, "auth": auth, "rate_limit": limit}, "cached": {},
}
for v in variants:
    if v == "static":
        continue  # nginx, set up by bench/edge.sh
    cfg = json.loads(json.dumps(demo))
    cfg["policies"] = policies[v]
    if v.startswith("auth_rs"):
        cfg["auth"]["keys"].append({"kid": "rsa", "algorithms": ["RS256"], "public_key_file": pem})
    if v.endswith("_nc"):
        cfg["auth"]["token_cache"] = False
    if v == "cached":
        dash = next(r for r in cfg["routes"] if r["path"] == "/api-gateway/dashboard")
        dash["policies"] = {"cache": {"ttl_s": 60}}
    with open(os.path.join(out, f"{v}.json"), "w") as f:
        json.dump(cfg, f)
    with open(os.path.join(out, f"{v}.token"), "w") as f:
        f.write(rs_token if v.startswith("auth_rs") else hs_token)
