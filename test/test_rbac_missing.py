"""What thaw-webhook and thaw-controller do when a permission their manifests
should grant is missing: each case runs the daemon as its ServiceAccount
under the manifests' RBAC (loaded into the emulator, which enforces it) with
one grant taken away, watches it for WINDOW_S, then grants it back.

    test/with-emulator.sh python3 test/test_rbac_missing.py BUILD/webhook/thaw-webhook
    test/with-emulator.sh python3 test/test_rbac_missing.py BUILD/controller/thaw-controller

While denied: the daemon keeps running; its log has a JSON error line
naming the verb and the resource, and only a few of them (no flood); the
forbidden requests stay few (exponential backoff, not a tight loop); the
403s show in thaw_kube_requests_total{code="403"}; /readyz is not 200 while
an informer cannot list or watch. Once granted: it recovers by itself
(informers sync, /readyz 200, the pending write lands). kubectl
(test/deps.sh) renders the manifests; without it the test fails."""

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

import images  # noqa: E402
import rbac_stack  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import webhook_stub  # noqa: E402
from stack import CI_PATH, SYSTEM_NS, Api, ci_name, metric  # noqa: E402

BINARY = DAEMON = None
WINDOW_S = 10        # how long a denied daemon is watched
MAX_REQUESTS = 12    # forbidden requests in WINDOW_S (backoff 0.2 s doubling: ~7)
MAX_LOG_LINES = 3    # log lines about the denial in WINDOW_S
RECOVER_S = 45       # backoff cap 30 s, plus jitter and a sync
NS_APPS = "rbac-missing"
TCP = "thaw.dev"


def log_lines(path):
    out = []
    with open(path, "rb") as f:
        for ln in f.read().decode(errors="replace").splitlines():
            try:
                out.append(json.loads(ln))
            except ValueError:
                pass
    return out


class Missing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.api = Api()
        cls.tmp = tempfile.mkdtemp(prefix="thaw-rbac-missing.")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        for ns in (SYSTEM_NS, NS_APPS):
            cls.api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": ns}},
                       want=(201, 409))
        cls.full = rbac_stack.rbac_objects(rbac_stack.rendered(
            rbac_stack.COMPONENTS[DAEMON]), DAEMON)
        cls.user = rbac_stack.sa_user(DAEMON)
        cls.kubeconfig = os.path.join(cls.tmp, "kubeconfig-sa")
        rbac_stack.sa_kubeconfig(DAEMON, cls.kubeconfig)
        cls.cache = registry.Registry()
        cls.addClassCleanup(cls.cache.close)
        if DAEMON == "thaw-webhook":
            cls.certs = webhook_stub.make_certs(cls.tmp)
        else:
            cls.up = registry.Registry()
            cls.addClassCleanup(cls.up.close)
            cls.imgs = images.Images(os.path.join(cls.tmp, "layouts"))
        cls.n = 0

    # ---- one case

    def start(self):
        type(self).n += 1
        workdir = os.path.join(self.tmp, "run%d" % self.n)
        os.mkdir(workdir)
        if DAEMON == "thaw-webhook":
            d = rbac_stack.SAWebhook(self.kubeconfig, BINARY, self.certs, self.cache.url,
                                     workdir)
        else:
            d = rbac_stack.SAController(self.kubeconfig, BINARY, self.cache.url, workdir, extra=[
                "--leader-elect=true", "--insecure-registries", self.up.url.split("//")[1]])
        self.addCleanup(d.stop_timed)
        return d.start(wait_ready=False)

    def run_case(self, objs, verb, resource, group="", sub="", informer=False,
                 work=None, done=None, ready_while_denied=True, after=None):
        """Loads objs (the RBAC minus one grant), starts the daemon, calls
        work(daemon), checks the denied behaviour for WINDOW_S, grants the
        full RBAC back, and waits for done(daemon) (and /readyz 200)."""
        rbac_stack.load(self.api, objs)
        self.addCleanup(rbac_stack.load, self.api, self.full)
        self.api.control("audit", method="DELETE")
        d = self.start()
        if work:
            work(d)
        t0 = time.time()
        ready = set()
        while time.time() - t0 < WINDOW_S:
            self.assertIsNone(d.proc.poll(), "exited; log:\n" + d.log_tail())
            ready.add(registry.http_status(d.metrics_url + "/readyz", 0.5))
            time.sleep(0.25)
        audit = self.api.control("audit?user=" + self.user, method="GET")["items"]
        denied = [e for e in audit if e["decision"] == "forbid"]
        hit = [e for e in denied if (e["verb"], e["apiGroup"], e["resource"], e["subresource"])
               == (verb, group, resource, sub)]
        what = "%s %s%s" % (verb, resource, "/" + sub if sub else "")
        self.assertTrue(hit, "%s never tried; denied: %s" % (what, denied))
        self.assertLessEqual(len(hit), MAX_REQUESTS, "%s tried %d times in %d s (no backoff?)"
                             % (what, len(hit), WINDOW_S))
        counted = sum(v for k, v in _samples(d.metrics(), "thaw_kube_requests_total")
                      if k.get("code") == "403")
        self.assertGreaterEqual(counted, len(hit), "403s not counted in the metric")
        # One clear error line: level error, naming verb and resource.
        lines = log_lines(d.log_path)
        about = [ln for ln in lines if resource in json.dumps(ln) and ln.get("level") in
                 ("warn", "error")]
        clear = [ln for ln in about if ln.get("level") == "error" and ln.get("verb") == verb
                 and ln.get("resource") in (resource, resource + "/" + sub)]
        self.assertTrue(clear, "no error line naming %s; log:\n%s" % (what, d.log_tail()))
        self.assertLessEqual(len(about), MAX_LOG_LINES, "log flood:\n%s" % d.log_tail())
        if informer:
            self.assertNotIn(200, ready, "/readyz was 200 while %s is denied" % what)
        elif ready_while_denied:
            self.assertIn(200, ready, "/readyz never 200 (only %s is denied)" % what)
        # Granted back: recovers by itself, and says so (the line follows the
        # first answer that succeeds, which the API server may show first).
        rbac_stack.load(self.api, self.full)

        def granted():
            return any(ln.get("msg") == "permission granted again" and ln.get("verb") == verb
                       for ln in log_lines(d.log_path))
        deadline = time.time() + RECOVER_S
        while time.time() < deadline:
            self.assertIsNone(d.proc.poll(), "exited; log:\n" + d.log_tail())
            if registry.http_status(d.metrics_url + "/readyz", 0.5) == 200 and \
                    (done is None or done(d)) and granted():
                break
            time.sleep(0.25)
        else:
            self.assertTrue(granted(), "no 'permission granted again' line for " + what)
            self.fail("no recovery %d s after %s was granted; log:\n%s"
                      % (RECOVER_S, what, d.log_tail(30)))
        if after:
            after(d)
        rc, _ = d.stop_timed()
        self.assertEqual(rc, 0, d.log_tail())

    def without(self, kind, name, group, resource, verb):
        return rbac_stack.without(self.full, kind, name, group, resource, verb)

    # ---- helpers of the cases

    def ci_exists(self, img):
        return self.api.request("GET", CI_PATH + "/" + ci_name(img))[0] == 200

    def ci_phase(self, img):
        st, doc, _ = self.api.request("GET", CI_PATH + "/" + ci_name(img))
        return (doc.get("status") or {}).get("phase") if st == 200 else None

    def new_ci(self, img):
        self.api.ok("POST", CI_PATH, {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                                      "metadata": {"name": ci_name(img)},
                                      "spec": {"image": img}}, want=(201,))

    def push(self, tag):
        img = "%s/missing/%s:v1" % (self.up.url.split("//")[1], tag)
        self.imgs.push(self.imgs.single(name=tag), img)
        return img


def _samples(text, name):
    import re
    for line in text.splitlines():
        m = re.match(r'^%s\{([^}]*)\}\s+(\S+)' % re.escape(name), line)
        if m:
            yield dict(re.findall(r'(\w+)="([^"]*)"', m.group(1))), float(m.group(2))


class Webhook(Missing):
    def register(self, d):
        self.api.ok("POST", stack.MWC_PATH, stack.webhook_configuration(
            d.url, self.certs["ca_bundle"]), want=(201,))
        self.addCleanup(self.api.request, "DELETE", stack.MWC_PATH + "/thaw-webhook")

    def test_list_namespaces(self):
        self.run_case(self.without("ClusterRole", "thaw-webhook", "", "namespaces", "list"),
                      "list", "namespaces", informer=True)

    def test_watch_cachedimages(self):
        self.run_case(self.without("ClusterRole", "thaw-webhook", TCP, "cachedimages", "watch"),
                      "watch", "cachedimages", TCP, informer=True)

    def test_create_cachedimages(self):
        img = "docker.io/rbac-missing/cold:%d" % self.n

        def work(d):
            deadline = time.time() + 20
            while registry.http_status(d.metrics_url + "/readyz", 0.5) != 200:
                self.assertLess(time.time(), deadline, d.log_tail())
                time.sleep(0.1)
            self.register(d)
            self.api.ok("POST", "/api/v1/namespaces/%s/pods" % NS_APPS, {
                "metadata": {"generateName": "cold-"},
                "spec": {"containers": [{"name": "c", "image": img}]}}, want=(201,))

        def after(d):
            m = d.metrics()
            self.assertGreaterEqual(metric(m, "thaw_webhook_records_total",
                                           {"result": "retry"}) or 0, 1)
            self.assertEqual(metric(m, "thaw_webhook_records_total", {"result": "created"}), 1)
        self.run_case(self.without("ClusterRole", "thaw-webhook", TCP, "cachedimages", "create"),
                      "create", "cachedimages", TCP, work=work,
                      done=lambda d: self.ci_exists(img), after=after)


class Controller(Missing):
    def test_list_pods(self):
        self.run_case(self.without("ClusterRole", "thaw-controller", "", "pods", "list"),
                      "list", "pods", informer=True)

    def test_patch_status(self):
        img = self.push("status")
        self.run_case(self.without("ClusterRole", "thaw-controller", TCP,
                                   "cachedimages/status", "patch"),
                      "patch", "cachedimages", TCP, "status",
                      work=lambda d: self.new_ci(img),
                      done=lambda d: self.ci_phase(img) == "Ready")

    def test_create_events(self):
        img = self.push("events")
        later = self.push("events-later")

        def events_for(name):
            items = self.api.ok("GET", "/api/v1/namespaces/default/events")["items"]
            return [e for e in items if e["involvedObject"]["name"] == name]

        def done(d):
            if self.ci_phase(later) is None:
                self.new_ci(later)      # new work once granted: its Events land
            return bool(events_for(ci_name(later)))
        self.run_case(self.without("ClusterRole", "thaw-controller", "", "events", "create"),
                      "create", "events", work=lambda d: self.new_ci(img), done=done,
                      after=lambda d: self.assertEqual(self.ci_phase(img), "Ready"))

    def test_lease(self):
        objs = [o for o in self.full if not (o["kind"] == "RoleBinding" and
                                             o["metadata"]["name"] ==
                                             "thaw-controller-leader-election")]
        self.api.request("DELETE", rbac_stack.object_path(
            [o for o in self.full if o["kind"] == "RoleBinding"][0]) +
            "/thaw-controller-leader-election")
        self.run_case(objs, "get", "leases", "coordination.k8s.io",
                      done=lambda d: metric(d.metrics(), "thaw_leader") == 1)


def main():
    global BINARY, DAEMON
    if len(sys.argv) < 2:
        sys.exit("usage: test_rbac_missing.py PATH/thaw-webhook|PATH/thaw-controller")
    BINARY = os.path.abspath(sys.argv.pop(1))
    DAEMON = os.path.basename(BINARY)
    cls = {"thaw-webhook": Webhook, "thaw-controller": Controller}.get(DAEMON)
    if cls is None:
        sys.exit("test_rbac_missing.py: %s is neither daemon" % BINARY)
    unittest77.main(suite=unittest.defaultTestLoader.loadTestsFromTestCase(cls))


if __name__ == "__main__":
    main()
