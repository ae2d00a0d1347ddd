"""thaw-controller needs no more than the RBAC its manifests grant, shown by a
real run: the controller runs as the ServiceAccount thaw-system/thaw-controller
(its own token in the emulator's tokens file), and every API request it made,
read back from the emulator's audit log (GET /_emulator/audit), must be allowed
by the rules that manifests/ plus the manifests/controller/private Component
bind to that ServiceAccount, evaluated as Kubernetes' RBAC authorizer does.

    test/with-emulator.sh python3 test/test_rbac_audit.py BUILD/controller/thaw-controller

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).
The run: leader election (Lease create/renew, released on SIGTERM), a
CachedImage created by the test warmed to Ready (status writes, Events), the
pod sweep (a pod's image becomes a CachedImage), OSCAR pre-warm (a
PodTemplate in oscar-svc), and a private image through a pod's pull secret
in a cache-private namespace (the controller reads the Secret). Granted
(group, resource, verb) triples the run never used are printed for
information only. Every server runs on a free loopback port, stopped by PID.
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

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(HERE, "kubeemu"), HERE]

if not os.environ.get("THAW_EMU_URL") and __name__ == "__main__":
    os.execvp("sh", ["sh", os.path.join(HERE, "with-emulator.sh"), sys.executable,
                     os.path.abspath(__file__)] + sys.argv[1:])

import yaml  # noqa: E402

import images  # noqa: E402
import registry  # noqa: E402
import test_manifests  # noqa: E402  (resolve(), overlay(): the manifests' objects)
from stack import CI_PATH, SYSTEM_NS, Api, Closers, Controller, ci_name, metric  # noqa: E402

BINARY = None
SA_NAME = "thaw-controller"
SA_USER = "system:serviceaccount:%s:%s" % (SYSTEM_NS, SA_NAME)
SA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:" + SYSTEM_NS,
             "system:authenticated")
NS_APPS, NS_PRIVATE, NS_OSCAR = "rbac-apps", "rbac-private", "oscar-svc"
READY_S = 30
# Non-resource URLs every authenticated user may GET (the default
# ClusterRoles system:discovery and system:public-info-viewer).
DISCOVERY = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/readyz",
             "/version", "/version/", "/openapi", "/openapi/*")


# ---- RBAC, as k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac evaluates it

def manifests_objects():
    """Objects of manifests/ plus the controller/private Component: rendered by
    `kubectl kustomize` when kubectl is installed, else resolved from the
    files (test_manifests.resolve; RBAC objects need no transformer here)."""
    objs = test_manifests.overlay("controller/private")
    if objs is None:
        objs = test_manifests.resolve(test_manifests.MANIFESTS) + test_manifests.resolve(
            os.path.join(test_manifests.MANIFESTS, "controller", "private"))
    return objs


def subject_matches(s, user, groups):
    kind = s.get("kind")
    if kind == "ServiceAccount":
        return "system:serviceaccount:%s:%s" % (s.get("namespace", ""), s.get("name")) == user
    if kind == "User":
        return s.get("name") == user
    if kind == "Group":
        return s.get("name") in groups
    return False


def bound_rules(objs, user=SA_USER, groups=SA_GROUPS):
    """[(binding namespace or None for cluster-wide, rule, "Kind/name")] bound
    to the user: ClusterRoles through ClusterRoleBindings (everywhere), Roles
    and ClusterRoles through RoleBindings (in the binding's namespace)."""
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
        if not any(subject_matches(s, user, groups) for s in b.get("subjects") or []):
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


def rule_allows(rule, e):
    """RuleAllows for a resource request (audit entry e)."""
    if not ({"*", e["verb"]} & set(rule.get("verbs") or [])):
        return False
    if not ({"*", e["apiGroup"]} & set(rule.get("apiGroups") or [])):
        return False
    want = e["resource"] + ("/" + e["subresource"] if e["subresource"] else "")
    ok = False
    for r in rule.get("resources") or []:
        if r in ("*", want) or (e["subresource"] and r == "*/" + e["subresource"]):
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    return not names or e["name"] in names


def non_resource_allowed(path):
    for p in DISCOVERY:
        if p == path or (p.endswith("*") and path.startswith(p[:-1])):
            return True
    return False


def allowed(rules, e):
    """The first (binding namespace, rule, role) allowing e, or None."""
    if e.get("nonResourceURL"):
        return ("-", {"nonResourceURLs": ["(default discovery)"]}, "system:discovery") \
            if non_resource_allowed(e["nonResourceURL"]) and e["verb"] == "get" else None
    for ns, rule, role in rules:
        if ns is not None and ns != e["namespace"]:
            continue
        if rule_allows(rule, e):
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
    return "%-6s %s%s ns=%s name=%s -> %s  (%s)" % (
        e["verb"], (e["apiGroup"] + ":") if e["apiGroup"] else "core:", res,
        e["namespace"] or "-", e["name"] or "-", e.get("code"), e.get("requestURI"))


# ---- the run

class SAController(Controller):
    """thaw-controller with its own kubeconfig (the ServiceAccount's token)."""

    def __init__(self, kubeconfig, *a, **kw):
        super().__init__(*a, **kw)
        self.kubeconfig = kubeconfig

    def argv(self):
        a = super().argv()
        a[a.index("--kubeconfig") + 1] = self.kubeconfig
        return a


def sa_kubeconfig(path):
    """A token for the ServiceAccount in the emulator's tokens file, and a
    copy of $KUBECONFIG that uses it."""
    token = "sa-" + os.urandom(16).hex()
    with open(os.environ["THAW_EMU_TOKENS_FILE"], "a") as f:
        f.write("%s %s\n" % (token, SA_USER))
    with open(os.environ["KUBECONFIG"]) as f:
        kc = yaml.safe_load(f)
    for u in kc["users"]:
        u["user"] = {"token": token}
    with open(path, "w") as f:
        yaml.safe_dump(kc, f)
    os.chmod(path, 0o600)
    return token


class Run(Closers):
    """Registries, images, the controller's run; the audit it left."""

    def __init__(self):
        self.t0 = time.time()
        self.timings = {}
        self.tmp = tempfile.mkdtemp(prefix="thaw-rbac.")
        super().__init__()
        self.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.api = Api()
        self.up = self.own(registry.Registry())
        self.cache = self.own(registry.Registry())
        self.priv = self.own(registry.Registry(htpasswd={"alice": "pw"}))
        self.uphost = self.up.url.split("//", 1)[1]
        self.privhost = self.priv.url.split("//", 1)[1]
        self.imgs = images.Images(os.path.join(self.tmp, "layouts"))
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig-sa")
        sa_kubeconfig(self.kubeconfig)
        self.ctl = None

    def mark(self, what):
        self.timings[what] = time.time() - self.t0

    def ok(self, method, path, body, want=(201,)):
        return self.api.ok(method, path, body, want=want)

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
        for ns, labels in ((SYSTEM_NS, {}), (NS_APPS, {}),
                           (NS_PRIVATE, {"thaw.dev/cache-private": "true"}),
                           (NS_OSCAR, {})):
            self.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}, want=(201, 409))
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
        self.ctl = SAController(self.kubeconfig, BINARY, self.cache.url, self.tmp, extra=[
            "--allow-private", "--leader-elect=true", "--prewarm-namespaces", NS_OSCAR,
            "--insecure-registries", ",".join([up, priv]), "--refresh-interval", "3s"])
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
        self.ready = {k: self.get_ci(n) for k, n in self.names.items()}

        rc, secs = self.ctl.stop_timed()
        self.stop_rc = rc
        self.mark("stopped (SIGTERM took %.2f s)" % secs)
        st, self.lease, _ = self.api.request(
            "GET", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/thaw-controller" % SYSTEM_NS)
        self.audit = self.api.control("audit?user=" + SA_USER, method="GET")["items"]
        self.mark("audit read (%d requests)" % len(self.audit))


RUN = None


def setUpModule():
    global RUN
    RUN = Run()
    try:
        RUN.run()
    except BaseException:
        if RUN.ctl is not None:
            sys.stderr.write("controller log:\n%s\n" % RUN.ctl.log_tail(60))
        RUN.close()
        raise


def tearDownModule():
    if RUN:
        sys.stderr.write("timings: %s\n" % ", ".join(
            "%s at %.1f s" % (k, v) for k, v in RUN.timings.items()))
        RUN.close()


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
        """The evaluator itself is not vacuous: requests outside the rules
        are denied (wrong name, wrong namespace, a subresource not granted,
        another user, secrets without the private Component)."""
        def e(verb, resource, group="", sub="", ns="", name=""):
            return {"verb": verb, "apiGroup": group, "resource": resource,
                    "subresource": sub, "namespace": ns, "name": name}
        lease = "coordination.k8s.io"
        yes = [e("update", "leases", lease, ns=SYSTEM_NS, name="thaw-controller"),
               e("create", "leases", lease, ns=SYSTEM_NS),
               e("patch", "cachedimages", "thaw.dev", "status", name="x"),
               e("get", "secrets", ns="any", name="regcred"),
               dict(e("get", ""), nonResourceURL="/apis/thaw.dev/v1alpha1")]
        no = [e("update", "leases", lease, ns=SYSTEM_NS, name="other"),
              e("update", "leases", lease, ns="default", name="thaw-controller"),
              e("create", "leases", lease, ns="default"),
              e("list", "leases", lease, ns=SYSTEM_NS),
              e("patch", "pods", ns="a", name="p"),
              e("update", "pods", sub="status", ns="a", name="p"),
              e("list", "secrets", ns="a"),
              e("get", "cachedimages", "", name="x"),
              e("create", "pods", "", "eviction", ns="a", name="p"),
              dict(e("get", ""), nonResourceURL="/metrics")]
        for x in yes:
            self.assertIsNotNone(allowed(self.rules, x), x)
        for x in no:
            self.assertIsNone(allowed(self.rules, x), x)
        base = test_manifests.kubectl_kustomize(test_manifests.MANIFESTS) or \
            test_manifests.resolve(test_manifests.MANIFESTS)
        self.assertIsNone(allowed(bound_rules(base), yes[3]), "secrets without private/")
        self.assertEqual(bound_rules(self.objs, "system:serviceaccount:thaw-system:other",
                                     ("system:authenticated",)), [])

    def test_1_run_did_the_things(self):
        """Not vacuous: the run warmed, swept, pre-warmed, read a Secret,
        renewed and released its Lease, posted Events, wrote status."""
        for k, ci in RUN.ready.items():
            self.assertEqual(ci["status"]["phase"], "Ready", k)
        self.assertTrue(RUN.ready["private"]["status"].get("private"))
        self.assertEqual(RUN.stop_rc, 0, RUN.ctl.log_tail(40))
        self.assertEqual((RUN.lease.get("spec") or {}).get("holderIdentity", ""), "",
                         "Lease not released: %s" % RUN.lease)
        self.assertTrue(self.used("get", "secrets", ns=NS_PRIVATE, name="regcred"))
        self.assertTrue(self.used("create", "leases", "coordination.k8s.io", ns=SYSTEM_NS))
        self.assertGreaterEqual(len(self.used("update", "leases", "coordination.k8s.io",
                                              ns=SYSTEM_NS, name="thaw-controller")), 2,
                                "renewals and the release")
        self.assertTrue(self.used("create", "events"))
        self.assertTrue(self.used("patch", "cachedimages", "thaw.dev", "status")
                        or self.used("update", "cachedimages", "thaw.dev", "status"))
        self.assertTrue(self.used("patch", "cachedimages", "thaw.dev", "status"),
                        "no status patch")
        self.assertGreaterEqual(len(self.used("create", "cachedimages", "thaw.dev")), 2,
                                "the pod sweep and the pre-warm create CachedImages")
        for res in ("cachedimages", "pods", "namespaces", "podtemplates"):
            g = "thaw.dev" if res == "cachedimages" else ""
            self.assertTrue(self.used("watch", res, g), "no watch on " + res)
        # Every request was made as the ServiceAccount: none as the admin.
        self.assertTrue(all(e["user"] == SA_USER for e in self.audit))

    def test_2_every_request_allowed(self):
        self.assertTrue(self.rules, "no rules bound to %s in the manifests" % SA_USER)
        print("\nrules bound to %s:" % SA_USER)
        for ns, r, role in self.rules:
            print("  %-42s ns=%-12s %s" % (role, ns or "*", json.dumps(r, sort_keys=True)))
        denied = [e for e in self.audit if allowed(self.rules, e) is None]
        counts = {}
        for e in self.audit:
            k = (e["verb"], e["apiGroup"], e["resource"] +
                 ("/" + e["subresource"] if e["subresource"] else ""))
            counts[k] = counts.get(k, 0) + 1
        print("requests by %s (%d):" % (SA_USER, len(self.audit)))
        for (v, g, r), n in sorted(counts.items(), key=lambda x: (x[0][1], x[0][2], x[0][0])):
            print("  %5d  %-7s %s%s" % (n, v, (g + ":") if g else "core:", r))
        failed = [e for e in self.audit if e.get("code") and not 200 <= e["code"] < 300]
        if failed:
            print("non-2xx answers (information):")
            for e in failed:
                print("  " + describe(e))
        if denied:
            print("DENIED by the manifests' RBAC (%d):" % len(denied))
            for e in denied:
                print("  " + describe(e))
        self.assertEqual([describe(e) for e in denied], [])

    def test_3_unused_grants(self):
        """Information only: granted (group, resource, verb) never used."""
        used = {(e["apiGroup"], e["resource"] + ("/" + e["subresource"] if e["subresource"]
                                                  else ""), e["verb"]) for e in self.audit}
        unused = sorted(t for t in granted_triples(self.rules) if t[:3] not in used)
        print("\ngranted but unused in this run (information; Step 4's expiry uses "
              "cachedimages delete):")
        for g, r, v, ns, names in unused:
            print("  %-7s %s%s ns=%s%s" % (v, (g + ":") if g else "core:", r, ns,
                                         " names=" + ",".join(names) if names else ""))
        if not unused:
            print("  (none)")


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: test_rbac_audit.py PATH/thaw-controller [unittest args]")
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
