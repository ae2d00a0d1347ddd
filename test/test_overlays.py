"""The installs manifests/ describes (test/renders.py: the default, each
overlay, each with each Component), rendered by kubectl's kustomize:

- every image comes from the one images: block of manifests/base, and
  changing it there (or in an overlay) moves every container;
- the invariants test_manifests.py checks on the base hold in each install
  (replicas and budgets, selectors, references, hardening, one GC agent,
  RBAC), and the real thaw-controller and thaw-webhook accept each
  install's arguments;
- overlays/oscar changes exactly what it says, and its webhook
  configuration sends OSCAR's service namespaces but not `oscar`;
- overlays/s3's settings reach a real docker-registry's S3 driver;
- both TLS paths work with every overlay: certs/gen-webhook-certs.sh
  --base (also with --namespace) and the cert-manager Component, and the
  commands and overlay that manifests/README.md shows work as written.

Run: test_overlays.py --controller BUILD/controller/thaw-controller
                      --webhook BUILD/webhook/thaw-webhook
                      [--forward BUILD/controller/thaw-node-forward]"""

import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import yaml  # noqa: E402

import pss  # noqa: E402
import renders  # noqa: E402
from test_manifests import (CONTROLLER_RULES, GEN, MANIFESTS, NODE_NS, NS, REPO,  # noqa: E402
                            admission, config_of, design_flags, env_of, find, forwards,
                            free_port, gc_agents, kubectl_kustomize, load_all, node_forward,
                            realm_of, rules_of)
from test_manifests import http as request  # noqa: E402

BINARIES = {}
BASE = os.path.join(MANIFESTS, "base")
OSCAR = os.path.join(MANIFESTS, "overlays", "oscar")
S3 = os.path.join(MANIFESTS, "overlays", "s3")
# Secrets an install refers to but never contains: made by the script (or
# cert-manager) and by hand (the S3 keys).
EXTERNAL_SECRETS = {"thaw-webhook-tls", "thaw-token-key", "thaw-registry-s3"}
REGISTRY_URL = "http://thaw-registry.$(POD_NAMESPACE).svc:5000"
# The cache's token realm: thaw-token on every node's loopback, through the
# node-local DaemonSet's forward (test_manifests.py NodeLocalForward).
REALM = "http://127.0.0.1:7438/token"


def forward_targets(ns):
    """The node-local forwards when the Services are in namespace ns."""
    return {"127.0.0.1:7440": "thaw-registry.%s.svc:5000" % ns,
            "127.0.0.1:7438": "thaw-token.%s.svc:7442" % ns}


def images_block():
    return load_all(os.path.join(BASE, "kustomization.yaml"))[0]["images"]


def pods(objs):
    """(object, pod spec) of every workload."""
    out = []
    for o in objs:
        spec = o.get("spec") or {}
        if "template" in spec:
            out.append((o, spec["template"]["spec"]))
        elif "jobTemplate" in spec:
            out.append((o, spec["jobTemplate"]["spec"]["template"]["spec"]))
    return out


def all_containers(spec):
    return (spec.get("initContainers") or []) + spec["containers"]


def args_of(ctr):
    return dict(a[2:].split("=", 1) for a in ctr["args"])


def deployment_ctr(objs, name):
    dep = find(objs, "Deployment", name)
    return dep, dep["spec"]["template"]["spec"]["containers"][0]


def project_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


class Layout(unittest.TestCase):
    def test_overlays_and_components_are_found_and_documented(self):
        names = [renders.name(d) for d in renders.overlays() + renders.components()]
        for want in ("overlays/s3", "overlays/oscar", "components/cert-manager",
                     "components/s3", "components/private-images"):
            self.assertIn(want, names)
        with open(os.path.join(MANIFESTS, "README.md")) as f:
            readme = f.read()
        for n in names:
            self.assertIn(os.path.basename(n) + "/", readme, n)
        # Every overlay builds on base/ (directly or through another overlay).
        for d in renders.overlays():
            k = load_all(os.path.join(d, "kustomization.yaml"))[0]
            self.assertTrue(k["resources"], d)
            for r in k["resources"]:
                target = os.path.realpath(os.path.join(d, r))
                self.assertTrue(target == os.path.realpath(BASE) or
                                target in map(os.path.realpath, renders.overlays()), r)

    def test_every_install_renders(self):
        labels = [label for label, _ in renders.installs()]
        # default + overlays, each with each Component it does not use, + all.
        n = 1 + len(renders.overlays())
        self.assertGreaterEqual(len(labels), n * len(renders.components()))
        self.assertEqual(len(labels), len(set(labels)))


class Images(unittest.TestCase):
    def test_one_place(self):
        block = {i["name"]: i for i in images_block()}
        self.assertEqual(set(block), {"thaw/thaw-webhook", "thaw/thaw-controller",
                                      "thaw/thaw-registry-gc", "docker.io/library/registry"})
        for name in ("thaw/thaw-webhook", "thaw/thaw-controller", "thaw/thaw-registry-gc"):
            # The images `ninja -C build images` builds carry the version.
            self.assertEqual(block[name]["newTag"], project_version(), name)
        self.assertEqual(block["docker.io/library/registry"]["newTag"], "2.8.3")
        # The manifests name images without a tag or a registry of their own.
        for root, _, files in os.walk(MANIFESTS):
            for f in files:
                if not f.endswith(".yaml") or f == "kustomization.yaml":
                    continue
                for doc in load_all(os.path.join(root, f)):
                    for _, spec in pods([doc]) if isinstance(doc, dict) else []:
                        for c in all_containers(spec):
                            if "image" in c:
                                self.assertIn(c["image"], block, os.path.join(root, f))
        # Rendered: every container runs name:newTag of the block.
        want = {"%s:%s" % (n, i["newTag"]) for n, i in block.items()}
        for label, objs in renders.installs():
            seen = {c["image"] for _, s in pods(objs) for c in all_containers(s)}
            self.assertTrue(seen <= want, "%s: %s" % (label, seen - want))
            self.assertTrue({"thaw/thaw-webhook:", "thaw/thaw-controller:"} <=
                            {i.split(":")[0] + ":" for i in seen}, label)

    def test_changed_in_one_place_every_container_follows(self):
        # What `kustomize edit set image` writes into an overlay of one's own.
        new = [{"name": "thaw/thaw-webhook", "newName": "reg.example.org/t/webhook",
                "newTag": "9.9.9"},
               {"name": "thaw/thaw-controller", "newName": "reg.example.org/t/controller",
                "digest": "sha256:" + "a" * 64},
               {"name": "thaw/thaw-registry-gc", "newName": "reg.example.org/t/gc",
                "newTag": "9.9.9"},
               {"name": "docker.io/library/registry", "newName": "mirror.example.org/registry"}]
        for base in [MANIFESTS] + renders.overlays():
            for comps in ([], renders.components()):
                if comps and base != MANIFESTS:
                    continue
                objs = renders.render(base, comps, {"images": new})
                seen = {c["image"] for _, s in pods(objs) for c in all_containers(s)}
                self.assertEqual(seen & {"reg.example.org/t/webhook:9.9.9",
                                         "reg.example.org/t/controller@sha256:" + "a" * 64,
                                         "mirror.example.org/registry:2.8.3"},
                                 {"reg.example.org/t/webhook:9.9.9",
                                  "reg.example.org/t/controller@sha256:" + "a" * 64,
                                  "mirror.example.org/registry:2.8.3"}, base)
                for image in seen:
                    self.assertRegex(image, r"^(reg\.example\.org|mirror\.example\.org)/",
                                     renders.name(base))


class Invariants(unittest.TestCase):
    """test_manifests.py's checks of the base, as they must hold anywhere."""

    def test_namespaces(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                for o in objs:
                    ns = o["metadata"].get("namespace")
                    if o["kind"] in ("Namespace", "CustomResourceDefinition") or \
                            o["kind"].startswith("Cluster") or "Webhook" in o["kind"]:
                        self.assertIsNone(ns, o["metadata"]["name"])
                    elif o["metadata"]["name"] == "thaw-node-local":
                        self.assertEqual(ns, NODE_NS)
                    elif o["kind"] != "Secret" or o["metadata"]["name"] != "thaw-webhook-tls":
                        self.assertEqual(ns, NS, "%s %s" % (o["kind"], o["metadata"]["name"]))
                    # `kubectl get -A -l app.kubernetes.io/name=thaw` finds it all.
                    self.assertEqual(o["metadata"].get("labels", {}).get(
                        "app.kubernetes.io/name"), "thaw", o["metadata"]["name"])

    def test_webhook(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                dep, ctr = deployment_ctr(objs, "thaw-webhook")
                replicas = dep["spec"]["replicas"]
                self.assertGreaterEqual(replicas, 2)
                self.assertEqual(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0)
                pdb = find(objs, "PodDisruptionBudget", "thaw-webhook")
                self.assertTrue(1 <= pdb["spec"]["minAvailable"] < replicas)  # drains can go on
                hook = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")["webhooks"][0]
                self.assertEqual(hook["failurePolicy"], "Ignore")
                self.assertEqual(hook["sideEffects"], "NoneOnDryRun")
                self.assertLessEqual(hook["timeoutSeconds"], 5)
                exprs = {e["key"]: e for e in hook["namespaceSelector"]["matchExpressions"]}
                self.assertEqual(exprs["thaw.dev/caching"]["values"], ["disabled"])
                self.assertLessEqual({"kube-system", NS},
                                     set(exprs["kubernetes.io/metadata.name"]["values"]))
                svc = hook["clientConfig"]["service"]
                self.assertEqual(svc["namespace"], NS)
                find(objs, "Service", svc["name"])
                a = args_of(ctr)
                self.assertEqual(a["registry-url"], REGISTRY_URL)
                self.assertEqual(a["cache-host"], "localhost:7439")
                vol = [v for v in dep["spec"]["template"]["spec"]["volumes"] if "secret" in v]
                self.assertEqual([v["secret"]["secretName"] for v in vol], ["thaw-webhook-tls"])
                certs = [o for o in objs if o["kind"] == "Certificate"
                         and o["spec"]["secretName"] == "thaw-webhook-tls"]
                self.assertEqual(len(certs), 1 if "cert-manager" in label or
                                 label == "all components" else 0)

    def test_controller(self):
        flags = design_flags()
        for label, objs in renders.installs():
            with self.subTest(label):
                dep, ctr = deployment_ctr(objs, "thaw-controller")
                self.assertGreaterEqual(dep["spec"]["replicas"], 2)
                a = args_of(ctr)
                self.assertEqual(len(a), len(ctr["args"]))  # no flag given twice
                for arg in ctr["args"]:
                    self.assertIn(arg.split("=", 1)[0], flags)
                self.assertEqual(a["leader-elect"], "true")
                self.assertEqual(a["cache-host"], "localhost:7439")
                self.assertEqual(a["registry-url"], REGISTRY_URL)
                self.assertEqual(a["gc-url"], "http://thaw-registry-gc.$(POD_NAMESPACE).svc:7440")
                self.assertIn("oscar-svc", a["prewarm-namespaces"].split(","))
                find(objs, "Service", "thaw-registry")
                find(objs, "Service", "thaw-registry-gc")
                pdb = find(objs, "PodDisruptionBudget", "thaw-controller")
                self.assertLess(pdb["spec"]["minAvailable"], dep["spec"]["replicas"])
                # Private images only with their Component.
                private = "private-images" in label or label == "all components"
                self.assertEqual("allow-private" in a, private)
                secret_rules = [r for o in objs if o["kind"] in ("Role", "ClusterRole")
                                for r in o["rules"] if "secrets" in r["resources"]]
                self.assertEqual(len(secret_rules), 3 if private else 0)
                # never list or watch: no Secret is enumerated
                self.assertFalse({"list", "watch"} & {v for r in secret_rules
                                                      for v in r["verbs"]})
                self.assertEqual(rules_of(find(objs, "ClusterRole", "thaw-controller")),
                                 CONTROLLER_RULES)

    def test_real_daemons_accept_the_args(self):
        """thaw-controller and thaw-webhook parse every flag before --help
        and exit 2 on the first bad one (docs/design.md "Flags")."""
        for name in ("controller", "webhook"):
            self.assertTrue(BINARIES.get(name), "--%s BINARY not given" % name)
        for label, objs in renders.installs():
            with self.subTest(label):
                for name in ("controller", "webhook"):
                    _, ctr = deployment_ctr(objs, "thaw-" + name)
                    args = [a.replace("$(POD_NAMESPACE)", NS) for a in ctr["args"]]
                    r = subprocess.run([BINARIES[name]] + args + ["--help"], capture_output=True,
                                       text=True, timeout=30)
                    self.assertEqual(r.returncode, 0, "%s: %s" % (name, r.stderr))
                # The check can fail: a bad value is refused.
                r = subprocess.run([BINARIES["controller"], "--refresh-interval=5 min", "--help"],
                                   capture_output=True, timeout=30)
                self.assertEqual(r.returncode, 2)

    def test_selectors_find_their_pods(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                templates = [(o["metadata"]["namespace"], meta["labels"], spec)
                             for o, (meta, spec) in ((o, pss.pod_template(o))
                                                     for o, _ in pods(objs))]
                for o in objs:
                    kind = o["kind"]
                    if kind == "Service":
                        sel = {"matchLabels": o["spec"]["selector"]}
                    elif kind == "PodDisruptionBudget":
                        sel = o["spec"]["selector"]
                    elif kind == "NetworkPolicy":
                        sel = o["spec"]["podSelector"]
                    elif kind in ("Deployment", "DaemonSet", "StatefulSet"):
                        sel = o["spec"]["selector"]
                    else:
                        continue
                    hit = [(lbl, spec) for ns, lbl, spec in templates
                           if ns == o["metadata"]["namespace"]
                           and admission.selector_matches(sel, lbl)]
                    self.assertTrue(hit, "%s %s selects no pod" % (kind, o["metadata"]["name"]))
                    if kind == "Service":  # named target ports exist on a selected pod
                        names = {p.get("name") for _, spec in hit for c in spec["containers"]
                                 for p in c.get("ports") or []}
                        for p in o["spec"]["ports"]:
                            if isinstance(p["targetPort"], str):
                                self.assertIn(p["targetPort"], names, o["metadata"]["name"])

    def test_references_resolve(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                have = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
                        for o in objs}
                for o, spec in pods(objs):
                    ns = o["metadata"]["namespace"]
                    refs = []
                    for v in spec.get("volumes") or []:
                        if "configMap" in v:
                            refs.append(("ConfigMap", v["configMap"]["name"]))
                        if "secret" in v:
                            refs.append(("Secret", v["secret"]["secretName"]))
                        if "persistentVolumeClaim" in v:
                            refs.append(("PersistentVolumeClaim",
                                         v["persistentVolumeClaim"]["claimName"]))
                    for c in all_containers(spec):
                        for e in c.get("envFrom") or []:
                            if "configMapRef" in e:
                                refs.append(("ConfigMap", e["configMapRef"]["name"]))
                        for e in c.get("env") or []:
                            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                            if ref:
                                refs.append(("Secret", ref["name"]))
                    for kind, name in refs:
                        if kind == "Secret" and name in EXTERNAL_SECRETS:
                            continue
                        self.assertIn((kind, ns, name), have, o["metadata"]["name"])
                    sa = spec.get("serviceAccountName")
                    if sa:
                        self.assertIn(("ServiceAccount", ns, sa), have)

    def test_hardened_and_bounded(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                for o, spec in pods(objs):
                    for c in all_containers(spec):
                        where = "%s/%s" % (o["metadata"]["name"], c["name"])
                        sc = c["securityContext"]
                        self.assertIs(sc["readOnlyRootFilesystem"], True, where)
                        self.assertEqual(sc["capabilities"]["drop"], ["ALL"], where)
                        res = c["resources"]
                        self.assertEqual(set(res["requests"]), {"cpu", "memory"}, where)
                        self.assertIn("memory", res["limits"], where)
                        self.assertNotIn("cpu", res["limits"], where)  # throttling slows pulls
                    self.assertIsNotNone(spec.get("automountServiceAccountToken"),
                                         o["metadata"]["name"])

    def test_node_forward(self):
        """Every install forwards each node's loopback to the cache and to
        thaw-token, the realm every install's registry names; the forward
        runs the controller's image, hardened and bounded."""
        for label, objs in renders.installs():
            with self.subTest(label):
                pod, ctr = node_forward(objs)
                self.assertEqual(forwards(ctr), forward_targets(NS))
                for name in ("thaw-registry", "thaw-token"):
                    self.assertEqual(find(objs, "Service", name)["metadata"]["namespace"], NS)
                self.assertEqual(realm_of(objs), REALM)
                self.assertEqual(config_of(objs, "thaw-registry")["auth"]["token"]["realm"],
                                 REALM)
                self.assertIs(pod["hostNetwork"], True)
                self.assertNotIn("ports", ctr)
                _, ctl = deployment_ctr(objs, "thaw-controller")
                self.assertEqual(ctr["image"], ctl["image"])
                # both daemons name the cache forward's port as the private
                # cache host (rewrites and thaw-pull Secrets)
                _, hook = deployment_ctr(objs, "thaw-webhook")
                for d in (ctl, hook):
                    self.assertIn("--private-cache-host=localhost:7440", d["args"])
                self.assertEqual(ctr["command"], ["/usr/bin/thaw-node-forward"])
                sc = ctr["securityContext"]
                self.assertEqual((sc["runAsUser"], sc["runAsNonRoot"],
                                  sc["allowPrivilegeEscalation"],
                                  sc["seccompProfile"]["type"]),
                                 (65532, True, False, "RuntimeDefault"))
                for probe in ("livenessProbe", "readinessProbe"):
                    self.assertEqual(ctr[probe]["tcpSocket"], {"host": "127.0.0.1",
                                                              "port": 7438}, probe)

    def test_real_forward_accepts_the_args(self):
        """thaw-node-forward parses every install's args before --help."""
        self.assertTrue(BINARIES.get("forward"), "--forward BINARY not given")
        self.assertTrue(os.access(BINARIES["forward"], os.X_OK), BINARIES["forward"])
        for label, objs in renders.installs():
            with self.subTest(label):
                _, ctr = node_forward(objs)
                env = {k: e["value"] for k, e in env_of(ctr).items()}
                args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a)
                        for a in ctr["args"]]
                r = subprocess.run([BINARIES["forward"]] + args + ["--help"],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_one_gc_agent_and_no_blob_cache(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                _, total = gc_agents(objs)
                self.assertEqual(total, 1)
                cfg = config_of(objs, "thaw-registry")
                self.assertNotIn("cache", cfg["storage"])
                self.assertIs(cfg["storage"]["delete"]["enabled"], True)
                # every install locks the cache the same way (token auth)
                self.assertEqual(cfg["auth"], config_of(renders.installs()[0][1],
                                                        "thaw-registry")["auth"])


class Oscar(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objs = kubectl_kustomize(OSCAR)
        cls.default = kubectl_kustomize(MANIFESTS)

    def test_changes_only_what_it_says(self):
        key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        before = {key(o): o for o in self.default}
        after = {key(o): o for o in self.objs}
        self.assertEqual(set(before), set(after))
        changed = {k for k in before if before[k] != after[k]}
        self.assertEqual(changed, {
            ("Deployment", NS, "thaw-webhook"), ("PodDisruptionBudget", NS, "thaw-webhook"),
            ("Deployment", NS, "thaw-controller"),
            ("MutatingWebhookConfiguration", None, "thaw-webhook")})

    def test_webhook_replicas_and_budget(self):
        dep, ctr = deployment_ctr(self.objs, "thaw-webhook")
        self.assertEqual(dep["spec"]["replicas"], 3)
        self.assertEqual(find(self.objs, "PodDisruptionBudget", "thaw-webhook")["spec"],
                         dict(find(self.default, "PodDisruptionBudget", "thaw-webhook")["spec"],
                              minAvailable=2))
        _, base_ctr = deployment_ctr(self.default, "thaw-webhook")
        a, b = args_of(ctr), args_of(base_ctr)
        self.assertEqual(a["exclude-namespaces"], "oscar")
        # cold wait: off in the base, 30 s for OSCAR's bursts of job pods
        self.assertNotIn("cold-wait", b)
        self.assertEqual(a["cold-wait"], "30s")
        self.assertEqual(len(a), len(ctr["args"]))  # no flag given twice
        self.assertEqual({k for k in set(a) | set(b) if a.get(k) != b.get(k)},
                         {"exclude-namespaces", "cold-wait"})
        # it needs a leader: the controller keeps leader election on
        _, ctl = deployment_ctr(self.objs, "thaw-controller")
        self.assertEqual(args_of(ctl)["leader-elect"], "true")
        self.assertEqual(dict(ctr, args=None), dict(base_ctr, args=None))

    def test_controller_flags_and_memory(self):
        _, ctr = deployment_ctr(self.objs, "thaw-controller")
        _, base = deployment_ctr(self.default, "thaw-controller")
        a, b = args_of(ctr), args_of(base)
        self.assertEqual(a["prewarm-namespaces"], "oscar-svc")
        self.assertEqual(a["refresh-interval"], "5m")
        self.assertEqual(a["expire-after"], "168h")
        self.assertEqual(a["repair-after"], "15s")
        self.assertEqual(a["exclude-namespaces"], "oscar")
        changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
        self.assertEqual(changed, {"refresh-interval", "expire-after", "repair-after",
                                   "exclude-namespaces"})
        self.assertEqual(ctr["resources"]["limits"]["memory"], "256Mi")
        self.assertEqual(ctr["resources"]["requests"], {"cpu": "100m", "memory": "64Mi"})

    def test_which_namespaces_are_sent(self):
        """The emulator's ShouldCallHook on the rendered configuration."""
        mwc = find(self.objs, "MutatingWebhookConfiguration", "thaw-webhook")
        oscar_user = {"app.kubernetes.io/managed-by": "oscar"}
        ns_labels = {"oscar": {}, "oscar-svc": {}, "oscar-svc-alice": oscar_user,
                     "default": {}, "kube-system": {}, NS: {}, NODE_NS: {}}
        for o in self.objs:
            if o["kind"] == "Namespace":
                ns_labels[o["metadata"]["name"]] = dict(o["metadata"]["labels"])
        for n, labels in ns_labels.items():
            labels["kubernetes.io/metadata.name"] = n
        chain = admission.AdmissionChain(
            lambda: [mwc], lambda n: {"metadata": {"name": n, "labels": ns_labels[n]}})

        def sent(ns):
            pod = {"metadata": {"name": "p", "namespace": ns, "labels": {}}}
            attrs = {"operation": "CREATE", "group": "", "version": "v1", "resource": "pods",
                     "subresource": "", "namespace": ns, "name": "p", "object": pod,
                     "old_object": None}
            return chain.should_call(mwc["webhooks"][0], attrs, pod)

        self.assertEqual({n for n in ns_labels if sent(n)},
                         {"oscar-svc", "oscar-svc-alice", "default"})


class FakeS3(http.server.BaseHTTPRequestHandler):
    """Records what the registry's S3 driver asks; answers an empty list."""
    seen = []

    def any(self):
        FakeS3.seen.append((self.command, self.path))
        body = (b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
                b"<IsTruncated>false</IsTruncated></ListBucketResult>")
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = any

    def log_message(self, *args):
        pass


class S3Overlay(unittest.TestCase):
    def test_settings_in_one_configmap(self):
        objs = kubectl_kustomize(S3)
        k = load_all(os.path.join(S3, "kustomization.yaml"))[0]
        patch = [yaml.safe_load(p["patch"]) for p in k["patches"]
                 if "thaw-registry-s3" in p.get("patch", "")]
        self.assertEqual(len(patch), 1)
        cms = [o for o in objs if o["kind"] == "ConfigMap"
               and o["metadata"]["name"].startswith("thaw-registry-s3-")]
        self.assertEqual(len(cms), 1)  # generated: a change rolls the pods
        self.assertEqual(cms[0]["data"], patch[0]["data"])
        for dep in ("thaw-registry", "thaw-registry-gc"):
            _, ctr = deployment_ctr(objs, dep)
            self.assertEqual(ctr["envFrom"], [{"configMapRef": {
                "name": cms[0]["metadata"]["name"]}}], dep)
            for var in ("REGISTRY_STORAGE_S3_ACCESSKEY", "REGISTRY_STORAGE_S3_SECRETKEY"):
                self.assertEqual(env_of(ctr)[var]["valueFrom"]["secretKeyRef"]["name"],
                                 "thaw-registry-s3")

    def test_settings_reach_the_registry(self):
        """A real docker-registry, run with the overlay's config.yml and
        environment (a bucket changed as an operator would, the endpoint a
        loopback listener), sends its S3 requests there for that bucket."""
        exe = shutil.which("docker-registry")
        self.assertTrue(exe, "docker-registry not installed: test/deps.sh installs it")
        objs = renders.render(S3, extra={"patches": [{"patch": yaml.safe_dump({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "thaw-registry-s3", "namespace": NS},
            "data": {"REGISTRY_STORAGE_S3_BUCKET": "probe-bucket"}})}]})
        _, ctr = deployment_ctr(objs, "thaw-registry")
        cm = find(objs, "ConfigMap", ctr["envFrom"][0]["configMapRef"]["name"])
        cfg = config_of(objs, "thaw-registry")
        s3 = FakeS3.seen = []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeS3)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = free_port()
        cfg["http"]["addr"] = "127.0.0.1:%d" % port
        cfg["http"].pop("debug", None)
        # Only storage matters here; the token auth that would answer the
        # probe 401 before any S3 request is run by test_manifests ProxyChain
        # and the integrity e2e.
        self.assertIn("token", cfg.pop("auth"))
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("REGISTRY_", "AWS_"))}  # AWS_CA_BUNDLE breaks the driver
        env.update(cm["data"])
        env["REGISTRY_STORAGE_S3_REGIONENDPOINT"] = "http://127.0.0.1:%d" % server.server_port
        env.update(REGISTRY_STORAGE_S3_ACCESSKEY="a", REGISTRY_STORAGE_S3_SECRETKEY="b")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "config.yml")
            with open(path, "w") as f:
                yaml.safe_dump(cfg, f)
            log = open(os.path.join(tmp, "log"), "w+")
            p = subprocess.Popen([exe, "serve", path], stdout=log, stderr=subprocess.STDOUT,
                                 env=env)
            try:
                deadline = time.monotonic() + 20
                while not s3 and time.monotonic() < deadline and p.poll() is None:
                    try:
                        request("GET", "http://127.0.0.1:%d/v2/_catalog" % port)
                    except OSError:
                        pass
                    time.sleep(0.2)
            finally:
                p.terminate()  # by PID
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                server.shutdown()
                server.server_close()
                log.seek(0)
                out = log.read()
                log.close()
        self.assertTrue(s3, "no S3 request; registry log:\n" + out[-2000:])
        root = cfg["storage"]["s3"]["rootdirectory"].strip("/")
        for method, path in s3:
            self.assertTrue(path.startswith("/probe-bucket"), path)  # forcepathstyle
        self.assertTrue(any("prefix=" + root in p for _, p in s3), s3)


class TLS(unittest.TestCase):
    """Both certificate paths with every overlay."""

    def gen(self, out, *args):
        r = subprocess.run([GEN, "--out", out] + list(args), capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def test_script_with_each_overlay(self):
        key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
        with tempfile.TemporaryDirectory() as tmp:
            for base in [MANIFESTS] + renders.overlays():
                with self.subTest(renders.name(base)):
                    out = os.path.join(tmp, renders.name(base).replace("/", "-"))
                    self.gen(out, "--base", base)
                    objs = kubectl_kustomize(out)
                    want = {key(o): o for o in kubectl_kustomize(base)}
                    got = {key(o): o for o in objs}
                    # The install plus the Secrets, with the caBundle set.
                    self.assertEqual(set(got) - set(want), {("Secret", NS, "thaw-webhook-tls"),
                                                            ("Secret", NS, "thaw-token-key")})
                    self.assertEqual(set(want) - set(got), set())
                    mwc = ("MutatingWebhookConfiguration", None, "thaw-webhook")
                    self.assertTrue(got[mwc]["webhooks"][0]["clientConfig"]["caBundle"])
                    got[mwc]["webhooks"][0]["clientConfig"].pop("caBundle")
                    for k in want:
                        self.assertEqual(got[k], want[k], k)

    def test_script_moves_each_overlay(self):
        with tempfile.TemporaryDirectory() as tmp:
            for base in [MANIFESTS] + renders.overlays():
                with self.subTest(renders.name(base)):
                    out = os.path.join(tmp, renders.name(base).replace("/", "-"))
                    self.gen(out, "--base", base, "--namespace", "caching")
                    objs = kubectl_kustomize(out)
                    before = kubectl_kustomize(base)
                    for o in objs:
                        ns = o["metadata"].get("namespace")
                        if ns is not None:
                            self.assertEqual(ns, NODE_NS if o["metadata"]["name"] ==
                                             "thaw-node-local" else "caching", o["kind"])
                    hook = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")
                    old = find(before, "MutatingWebhookConfiguration", "thaw-webhook")
                    names = lambda h: h["webhooks"][0]["namespaceSelector"][
                        "matchExpressions"][1]["values"]
                    # thaw-system's place taken by the new name; the rest kept
                    # (oscar's exclusion of `oscar`).
                    self.assertEqual(names(hook), [n if n != NS else "caching"
                                                   for n in names(old)])
                    self.assertEqual(hook["webhooks"][0]["clientConfig"]["service"]["namespace"],
                                     "caching")
                    ds = find(objs, "DaemonSet", "thaw-node-local")["spec"]["template"]["spec"]
                    for c in all_containers(ds):
                        if c["name"] != "forward":
                            self.assertEqual(env_of(c)["REGISTRY_PROXY_REMOTEURL"]["value"],
                                             "http://thaw-registry.caching.svc:5000")
                    # The forwards follow both Services; the realm, on the
                    # nodes' loopback, stays.
                    self.assertEqual(forwards(node_forward(objs)[1]), forward_targets("caching"))
                    self.assertEqual(realm_of(objs), REALM)
                    self.assertEqual(len([o for o in objs if o["kind"] == "Namespace"]), 2)

    def test_cert_manager_with_each_overlay(self):
        comp = os.path.join(MANIFESTS, "components", "cert-manager")
        for base in [MANIFESTS] + renders.overlays():
            with self.subTest(renders.name(base)):
                objs = renders.render(base, [comp])
                cert = find(objs, "Certificate", "thaw-webhook")
                mwc = find(objs, "MutatingWebhookConfiguration", "thaw-webhook")
                self.assertEqual(mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
                                 "%s/%s" % (NS, "thaw-webhook"))
                self.assertEqual(cert["metadata"]["namespace"], NS)
                _, before = deployment_ctr(kubectl_kustomize(base), "thaw-controller")
                _, after = deployment_ctr(objs, "thaw-controller")
                self.assertEqual(after, before)  # the overlay's settings kept

    def test_readme_commands_and_overlay_work_as_written(self):
        with open(os.path.join(MANIFESTS, "README.md")) as f:
            readme = f.read()
        blocks = re.findall(r"```(\w*)\n(.*?)```", readme, re.S)
        scripts = [line.split("#")[0].split() for lang, b in blocks if lang == "sh"
                   for line in b.splitlines() if line.startswith("certs/gen-webhook-certs.sh")]
        own = [b for lang, b in blocks if lang == "yaml" and b.startswith("# my-thaw/")]
        self.assertTrue(scripts)
        self.assertEqual(len(own), 1)
        with tempfile.TemporaryDirectory() as tmp:
            # A checkout's layout: manifests/ and certs/ side by side.
            for d in ("manifests", "certs"):
                shutil.copytree(os.path.join(REPO, d), os.path.join(tmp, d),
                                ignore=shutil.ignore_patterns("out"))
            for argv in scripts:
                r = subprocess.run(argv + ["--out", os.path.join(tmp, "out")], cwd=tmp,
                                   capture_output=True, text=True, timeout=120)
                self.assertEqual(r.returncode, 0, r.stderr)
                find(kubectl_kustomize(os.path.join(tmp, "out")), "Secret", "thaw-webhook-tls")
            os.mkdir(os.path.join(tmp, "my-thaw"))
            with open(os.path.join(tmp, "my-thaw", "kustomization.yaml"), "w") as f:
                f.write(own[0])
            objs = kubectl_kustomize(os.path.join(tmp, "my-thaw"))
        find(objs, "Certificate", "thaw-webhook")
        _, ctr = deployment_ctr(objs, "thaw-webhook")
        self.assertEqual(ctr["image"], "registry.example.org/thaw/thaw-webhook:0.1.0")
        self.assertIn("--allow-private=true", deployment_ctr(objs, "thaw-controller")[1]["args"])
        self.assertEqual(find(objs, "Deployment", "thaw-registry")["spec"]["replicas"], 2)


def main():
    argv = [sys.argv[0]]
    it = iter(sys.argv[1:])
    for a in it:
        if a in ("--controller", "--webhook", "--forward"):
            BINARIES[a[2:]] = os.path.abspath(next(it))
        else:
            argv.append(a)
    if "forward" not in BINARIES and "controller" in BINARIES:
        # Built beside thaw-controller (controller/meson.build).
        BINARIES["forward"] = os.path.join(os.path.dirname(BINARIES["controller"]),
                                           "thaw-node-forward")
    unittest77.main(argv=argv)


if __name__ == "__main__":
    main()
