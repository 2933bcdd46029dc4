#!/usr/bin/env python3
"""The Kubernetes manifests (deploy/k8s), checked offline.

1. `kubectl kustomize deploy/k8s` renders them (kubectl from Debian's
   kubernetes-client, or any other on PATH).
2. kubectl's own types: every Deployment and StatefulSet goes through
   `kubectl set env --local`, every Service through `kubectl set selector
   --local`; both decode into the typed API objects and print them back, so
   a misspelt or misplaced field comes back missing. No cluster is needed.
3. What docs/deploy.md promises, field by field: replicas, probes on the
   admin health endpoints, preStop, a termination grace period above the
   drain bound, resources, headless Services that select their pods, the
   routes ConfigMap equal to gateway/routes.json, the Secrets every
   reference names, PostgreSQL with its own volume.
Usage: k8s_test.py [unittest args]"""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K8S = os.path.join(ROOT, "deploy", "k8s")
KUBECTL = shutil.which("kubectl")
# No cluster: a kubectl that tried one would fail, not hang.
ENV = dict(os.environ, KUBECONFIG=os.devnull)


def kubectl(*args, stdin=None):
    out = subprocess.run([KUBECTL, *args], input=stdin, capture_output=True, text=True, env=ENV, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def lost(given, typed, path=""):
    """The paths of `given` that `typed` does not hold with the same value."""
    if isinstance(given, dict):
        if not isinstance(typed, dict):
            return [path or "/"]
        return [p for k, v in given.items()
                for p in (lost(v, typed[k], f"{path}.{k}") if k in typed else [f"{path}.{k}"])]
    if isinstance(given, list):
        if not isinstance(typed, list) or len(typed) != len(given):
            return [path]
        return [p for i, v in enumerate(given) for p in lost(v, typed[i], f"{path}[{i}]")]
    # Quantities and ports keep their spelling; "1" and 1 are one value to YAML users.
    return [] if str(given) == str(typed) else [f"{path}: {given!r} became {typed!r}"]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def port_named(container, name):
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


class ManifestsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not KUBECTL:
            raise AssertionError("no kubectl on PATH: scripts/setup installs Debian's kubernetes-client")
        cls.docs = [d for d in yaml.safe_load_all(kubectl("kustomize", K8S)) if d]
        cls.by = {(d["kind"], d["metadata"]["name"]): d for d in cls.docs}
        with open(os.path.join(ROOT, "gateway", "routes.json")) as f:
            cls.routes = json.load(f)
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            cls.dockerfile = f.read()

    def get(self, kind, name):
        self.assertIn((kind, name), self.by, f"no {kind} {name} in deploy/k8s")
        return self.by[(kind, name)]

    def workloads(self):
        return [d for d in self.docs if d["kind"] in ("Deployment", "StatefulSet")]

    def tern(self):
        return [self.get("Deployment", n) for n in ("users", "products", "gateway")]

    def test_every_field_survives_kubectls_typed_decoding(self):
        kinds = {d["kind"] for d in self.docs}
        self.assertEqual(kinds, {"Deployment", "StatefulSet", "Service", "ConfigMap", "Secret"})
        for d in self.docs:
            name = f"{d['kind']} {d['metadata']['name']}"
            text = yaml.safe_dump(d)
            if d["kind"] in ("Deployment", "StatefulSet"):
                typed = json.loads(kubectl("set", "env", "--local", "-f", "-", "-o", "json",
                                           "TERN_MANIFEST_CHECK=1", stdin=text))
                for c in typed["spec"]["template"]["spec"]["containers"]:
                    c["env"] = [e for e in c["env"] if e["name"] != "TERN_MANIFEST_CHECK"]
                    if not c["env"]:
                        del c["env"]
            elif d["kind"] == "Service":
                selector = ",".join(f"{k}={v}" for k, v in d["spec"]["selector"].items())
                typed = json.loads(kubectl("set", "selector", "--local", "-f", "-", "-o", "json", selector,
                                           stdin=text))
            else:  # ConfigMap, Secret: a few fields, checked here
                allowed = {"apiVersion", "kind", "metadata", "data", "stringData", "type"}
                self.assertLessEqual(set(d), allowed, name)
                self.assertLessEqual(set(d["metadata"]), {"name", "labels", "annotations"}, name)
                for key, value in {**d.get("data", {}), **d.get("stringData", {})}.items():
                    self.assertIsInstance(value, str, f"{name}: {key}")
                continue
            self.assertEqual(lost(d, typed), [], f"{name}: fields kubectl does not know")

    def test_services_run_replicas_of_the_image_as_its_user(self):
        for d in self.tern():
            name = d["metadata"]["name"]
            self.assertGreaterEqual(d["spec"]["replicas"], 2, name)
            self.assertEqual(d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0, name)
            pod = d["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            binary = c["args"][0]
            self.assertRegex(self.dockerfile, rf"build-release/\S*/{re.escape(binary)}\b", name)
            uid = re.search(r"--uid (\d+)", self.dockerfile).group(1)
            self.assertEqual(str(pod["securityContext"]["runAsUser"]), uid, name)
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], name)
            self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"], name)
            env = env_of(c)
            self.assertEqual(env["HOST"], "0.0.0.0", name)
            self.assertEqual(env["ADMIN_HOST"], "0.0.0.0", name)

    def test_every_container_has_resources_and_probes_on_its_admin_health_endpoints(self):
        for d in self.workloads():
            for c in d["spec"]["template"]["spec"]["containers"]:
                name = f"{d['metadata']['name']}/{c['name']}"
                for side in ("requests", "limits"):
                    self.assertLessEqual({"cpu", "memory"}, set(c["resources"][side]), f"{name} {side}")
                self.assertIn("readinessProbe", c, name)
                self.assertIn("livenessProbe", c, name)
                if d["kind"] == "StatefulSet":
                    continue
                admin = int(env_of(c)["ADMIN_PORT"])
                self.assertEqual(port_named(c, "admin"), admin, name)
                for probe, path in (("readinessProbe", "/health/ready"), ("livenessProbe", "/health/live")):
                    self.assertEqual(c[probe]["httpGet"], {"path": path, "port": "admin"}, f"{name} {probe}")
                self.assertEqual(port_named(c, "rpc" if "rpc" in {p["name"] for p in c["ports"]} else "http"),
                                 int(env_of(c)["PORT"]), name)

    def test_termination_grace_is_above_prestop_and_the_drain(self):
        for d in self.tern():
            pod = d["spec"]["template"]["spec"]
            (c,) = pod["containers"]
            name = d["metadata"]["name"]
            command = c["lifecycle"]["preStop"]["exec"]["command"]
            self.assertEqual(command[0], "sleep", name)
            env = env_of(c)
            drain_s = (int(env.get("DRAIN_GRACE_MS", 0)) + int(env["DRAIN_TIMEOUT_MS"])) / 1000
            self.assertGreater(pod["terminationGracePeriodSeconds"], float(command[1]) + drain_s, name)

    def test_headless_services_select_their_pods_on_the_rpc_port(self):
        for name in ("users", "products"):
            svc, dep = self.get("Service", name), self.get("Deployment", name)
            self.assertEqual(svc["spec"]["clusterIP"], "None", f"{name}: headless, one DNS record per pod")
            labels = dep["spec"]["template"]["metadata"]["labels"]
            self.assertLessEqual(svc["spec"]["selector"].items(), labels.items(), name)
            self.assertLessEqual(dep["spec"]["selector"]["matchLabels"].items(), labels.items(), name)
            (c,) = dep["spec"]["template"]["spec"]["containers"]
            rpc = next(p for p in svc["spec"]["ports"] if p["name"] == "rpc")
            self.assertEqual(rpc["port"], int(env_of(c)["PORT"]), name)
            self.assertEqual(rpc["targetPort"], "rpc", name)

    def test_the_gateway_reaches_every_upstream_and_is_published_by_a_service(self):
        gw = self.get("Deployment", "gateway")
        (c,) = gw["spec"]["template"]["spec"]["containers"]
        env = env_of(c)
        for upstream in self.routes["upstreams"]:
            host, port = env[f"UPSTREAM_{upstream.upper()}"].rsplit(":", 1)
            svc = self.get("Service", host)
            self.assertEqual(svc["spec"]["clusterIP"], "None", upstream)
            self.assertIn(int(port), [p["port"] for p in svc["spec"]["ports"]], upstream)
        svc = self.get("Service", "gateway")
        self.assertNotEqual(svc["spec"].get("clusterIP"), "None")
        self.assertLessEqual(svc["spec"]["selector"].items(), gw["spec"]["template"]["metadata"]["labels"].items())
        self.assertEqual([p["targetPort"] for p in svc["spec"]["ports"]], ["http"])

    def test_the_routes_configmap_is_gateway_routes_json_mounted_where_gateway_config_points(self):
        cm = self.get("ConfigMap", "gateway-config")
        self.assertEqual(json.loads(cm["data"]["routes.json"]), self.routes,
                         "deploy/k8s/gateway-config.yaml differs from gateway/routes.json")
        gw = self.get("Deployment", "gateway")["spec"]["template"]["spec"]
        (c,) = gw["containers"]
        config = env_of(c)["GATEWAY_CONFIG"]
        volume = next(v for v in gw["volumes"] if v.get("configMap", {}).get("name") == "gateway-config")
        mount = next(m for m in c["volumeMounts"] if m["name"] == volume["name"])
        self.assertEqual(os.path.join(mount["mountPath"], "routes.json"), config)

    def test_every_secret_reference_resolves_and_each_key_secret_is_set(self):
        refs = []
        for d in self.workloads():
            for c in d["spec"]["template"]["spec"]["containers"]:
                for e in c.get("env", []):
                    ref = e.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        refs.append((d["metadata"]["name"], e["name"], ref["name"], ref["key"]))
        self.assertTrue(refs)
        for owner, var, secret, key in refs:
            s = self.get("Secret", secret)
            self.assertIn(key, {**s.get("data", {}), **s.get("stringData", {})}, f"{owner} {var}")
        gw_env = {var: (secret, key) for owner, var, secret, key in refs if owner == "gateway"}
        for k in self.routes["auth"]["keys"]:
            if "secret_env" in k:
                self.assertIn(k["secret_env"], gw_env, f"the gateway's key {k.get('kid')}")
        by_var = {(owner, var): (secret, key) for owner, var, secret, key in refs}
        for name in ("users", "products"):
            self.assertEqual(by_var[(name, "PGPASSWORD")], by_var[("postgres", "POSTGRES_PASSWORD")], name)

    def test_replicas_share_postgresql_on_a_volume_of_its_own(self):
        pg = self.get("StatefulSet", "postgres")
        svc = self.get("Service", pg["spec"]["serviceName"])
        self.assertEqual(svc["spec"]["clusterIP"], "None")
        (c,) = pg["spec"]["template"]["spec"]["containers"]
        (claim,) = pg["spec"]["volumeClaimTemplates"]
        self.assertIn(claim["metadata"]["name"], [m["name"] for m in c["volumeMounts"]])
        self.assertIn("storage", claim["spec"]["resources"]["requests"])
        env = env_of(c)
        for name in ("users", "products"):
            (sc,) = self.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
            url = re.fullmatch(r"postgres(?:ql)?://([^:@/]+)@([^:/]+):(\d+)/(\w+)", env_of(sc)["DATABASE_URL"])
            self.assertIsNotNone(url, name)
            user, host, port, db = url.groups()
            self.assertEqual((user, host, int(port), db),
                             (env["POSTGRES_USER"], svc["metadata"]["name"], port_named(c, "postgres"),
                              env["POSTGRES_DB"]), name)



if __name__ == "__main__":
    unittest.main()
