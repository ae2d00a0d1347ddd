"""manifests/ and certs/: every YAML parses, every kustomization resolves,
thaw-webhook's deployment keeps the invariants an operator relies on, and
certs/gen-webhook-certs.sh makes a certificate the apiserver would accept.
The cache registry, the node-local endpoint and thaw-controller (Step 3)
keep theirs too, and the two registry configs, run by real docker-registry
processes, chain: an image pushed to the cache resolves through the
node-local endpoint under its rewritten name.

Rendering uses `kubectl kustomize` when kubectl is on PATH (Debian has no
kustomize package and bookworm's kubernetes-client 1.20 predates
components; the kubectl here is the Kubernetes project's, with kustomize
v5). Without it the render checks skip, and the invariants are still
checked on the objects this file resolves itself."""

import base64
import copy
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)
import urllib.error
import urllib.parse
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MANIFESTS = os.path.join(REPO, "manifests")
GEN = os.path.join(REPO, "certs", "gen-webhook-certs.sh")
sys.path[:0] = [os.path.join(HERE, "kubeemu")]

import admission  # noqa: E402  (the emulator's webhook matching)
sys.path.insert(0, HERE)
import token_server  # noqa: E402  (the cache's realm in ProxyChain)

NS = "thaw-system"
# The node-local endpoint's own namespace (hostNetwork: Pod Security
# privileged), apart from NS (restricted). manifests/README.md says why.
NODE_NS = "thaw-node"
BASE = os.path.join(MANIFESTS, "base")
KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# The design contract, whose flag table the manifests' args must come from.
DESIGN = os.path.join(REPO, "docs", "design.md")


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kustomization_file(d):
    for name in KUSTOMIZATION:
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    return None


def resolve(d, seen=()):
    """The objects a kustomization directory yields before transformers:
    its resources and components, recursively. Patches are not applied."""
    d = os.path.realpath(d)
    if d in seen:
        raise AssertionError("kustomization cycle through %s" % d)
    k = load_all(kustomization_file(d))[0]
    objs = []
    for entry in (k.get("resources") or []) + (k.get("components") or []):
        p = os.path.join(d, entry)
        if os.path.isdir(p):
            objs += resolve(p, seen + (d,))
        else:
            objs += load_all(p)
    return objs


def kubectl_kustomize(d):
    """Objects rendered by kubectl's kustomize (test/deps.sh installs
    kubectl, so its absence is a failure, not a skip)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        raise AssertionError("kubectl not installed: test/deps.sh installs it")
    r = subprocess.run([kubectl, "kustomize", d], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError("kubectl kustomize %s: %s" % (d, r.stderr))
    return [o for o in yaml.safe_load_all(r.stdout) if o]


def find(objs, kind, name):
    hits = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(hits) != 1:
        raise AssertionError("%d objects %s/%s" % (len(hits), kind, name))
    return hits[0]


def design_flags():
    """Flag names from the first column of docs/design.md's flag table."""
    with open(DESIGN) as f:
        text = f.read()
    table = text.split("## Flags", 1)[1].split("\n## ", 1)[0]
    flags = set()
    for line in table.splitlines():
        if line.startswith("|"):
            flags.update(re.findall(r"`(--[a-z-]+)`", line.split("|")[1]))
    return flags


def snapshot(d):
    """Every file under d and its bytes."""
    files = {}
    for root, _, names in os.walk(d):
        for n in names:
            with open(os.path.join(root, n), "rb") as f:
                files[os.path.join(root, n)] = f.read()
    return files


def openssl(*args, data=None):
    r = subprocess.run(("openssl",) + args, capture_output=True, text=True,
                       input=data, timeout=60)
    if r.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), r.stderr))
    return r.stdout


class Layout(unittest.TestCase):
    def test_every_yaml_parses_and_has_a_kind(self):
        n = 0
        for root, _, files in os.walk(MANIFESTS):
            if not kustomization_file(root):
                continue  # not kustomize input (e.g. promtool tests)
            for f in files:
                if not f.endswith((".yaml", ".yml")):
                    continue
                for doc in load_all(os.path.join(root, f)):
                    n += 1
                    self.assertIn("apiVersion", doc, f)
                    self.assertIn("kind", doc, f)
        self.assertGreater(n, 10)

    def test_kustomizations_resolve_and_leave_nothing_out(self):
        dirs = [root for root, _, _ in os.walk(MANIFESTS) if kustomization_file(root)]
        self.assertIn(MANIFESTS, dirs)
        for d in dirs:
            k = load_all(kustomization_file(d))[0]
            kind = k.get("kind", "Kustomization")
            self.assertIn(kind, ("Kustomization", "Component"), d)
            used = set()
            for entry in (k.get("resources") or []) + (k.get("components") or []):
                p = os.path.normpath(os.path.join(d, entry))
                self.assertTrue(os.path.exists(p), "%s: %s missing" % (d, entry))
                if os.path.isdir(p):
                    self.assertIsNotNone(kustomization_file(p), p)
                used.add(p)
            for patch in k.get("patches") or []:
                if "path" in patch:
                    p = os.path.join(d, patch["path"])
                    self.assertTrue(os.path.isfile(p), "%s: %s missing" % (d, p))
                    used.add(os.path.normpath(p))
            # Every YAML beside a kustomization is one of its inputs.
            for f in os.listdir(d):
                p = os.path.join(d, f)
                if f.endswith(".yaml") and f not in KUSTOMIZATION:
                    self.assertIn(p, used, "%s is not in %s's kustomization" % (f, d))

    def test_root_composes_the_parts(self):
        # The default install is the base as it is.
        root = load_all(os.path.join(MANIFESTS, "kustomization.yaml"))[0]
        self.assertEqual(root["resources"], ["base"])
        self.assertEqual(set(root) - {"apiVersion", "kind"}, {"resources"})
        k = load_all(os.path.join(BASE, "kustomization.yaml"))[0]
        for part in ("namespace.yaml", "../crd", "../webhook", "../registry", "../node-local",
                     "../controller"):
            self.assertIn(part, k["resources"])
        # cert-manager, S3 storage and private images are opt-in (Components
        # an overlay adds).
        self.assertNotIn("components", k)
        for comp in ("components/cert-manager", "components/s3", "components/private-images"):
            self.assertEqual(load_all(os.path.join(MANIFESTS, comp,
                                                   "kustomization.yaml"))[0]["kind"], "Component")

    def test_kubectl_kustomize_renders_the_same_objects(self):
        rendered = kubectl_kustomize(MANIFESTS)
        key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        self.assertEqual(sorted(map(key, rendered)), sorted(map(key, resolve(MANIFESTS))))


class Webhook(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objs = resolve(MANIFESTS)
        cls.dep = find(cls.objs, "Deployment", "thaw-webhook")
        cls.pod = cls.dep["spec"]["template"]["spec"]
        cls.ctr = cls.pod["containers"][0]
        cls.svc = find(cls.objs, "Service", "thaw-webhook")
        cls.mwc = find(cls.objs, "MutatingWebhookConfiguration", "thaw-webhook")
        cls.hook = cls.mwc["webhooks"][0]

    def test_namespace(self):
        for name in (NS, NODE_NS):
            ns = find(self.objs, "Namespace", name)
            self.assertEqual(ns["metadata"]["labels"]["thaw.dev/caching"], "disabled")
        for o in self.objs:
            if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole",
                                 "ClusterRoleBinding", "MutatingWebhookConfiguration"):
                node_local = o["metadata"]["name"] == "thaw-node-local"
                self.assertEqual(o["metadata"].get("namespace"), NODE_NS if node_local else NS,
                                 o["metadata"]["name"])

    def test_replicas_spread_and_budget(self):
        self.assertEqual(self.dep["spec"]["replicas"], 2)
        self.assertEqual(self.dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
        sel = self.dep["spec"]["selector"]["matchLabels"]
        labels = self.dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(sel.items() <= labels.items())
        terms = self.pod["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertTrue(any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                            and t["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel
                            for t in terms))
        pdb = find(self.objs, "PodDisruptionBudget", "thaw-webhook")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], sel)
        self.assertEqual(self.svc["spec"]["selector"], sel)
        # Not system-cluster-critical: failurePolicy is Ignore.
        self.assertNotIn(self.pod.get("priorityClassName"),
                         ("system-cluster-critical", "system-node-critical"))

    def test_probes(self):
        metrics = {p["name"]: p["containerPort"] for p in self.ctr["ports"]}["metrics"]
        self.assertEqual(metrics, 8080)
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                            ("startupProbe", "/healthz")):
            get = self.ctr[probe]["httpGet"]
            self.assertEqual(get["path"], path, probe)
            self.assertIn(get["port"], ("metrics", 8080), probe)
            self.assertNotIn("scheme", get)  # plain HTTP on the metrics port

    def test_resources(self):
        res = self.ctr["resources"]
        self.assertEqual(set(res["requests"]), {"cpu", "memory"})
        self.assertIn("memory", res["limits"])

    def test_security_context(self):
        psc, sc = self.pod["securityContext"], self.ctr["securityContext"]
        self.assertTrue(psc["runAsNonRoot"])
        self.assertEqual(psc["runAsUser"], 65532)
        self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault")
        self.assertTrue(sc["runAsNonRoot"])
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("add", sc["capabilities"])
        self.assertNotIn("privileged", sc)
        self.assertFalse(self.pod.get("hostNetwork"))
        self.assertIs(self.pod["automountServiceAccountToken"], True)
        self.assertEqual(self.pod["serviceAccountName"], "thaw-webhook")
        find(self.objs, "ServiceAccount", "thaw-webhook")

    def test_tls_volume(self):
        vol = {v["name"]: v for v in self.pod["volumes"]}
        mount = [m for m in self.ctr["volumeMounts"] if m["mountPath"] == "/etc/thaw/tls"][0]
        self.assertTrue(mount["readOnly"])
        self.assertNotIn("subPath", mount)  # subPath mounts never see a rotation
        self.assertEqual(vol[mount["name"]]["secret"]["secretName"], "thaw-webhook-tls")
        self.assertEqual(vol[mount["name"]]["secret"]["defaultMode"], 0o440)

    def args(self):
        return dict(a[2:].split("=", 1) for a in self.ctr["args"])

    def test_args(self):
        args = self.args()
        self.assertEqual(args["tls-cert-file"], "/etc/thaw/tls/tls.crt")
        self.assertEqual(args["tls-key-file"], "/etc/thaw/tls/tls.key")
        self.assertEqual(args["bind-address"], ":9443")
        self.assertEqual(args["metrics-bind-address"], ":8080")
        self.assertEqual(args["cache-host"], "localhost:7439")
        self.assertEqual(args["namespace"], "$(POD_NAMESPACE)")
        self.assertEqual(args["registry-url"], "http://thaw-registry.$(POD_NAMESPACE).svc:5000")
        env = {e["name"]: e for e in self.ctr["env"]}
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.namespace")
        # No registry, no tag: both come from the base's images: block.
        self.assertEqual(self.ctr["image"], "thaw/thaw-webhook")
        self.assertEqual(self.ctr["imagePullPolicy"], "IfNotPresent")

    def test_args_are_design_flags(self):
        flags = design_flags()
        for a in self.ctr["args"]:
            self.assertIn(a.split("=", 1)[0], flags)

    def test_args_are_webhook_options(self):
        main = os.path.join(REPO, "webhook", "main.c")
        with open(main) as f:
            src = f.read()
        for a in self.ctr["args"]:
            name = a.split("=", 1)[0][2:]
            self.assertIn('{"%s", required_argument' % name, src)

    def test_service_reaches_the_container(self):
        ports = {p["name"]: p["containerPort"] for p in self.ctr["ports"]}
        self.assertEqual(ports["https"], int(self.args()["bind-address"].rsplit(":", 1)[1]))
        svc = {p["name"]: p for p in self.svc["spec"]["ports"]}
        for name in ("https", "metrics"):
            tp = svc[name]["targetPort"]
            self.assertEqual(ports[tp] if isinstance(tp, str) else tp, ports[name])
        cc = self.hook["clientConfig"]["service"]
        self.assertEqual(cc, {"namespace": NS, "name": "thaw-webhook",
                              "path": "/mutate", "port": 443})
        self.assertEqual(svc["https"]["port"], cc["port"])
        self.assertEqual(self.svc["metadata"]["name"], cc["name"])

    def test_webhook_settings(self):
        h = self.hook
        self.assertEqual(len(self.mwc["webhooks"]), 1)
        self.assertEqual(h["name"].count("."), 2)  # fully qualified, three segments
        self.assertEqual(h["admissionReviewVersions"], ["v1"])
        self.assertEqual(h["failurePolicy"], "Ignore")
        self.assertEqual(h["sideEffects"], "NoneOnDryRun")
        self.assertEqual(h["reinvocationPolicy"], "IfNeeded")
        self.assertEqual(h["matchPolicy"], "Equivalent")
        self.assertLessEqual(h["timeoutSeconds"], 5)
        # No caBundle in the base: an apply must not wipe the injected one.
        self.assertNotIn("caBundle", h["clientConfig"])
        rules = sorted((tuple(r["operations"]), tuple(r["resources"]), tuple(r["apiGroups"]),
                        tuple(r["apiVersions"]), r["scope"]) for r in h["rules"])
        self.assertEqual(rules, [(("CREATE",), ("pods",), ("",), ("v1",), "Namespaced"),
                                 (("UPDATE",), ("pods/ephemeralcontainers",), ("",), ("v1",),
                                  "Namespaced")])

    def test_every_apiserver_default_is_explicit(self):
        """What the apiserver stores equals what we wrote (no kubectl diff)."""
        stored = admission.default_config(copy.deepcopy(self.mwc))
        for got, want in zip(stored["webhooks"], self.mwc["webhooks"]):
            self.assertEqual(got, dict(sorted(want.items())))

    def test_which_pods_are_sent(self):
        """The emulator's ShouldCallHook on the configuration as written."""
        ns_labels = {
            "default": {},
            "oscar-svc": {"thaw.dev/cache-private": "true"},
            "kube-system": {},
            NS: {},
            "opted-out": {"thaw.dev/caching": "disabled"},
        }
        for name, labels in ns_labels.items():
            labels["kubernetes.io/metadata.name"] = name
        chain = admission.AdmissionChain(
            lambda: [self.mwc],
            lambda n: {"metadata": {"name": n, "labels": ns_labels[n]}})

        def sent(ns, op="CREATE", sub="", pod_labels=None):
            pod = {"metadata": {"name": "p", "namespace": ns, "labels": pod_labels or {}}}
            attrs = {"operation": op, "group": "", "version": "v1", "resource": "pods",
                     "subresource": sub, "namespace": ns, "name": "p", "object": pod,
                     "old_object": pod if op == "UPDATE" else None}
            return chain.should_call(self.hook, attrs, pod)

        self.assertTrue(sent("default"))
        self.assertTrue(sent("oscar-svc"))
        self.assertTrue(sent("default", "UPDATE", "ephemeralcontainers"))
        self.assertFalse(sent("kube-system"))
        self.assertFalse(sent(NS))
        self.assertFalse(sent("opted-out"))
        self.assertFalse(sent("opted-out", "UPDATE", "ephemeralcontainers"))
        self.assertFalse(sent("default", pod_labels={"thaw.dev/caching": "disabled"}))
        self.assertFalse(sent("default", "UPDATE"))
        self.assertFalse(sent("default", "UPDATE", "status"))
        self.assertFalse(sent("default", "DELETE"))

    def test_rbac_least_privilege(self):
        role = find(self.objs, "ClusterRole", "thaw-webhook")
        rules = sorted((tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"])))
                       for r in role["rules"])
        self.assertEqual(rules, [(("",), ("namespaces",), ("list", "watch")),
                                 (("thaw.dev",), ("cachedimages",),
                                  ("create", "list", "watch"))])
        for o in self.objs:
            if o["kind"] in ("Role", "ClusterRole"):
                for r in o.get("rules") or []:
                    self.assertNotIn("secrets", r.get("resources", []), o["metadata"]["name"])
                    self.assertNotIn("*", r.get("resources", []) + r.get("verbs", []))
        binding = find(self.objs, "ClusterRoleBinding", "thaw-webhook")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "ClusterRole", "name": "thaw-webhook"})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount",
                                                "name": "thaw-webhook", "namespace": NS}])

    def test_lease_role_read_only_one_name(self):
        # cold wait: list/watch of the controller's Lease, nothing else
        role = find(self.objs, "Role", "thaw-webhook-lease")
        self.assertEqual(role["metadata"]["namespace"], NS)
        self.assertEqual(role["rules"], [{"apiGroups": ["coordination.k8s.io"],
                                          "resources": ["leases"],
                                          "resourceNames": ["thaw-controller"],
                                          "verbs": ["list", "watch"]}])
        binding = find(self.objs, "RoleBinding", "thaw-webhook-lease")
        self.assertEqual(binding["metadata"]["namespace"], NS)
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "Role", "name": "thaw-webhook-lease"})
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount",
                                                "name": "thaw-webhook", "namespace": NS}])
        # off by default: the base passes no --cold-wait
        self.assertNotIn("cold-wait", self.args())


class CertManager(unittest.TestCase):
    def test_component(self):
        d = os.path.join(MANIFESTS, "components", "cert-manager")
        objs = resolve(d)
        cert = find(objs, "Certificate", "thaw-webhook")
        self.assertEqual(cert["spec"]["secretName"], "thaw-webhook-tls")
        self.assertEqual(set(cert["spec"]["dnsNames"]),
                         {"thaw-webhook", "thaw-webhook.thaw-system", "thaw-webhook.thaw-system.svc",
                          "thaw-webhook.thaw-system.svc.cluster.local"})
        self.assertIn("server auth", cert["spec"]["usages"])
        ca_issuer = find(objs, "Issuer", cert["spec"]["issuerRef"]["name"])
        ca_cert = [c for c in objs if c["kind"] == "Certificate"
                   and c["spec"]["secretName"] == ca_issuer["spec"]["ca"]["secretName"]][0]
        self.assertTrue(ca_cert["spec"]["isCA"])
        self.assertIn("selfSigned", find(objs, "Issuer",
                                         ca_cert["spec"]["issuerRef"]["name"])["spec"])
        patch = load_all(os.path.join(d, "inject-ca.yaml"))[0]
        self.assertEqual(patch["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                         "%s/%s" % (cert["metadata"]["namespace"], cert["metadata"]["name"]))

    def test_overlay_renders(self):
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
                yaml.safe_dump({"resources": [os.path.relpath(MANIFESTS, tmp)],
                                "components": [os.path.relpath(
                                    os.path.join(MANIFESTS, "components", "cert-manager"),
                                    tmp)]}, f)
            objs = kubectl_kustomize(tmp)
        mwc = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")
        self.assertEqual(mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                         "thaw-system/thaw-webhook")
        self.assertEqual(mwc["webhooks"][0]["failurePolicy"], "Ignore")  # merge kept the rest
        find(objs, "Certificate", "thaw-webhook")


class GenCerts(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.out = os.path.join(self.tmp.name, "out")

    def tearDown(self):
        self.tmp.cleanup()

    def gen(self, *args, rc=0):
        r = subprocess.run([GEN] + list(args), capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, rc, r.stderr)
        return r.stdout + r.stderr

    def file(self, name):
        with open(os.path.join(self.out, name)) as f:
            return f.read()

    def assert_no_key_printed(self, output):
        self.assertNotIn("PRIVATE KEY", output)
        for name in ("tls.key", "ca.key"):
            body = "".join(self.file(name).splitlines()[1:-1])
            for i in range(0, len(body) - 16, 16):
                self.assertNotIn(body[i:i + 16], output.replace("\n", ""))

    def sans(self, name="tls.crt"):
        text = openssl("x509", "-in", os.path.join(self.out, name), "-noout", "-ext",
                       "subjectAltName")
        return {s.strip() for s in text.splitlines()[1].split(",")}

    def test_help_and_bad_options(self):
        self.assertIn("--namespace", self.gen("--help"))
        self.gen("--bogus", rc=2)
        self.gen("--days", "0", rc=2)
        self.gen("--namespace", "Bad_Name", "--out", self.out, rc=2)
        self.gen("--out", rc=2)
        self.gen("--base", self.tmp.name, "--out", self.out, rc=2)  # no kustomization
        self.assertIn("--base", self.gen("--help"))
        self.assertFalse(os.path.exists(self.out))

    def test_certificate(self):
        tracked = snapshot(MANIFESTS)
        out = self.gen("--out", self.out)
        self.assertIn("kubectl apply -k " + self.out, out)
        self.assert_no_key_printed(out)
        for f in ("ca.crt", "ca.key", "tls.crt", "tls.key", "kustomization.yaml",
                  "cabundle-patch.yaml"):
            self.assertTrue(os.path.isfile(os.path.join(self.out, f)), f)
        for key in ("tls.key", "ca.key"):
            mode = stat.S_IMODE(os.stat(os.path.join(self.out, key)).st_mode)
            self.assertEqual(mode, 0o600, key)
        crt, ca = os.path.join(self.out, "tls.crt"), os.path.join(self.out, "ca.crt")
        openssl("verify", "-CAfile", ca, crt)
        # As the apiserver checks it: the Service's DNS name, purpose serverAuth.
        openssl("verify", "-CAfile", ca, "-purpose", "sslserver",
                "-verify_hostname", "thaw-webhook.thaw-system.svc", crt)
        openssl("verify", "-CAfile", ca, "-verify_ip", "127.0.0.1", crt)
        with self.assertRaises(AssertionError):
            openssl("verify", "-CAfile", ca, "-verify_hostname", "evil.thaw-system.svc", crt)
        self.assertEqual(self.sans(), {
            "DNS:thaw-webhook", "DNS:thaw-webhook.thaw-system", "DNS:thaw-webhook.thaw-system.svc",
            "DNS:thaw-webhook.thaw-system.svc.cluster.local", "IP Address:127.0.0.1"})
        text = openssl("x509", "-in", crt, "-noout", "-text")
        self.assertIn("TLS Web Server Authentication", text)
        self.assertIn("CA:FALSE", text)
        self.assertRegex(text, r"(NIST CURVE: P-256|prime256v1|RSA Public-Key: \((2048|[3-9]\d{3}) bit)")
        self.assertIn("CA:TRUE", openssl("x509", "-in", ca, "-noout", "-text"))
        # About a year, and checkend agrees with the default --days 365.
        openssl("x509", "-in", crt, "-noout", "-checkend", str(364 * 86400))
        self.assertEqual(openssl("x509", "-in", crt, "-noout", "-pubkey"),
                         openssl("pkey", "-in", os.path.join(self.out, "tls.key"), "-pubout"))
        # The caBundle is base64(ca.crt).
        patch = load_all(os.path.join(self.out, "cabundle-patch.yaml"))[0]
        self.assertEqual(patch["metadata"]["name"], "thaw-webhook")
        hook = patch["webhooks"][0]
        mwc = find(resolve(MANIFESTS), "MutatingWebhookConfiguration", "thaw-webhook")
        self.assertEqual(hook["name"], mwc["webhooks"][0]["name"])
        self.assertEqual(base64.b64decode(hook["clientConfig"]["caBundle"]).decode(),
                         self.file("ca.crt"))
        # Tracked manifests stay as they are.
        self.assertEqual(snapshot(MANIFESTS), tracked)

    def test_idempotent_and_force(self):
        self.gen("--out", self.out)
        before = {f: self.file(f) for f in ("ca.crt", "tls.crt", "tls.key",
                                            "kustomization.yaml", "cabundle-patch.yaml")}
        out = self.gen("--out", self.out)
        self.assert_no_key_printed(out)
        self.assertEqual(before, {f: self.file(f) for f in before})
        # Different names: same CA, new serving certificate.
        self.gen("--out", self.out, "--service", "hook")
        self.assertEqual(self.file("ca.crt"), before["ca.crt"])
        self.assertNotEqual(self.file("tls.crt"), before["tls.crt"])
        self.assertIn("DNS:hook.thaw-system.svc", self.sans())
        self.gen("--out", self.out, "--force")
        self.assertNotEqual(self.file("ca.crt"), before["ca.crt"])
        self.assertNotEqual(self.file("tls.key"), before["tls.key"])
        openssl("verify", "-CAfile", os.path.join(self.out, "ca.crt"),
                os.path.join(self.out, "tls.crt"))

    def cabundle(self):
        patch = load_all(os.path.join(self.out, "cabundle-patch.yaml"))[0]
        return base64.b64decode(patch["webhooks"][0]["clientConfig"]["caBundle"]).decode()

    def test_expiring_ca_stays_trusted_until_it_expires(self):
        # A CA that does not outlive a new serving certificate is renewed.
        self.gen("--out", self.out, "--days", "3", "--ca-days", "3")
        old = self.file("ca.crt")
        self.gen("--out", self.out, "--days", "3", "--ca-days", "30")
        self.assertNotEqual(self.file("ca.crt"), old)
        self.assertEqual(self.file("ca-previous.crt"), old)
        self.assertEqual(self.cabundle(), self.file("ca.crt") + old)
        openssl("verify", "-CAfile", os.path.join(self.out, "ca.crt"),
                os.path.join(self.out, "tls.crt"))
        # --force (a leaked key) trusts only the new CA.
        self.gen("--out", self.out, "--force")
        self.assertFalse(os.path.exists(os.path.join(self.out, "ca-previous.crt")))
        self.assertEqual(self.cabundle(), self.file("ca.crt"))

    def test_kustomization_installs_secret_and_cabundle(self):
        self.gen("--out", self.out)
        objs = kubectl_kustomize(self.out)
        secret = find(objs, "Secret", "thaw-webhook-tls")
        self.assertEqual(secret["type"], "kubernetes.io/tls")
        self.assertEqual(secret["metadata"]["namespace"], NS)
        for key in ("tls.crt", "tls.key", "ca.crt"):
            self.assertEqual(base64.b64decode(secret["data"][key]).decode(), self.file(key))
        mwc = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")
        hook = mwc["webhooks"][0]
        self.assertEqual(base64.b64decode(hook["clientConfig"]["caBundle"]).decode(),
                         self.file("ca.crt"))
        self.assertEqual(hook["failurePolicy"], "Ignore")  # the patch merged by name
        self.assertEqual(hook["clientConfig"]["service"]["name"], "thaw-webhook")
        dep = find(objs, "Deployment", "thaw-webhook")
        vols = dep["spec"]["template"]["spec"]["volumes"]
        self.assertEqual(vols[0]["secret"]["secretName"], "thaw-webhook-tls")

    def test_other_namespace_and_service(self):
        self.gen("--out", self.out, "--namespace", "caching", "--service", "hook")
        self.assertIn("DNS:hook.caching.svc", self.sans())
        objs = kubectl_kustomize(self.out)
        for o in objs:
            if "namespace" in o["metadata"]:
                # Everything of thaw-system moves; thaw-node stays.
                want = NODE_NS if o["metadata"]["name"] == "thaw-node-local" else "caching"
                self.assertEqual(o["metadata"]["namespace"], want, o["kind"])
        self.assertEqual(sorted(o["metadata"]["name"] for o in objs if o["kind"] == "Namespace"),
                         ["caching", NODE_NS])
        # Still restricted: the moved Namespace keeps its labels.
        labels = find(objs, "Namespace", "caching")["metadata"]["labels"]
        self.assertEqual(labels["pod-security.kubernetes.io/enforce"], "restricted")
        # The node-local endpoints follow the cache registry's Service, and
        # their forwards both Services (the realm stays on the loopback).
        ds = find(objs, "DaemonSet", "thaw-node-local")["spec"]["template"]["spec"]
        for c in ds["containers"] + ds["initContainers"]:
            if c["name"] != "forward":
                self.assertEqual(env_of(c)["REGISTRY_PROXY_REMOTEURL"]["value"],
                                 "http://thaw-registry.caching.svc:5000", c["name"])
        self.assertEqual(sorted(forwards(node_forward(objs)[1]).values()),
                         ["thaw-registry.caching.svc:5000", "thaw-token.caching.svc:7442"])
        self.assertEqual(realm_of(objs), "http://127.0.0.1:7438/token")
        for kind in ("RoleBinding", "ClusterRoleBinding"):
            for b in (o for o in objs if o["kind"] == kind):
                self.assertEqual({s["namespace"] for s in b["subjects"]}, {"caching"},
                                 b["metadata"]["name"])
        find(objs, "Service", "hook")
        hook = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")["webhooks"][0]
        self.assertEqual(hook["clientConfig"]["service"]["namespace"], "caching")
        self.assertEqual(hook["clientConfig"]["service"]["name"], "hook")
        excluded = hook["namespaceSelector"]["matchExpressions"][1]
        self.assertEqual(excluded["key"], "kubernetes.io/metadata.name")
        self.assertEqual(excluded["values"], ["kube-system", "caching"])
        binding = find(objs, "ClusterRoleBinding", "thaw-webhook")
        self.assertEqual(binding["subjects"][0]["namespace"], "caching")


def config_of(objs, name):
    """The parsed config.yml of ConfigMap `name`."""
    return yaml.safe_load(find(objs, "ConfigMap", name)["data"]["config.yml"])


def overlay(*components):
    """Objects of manifests/ plus the given Components, rendered by kubectl."""
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            yaml.safe_dump({"resources": [os.path.relpath(MANIFESTS, tmp)],
                            "components": [os.path.relpath(os.path.join(MANIFESTS, c), tmp)
                                           for c in components]}, f)
        return kubectl_kustomize(tmp)


def rules_of(role):
    return sorted((tuple(r.get("apiGroups", [])), tuple(sorted(r["resources"])),
                   tuple(sorted(r["verbs"])), tuple(sorted(r.get("resourceNames", []))))
                  for r in role["rules"])


def env_of(ctr):
    return {e["name"]: e for e in ctr.get("env") or []}


def realm_of(objs):
    """The cache registry's token realm: its Deployment's
    REGISTRY_AUTH_TOKEN_REALM (which overrides config.yml's)."""
    ctr = find(objs, "Deployment", "thaw-registry")["spec"]["template"]["spec"]["containers"][0]
    return env_of(ctr)["REGISTRY_AUTH_TOKEN_REALM"]["value"]


def node_forward(objs):
    """(pod spec, container) of the node-local DaemonSet's `forward`."""
    pod = find(objs, "DaemonSet", "thaw-node-local")["spec"]["template"]["spec"]
    hits = [c for c in pod["containers"] if c["name"] == "forward"]
    if len(hits) != 1:
        raise AssertionError("%d forward containers" % len(hits))
    return pod, hits[0]


def forwards(ctr):
    """{listen: target} of thaw-node-forward's --forward args, $(VAR)
    expanded from the container's env as the kubelet does."""
    env = {k: e["value"] for k, e in env_of(ctr).items()}
    out = {}
    for a in ctr["args"]:
        if a.startswith("--forward="):
            spec = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                          lambda m: env[m.group(1)], a[len("--forward="):])
            listen, target = spec.split("=", 1)
            if listen in out:
                raise AssertionError("listen %s twice" % listen)
            out[listen] = target
    return out


def mebibytes(quantity):
    """A memory quantity (Mi, Gi, Ki or bytes) in MiB."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", str(quantity))
    if not m:
        raise AssertionError("unexpected quantity %s" % quantity)
    return int(m.group(1)) * {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, None: 1 / (1 << 20)}[
        m.group(2)]


class Hardened:
    """Checks shared by the new parts' pods."""

    def assert_hardened(self, pod, ctr, uid=65532):
        psc, sc = pod["securityContext"], ctr["securityContext"]
        self.assertTrue(psc["runAsNonRoot"])
        self.assertEqual(psc["runAsUser"], uid)
        self.assertEqual(psc["seccompProfile"]["type"], "RuntimeDefault")
        self.assertTrue(sc["runAsNonRoot"])
        self.assertTrue(sc["readOnlyRootFilesystem"])
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertNotIn("add", sc["capabilities"])
        self.assertNotIn("privileged", sc)

    def assert_resources(self, ctr):
        res = ctr["resources"]
        self.assertEqual(set(res["requests"]), {"cpu", "memory"})
        self.assertIn("memory", res["limits"])
        self.assertNotIn("cpu", res["limits"])

    def mounts(self, pod, ctr):
        vols = {v["name"]: v for v in pod["volumes"]}
        return {m["mountPath"]: vols[m["name"]] for m in ctr["volumeMounts"]}


class Registry(unittest.TestCase, Hardened):
    @classmethod
    def setUpClass(cls):
        cls.objs = resolve(MANIFESTS)
        cls.dep = find(cls.objs, "Deployment", "thaw-registry")
        cls.pod = cls.dep["spec"]["template"]["spec"]
        cls.ctr = cls.pod["containers"][0]
        cls.svc = find(cls.objs, "Service", "thaw-registry")
        cls.cfg = config_of(cls.objs, "thaw-registry")

    def test_one_replica_on_a_rwo_volume(self):
        self.assertEqual(self.dep["spec"]["replicas"], 1)
        # A surge pod would wait forever for the volume the old pod holds.
        self.assertEqual(self.dep["spec"]["strategy"], {"type": "Recreate"})
        pvc = find(self.objs, "PersistentVolumeClaim", "thaw-registry")
        self.assertEqual(pvc["spec"]["accessModes"], ["ReadWriteOnce"])
        data = self.mounts(self.pod, self.ctr)["/var/lib/registry"]
        self.assertEqual(data["persistentVolumeClaim"]["claimName"], "thaw-registry")
        self.assertEqual(self.cfg["storage"]["filesystem"]["rootdirectory"], "/var/lib/registry")

    def test_config(self):
        cfg = self.cfg
        self.assertIs(cfg["storage"]["delete"]["enabled"], True)  # the controller expires
        self.assertEqual(cfg["http"]["addr"], ":5000")
        self.assertNotIn("proxy", cfg)  # the cache accepts pushes
        self.assertIs(cfg["health"]["storagedriver"]["enabled"], True)
        mount = self.mounts(self.pod, self.ctr)
        self.assertEqual(self.ctr["command"][-1], "/etc/thaw/registry/config.yml")
        self.assertEqual(mount["/etc/thaw/registry"]["configMap"]["name"], "thaw-registry")

    def test_service_is_the_webhooks_registry_url(self):
        ports = {p["name"]: p["containerPort"] for p in self.ctr["ports"]}
        self.assertEqual(ports["http"], 5000)
        svc = {p["name"]: p for p in self.svc["spec"]["ports"]}
        self.assertEqual(svc["http"]["port"], 5000)
        self.assertIn(svc["http"]["targetPort"], ("http", 5000))
        labels = self.dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(self.svc["spec"]["selector"].items() <= labels.items())
        for dep in ("thaw-webhook", "thaw-controller"):
            ctr = find(self.objs, "Deployment", dep)["spec"]["template"]["spec"]["containers"][0]
            args = dict(a[2:].split("=", 1) for a in ctr["args"])
            self.assertEqual(args["registry-url"],
                             "http://%s.$(POD_NAMESPACE).svc:%d" % (self.svc["metadata"]["name"],
                                                                  svc["http"]["port"]), dep)

    def test_token_auth(self):
        """Only thaw-controller's tokens open the cache: the registry checks
        them against the certificate of the key the controller signs with,
        and issuer and service are the controller's constants. The realm is
        the controller's token Service as each node's loopback reaches it:
        the node-local DaemonSet's forward of that port to Service
        thaw-token (NodeLocalForward checks the forward's side)."""
        tok = self.cfg["auth"]["token"]
        self.assertEqual((tok["issuer"], tok["service"]), ("thaw-controller", "thaw-registry"))
        mounts = self.mounts(self.pod, self.ctr)
        cert_dir, cert_file = tok["rootcertbundle"].rsplit("/", 1)
        secret = mounts[cert_dir]["secret"]
        self.assertEqual(secret["secretName"], "thaw-token-key")
        self.assertEqual(secret["items"], [{"key": "tls.crt", "path": cert_file}])  # no key
        env = {e["name"]: e for e in self.ctr["env"]}
        svc = find(self.objs, "Service", "thaw-token")
        port = svc["spec"]["ports"][0]["port"]
        realm = realm_of(self.objs)
        self.assertEqual(realm, "http://127.0.0.1:7438/token")
        self.assertEqual(tok["realm"], realm)  # the config says the same
        # No namespace in it any more: nothing else used POD_NAMESPACE.
        self.assertEqual(set(env), {"REGISTRY_AUTH_TOKEN_REALM"})
        fwd = forwards(node_forward(self.objs)[1])
        self.assertEqual(fwd[urllib.parse.urlsplit(realm).netloc],
                         "thaw-token.%s.svc:%d" % (svc["metadata"]["namespace"], port))
        ctl = find(self.objs, "Deployment", "thaw-controller")["spec"]["template"]["spec"]
        cctr = ctl["containers"][0]
        args = dict(a[2:].split("=", 1) for a in cctr["args"])
        cmounts = self.mounts(ctl, cctr)
        key_dir = args["token-key-file"].rsplit("/", 1)[0]
        self.assertEqual(cmounts[key_dir]["secret"]["secretName"], "thaw-token-key")
        self.assertEqual(args["token-cert-file"], key_dir + "/tls.crt")
        self.assertEqual(args["token-bind-address"], ":%d" % port)
        ports = {p["name"]: p["containerPort"] for p in cctr["ports"]}
        self.assertIn(svc["spec"]["ports"][0]["targetPort"], ("token", port))
        self.assertEqual(ports["token"], port)
        labels = find(self.objs, "Deployment", "thaw-controller")["spec"]["template"][
            "metadata"]["labels"]
        self.assertTrue(svc["spec"]["selector"].items() <= labels.items())

    def test_probes(self):
        """/v2/ wants a token (401): the probes ask the debug port's storage
        health instead."""
        debug = int(self.cfg["http"]["debug"]["addr"].rsplit(":", 1)[1])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = self.ctr[probe]["httpGet"]
            self.assertEqual(get["path"], "/debug/health", probe)
            self.assertIn(get["port"], ("metrics", debug), probe)
            self.assertNotIn("scheme", get)

    def test_security_and_resources(self):
        self.assert_hardened(self.pod, self.ctr)
        self.assert_resources(self.ctr)
        self.assertIn("emptyDir", self.mounts(self.pod, self.ctr)["/tmp"])
        self.assertIs(self.pod["automountServiceAccountToken"], False)
        self.assertFalse(self.pod.get("hostNetwork"))

    def test_network_policy(self):
        np = find(self.objs, "NetworkPolicy", "thaw-registry")
        labels = self.dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(np["spec"]["podSelector"]["matchLabels"].items() <= labels.items())
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress"])
        push = [r for r in np["spec"]["ingress"]
                if {"port": 5000, "protocol": "TCP"} in r.get("ports", [])]
        self.assertEqual(len(push), 1)
        self.assertEqual(len(push[0]["ports"]), 1)  # 5000 is never opened by another rule
        self.assertIn("from", push[0])  # a rule without `from` admits everyone
        sources = push[0]["from"]
        for dep in ("thaw-controller", "thaw-webhook"):
            tl = find(self.objs, "Deployment", dep)["spec"]["template"]["metadata"]["labels"]
            self.assertTrue(any("podSelector" in s and
                                s["podSelector"]["matchLabels"].items() <= tl.items()
                                for s in sources), dep)
        # hostNetwork node-local endpoints come from node addresses; pods of
        # the pod network stay out.
        blocks = [s["ipBlock"] for s in sources if "ipBlock" in s]
        self.assertEqual(len(blocks), 1)
        self.assertTrue(blocks[0]["except"])
        for s in sources:
            self.assertNotIn("namespaceSelector", s)
        for r in np["spec"]["ingress"]:
            if r is not push[0]:
                self.assertNotIn(5000, [p["port"] for p in r["ports"]])


class RegistryS3(unittest.TestCase):
    D = os.path.join(MANIFESTS, "components", "s3")

    def patch(self, name):
        return load_all(os.path.join(self.D, name))[0]

    def test_config_patch(self):
        base = config_of(resolve(MANIFESTS), "thaw-registry")
        cfg = yaml.safe_load(self.patch("config-patch.yaml")["data"]["config.yml"])
        s3 = cfg["storage"]["s3"]
        self.assertIs(s3["forcepathstyle"], True)
        # What a site sets comes from the environment (settings.env), never
        # from this file: a key in both would have two places to change.
        settings = {}
        with open(os.path.join(self.D, "settings.env")) as f:
            for line in f:
                if line.strip() and not line.startswith("#"):
                    k, v = line.rstrip("\n").split("=", 1)
                    settings[k] = v
        keys = {k[len("REGISTRY_STORAGE_S3_"):].lower() for k in settings}
        self.assertEqual(keys, {"bucket", "region", "regionendpoint", "secure"})
        self.assertFalse(keys & set(s3))
        for key in ("accesskey", "secretkey"):
            self.assertNotIn(key, s3)  # from the Secret, as environment overrides
        self.assertNotIn("filesystem", cfg["storage"])
        self.assertIs(cfg["storage"]["delete"]["enabled"], True)
        # Only storage differs from the base config.
        self.assertEqual({k: v for k, v in cfg.items() if k != "storage"},
                         {k: v for k, v in base.items() if k != "storage"})

    def test_deployment_patch(self):
        dep = self.patch("deployment-patch.yaml")
        self.assertEqual(dep["spec"]["replicas"], 2)
        self.assertEqual(dep["spec"]["strategy"]["type"], "RollingUpdate")
        env = env_of(dep["spec"]["template"]["spec"]["containers"][0])
        for var in ("REGISTRY_STORAGE_S3_ACCESSKEY", "REGISTRY_STORAGE_S3_SECRETKEY",
                    "REGISTRY_HTTP_SECRET"):
            self.assertEqual(env[var]["valueFrom"]["secretKeyRef"]["name"], "thaw-registry-s3")
        # No Secret with keys in the repository.
        for f in os.listdir(self.D):
            for o in load_all(os.path.join(self.D, f)) if f.endswith(".yaml") else []:
                self.assertNotEqual(o.get("kind"), "Secret", f)

    def test_overlay_renders(self):
        objs = overlay("components/s3")
        self.assertFalse([o for o in objs if o["kind"] == "PersistentVolumeClaim"])
        dep = find(objs, "Deployment", "thaw-registry")
        self.assertEqual(dep["spec"]["replicas"], 2)
        pod = dep["spec"]["template"]["spec"]
        for v in pod["volumes"]:
            self.assertNotIn("persistentVolumeClaim", v)
        self.assertIn("s3", config_of(objs, "thaw-registry")["storage"])
        pdb = find(objs, "PodDisruptionBudget", "thaw-registry")
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"],
                         dep["spec"]["selector"]["matchLabels"])
        self.assertEqual(pod["containers"][0]["command"][-1], "/etc/thaw/registry/config.yml")


def gc_agents(objs):
    """(workload, container) of every thaw-registry-gc container, and how
    many agent processes the workloads run in all (replicas summed)."""
    found, total = [], 0
    for o in objs:
        if o["kind"] not in ("Deployment", "StatefulSet", "DaemonSet"):
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            if re.match(r"thaw/thaw-registry-gc([:@]|$)", c["image"]):
                found.append((o, c))
                total += o["spec"].get("replicas", 1) if o["kind"] != "DaemonSet" else 99
    return found, total


class RegistryGC(unittest.TestCase, Hardened):
    """Garbage collection (docs/design.md): the agent is a sidecar of the one
    registry pod on the filesystem PVC, and its own 1-replica Deployment with
    S3; either way the controller's --gc-url reaches exactly one agent, and
    only the controller reaches it."""

    def agent_args(self, ctr):
        args = dict(a[2:].split("=", 1) for a in ctr["args"])
        self.assertEqual(len(args), len(ctr["args"]))
        # Every flag given is in docs/design.md's agent flag table.
        with open(DESIGN) as f:
            section = f.read().split("### Garbage collection", 1)[1].split("\n## ", 1)[0]
        documented = set()
        for line in section.splitlines():
            if line.startswith("| `--"):
                documented.update(re.findall(r"`(--[a-z-]+)`", line.split("|")[1]))
        self.assertIn("--orphan-timeout", documented)
        for a in args:
            self.assertIn("--" + a, documented)
        self.assertNotIn("delete-untagged", " ".join(ctr["args"]))
        self.assertEqual(args["bind-address"], ":7440")
        self.assertEqual(args["metrics-bind-address"], ":7441")
        self.assertEqual(args["registry-binary"], "registry")
        self.assertEqual({p["name"]: p["containerPort"] for p in ctr["ports"]},
                         {"gc": 7440, "gc-metrics": 7441})
        # probes on the GET-only port, which every kubelet may reach
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            self.assertEqual(ctr[probe]["httpGet"]["path"], path)
            self.assertEqual(ctr[probe]["httpGet"]["port"], "gc-metrics")
        return args

    def check_service_and_policy(self, objs, agent_labels, not_labels):
        svc = find(objs, "Service", "thaw-registry-gc")
        self.assertTrue(svc["spec"]["selector"].items() <= agent_labels.items())
        self.assertFalse(svc["spec"]["selector"].items() <= not_labels.items())
        self.assertEqual([(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]],
                         [(7440, "gc"), (7441, "gc-metrics")])
        ctl = find(objs, "Deployment", "thaw-controller")
        args = dict(a[2:].split("=", 1) for a in ctl["spec"]["template"]["spec"]
                    ["containers"][0]["args"])
        self.assertEqual(args["gc-url"], "http://thaw-registry-gc.$(POD_NAMESPACE).svc:7440")
        np = find(objs, "NetworkPolicy", "thaw-registry-gc")
        sel = np["spec"]["podSelector"]["matchLabels"]
        self.assertTrue(sel.items() <= agent_labels.items())
        self.assertFalse(sel.items() <= not_labels.items())
        self.assertEqual(np["spec"]["policyTypes"], ["Ingress"])
        ctl_labels = ctl["spec"]["template"]["metadata"]["labels"]
        gc_rules = [r for r in np["spec"]["ingress"] if r["ports"][0]["port"] == 7440]
        self.assertEqual(len(gc_rules), 1)
        for rule in gc_rules:
            self.assertEqual(rule["ports"], [{"port": 7440, "protocol": "TCP"}])
            self.assertTrue(rule["from"])  # a rule without `from` admits everyone
            for src in rule["from"]:
                self.assertEqual(list(src), ["podSelector"])
                self.assertTrue(src["podSelector"]["matchLabels"].items() <= ctl_labels.items())
        # the rest opens only the GET-only metrics port, to everyone (as 5001)
        self.assertEqual([r for r in np["spec"]["ingress"] if r not in gc_rules],
                         [{"ports": [{"port": 7441, "protocol": "TCP"}]}])
        # No other policy opens 7440 on the agent's pods.
        for other in objs:
            if other["kind"] == "NetworkPolicy" and other is not np:
                for rule in other["spec"].get("ingress", []):
                    self.assertNotIn(7440, [p["port"] for p in rule.get("ports", [])])

    def test_sidecar_on_the_filesystem_volume(self):
        objs = resolve(MANIFESTS)
        found, total = gc_agents(objs)
        self.assertEqual(total, 1)
        dep, ctr = found[0]
        self.assertEqual(dep["metadata"]["name"], "thaw-registry")
        pod = dep["spec"]["template"]["spec"]
        reg = pod["containers"][0]
        self.assertEqual((reg["name"], ctr["name"]), ("registry", "registry-gc"))
        self.assertEqual(ctr["image"], "thaw/thaw-registry-gc")
        args = self.agent_args(ctr)
        # The registry's own config and volume.
        self.assertEqual(args["config"], reg["command"][-1])
        root = config_of(objs, "thaw-registry")["storage"]["filesystem"]["rootdirectory"]
        self.assertEqual(args["storage-dir"], root)
        mine, theirs = self.mounts(pod, ctr), self.mounts(pod, reg)
        self.assertEqual(mine[root], theirs[root])
        self.assertIn("persistentVolumeClaim", mine[root])
        cfg_dir = os.path.dirname(args["config"])
        self.assertEqual(mine[cfg_dir], theirs[cfg_dir])
        self.assert_hardened(pod, ctr)
        self.assert_resources(ctr)
        self.assertIs(pod["automountServiceAccountToken"], False)  # no API, no RBAC
        labels = dep["spec"]["template"]["metadata"]["labels"]
        self.check_service_and_policy(objs, labels, {})
        # The registry's Service does not send pulls to a port of the agent.
        svc = find(objs, "Service", "thaw-registry")
        self.assertNotIn(7440, [p["port"] for p in svc["spec"]["ports"]])

    def test_no_blob_descriptor_cache(self):
        # It answers HEAD 200 for blobs the collector deleted (test_gc.py).
        base = config_of(resolve(MANIFESTS), "thaw-registry")
        s3 = yaml.safe_load(load_all(os.path.join(MANIFESTS, "components", "s3",
                                                  "config-patch.yaml"))[0]["data"]["config.yml"])
        for cfg in (base, s3):
            self.assertNotIn("cache", cfg["storage"])
            self.assertIs(cfg["storage"]["delete"]["enabled"], True)

    def test_no_rbac_for_the_agent(self):
        for objs in (resolve(MANIFESTS), overlay("components/s3")):
            for o in objs:
                if o["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding",
                                 "ServiceAccount"):
                    self.assertNotIn("gc", o["metadata"]["name"])

    def test_own_deployment_with_s3(self):
        objs = overlay("components/s3")
        found, total = gc_agents(objs)
        self.assertEqual(total, 1)  # 2 registry replicas, still one agent
        dep, ctr = found[0]
        self.assertEqual(dep["metadata"]["name"], "thaw-registry-gc")
        self.assertEqual(dep["spec"]["replicas"], 1)
        self.assertEqual(dep["spec"]["strategy"], {"type": "Recreate"})  # never two
        reg = find(objs, "Deployment", "thaw-registry")
        self.assertEqual(reg["spec"]["replicas"], 2)
        self.assertEqual([c["name"] for c in reg["spec"]["template"]["spec"]["containers"]],
                         ["registry"])
        pod = dep["spec"]["template"]["spec"]
        args = self.agent_args(ctr)
        self.assertNotIn("storage-dir", args)  # S3 is not walked
        mounts = self.mounts(pod, ctr)
        self.assertEqual(mounts[os.path.dirname(args["config"])]["configMap"]["name"],
                         "thaw-registry")
        self.assertIn("s3", config_of(objs, "thaw-registry")["storage"])
        env = env_of(ctr)
        for var in ("REGISTRY_STORAGE_S3_ACCESSKEY", "REGISTRY_STORAGE_S3_SECRETKEY"):
            self.assertEqual(env[var]["valueFrom"]["secretKeyRef"]["name"], "thaw-registry-s3")
        self.assert_hardened(pod, ctr)
        self.assert_resources(ctr)
        self.assertIs(pod["automountServiceAccountToken"], False)
        for v in pod["volumes"]:
            self.assertNotIn("persistentVolumeClaim", v)
        agent_labels = dep["spec"]["template"]["metadata"]["labels"]
        reg_labels = reg["spec"]["template"]["metadata"]["labels"]
        self.check_service_and_policy(objs, agent_labels, reg_labels)
        # The registry's Service, policy and budget never select the agent.
        for kind in ("Service", "PodDisruptionBudget"):
            sel = find(objs, kind, "thaw-registry")["spec"]["selector"]
            sel = sel.get("matchLabels", sel)
            self.assertFalse(sel.items() <= agent_labels.items(), kind)
        np = find(objs, "NetworkPolicy", "thaw-registry")["spec"]["podSelector"]["matchLabels"]
        self.assertFalse(np.items() <= agent_labels.items())


class NodeLocal(unittest.TestCase, Hardened):
    @classmethod
    def setUpClass(cls):
        cls.objs = resolve(MANIFESTS)
        cls.ds = find(cls.objs, "DaemonSet", "thaw-node-local")
        cls.pod = cls.ds["spec"]["template"]["spec"]
        cls.ctr = [c for c in cls.pod["containers"] if c["name"] == "registry"][0]
        cls.cfg = config_of(cls.objs, "thaw-node-local")
        cls.svc = find(cls.objs, "Service", "thaw-registry")

    def test_host_network_everywhere(self):
        self.assertIs(self.pod["hostNetwork"], True)
        self.assertEqual(self.pod["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertIn({"operator": "Exists"}, self.pod["tolerations"])
        self.assertEqual(self.pod["priorityClassName"], "system-node-critical")
        self.assertNotIn("nodeSelector", self.pod)
        self.assertNotIn("affinity", self.pod)

    def test_loopback_7439_matches_cache_host(self):
        self.assertEqual(self.cfg["http"]["addr"], "127.0.0.1:7439")
        for dep in ("thaw-webhook", "thaw-controller"):
            ctr = find(self.objs, "Deployment", dep)["spec"]["template"]["spec"]["containers"][0]
            args = dict(a[2:].split("=", 1) for a in ctr["args"])
            self.assertEqual(args["cache-host"], "localhost:7439", dep)
        # No containerPort/hostPort: nothing listens on the node's addresses.
        for c in self.pod["containers"] + self.pod.get("initContainers", []):
            self.assertNotIn("ports", c)

    def test_proxy_of_the_registry_service(self):
        port = [p["port"] for p in self.svc["spec"]["ports"] if p["name"] == "http"][0]
        name = self.svc["metadata"]["name"]
        # The Service in the system's namespace, not the pod's (thaw-node).
        url = "http://%s.%s.svc:%d" % (name, self.svc["metadata"]["namespace"], port)
        self.assertEqual(self.ds["metadata"]["namespace"], NODE_NS)
        self.assertEqual(self.svc["metadata"]["namespace"], NS)
        self.assertEqual(self.cfg["proxy"]["remoteurl"], url)
        self.assertIn("ttl", self.cfg["proxy"])
        self.assertNotIn("auth", self.cfg)
        for c in [self.ctr] + self.pod["initContainers"]:
            self.assertEqual(env_of(c)["REGISTRY_PROXY_REMOTEURL"]["value"], url, c["name"])
            self.assertNotIn("$(", json.dumps(c.get("env")))
        # Same registry image as the cache.
        cache = find(self.objs, "Deployment", "thaw-registry")
        self.assertEqual(self.ctr["image"],
                         cache["spec"]["template"]["spec"]["containers"][0]["image"])

    def test_probes(self):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = self.ctr[probe]["httpGet"]
            self.assertEqual((get["host"], get["port"], get["path"]), ("127.0.0.1", 7439, "/v2/"))

    def test_storage_security_resources(self):
        mounts = self.mounts(self.pod, self.ctr)
        self.assertIn("emptyDir", mounts[self.cfg["storage"]["filesystem"]["rootdirectory"]])
        self.assertIn("emptyDir", mounts["/tmp"])
        self.assertEqual(mounts["/etc/thaw/registry"]["configMap"]["name"], "thaw-node-local")
        self.assertEqual(self.ctr["command"][-1], "/etc/thaw/registry/config.yml")
        self.assert_hardened(self.pod, self.ctr)
        self.assert_resources(self.ctr)
        self.assertIs(self.pod["automountServiceAccountToken"], False)
        for c in self.pod["initContainers"]:
            self.assertTrue(c["securityContext"]["readOnlyRootFilesystem"])
            self.assertIn("memory", c["resources"]["limits"])


class NodeLocalForward(unittest.TestCase, Hardened):
    """The DaemonSet's second container, thaw-node-forward (rendered by
    kubectl): the node's loopback 7440 to the cache registry's Service and
    the realm's port to thaw-token, so that containerd, which resolves no
    cluster DNS, reaches both as localhost (docs/design.md
    "Confidentiality and integrity of the cache")."""

    # thaw-node-forward's buffers (controller/forward.h): a connection
    # queues up to THAW_FORWARD_QUEUE_MAX (1 MiB) plus one 64 KiB read per
    # direction, and holds one more read buffer per side while reading.
    MIB_PER_CONNECTION = 2 * (1 + 64 / 1024) + 2 * 64 / 1024

    @classmethod
    def setUpClass(cls):
        cls.objs = kubectl_kustomize(MANIFESTS)
        cls.pod, cls.ctr = node_forward(cls.objs)
        cls.fwd = forwards(cls.ctr)

    def service(self, name, port_name=None):
        """"NAME.NAMESPACE.svc:PORT" of a rendered Service."""
        svc = find(self.objs, "Service", name)
        ports = svc["spec"]["ports"]
        port = [p for p in ports if port_name is None or p["name"] == port_name]
        self.assertEqual(len(port), 1, name)
        return "%s.%s.svc:%d" % (name, svc["metadata"]["namespace"], port[0]["port"])

    def test_targets_are_the_services(self):
        self.assertEqual(self.fwd, {"127.0.0.1:7440": self.service("thaw-registry", "http"),
                                    "127.0.0.1:7438": self.service("thaw-token")})
        # The same Service as the node-local proxy's remote.
        registry = [c for c in self.pod["containers"] if c["name"] == "registry"][0]
        self.assertEqual("http://" + self.fwd["127.0.0.1:7440"],
                         env_of(registry)["REGISTRY_PROXY_REMOTEURL"]["value"])
        # The env holds plain values (a rename replaces their namespace).
        for e in self.ctr["env"]:
            self.assertEqual(set(e), {"name", "value"})
            self.assertNotIn("$(", e["value"])
        # thaw-token reaches the controller's token port.
        ctl = find(self.objs, "Deployment", "thaw-controller")["spec"]["template"]["spec"]
        cargs = dict(a[2:].split("=", 1) for a in ctl["containers"][0]["args"])
        svc = find(self.objs, "Service", "thaw-token")["spec"]["ports"][0]
        self.assertEqual(cargs["token-bind-address"], ":%d" % svc["port"])
        self.assertIn(svc["targetPort"], ("token", svc["port"]))

    def test_realm_is_the_token_forward(self):
        """The realm the cache names is this forward's token listener on
        every node; the cache is 7440, next to the proxy's 7439."""
        realm = urllib.parse.urlsplit(realm_of(self.objs))
        self.assertEqual((realm.scheme, realm.path), ("http", "/token"))
        self.assertEqual(self.fwd[realm.netloc], self.service("thaw-token"))
        self.assertEqual(config_of(self.objs, "thaw-registry")["auth"]["token"]["realm"],
                         realm.geturl())
        self.assertIn("127.0.0.1:7440", self.fwd)
        proxy = config_of(self.objs, "thaw-node-local")["http"]["addr"]
        self.assertNotIn(proxy, self.fwd)  # no listen address taken twice

    def test_loopback_only(self):
        self.assertIs(self.pod["hostNetwork"], True)
        for listen in self.fwd:
            host, port = listen.rsplit(":", 1)
            self.assertEqual(host, "127.0.0.1", listen)
            self.assertTrue(1024 < int(port) < 65536, listen)  # no capability needed
        self.assertNotIn("ports", self.ctr)  # hostNetwork: would claim node ports

    def test_image_and_command(self):
        """thaw-controller's image (which holds thaw-node-forward), at the
        images: block's tag, as the controller runs."""
        ctl = find(self.objs, "Deployment", "thaw-controller")["spec"]["template"]["spec"]
        self.assertEqual(self.ctr["image"], ctl["containers"][0]["image"])
        self.assertRegex(self.ctr["image"], r"^thaw/thaw-controller:")
        self.assertEqual(self.ctr["command"], ["/usr/bin/thaw-node-forward"])
        flags = [a.split("=", 1)[0] for a in self.ctr["args"]]
        self.assertLessEqual(set(flags), {"--forward", "--max-connections",
                                          "--connect-timeout", "--log-level"})

    def test_probes_on_its_own_listener(self):
        realm = urllib.parse.urlsplit(realm_of(self.objs))
        for probe in ("livenessProbe", "readinessProbe"):
            tcp = self.ctr[probe]["tcpSocket"]
            self.assertEqual((tcp["host"], tcp["port"]), (realm.hostname, realm.port), probe)
            self.assertNotIn("httpGet", self.ctr[probe])

    def test_hardened_and_bounded(self):
        self.assert_hardened(self.pod, self.ctr)
        self.assert_resources(self.ctr)
        self.assertEqual(self.ctr["securityContext"]["runAsUser"], 65532)
        self.assertEqual(self.ctr["securityContext"]["seccompProfile"]["type"], "RuntimeDefault")
        self.assertNotIn("volumeMounts", self.ctr)  # writes nothing
        # Every connection's buffers fit the memory limit, with room for the
        # process itself.
        args = dict(a[2:].split("=", 1) for a in self.ctr["args"] if "=" in a)
        conns = int(args["max-connections"])
        self.assertTrue(1 <= conns <= 512, conns)
        limit = mebibytes(self.ctr["resources"]["limits"]["memory"])
        self.assertGreaterEqual(limit, conns * self.MIB_PER_CONNECTION + 16, limit)
        self.assertLessEqual(mebibytes(self.ctr["resources"]["requests"]["memory"]), 32)


CONTROLLER_RULES = sorted([
    (("thaw.dev",), ("cachedimages",),
     tuple(sorted(["list", "watch", "create", "patch", "delete"])), ()),
    (("thaw.dev",), ("cachedimages/status",), ("patch",), ()),
    (("",), ("namespaces", "pods", "podtemplates"), ("list", "watch"), ()),
    (("",), ("pods",), ("get", "patch"), ()),
    (("",), ("events",), ("create", "patch"), ()),
])


class Controller(unittest.TestCase, Hardened):
    @classmethod
    def setUpClass(cls):
        cls.objs = resolve(MANIFESTS)
        cls.dep = find(cls.objs, "Deployment", "thaw-controller")
        cls.pod = cls.dep["spec"]["template"]["spec"]
        cls.ctr = cls.pod["containers"][0]
        cls.sa = {"kind": "ServiceAccount", "name": "thaw-controller", "namespace": NS}

    def test_cluster_role(self):
        self.assertEqual(rules_of(find(self.objs, "ClusterRole", "thaw-controller")),
                         CONTROLLER_RULES)
        binding = find(self.objs, "ClusterRoleBinding", "thaw-controller")
        self.assertEqual(binding["roleRef"]["name"], "thaw-controller")
        self.assertEqual(binding["subjects"], [self.sa])
        find(self.objs, "ServiceAccount", "thaw-controller")

    def test_lease_role_in_own_namespace_only(self):
        role = find(self.objs, "Role", "thaw-controller-leader-election")
        self.assertEqual(role["metadata"]["namespace"], NS)
        self.assertEqual(rules_of(role), [
            (("coordination.k8s.io",), ("leases",), ("create",), ()),
            (("coordination.k8s.io",), ("leases",), ("get", "update"), ("thaw-controller",))])
        binding = find(self.objs, "RoleBinding", "thaw-controller-leader-election")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io",
                                              "kind": "Role",
                                              "name": "thaw-controller-leader-election"})
        self.assertEqual(binding["subjects"], [self.sa])
        for o in self.objs:
            if o["kind"] == "ClusterRole":
                for r in o["rules"]:
                    self.assertNotIn("leases", r["resources"], o["metadata"]["name"])

    def test_no_secrets_in_the_base(self):
        for o in self.objs:
            if o["kind"] in ("Role", "ClusterRole"):
                for r in o["rules"]:
                    self.assertNotIn("secrets", r["resources"], o["metadata"]["name"])
                    self.assertNotIn("*", r["resources"] + r["verbs"] + r.get("apiGroups", []))
        self.assertFalse([a for a in self.ctr["args"] if a.startswith("--allow-private")])

    def args(self):
        return dict(a[2:].split("=", 1) for a in self.ctr["args"])

    def test_args(self):
        args = self.args()
        self.assertEqual(len(args), len(self.ctr["args"]))  # no flag given twice
        self.assertEqual(args["registry-url"], "http://thaw-registry.$(POD_NAMESPACE).svc:5000")
        self.assertEqual(args["cache-host"], "localhost:7439")
        self.assertEqual(args["namespace"], "$(POD_NAMESPACE)")
        self.assertEqual(args["metrics-bind-address"], ":8081")
        self.assertEqual(args["refresh-interval"], "1h")
        self.assertEqual(args["expire-after"], "720h")
        self.assertEqual(args["leader-elect"], "true")
        self.assertEqual(args["prewarm-namespaces"], "oscar-svc")
        self.assertGreater(int(args["concurrency"]), 0)
        self.assertGreater(int(args["blob-concurrency"]), 0)
        env = env_of(self.ctr)
        self.assertEqual(env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
                         "metadata.namespace")
        self.assertEqual(self.ctr["image"], "thaw/thaw-controller")
        self.assertEqual(self.pod["serviceAccountName"], "thaw-controller")

    def test_args_are_design_flags(self):
        flags = design_flags()
        for a in self.ctr["args"]:
            self.assertIn(a.split("=", 1)[0], flags)

    def test_replicas_spread_and_budget(self):
        self.assertEqual(self.dep["spec"]["replicas"], 2)
        sel = self.dep["spec"]["selector"]["matchLabels"]
        labels = self.dep["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(sel.items() <= labels.items())
        terms = self.pod["affinity"]["podAntiAffinity"][
            "preferredDuringSchedulingIgnoredDuringExecution"]
        self.assertTrue(any(t["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
                            and t["podAffinityTerm"]["labelSelector"]["matchLabels"] == sel
                            for t in terms))
        pdb = find(self.objs, "PodDisruptionBudget", "thaw-controller")
        self.assertEqual(pdb["spec"]["minAvailable"], 1)
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"], sel)
        # Selectors of the other parts never pick controller pods.
        for kind, name in (("Deployment", "thaw-webhook"), ("Deployment", "thaw-registry"),
                           ("DaemonSet", "thaw-node-local")):
            other = find(self.objs, kind, name)["spec"]["selector"]["matchLabels"]
            self.assertFalse(other.items() <= labels.items(), name)

    def test_probes_and_metrics(self):
        ports = {p["name"]: p["containerPort"] for p in self.ctr["ports"]}
        self.assertEqual(ports, {"metrics": 8081, "token": 7442})
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"),
                            ("startupProbe", "/healthz")):
            get = self.ctr[probe]["httpGet"]
            self.assertEqual(get["path"], path, probe)
            self.assertIn(get["port"], ("metrics", 8081), probe)
        svc = find(self.objs, "Service", "thaw-controller-metrics")
        self.assertEqual(svc["spec"]["ports"][0]["port"], 8081)

    def test_security_and_resources(self):
        self.assert_hardened(self.pod, self.ctr)
        self.assert_resources(self.ctr)
        self.assertFalse(self.pod.get("hostNetwork"))


class ControllerPrivate(unittest.TestCase):
    D = os.path.join(MANIFESTS, "components", "private-images")

    RULES = sorted([
        (("",), ("secrets",), ("get",), ()),
        (("",), ("secrets",), ("create",), ()),
        (("",), ("secrets",), ("delete", "update"), ("thaw-pull",)),
        (("apiextensions.k8s.io",), ("customresourcedefinitions",), ("get",),
         ("cachedimages.thaw.dev",)),
    ])

    def test_component_adds_exactly_its_grants(self):
        """Pull secrets read by name; the thaw-pull Secrets made, updated and
        deleted (by that name only); their owner, the CRD, read by name.
        Never list or watch."""
        objs = resolve(self.D)
        roles = [o for o in objs if o["kind"] in ("Role", "ClusterRole")]
        self.assertEqual(len(roles), 1)
        self.assertEqual(sorted(rules_of(roles[0])), self.RULES)
        binding = find(objs, "ClusterRoleBinding", roles[0]["metadata"]["name"])
        self.assertEqual(binding["roleRef"]["name"], roles[0]["metadata"]["name"])
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount",
                                                "name": "thaw-controller", "namespace": NS}])
        k = load_all(kustomization_file(self.D))[0]
        self.assertEqual(k["kind"], "Component")
        ops = [op for p in k["patches"] for op in yaml.safe_load(p["patch"])]
        self.assertEqual(ops, [{"op": "add", "path": "/spec/template/spec/containers/0/args/-",
                                "value": "--allow-private=true"}])

    def test_overlay_renders(self):
        objs = overlay("components/private-images")
        args = find(objs, "Deployment", "thaw-controller")["spec"]["template"]["spec"][
            "containers"][0]["args"]
        self.assertEqual(args.count("--allow-private=true"), 1)
        self.assertIn("--leader-elect=true", args)  # the rest is kept
        flags = design_flags()
        if flags is not None:
            self.assertIn("--allow-private", flags)
        secrets = [r for o in objs if o["kind"] in ("Role", "ClusterRole")
                   for r in o["rules"] if "secrets" in r["resources"]]
        self.assertEqual(sorted(v for r in secrets for v in r["verbs"]),
                         ["create", "delete", "get", "update"])


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    """(status, headers, body); HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


class ProxyChain(unittest.TestCase):
    """The node-local config in front of the cache config, both run by real
    docker-registry processes on loopback: what the controller pushes to the
    cache under docker.io/library/x is what containerd gets from
    localhost:7439/docker.io/library/x. The cache's auth.token realm is
    test/token_server.py with thaw-controller's policy for this repository
    (anonymous pull; push and delete for the controller's account), so the
    node-local endpoint runs the anonymous token flow."""

    REPO = "docker.io/library/x"

    def setUp(self):
        self.exe = shutil.which("docker-registry")
        self.assertTrue(self.exe, "docker-registry not installed: test/deps.sh installs it")
        self.tmp = tempfile.TemporaryDirectory()
        self.procs = []
        objs = resolve(MANIFESTS)
        cache, proxy = config_of(objs, "thaw-registry"), config_of(objs, "thaw-node-local")
        auth = cache["auth"]["token"]
        self.tokens = token_server.TokenServer(
            issuer=auth["issuer"], service=auth["service"], users={"controller": "pw"},
            acl=[{"account": "*", "repo": "*", "actions": ["pull"]},
                 {"account": "controller", "repo": "*", "actions": ["pull", "push", "delete"]}])
        self.addCleanup(self.tokens.close)
        # The manifests' configs, with only addresses and paths replaced.
        self.cache_url = self.start("cache", cache, {
            "remove": ("debug",), "root": "cache", "token": self.tokens})
        self.proxy_url = self.start("proxy", proxy, {
            "remoteurl": self.cache_url, "root": "proxy"})

    def tearDown(self):
        for p, log in reversed(self.procs):
            p.terminate()  # by PID, never by name
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            log.close()
        self.tmp.cleanup()

    def start(self, name, cfg, change):
        cfg = copy.deepcopy(cfg)
        port = free_port()
        cfg["http"]["addr"] = "127.0.0.1:%d" % port
        for key in change.get("remove", ()):
            cfg["http"].pop(key, None)
        root = os.path.join(self.tmp.name, change["root"])
        cfg["storage"]["filesystem"]["rootdirectory"] = root
        if "remoteurl" in change:
            cfg["proxy"]["remoteurl"] = change["remoteurl"]
        if "token" in change:
            cfg["auth"]["token"].update(realm=change["token"].realm,
                                        rootcertbundle=change["token"].cert)
            os.chmod(change["token"].dir, 0o755)  # readable by the pods' user
            os.chmod(change["token"].cert, 0o644)
        path = os.path.join(self.tmp.name, name + ".yml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        log = open(os.path.join(self.tmp.name, name + ".log"), "w+")
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        cmd = [self.exe, "serve", path]
        if os.geteuid() == 0:
            # As the pods run it (registry:2.8.3 would run as root): the
            # manifests' uid and gid, on storage the group owns (fsGroup).
            uid = self.pod_user()
            os.chmod(self.tmp.name, 0o755)
            os.makedirs(root)
            os.chown(root, uid, uid)
            os.chmod(path, 0o644)
            cmd = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
                   "--"] + cmd
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.procs.append((p, log))
        url = "http://127.0.0.1:%d" % port
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.poll() is not None:
                break
            try:
                if http("GET", url + "/v2/")[0] in (200, 401):  # 401: wants a token
                    return url
            except OSError:
                pass
            time.sleep(0.1)
        log.seek(0)
        self.fail("%s registry did not come up (rc %s): %s" % (name, p.poll(), log.read()[-2000:]))

    @staticmethod
    def pod_user():
        """The uid both registry pods run as (and their group and fsGroup)."""
        objs = resolve(MANIFESTS)
        uids = set()
        for kind, name in (("Deployment", "thaw-registry"), ("DaemonSet", "thaw-node-local")):
            psc = find(objs, kind, name)["spec"]["template"]["spec"]["securityContext"]
            uids |= {psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]}
        assert len(uids) == 1 and 0 not in uids, uids
        return uids.pop()

    def controller_auth(self):
        """The Authorization header of the controller's account's token."""
        basic = base64.b64encode(b"controller:pw").decode()
        status, _, body = http("GET", "%s?service=%s&scope=repository:%s:pull,push,delete" % (
            self.tokens.realm, self.tokens.service, self.REPO),
            headers={"Authorization": "Basic " + basic})
        self.assertEqual(status, 200, body)
        return {"Authorization": "Bearer " + json.loads(body)["token"]}

    def push_blob(self, base, data):
        digest = sha256(data)
        auth = self.controller_auth()
        status, hdrs, body = http("POST", "%s/v2/%s/blobs/uploads/" % (base, self.REPO),
                                  headers=auth)
        self.assertEqual(status, 202, body)
        loc = urllib.parse.urljoin(base + "/", hdrs["Location"])
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(digest)
        status, _, body = http("PUT", loc, data, dict(auth, **{
            "Content-Type": "application/octet-stream"}))
        self.assertEqual(status, 201, body)
        return digest

    def image(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            payload = b"thaw\n"
            info = tarfile.TarInfo("hello.txt")
            info.size, info.mtime = len(payload), 0
            tar.addfile(info, io.BytesIO(payload))
        diff = buf.getvalue()
        layer = gzip.compress(diff, mtime=0)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha256(diff)]},
                             "config": {}}, sort_keys=True).encode()
        return config, layer

    def test_pushed_to_cache_pulled_through_node_local(self):
        # Without a token nobody pushes into the cache.
        status, hdrs, _ = http("POST", "%s/v2/%s/blobs/uploads/" % (self.cache_url, self.REPO))
        self.assertEqual(status, 401)
        self.assertIn('realm="%s"' % self.tokens.realm, hdrs["WWW-Authenticate"])
        config, layer = self.image()
        cd = self.push_blob(self.cache_url, config)
        ld = self.push_blob(self.cache_url, layer)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cd, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": ld, "size": len(layer)}]}).encode()
        status, hdrs, body = http("PUT", "%s/v2/%s/manifests/1.0" % (self.cache_url, self.REPO),
                                  manifest, dict(self.controller_auth(),
                                                 **{"Content-Type": OCI_MANIFEST}))
        self.assertEqual(status, 201, body)
        md = sha256(manifest)
        self.assertEqual(hdrs["Docker-Content-Digest"], md)

        # As containerd resolves localhost:7439/docker.io/library/x:1.0.
        accept = {"Accept": OCI_MANIFEST}
        for ref in ("1.0", md):
            status, hdrs, body = http("GET", "%s/v2/%s/manifests/%s" % (
                self.proxy_url, self.REPO, ref), headers=accept)
            self.assertEqual(status, 200, body)
            self.assertEqual(body, manifest)  # byte for byte: digests hold
            self.assertEqual(hdrs["Docker-Content-Digest"], md)
            self.assertEqual(hdrs["Content-Type"], OCI_MANIFEST)
        for digest, data in ((cd, config), (ld, layer)):
            status, _, body = http("GET", "%s/v2/%s/blobs/%s" % (self.proxy_url, self.REPO,
                                                                 digest))
            self.assertEqual(status, 200)
            self.assertEqual(sha256(body), digest)
        self.assertEqual(http("GET", "%s/v2/%s/manifests/nope" % (self.proxy_url, self.REPO),
                              headers=accept)[0], 404)

        # The node-local endpoint is read-only: proxy mode refuses pushes.
        status = http("POST", "%s/v2/%s/blobs/uploads/" % (self.proxy_url, self.REPO))[0]
        self.assertGreaterEqual(status, 400)
        # The cache lets the controller delete an expired manifest; nobody
        # else.
        url = "%s/v2/%s/manifests/%s" % (self.cache_url, self.REPO, md)
        self.assertEqual(http("DELETE", url)[0], 401)
        status, _, body = http("DELETE", url, headers=self.controller_auth())
        self.assertEqual(status, 202, body)
        if os.geteuid() == 0:  # written by the pods' user, not root
            owners = {os.stat(os.path.join(d, f)).st_uid
                      for d, _, fs in os.walk(os.path.join(self.tmp.name, "cache")) for f in fs}
            self.assertEqual(owners, {self.pod_user()})
        self.assertEqual(http("GET", "%s/v2/%s/manifests/%s" % (
            self.cache_url, self.REPO, md), headers=dict(accept, **self.controller_auth()))[0],
            404)


if __name__ == "__main__":
    unittest77.main()
