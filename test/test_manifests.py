"""manifests/ and certs/: every YAML parses, every kustomization resolves,
thaw-webhook's deployment keeps the invariants an operator relies on, and
certs/gen-webhook-certs.sh makes a certificate the apiserver would accept.

Rendering uses `kubectl kustomize` when kubectl is on PATH (Debian has no
kustomize package and bookworm's kubernetes-client 1.20 predates
components; the kubectl here is the Kubernetes project's, with kustomize
v5). Without it the render checks skip, and the invariants are still
checked on the objects this file resolves itself."""

import base64
import copy
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MANIFESTS = os.path.join(REPO, "manifests")
GEN = os.path.join(REPO, "certs", "gen-webhook-certs.sh")
sys.path[:0] = [os.path.join(HERE, "kubeemu")]

import admission  # noqa: E402  (the emulator's webhook matching)

NS = "thaw-system"
KUSTOMIZATION = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# DESIGN.md lives next to the repository (../shared) or where THAW_DESIGN says.
DESIGN = os.environ.get("THAW_DESIGN",
                        os.path.join(REPO, "..", "shared", "DESIGN.md"))


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
    """Rendered objects, or None when kubectl is not installed."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None
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
    """Flag names from DESIGN.md's flag table, or None when it is absent."""
    if not os.path.isfile(DESIGN):
        return None
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
        k = load_all(os.path.join(MANIFESTS, "kustomization.yaml"))[0]
        for part in ("namespace.yaml", "crd", "webhook"):
            self.assertIn(part, k["resources"])
        # cert-manager is opt-in (a Component an overlay adds).
        self.assertNotIn("cert-manager", k["resources"])
        self.assertEqual(load_all(os.path.join(MANIFESTS, "cert-manager",
                                               "kustomization.yaml"))[0]["kind"], "Component")

    def test_kubectl_kustomize_renders_the_same_objects(self):
        rendered = kubectl_kustomize(MANIFESTS)
        if rendered is None:
            self.skipTest("kubectl not installed")
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
        ns = find(self.objs, "Namespace", NS)
        self.assertEqual(ns["metadata"]["labels"]["thaw.dev/caching"], "disabled")
        for o in self.objs:
            if o["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole",
                                 "ClusterRoleBinding", "MutatingWebhookConfiguration"):
                self.assertEqual(o["metadata"].get("namespace"), NS, o["metadata"]["name"])

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
        self.assertEqual(self.ctr["image"], "thaw/thaw-webhook:0.1.0")
        self.assertEqual(self.ctr["imagePullPolicy"], "IfNotPresent")

    def test_args_are_design_flags(self):
        flags = design_flags()
        if flags is None:
            self.skipTest("DESIGN.md not found at %s (set THAW_DESIGN)" % DESIGN)
        for a in self.ctr["args"]:
            self.assertIn(a.split("=", 1)[0], flags)

    def test_args_are_webhook_options(self):
        main = os.path.join(REPO, "webhook", "main.c")
        if not os.path.isfile(main):
            self.skipTest("webhook/main.c not written yet")
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
        self.assertEqual(rules, [(("",), ("namespaces",), ("get", "list", "watch")),
                                 (("thaw.dev",), ("cachedimages",),
                                  ("create", "get", "list", "watch"))])
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


class CertManager(unittest.TestCase):
    def test_component(self):
        d = os.path.join(MANIFESTS, "cert-manager")
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
                                    os.path.join(MANIFESTS, "cert-manager"), tmp)]}, f)
            objs = kubectl_kustomize(tmp)
        if objs is None:
            self.skipTest("kubectl not installed")
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
        if objs is None:
            self.skipTest("kubectl not installed")
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
        if objs is None:
            self.skipTest("kubectl not installed")
        for o in objs:
            if "namespace" in o["metadata"]:
                self.assertEqual(o["metadata"]["namespace"], "caching", o["kind"])
        find(objs, "Namespace", "caching")
        find(objs, "Service", "hook")
        hook = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")["webhooks"][0]
        self.assertEqual(hook["clientConfig"]["service"]["namespace"], "caching")
        self.assertEqual(hook["clientConfig"]["service"]["name"], "hook")
        excluded = hook["namespaceSelector"]["matchExpressions"][1]
        self.assertEqual(excluded["key"], "kubernetes.io/metadata.name")
        self.assertEqual(excluded["values"], ["kube-system", "caching"])
        binding = find(objs, "ClusterRoleBinding", "thaw-webhook")
        self.assertEqual(binding["subjects"][0]["namespace"], "caching")


if __name__ == "__main__":
    unittest.main(verbosity=2)
