"""thaw-controller and thaw-webhook need no more than the RBAC their
manifests grant, shown by real runs under that RBAC: the daemon runs as its
ServiceAccount (thaw-system/thaw-controller or thaw-system/thaw-webhook, its
own token in the emulator's tokens file), the Roles, ClusterRoles and
bindings of `kubectl kustomize manifests/` (plus components/private-images for the
controller) are loaded into the emulator, which enforces them
(test/kubeemu/rbac.py), and every request the daemon made, read back from
the audit log (GET /_emulator/audit), must have been allowed; the same
rules, evaluated offline here, must agree.

    test/with-emulator.sh python3 test/test_rbac_audit.py BUILD/controller/thaw-controller
    test/with-emulator.sh python3 test/test_rbac_audit.py BUILD/webhook/thaw-webhook

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset; the
binary's name says which daemon). The controller's run: leader election
(Lease create/renew, released on SIGTERM), a CachedImage created by the
test warmed to Ready (status writes, Events), the pod sweep, OSCAR pre-warm
(a PodTemplate in oscar-svc), a private image through a pod's pull
secret in a cache-private namespace (the controller reads the Secret), and
the repair of a pod stuck in ImagePullBackOff on a rewritten image (get and
patch of the pod, an Event in its namespace). The
webhook's, with --cold-wait: pods created through the emulator's admission
chain, which calls thaw-webhook over TLS; its recorder creates their images'
CachedImages, an image made Ready is rewritten, and once the test has
written a fresh Lease thaw-controller (as a leader would), a cold pod is
gated (the webhook's list and watch of that Lease). Granted (group, resource, verb) triples a
run never used are printed for information only. kubectl (test/deps.sh) is
required: without it the test fails. Every server runs on a free loopback
port, stopped by PID.
"""

import base64
import json
import os
import shutil
import sys
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)
REPO = os.path.dirname(HERE)

import images  # noqa: E402
import rbac  # noqa: E402
import rbac_stack  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import token_server  # noqa: E402
import webhook_stub  # noqa: E402
from rbac_stack import SA_GROUPS, SAController, SAWebhook, sa_kubeconfig  # noqa: E402
from stack import CI_PATH, SYSTEM_NS, Api, Closers, ci_name, metric  # noqa: E402

BINARY = None
DAEMON = None          # "thaw-controller" or "thaw-webhook": the binary's name
SA_USER = None
NS_APPS, NS_PRIVATE, NS_OSCAR = "rbac-apps", "rbac-private", "oscar-svc"
READY_S = 30


# ---- RBAC offline, with rbac.py's rule matching, as a cross-check

def manifests_objects():
    """The rendered objects of manifests/ plus the daemon's Components."""
    return rbac_stack.rendered(rbac_stack.COMPONENTS[DAEMON])


def bound_rules(objs, user=None, groups=SA_GROUPS):
    """[(binding namespace or None for cluster-wide, rule, "Kind/name")] bound
    to the user: ClusterRoles through ClusterRoleBindings (everywhere), Roles
    and ClusterRoles through RoleBindings (in the binding's namespace)."""
    who = {"username": user or SA_USER, "groups": list(groups)}
    roles = {}
    for o in objs:
        if o["kind"] == "ClusterRole":
            roles[("ClusterRole", None, o["metadata"]["name"])] = o
        elif o["kind"] == "Role":
            roles[("Role", o["metadata"].get("namespace", "default"), o["metadata"]["name"])] = o
    out = []
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(rbac.subject_matches(s, who) for s in b.get("subjects") or []):
            continue
        ns = None if b["kind"] == "ClusterRoleBinding" else \
            b["metadata"].get("namespace", "default")
        ref = b["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            continue       # a binding to a missing role grants nothing
        for r in role.get("rules") or []:
            out.append((ns, r, "%s/%s" % (ref["kind"], ref["name"])))
    return out


def allowed(rules, e):
    """The first (binding namespace, rule, role) allowing e, or None."""
    if e.get("nonResourceURL"):
        for r in rbac.DEFAULT_RULES:
            if rbac.rule_allows(r, e):
                return "-", r, "system:discovery"
        return None
    for ns, rule, role in rules:
        if ns is not None and ns != e["namespace"]:
            continue
        if rbac.rule_allows(rule, e):
            return ns, rule, role
    return None


def granted_triples(rules):
    out = set()
    for ns, rule, role in rules:
        for g in rule.get("apiGroups") or []:
            for r in rule.get("resources") or []:
                for v in rule.get("verbs") or []:
                    out.add((g, r, v, ns or "*", tuple(rule.get("resourceNames") or ())))
    return out


def describe(e):
    res = e["resource"] + ("/" + e["subresource"] if e["subresource"] else "")
    return "%-6s %s%s ns=%s name=%s -> %s %s (%s)" % (
        e["verb"], (e["apiGroup"] + ":") if e["apiGroup"] else "core:", res,
        e["namespace"] or "-", e["name"] or "-", e.get("decision"), e.get("code"),
        e.get("requestURI"))


# ---- the runs

class Run(Closers):
    """What both runs share: a temp dir, the emulator's client, the
    ServiceAccount's kubeconfig, the manifests' RBAC loaded for enforcement."""

    def __init__(self):
        self.t0 = time.time()
        self.timings = {}
        self.tmp = tempfile.mkdtemp(prefix="thaw-rbac.")
        super().__init__()
        self.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.api = Api()
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig-sa")
        sa_kubeconfig(DAEMON, self.kubeconfig)
        self.daemon = None

    def mark(self, what):
        self.timings[what] = time.time() - self.t0

    def ok(self, method, path, body=None, want=(201,)):
        if method == "PATCH":
            return self.api.ok(method, path, body, ctype="application/merge-patch+json",
                               want=want)
        return self.api.ok(method, path, body, want=want)

    def namespaces(self, spec):
        for ns, labels in spec:
            self.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}, want=(201, 409))

    def load_rbac(self):
        """Every RBAC object of the rendered manifests, into the emulator."""
        rbac_stack.load(self.api, rbac_stack.rbac_objects(manifests_objects()))
        self.mark("RBAC loaded")

    def finish(self):
        self.audit = self.api.control("audit?user=" + SA_USER, method="GET")["items"]
        self.mark("audit read (%d requests)" % len(self.audit))


class WebhookRun(Run):
    """thaw-webhook behind the emulator's admission chain: cold images are
    recorded (CachedImages created), a Ready one is rewritten."""

    def run(self):
        self.namespaces(((SYSTEM_NS, {}), (NS_APPS, {})))
        self.load_rbac()
        self.reg = self.own(registry.Registry())
        certs = webhook_stub.make_certs(self.tmp)
        self.api.control("audit", method="DELETE")
        self.daemon = SAWebhook(self.kubeconfig, BINARY, certs, self.reg.url, self.tmp,
                                extra=["--cold-wait=30s"])
        self.closers.append(self.daemon.stop)
        self.daemon.start(timeout=READY_S)
        self.mark("webhook ready")
        self.ok("POST", stack.MWC_PATH, stack.webhook_configuration(
            self.daemon.url, certs["ca_bundle"]))
        # A Ready CachedImage (created by the test, as the controller would),
        # seen by the webhook's informer: its pods are rewritten.
        ready_img = "docker.io/rbac/ready:v1"
        self.ok("POST", CI_PATH, {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                                  "metadata": {"name": ci_name(ready_img)},
                                  "spec": {"image": ready_img}})
        self.api.ok("PATCH", CI_PATH + "/" + ci_name(ready_img) + "/status",
                    {"status": {"phase": "Ready", "digest": "sha256:" + "a" * 64}},
                    ctype="application/merge-patch+json")
        self.cold = ["docker.io/rbac/cold-%d:v1" % i for i in range(3)]
        for i, img in enumerate(self.cold):
            self.ok("POST", "/api/v1/namespaces/%s/pods" % NS_APPS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "cold-%d" % i},
                "spec": {"containers": [{"name": "c", "image": img}]}})
        deadline = time.time() + READY_S
        self.created = {}
        while len(self.created) < len(self.cold) and time.time() < deadline:
            for img in self.cold:
                st, doc, _ = self.api.request("GET", CI_PATH + "/" + ci_name(img))
                if st == 200:
                    self.created[img] = doc
            time.sleep(0.1)
        self.mark("cold images recorded")
        self.rewritten = None
        while time.time() < deadline and self.rewritten is None:
            pod = self.ok("POST", "/api/v1/namespaces/%s/pods?dryRun=All" % NS_APPS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "ready-"},
                "spec": {"containers": [{"name": "c", "image": ready_img}]}})
            img = pod["spec"]["containers"][0]["image"]
            if img.startswith(stack.CACHE_HOST + "/"):
                self.rewritten = img
            else:
                time.sleep(0.2)
        self.mark("ready image rewritten")
        # Cold wait: a Lease renewed now (written by the test as a leader
        # would); the webhook's Lease watch sees it, and a cold pod is gated.
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        self.ok("POST", LEASE_PATH, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "thaw-controller", "namespace": SYSTEM_NS},
            "spec": {"holderIdentity": "rbac-test", "leaseDurationSeconds": 60,
                     "acquireTime": now, "renewTime": now}})
        self.gated = None
        while time.time() < deadline and self.gated is None:
            pod = self.ok("POST", "/api/v1/namespaces/%s/pods?dryRun=All" % NS_APPS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "gated-"},
                "spec": {"containers": [{"name": "c", "image": self.cold[0]}]}})
            if pod["spec"].get("schedulingGates"):
                self.gated = pod
            else:
                time.sleep(0.2)
        self.mark("cold pod gated")
        self.stop_rc, secs = self.daemon.stop_timed()
        self.mark("stopped (SIGTERM took %.2f s)" % secs)
        self.finish()
        self.without_lease_grant(certs)

    def without_lease_grant(self, certs):
        """After the audit: the Lease grant revoked (its RoleBinding
        deleted), --cold-wait on. The webhook must still turn ready, log the
        refusal once, and gate nothing (no leader seen), the Lease being
        fresh all the same."""
        self.api.ok("DELETE", rbac_stack.RBAC_PATH + "/namespaces/%s/rolebindings/"
                    "thaw-webhook-lease" % SYSTEM_NS, want=(200,))
        self.closers.append(lambda: rbac_stack.load(self.api, rbac_stack.rbac_objects(
            manifests_objects())))
        hook = SAWebhook(self.kubeconfig, BINARY, certs, self.reg.url, self.tmp,
                         extra=["--cold-wait=30s"])
        hook.log_path += ".no-lease-grant"
        self.closers.append(hook.stop)
        hook.start(timeout=READY_S)     # /readyz 200 without the grant
        self.no_grant_ready = True
        self.no_grant_gated = []
        t_end = time.time() + 3          # 0.2 s doubling: several refusals
        while time.time() < t_end:
            pod = self.ok("POST", "/api/v1/namespaces/%s/pods?dryRun=All" % NS_APPS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "nogrant-"},
                "spec": {"containers": [{"name": "c", "image": self.cold[0]}]}})
            if pod["spec"].get("schedulingGates"):
                self.no_grant_gated.append(pod["metadata"].get("name"))
            time.sleep(0.2)
        self.no_grant_ready = registry.http_status(hook.metrics_url + "/readyz") == 200
        rc, _ = hook.stop_timed()
        with open(hook.log_path, "rb") as f:
            self.no_grant_log = f.read().decode(errors="replace")
        self.mark("no Lease grant: ready, nothing gated (exit %s)" % rc)


class ControllerRun(Run):
    """Registries, images, the controller's run; the audit it left."""

    def __init__(self):
        super().__init__()
        self.up = self.own(registry.Registry())
        self.cache = self.own(registry.Registry())
        self.priv = self.own(registry.Registry(htpasswd={"alice": "pw"}))
        self.uphost = self.up.url.split("//", 1)[1]
        self.privhost = self.priv.url.split("//", 1)[1]
        self.imgs = images.Images(os.path.join(self.tmp, "layouts"))

    def get_ci(self, name):
        st, doc, _ = self.api.request("GET", CI_PATH + "/" + name)
        return doc if st == 200 else None

    def wait_ready(self, names, timeout=READY_S):
        deadline = time.time() + timeout
        pending = set(names)
        while pending and time.time() < deadline:
            for n in list(pending):
                ci = self.get_ci(n)
                if ci and ci.get("status", {}).get("phase") == "Ready":
                    pending.discard(n)
            time.sleep(0.1)
        if pending:
            raise AssertionError("not Ready after %d s: %s; controller log:\n%s" % (
                timeout, {n: (self.get_ci(n) or {}).get("status") for n in pending},
                self.ctl.log_tail(40)))

    def run(self):
        self.namespaces(((SYSTEM_NS, {}), (NS_APPS, {}),
                         (NS_PRIVATE, {"thaw.dev/cache-private": "true"}), (NS_OSCAR, {})))
        self.load_rbac()
        up, priv = self.uphost, self.privhost
        self.imgs_ci = up + "/rbac/direct:v1"
        self.imgs_pod = up + "/rbac/swept:v1"
        self.imgs_oscar = up + "/rbac/oscar:v1"
        self.imgs_priv = priv + "/rbac/secret:v1"
        self.imgs.push(self.imgs.single(name="direct"), self.imgs_ci)
        self.imgs.push(self.imgs.single(name="swept"), self.imgs_pod)
        self.imgs.push(self.imgs.single(name="oscar"), self.imgs_oscar)
        self.imgs.push(self.imgs.single(name="secret"), self.imgs_priv, "alice:pw")
        self.mark("images pushed")

        self.api.control("audit", method="DELETE")
        # with its token key: thaw-pull Secrets in cache-private namespaces
        key, cert = token_server.make_key(self.tmp)
        self.ctl = self.daemon = SAController(self.kubeconfig, BINARY, self.cache.url, self.tmp, extra=[
            "--allow-private", "--leader-elect=true", "--prewarm-namespaces", NS_OSCAR,
            "--insecure-registries", ",".join([up, priv]), "--refresh-interval", "3s",
            "--repair-after", "1s", "--token-key-file", key, "--token-cert-file", cert,
            "--token-bind-address", "127.0.0.1:%d" % registry.free_port()])
        self.closers.append(self.ctl.stop)
        self.ctl.start()
        deadline = time.time() + 20
        while metric(self.ctl.metrics(), "thaw_leader") != 1:
            if time.time() > deadline:
                raise AssertionError("never leader; log:\n%s" % self.ctl.log_tail(40))
            time.sleep(0.1)
        self.mark("controller leader")

        # 1. a CachedImage the test creates
        direct = ci_name(self.imgs_ci)
        self.ok("POST", CI_PATH, {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                                  "metadata": {"name": direct},
                                  "spec": {"image": self.imgs_ci}})
        # 2. a pod: the pod sweep creates its CachedImage
        self.ok("POST", "/api/v1/namespaces/%s/pods" % NS_APPS, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "swept"},
            "spec": {"containers": [{"name": "c", "image": self.imgs_pod}]}})
        # 3. OSCAR pre-warm: a PodTemplate in oscar-svc
        self.ok("POST", "/api/v1/namespaces/%s/podtemplates" % NS_OSCAR, {
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "svc"},
            "template": {"spec": {"containers": [{"name": "svc", "image": self.imgs_oscar}]}}})
        # 4. a private image through a pod's pull secret (cache-private namespace)
        auth = base64.b64encode(b"alice:pw").decode()
        cfg = json.dumps({"auths": {priv: {"auth": auth}}}).encode()
        self.ok("POST", "/api/v1/namespaces/%s/secrets" % NS_PRIVATE, {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred"},
            "data": {".dockerconfigjson": base64.b64encode(cfg).decode()}})
        self.ok("POST", "/api/v1/namespaces/%s/pods" % NS_PRIVATE, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "private"},
            "spec": {"imagePullSecrets": [{"name": "regcred"}],
                     "containers": [{"name": "c", "image": self.imgs_priv}]}})
        # 5. repair: a pod the webhook rewrote, stuck pulling from the cache
        host, path = self.imgs_pod.split("/", 1)
        stuck = "%s/%s/%s" % (stack.CACHE_HOST, host.replace(":", "__"), path)
        self.ok("POST", "/api/v1/namespaces/%s/pods" % NS_APPS, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "stuck", "annotations": {
                    "thaw.dev/original-images": json.dumps({"container/c": self.imgs_pod})}},
            "spec": {"containers": [{"name": "c", "image": stuck}]}})
        self.ok("PATCH", "/api/v1/namespaces/%s/pods/stuck/status" % NS_APPS, {"status": {
            "containerStatuses": [{"name": "c", "image": stuck, "imageID": "", "ready": False,
                                   "restartCount": 0, "state": {"waiting": {
                                       "reason": "ImagePullBackOff"}}}]}}, want=(200,))
        self.names = {"direct": direct, "swept": ci_name(self.imgs_pod),
                      "oscar": ci_name(self.imgs_oscar), "private": ci_name(self.imgs_priv)}
        self.wait_ready(self.names.values())
        self.mark("all Ready")
        # One refresh round of the private image (3 s): it reads the Secret again.
        checked = self.get_ci(self.names["private"])["status"]["lastCheckedAt"]
        deadline = time.time() + 10
        while self.get_ci(self.names["private"])["status"]["lastCheckedAt"] == checked \
                and time.time() < deadline:
            time.sleep(0.2)
        self.mark("refreshed")
        deadline = time.time() + READY_S
        while self.api.ok("GET", "/api/v1/namespaces/%s/pods/stuck" % NS_APPS)[
                "spec"]["containers"][0]["image"] != self.imgs_pod and time.time() < deadline:
            time.sleep(0.2)
        self.repaired = self.api.ok("GET", "/api/v1/namespaces/%s/pods/stuck" % NS_APPS)
        self.mark("stuck pod repaired")
        # 6. thaw-pull: made in the cache-private namespace, deleted once it
        # loses the label
        secret = "/api/v1/namespaces/%s/secrets/thaw-pull" % NS_PRIVATE
        deadline = time.time() + READY_S
        while self.api.request("GET", secret)[0] != 200 and time.time() < deadline:
            time.sleep(0.2)
        self.thaw_pull = self.api.request("GET", secret)[0]
        self.ok("PATCH", "/api/v1/namespaces/%s" % NS_PRIVATE,
                {"metadata": {"labels": {"thaw.dev/cache-private": None}}}, want=(200,))
        deadline = time.time() + READY_S
        while self.api.request("GET", secret)[0] != 404 and time.time() < deadline:
            time.sleep(0.2)
        self.thaw_pull_after = self.api.request("GET", secret)[0]
        self.mark("thaw-pull made and deleted")
        self.ready = {k: self.get_ci(n) for k, n in self.names.items()}

        rc, secs = self.ctl.stop_timed()
        self.stop_rc = rc
        self.mark("stopped (SIGTERM took %.2f s)" % secs)
        st, self.lease, _ = self.api.request(
            "GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/thaw-controller" % SYSTEM_NS)
        self.finish()


RUN = None


def setUpModule():
    global RUN
    RUN = ControllerRun() if DAEMON == "thaw-controller" else WebhookRun()
    try:
        RUN.run()
    except BaseException:
        if RUN.daemon is not None:
            sys.stderr.write("%s log:\n%s\n" % (DAEMON, RUN.daemon.log_tail(60)))
        RUN.close()
        raise


def tearDownModule():
    if RUN:
        sys.stderr.write("timings: %s\n" % ", ".join(
            "%s at %.1f s" % (k, v) for k, v in RUN.timings.items()))
        RUN.close()


def e(verb, resource, group="", sub="", ns="", name=""):
    return {"verb": verb, "apiGroup": group, "resource": resource,
            "subresource": sub, "namespace": ns, "name": name}


LEASE = "coordination.k8s.io"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % SYSTEM_NS
# (allowed, denied) request attributes per daemon: the evaluator and the
# rules are not vacuous (wrong name, wrong namespace, a subresource or verb
# not granted, secrets without the private Component).
CASES = {
    "thaw-controller": (
        [e("update", "leases", LEASE, ns=SYSTEM_NS, name="thaw-controller"),
         e("create", "leases", LEASE, ns=SYSTEM_NS),
         e("patch", "cachedimages", "thaw.dev", "status", name="x"),
         e("get", "secrets", ns="any", name="regcred"),
         e("get", "pods", ns="a", name="p"), e("patch", "pods", ns="a", name="p"),
         e("create", "events", ns="a"),
         dict(e("get", ""), nonResourceURL="/apis/thaw.dev/v1alpha1")],
        [e("update", "leases", LEASE, ns=SYSTEM_NS, name="other"),
         e("update", "leases", LEASE, ns="default", name="thaw-controller"),
         e("create", "leases", LEASE, ns="default"),
         e("list", "leases", LEASE, ns=SYSTEM_NS),
         e("update", "pods", ns="a", name="p"), e("delete", "pods", ns="a", name="p"),
         e("patch", "pods", sub="status", ns="a", name="p"),
         e("update", "pods", sub="status", ns="a", name="p"),
         e("list", "secrets", ns="a"),
         e("get", "cachedimages", "", name="x"),
         e("create", "pods", "", "eviction", ns="a", name="p"),
         dict(e("get", ""), nonResourceURL="/metrics")]),
    "thaw-webhook": (
        [e("list", "cachedimages", "thaw.dev"), e("watch", "cachedimages", "thaw.dev"),
         e("create", "cachedimages", "thaw.dev"), e("list", "namespaces"),
         e("watch", "namespaces"),
         e("list", "leases", LEASE, ns=SYSTEM_NS, name="thaw-controller"),
         e("watch", "leases", LEASE, ns=SYSTEM_NS, name="thaw-controller"),
         dict(e("get", ""), nonResourceURL="/version")],
        [e("get", "cachedimages", "thaw.dev", name="x"),
         e("patch", "cachedimages", "thaw.dev", "status", name="x"),
         e("update", "cachedimages", "thaw.dev", name="x"),
         e("delete", "cachedimages", "thaw.dev", name="x"),
         e("get", "namespaces", ns="a", name="a"),
         e("list", "pods", ns="a"), e("get", "secrets", ns="a", name="s"),
         e("create", "events", ns="a"),
         e("create", "leases", LEASE, ns=SYSTEM_NS),
         e("list", "leases", LEASE, ns=SYSTEM_NS),
         e("watch", "leases", LEASE, ns=SYSTEM_NS, name="other"),
         e("list", "leases", LEASE, ns="default", name="thaw-controller"),
         e("get", "leases", LEASE, ns=SYSTEM_NS, name="thaw-controller"),
         e("update", "leases", LEASE, ns=SYSTEM_NS, name="thaw-controller"),
         dict(e("get", ""), nonResourceURL="/metrics")]),
}


class RbacAudit(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objs = manifests_objects()
        cls.rules = bound_rules(cls.objs)
        cls.audit = RUN.audit

    def used(self, verb, resource, group="", sub="", ns=None, name=None):
        return [e for e in self.audit if e["verb"] == verb and e["resource"] == resource
                and e["apiGroup"] == group and e["subresource"] == sub
                and (ns is None or e["namespace"] == ns)
                and (name is None or e["name"] == name)]

    def test_0_evaluator_denies(self):
        yes, no = CASES[DAEMON]
        for x in yes:
            self.assertIsNotNone(allowed(self.rules, x), x)
        for x in no:
            self.assertIsNone(allowed(self.rules, x), x)
        self.assertEqual(bound_rules(self.objs, "system:serviceaccount:thaw-system:other",
                                     ("system:authenticated",)), [])
        if DAEMON == "thaw-controller":
            base = rbac_stack.rendered()
            self.assertIsNone(allowed(bound_rules(base), yes[3]), "secrets without private/")

    def test_1_run_did_the_things(self):
        """Not vacuous: the run did what needs each grant."""
        self.assertEqual(RUN.stop_rc, 0, RUN.daemon.log_tail(40))
        # Every request was made as the ServiceAccount: none as the admin.
        self.assertTrue(self.audit)
        self.assertTrue(all(e["user"] == SA_USER for e in self.audit))
        if DAEMON == "thaw-webhook":
            self.assertEqual(sorted(RUN.created), sorted(RUN.cold), RUN.daemon.log_tail(40))
            for img, ci in RUN.created.items():
                self.assertEqual(ci["spec"]["image"], img)
            self.assertTrue(RUN.rewritten, "the Ready image was never rewritten")
            self.assertGreaterEqual(len(self.used("create", "cachedimages", "thaw.dev")), 3)
            for res, g in (("cachedimages", "thaw.dev"), ("namespaces", "")):
                self.assertTrue(self.used("list", res, g), "no list of " + res)
                self.assertTrue(self.used("watch", res, g), "no watch on " + res)
            # cold wait: the Lease watch, by name, and a pod gated through it
            for verb in ("list", "watch"):
                self.assertTrue(self.used(verb, "leases", LEASE, ns=SYSTEM_NS,
                                          name="thaw-controller"), "no %s of the Lease" % verb)
            self.assertTrue(RUN.gated, "no cold pod was gated; log:\n" + RUN.daemon.log_tail(40))
            self.assertEqual(RUN.gated["spec"]["schedulingGates"], [{"name": "thaw.dev/warming"}])
            # without the grant: ready all along, nothing gated, logged once
            self.assertTrue(RUN.no_grant_ready, RUN.no_grant_log[-3000:])
            self.assertEqual(RUN.no_grant_gated, [])
            denied = [ln for ln in RUN.no_grant_log.splitlines()
                      if "permission denied" in ln and "leases" in ln]
            self.assertEqual(len(denied), 1, RUN.no_grant_log[-3000:])
            return
        for k, ci in RUN.ready.items():
            self.assertEqual(ci["status"]["phase"], "Ready", k)
        self.assertTrue(RUN.ready["private"]["status"].get("private"))
        self.assertEqual((RUN.lease.get("spec") or {}).get("holderIdentity", ""), "",
                         "Lease not released: %s" % RUN.lease)
        self.assertTrue(self.used("get", "secrets", ns=NS_PRIVATE, name="regcred"))
        self.assertTrue(self.used("create", "leases", LEASE, ns=SYSTEM_NS))
        self.assertGreaterEqual(len(self.used("update", "leases", LEASE,
                                              ns=SYSTEM_NS, name="thaw-controller")), 2,
                                "renewals and the release")
        self.assertTrue(self.used("create", "events"))
        # the repair: read, patched once, an Event in the pod's namespace
        self.assertEqual(RUN.repaired["spec"]["containers"][0]["image"], RUN.imgs_pod,
                         RUN.daemon.log_tail(40))
        self.assertTrue(self.used("get", "pods", ns=NS_APPS, name="stuck"))
        self.assertEqual(len(self.used("patch", "pods", ns=NS_APPS, name="stuck")), 1)
        self.assertTrue(self.used("create", "events", ns=NS_APPS))
        self.assertTrue(self.used("patch", "cachedimages", "thaw.dev", "status"),
                        "no status patch")
        self.assertGreaterEqual(len(self.used("create", "cachedimages", "thaw.dev")), 2,
                                "the pod sweep and the pre-warm create CachedImages")
        for res in ("cachedimages", "pods", "namespaces", "podtemplates"):
            g = "thaw.dev" if res == "cachedimages" else ""
            self.assertTrue(self.used("watch", res, g), "no watch on " + res)
        # thaw-pull: its owner read by name, made, then deleted (no list)
        self.assertEqual((RUN.thaw_pull, RUN.thaw_pull_after), (200, 404),
                         RUN.daemon.log_tail(40))
        self.assertTrue(self.used("get", "customresourcedefinitions", "apiextensions.k8s.io",
                                  name="cachedimages.thaw.dev"))
        self.assertTrue(self.used("create", "secrets", ns=NS_PRIVATE))
        self.assertTrue(self.used("delete", "secrets", ns=NS_PRIVATE, name="thaw-pull"))
        self.assertFalse(self.used("list", "secrets"))

    def test_2_every_request_allowed(self):
        """The emulator enforced the manifests' RBAC and denied nothing; the
        offline evaluation of the same rules agrees."""
        self.assertTrue(self.rules, "no rules bound to %s in the manifests" % SA_USER)
        print("\nrules bound to %s:" % SA_USER)
        for ns, r, role in self.rules:
            print("  %-42s ns=%-12s %s" % (role, ns or "*", json.dumps(r, sort_keys=True)))
        counts = {}
        for x in self.audit:
            k = (x["verb"], x["apiGroup"], x["resource"] +
                 ("/" + x["subresource"] if x["subresource"] else ""))
            counts[k] = counts.get(k, 0) + 1
        print("requests by %s (%d):" % (SA_USER, len(self.audit)))
        for (v, g, r), n in sorted(counts.items(), key=lambda x: (x[0][1], x[0][2], x[0][0])):
            print("  %5d  %-7s %s%s" % (n, v, (g + ":") if g else "core:", r))
        failed = [x for x in self.audit if x.get("code") and not 200 <= x["code"] < 300]
        if failed:
            print("non-2xx answers (information):")
            for x in failed:
                print("  " + describe(x))
        forbidden = [describe(x) for x in self.audit
                     if x.get("decision") != "allow" or x.get("code") == 403]
        offline = [describe(x) for x in self.audit if allowed(self.rules, x) is None]
        for what, lst in (("DENIED by the emulator", forbidden),
                          ("denied by the offline evaluation", offline)):
            if lst:
                print("%s (%d):" % (what, len(lst)))
                for d in lst:
                    print("  " + d)
        self.assertEqual(forbidden, [])
        self.assertEqual(offline, [])

    def test_3_unused_grants(self):
        """Information only: granted (group, resource, verb) never used."""
        used = {(x["apiGroup"], x["resource"] + ("/" + x["subresource"] if x["subresource"]
                                                  else ""), x["verb"]) for x in self.audit}
        unused = sorted(t for t in granted_triples(self.rules) if t[:3] not in used)
        print("\ngranted but unused in this run (information; the controller's expiry "
              "uses cachedimages delete):")
        for g, r, v, ns, names in unused:
            print("  %-7s %s%s ns=%s%s" % (v, (g + ":") if g else "core:", r, ns,
                                         " names=" + ",".join(names) if names else ""))
        if not unused:
            print("  (none)")


def main():
    global BINARY, DAEMON, SA_USER
    if len(sys.argv) < 2:
        sys.exit("usage: test_rbac_audit.py PATH/thaw-controller|PATH/thaw-webhook "
                 "[unittest args]")
    BINARY = os.path.abspath(sys.argv.pop(1))
    DAEMON = os.path.basename(BINARY)
    if DAEMON not in rbac_stack.COMPONENTS:
        sys.exit("test_rbac_audit.py: %s is neither thaw-controller nor thaw-webhook" % BINARY)
    SA_USER = rbac_stack.sa_user(DAEMON)
    unittest77.main()


if __name__ == "__main__":
    main()
