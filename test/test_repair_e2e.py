"""thaw-controller repairs pods stuck pulling an image thaw rewrote
(docs/design.md "Repair of stuck pods"), end to end: the real controller
(--repair-after 2s) against the emulator, with a real docker-registry as
its cache registry; pods are created through the emulator and their
container statuses set through the pods/status subresource, as a kubelet
would report ErrImagePull and ImagePullBackOff.

    test/with-emulator.sh python3 test/test_repair_e2e.py BUILD/controller/thaw-controller

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).
Shown: a rewritten pod backing off gets its original image back, no sooner
than --repair-after after the failure, with one ImageRepaired Event in its
namespace and thaw_pods_repaired_total counting it; an init container is
repaired and its running sibling left alone; a pod whose image is under
the cache host but lacks thaw.dev/original-images, one failing on an image
thaw did not rewrite, and one that recovers before the delay are never
patched; a second controller that is not the leader (the Lease is held by
another identity) reads and patches no pod and counts nothing. Every
server runs on a free loopback port and is stopped by PID.
"""

import calendar
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

import registry  # noqa: E402
import stack  # noqa: E402
import yaml  # noqa: E402
from stack import CACHE_HOST, SYSTEM_NS, Api, Controller, metric, stop_clean  # noqa: E402

BINARY = None
NS = "repair-apps"
AFTER_S = 2.0            # --repair-after
UP = "127.0.0.1:9"       # originals' registry: nothing listens (the sweep's
                         # warms of them fail fast, and are not under test)
STANDBY_USER = "repair-standby"
ANN = "thaw.dev/original-images"
REPAIR_S = 30            # bound for a repair once due, on a loaded machine


PIN = "sha256:" + "ab" * 32


def rewritten(orig):
    """docs/design.md's rewritten form of a host:port/path:tag reference,
    pinned (content-addressed) as the webhook writes it."""
    host, path = orig.split("/", 1)
    return "%s/%s/%s@%s" % (CACHE_HOST, host.replace(":", "__"), path, PIN)


def log_time(ts):
    """Seconds since the epoch of a log line's ts (UTC, milliseconds)."""
    base, ms = ts.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000.0


def micro_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % (t % 1 * 1e6)


class UserController(Controller):
    """A controller with its own kubeconfig (another user)."""

    def argv(self):
        a = super().argv()
        a[a.index("--kubeconfig") + 1] = self.kubeconfig
        return a


class Env(stack.Closers):
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="thaw-repair.")
        super().__init__()
        self.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.api = Api()
        self.cache = self.own(registry.Registry())
        for ns in (SYSTEM_NS, NS):
            self.api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                want=(201, 409))

    def controller(self, name, extra, kubeconfig=None):
        c = (UserController if kubeconfig else Controller)(
            BINARY, self.cache.url, self.tmp, name=name,
            extra=["--repair-after", "%gs" % AFTER_S] + extra)
        c.kubeconfig = kubeconfig
        self.closers.append(c.stop)
        return c.start()

    def standby_kubeconfig(self):
        """A kubeconfig for user repair-standby (its own token, so the audit
        log tells its requests apart), bound to a ClusterRole granting all."""
        token = "standby-" + os.urandom(8).hex()
        with open(os.environ["THAW_EMU_TOKENS_FILE"], "a") as f:
            f.write("%s %s\n" % (token, STANDBY_USER))
        with open(os.environ["KUBECONFIG"]) as f:
            kc = yaml.safe_load(f)
        for u in kc["users"]:
            u["user"] = {"token": token}
        path = os.path.join(self.tmp, "kubeconfig-standby")
        with open(path, "w") as f:
            yaml.safe_dump(kc, f)
        os.chmod(path, 0o600)
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        self.api.ok("POST", rbac + "/clusterroles", {
            "metadata": {"name": "repair-all"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]})
        self.api.ok("POST", rbac + "/clusterrolebindings", {
            "metadata": {"name": "repair-all"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": "repair-all"},
            "subjects": [{"kind": "User", "name": STANDBY_USER}]})
        return path

    def hold_lease(self):
        """The Lease thaw-controller, held by someone else for an hour: a
        controller with leader election stays a standby."""
        self.api.ok("POST", "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % SYSTEM_NS, {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "thaw-controller"},
            "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 3600,
                     "acquireTime": micro_now(), "renewTime": micro_now(),
                     "leaseTransitions": 0}})

    # ---- pods

    def pod_path(self, name=""):
        return "/api/v1/namespaces/%s/pods%s" % (NS, "/" + name if name else "")

    def create_pod(self, name, containers, init=(), originals=None):
        meta = {"name": name}
        if originals is not None:
            meta["annotations"] = {ANN: json.dumps(originals)}
        spec = {"containers": [{"name": n, "image": i} for n, i in containers]}
        if init:
            spec["initContainers"] = [{"name": n, "image": i} for n, i in init]
        return self.api.ok("POST", self.pod_path(), {
            "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})

    def set_status(self, name, containers=(), init=()):
        """pods/status as the kubelet writes it: [(name, image, reason)],
        reason a waiting reason or "running"."""
        def st(n, image, reason):
            state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} \
                if reason == "running" else \
                {"waiting": {"reason": reason, "message": "pulling %s: not found" % image}}
            return {"name": n, "image": image, "imageID": "", "ready": reason == "running",
                    "restartCount": 0, "started": reason == "running", "state": state}
        status = {"phase": "Pending", "containerStatuses": [st(*c) for c in containers]}
        if init:
            status["initContainerStatuses"] = [st(*c) for c in init]
        self.api.ok("PATCH", self.pod_path(name) + "/status", {"status": status},
                    ctype="application/merge-patch+json", want=(200,))

    def pod(self, name):
        return self.api.ok("GET", self.pod_path(name), want=(200,))

    def images(self, name):
        p = self.pod(name)["spec"]
        return ([c["image"] for c in p.get("initContainers") or []],
                [c["image"] for c in p["containers"]])

    def events(self, reason="ImageRepaired"):
        doc = self.api.ok("GET", "/api/v1/namespaces/%s/events" % NS, want=(200,))
        return [e for e in doc["items"] if e["reason"] == reason]

    def audit(self, user=None):
        q = "audit" + ("?user=" + user if user else "")
        return self.api.control(q, method="GET")["items"]


ENV = None


def setUpModule():
    global ENV
    ENV = Env()


def tearDownModule():
    if ENV:
        ENV.close()




# Images: each pod's original, and what the webhook would have made of it.
APP = UP + "/repair/app:v1"
SETUP = UP + "/repair/setup:v1"
MAIN = UP + "/repair/main:v1"
PLAIN = UP + "/repair/plain:v1"


class Repair(unittest.TestCase):
    """One leader (--leader-elect=false) and one standby; the scenario runs
    once, the tests read what it left."""

    @classmethod
    def setUpClass(cls):
        e = cls.e = ENV
        e.hold_lease()
        cls.leader = e.controller("ctl-leader", ["--leader-elect=false"])
        cls.standby = e.controller("ctl-standby", ["--leader-elect=true"],
                                   kubeconfig=e.standby_kubeconfig())
        cls.metrics_before = (cls.leader.metrics(), cls.standby.metrics())
        try:
            cls.scenario()
        except BaseException:
            sys.stderr.write("leader log:\n%s\n" % cls.leader.log_tail(60))
            raise

    @classmethod
    def scenario(cls):
        e = cls.e
        e.api.control("audit", method="DELETE")
        # stuck: rewritten, with the webhook's annotation; backs off.
        e.create_pod("stuck", [("app", rewritten(APP))], originals={"container/app": APP})
        # stuck-init: the init container fails its pull, the other waits.
        e.create_pod("stuck-init", [("main", rewritten(MAIN))],
                     init=[("setup", rewritten(SETUP))],
                     originals={"init/setup": SETUP, "container/main": MAIN})
        # no-annotation: under the cache host, but thaw did not write it.
        e.create_pod("no-annotation", [("app", rewritten(APP))])
        # not-rewritten: annotated, but failing on an image as submitted.
        e.create_pod("not-rewritten", [("app", PLAIN)], originals={"container/x": APP})
        # recovers: fails, then pulls before --repair-after.
        e.create_pod("recovers", [("app", rewritten(APP))], originals={"container/app": APP})
        cls.uids = {n: e.pod(n)["metadata"]["uid"] for n in
                    ("stuck", "stuck-init", "no-annotation", "not-rewritten", "recovers")}

        cls.t_fail = time.time()        # before the first status write
        e.set_status("stuck", [("app", rewritten(APP), "ImagePullBackOff")])
        e.set_status("stuck-init", [("main", rewritten(MAIN), "PodInitializing")],
                     init=[("setup", rewritten(SETUP), "ErrImagePull")])
        e.set_status("no-annotation", [("app", rewritten(APP), "ImagePullBackOff")])
        e.set_status("not-rewritten", [("app", PLAIN, "ErrImagePull")])
        e.set_status("recovers", [("app", rewritten(APP), "ErrImagePull")])
        time.sleep(AFTER_S / 2)
        e.set_status("recovers", [("app", rewritten(APP), "running")])
        cls.t_recovered = time.time()

        # Watch stuck until it changes: when was it last seen unchanged?
        cls.last_unchanged = None
        deadline = cls.t_fail + AFTER_S + REPAIR_S
        while time.time() < deadline:
            t = time.time()
            if e.images("stuck")[1] != [rewritten(APP)]:
                break
            cls.last_unchanged = t
            time.sleep(0.05)
        deadline = time.time() + REPAIR_S
        while e.images("stuck-init")[0] == [rewritten(SETUP)] and time.time() < deadline:
            time.sleep(0.1)
        # Long enough for any wrong repair of the others to have happened:
        # the recovered pod's failure would be due by now, twice over.
        time.sleep(max(0.0, cls.t_recovered + 2 * AFTER_S + 1.5 - time.time()))
        cls.audit = e.audit()
        cls.audit_standby = e.audit(STANDBY_USER)
        cls.metrics_after = (cls.leader.metrics(), cls.standby.metrics())
        with open(cls.leader.log_path, errors="replace") as f:
            cls.leader_log = [json.loads(ln) for ln in f if ln.startswith("{")]

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.standby)
        stop_clean(cls.leader)

    def patches(self, audit=None):
        out = {}
        for x in audit if audit is not None else self.audit:
            if x["resource"] == "pods" and x["verb"] == "patch" and x["namespace"] == NS \
                    and not x["subresource"]:
                out[x["name"]] = out.get(x["name"], 0) + 1
        return out

    def event(self, pod):
        evs = [x for x in self.e.events() if x["involvedObject"]["name"] == pod]
        self.assertEqual(len(evs), 1, evs)
        return evs[0]

    # ---- the tests

    def test_0_metric_from_start(self):
        for m in self.metrics_before:
            self.assertEqual(metric(m, "thaw_pods_repaired_total"), 0)

    def test_1_stuck_pod_gets_its_original(self):
        self.assertEqual(self.e.images("stuck"), ([], [APP]),
                         "not repaired; leader log:\n" + self.leader.log_tail(40))
        # Not before --repair-after: the controller's line about it (written
        # once the patch was answered, and the read before it waited for the
        # delay) is later than the delay; and the test saw the pod unchanged
        # well into it (a read started then; loose, for loaded machines).
        self.assertIsNotNone(self.last_unchanged)
        self.assertGreaterEqual(self.last_unchanged - self.t_fail, AFTER_S / 2)
        lines = [ln for ln in self.leader_log if ln["msg"].startswith("pod repaired")
                 and ln.get("pod") == "stuck"]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["ns"], NS)
        self.assertGreaterEqual(log_time(lines[0]["ts"]) - self.t_fail, AFTER_S)
        # The same pod (uid), patched once; the annotation is kept.
        p = self.e.pod("stuck")
        self.assertEqual(p["metadata"]["uid"], self.uids["stuck"])
        self.assertEqual(json.loads(p["metadata"]["annotations"][ANN]), {"container/app": APP})

    def test_2_event(self):
        ev = self.event("stuck")
        self.assertEqual(ev["type"], "Warning")
        self.assertEqual(ev["reason"], "ImageRepaired")
        self.assertEqual(ev["metadata"]["namespace"], NS)
        self.assertEqual(ev["involvedObject"], {
            "apiVersion": "v1", "kind": "Pod", "namespace": NS, "name": "stuck",
            "uid": self.uids["stuck"]})
        self.assertEqual(ev["source"], {"component": "thaw-controller"})
        self.assertEqual(ev.get("count"), 1)
        for s in ("container app", rewritten(APP), APP, "ImagePullBackOff"):
            self.assertIn(s, ev["message"])

    def test_3_init_container(self):
        self.assertEqual(self.e.images("stuck-init"), ([SETUP], [rewritten(MAIN)]),
                         "leader log:\n" + self.leader.log_tail(40))
        msg = self.event("stuck-init")["message"]
        self.assertIn("init container setup", msg)
        self.assertIn("ErrImagePull", msg)
        self.assertNotIn("container main", msg)

    def test_4_untouched(self):
        """Never patched, no Event: no annotation, not rewritten, recovered."""
        self.assertEqual(self.e.images("no-annotation"), ([], [rewritten(APP)]))
        self.assertEqual(self.e.images("not-rewritten"), ([], [PLAIN]))
        self.assertEqual(self.e.images("recovers"), ([], [rewritten(APP)]))
        self.assertEqual(self.patches(), {"stuck": 1, "stuck-init": 1})
        named = {x["involvedObject"]["name"] for x in self.e.events()}
        self.assertEqual(named, {"stuck", "stuck-init"})

    def test_5_counted(self):
        self.assertEqual(metric(self.metrics_after[0], "thaw_pods_repaired_total"), 2)

    def test_6_standby_does_nothing(self):
        m = self.metrics_after[1]
        self.assertEqual(metric(m, "thaw_leader"), 0)
        self.assertEqual(metric(m, "thaw_pods_repaired_total"), 0)
        self.assertTrue(self.audit_standby, "the standby made no request at all")
        touched = [x for x in self.audit_standby if x["resource"] in ("pods", "events")
                   and x["verb"] not in ("list", "watch")]
        self.assertEqual(touched, [])
        self.assertEqual(self.patches(self.audit_standby), {})


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: test_repair_e2e.py PATH/thaw-controller [unittest args]")
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
