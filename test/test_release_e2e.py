"""thaw-controller releases pods held by the cold wait's scheduling gate
(docs/design.md "Release of gated pods"), end to end: the real controller
against the emulator, a real docker-registry upstream (behind
test/fault_proxy.py where an upstream must be slow) and a real cache
registry. Pods are created gated, with thaw.dev/cold-wait-seconds, as the
webhook would have admitted them (the webhook itself is not involved).

    test/with-emulator.sh python3 test/test_release_e2e.py BUILD/controller/thaw-controller

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).
Shown: an image with no CachedImage is recorded by the sweep, warmed, and
the pod released rewritten, its original in thaw.dev/original-images, the
gate gone and the other gate left; an image that does not exist upstream
fails and its pod is released unchanged; a pod whose cold wait (1 s) ends
while its image is still warming (a slowed upstream) is released unchanged
at its deadline; the metrics (exported at 0 from the start) and one log
line per release; and a leader killed while its pod waits: the standby,
which tracked the pod all along, takes over and releases it. Every server
runs on a free loopback port and is stopped by PID.
"""

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
import registry  # noqa: E402
import stack  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from stack import (CACHE_HOST, CI_PATH, SYSTEM_NS, Api, Controller, ci_name, metric,  # noqa: E402
                   stop_clean)

BINARY = None
NS = "release-apps"
GATE = "thaw.dev/warming"
ANN = "thaw.dev/original-images"
WAIT_ANN = "thaw.dev/cold-wait-seconds"
RELEASE_S = 60   # bound for a warm and a release on a loaded machine


def rewritten(orig):
    """docs/design.md's rewritten form of a host:port/path:tag reference,
    pinned to its CachedImage's status.digest."""
    host, path = orig.split("/", 1)
    return "%s/%s/%s@%s" % (CACHE_HOST, host.replace(":", "__"), path,
                            ENV.ci(orig)["status"]["digest"])




def log_lines(ctl, msg):
    with open(ctl.log_path, errors="replace") as f:
        lines = [json.loads(ln) for ln in f if ln.startswith("{")]
    return [ln for ln in lines if ln.get("msg") == msg]


class Env(stack.Closers):
    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="thaw-release.")
        super().__init__()
        self.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.api = Api()
        self.up = self.own(registry.Registry())
        self.cache = self.own(registry.Registry())
        self.proxy = self.own(FaultProxy(self.up.url))
        self.imgs = images.Images(os.path.join(self.tmp, "layouts"))
        self.uphost = self.up.url.split("//", 1)[1]
        for ns in (SYSTEM_NS, NS):
            self.api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                want=(201, 409))

    def push(self, name, path):
        """A small image of its own at uphost/path; returns its reference."""
        self.imgs.push(self.imgs.single(name=name), "%s/%s" % (self.uphost, path))
        return "%s/%s" % (self.uphost, path)

    def controller(self, name, extra=()):
        c = Controller(BINARY, self.cache.url, self.tmp, name=name, extra=[
            "--insecure-registries", ",".join([self.uphost, self.proxy.host])] + list(extra))
        self.closers.append(c.stop)
        return c.start()

    # ---- pods

    def pod_path(self, name=""):
        return "/api/v1/namespaces/%s/pods%s" % (NS, "/" + name if name else "")

    def create_gated(self, name, containers, wait="60", init=(), gates=(GATE,)):
        """A pod as the webhook admits it under the cold wait: the gate (at
        the end of spec.schedulingGates) and the annotation."""
        spec = {"schedulingGates": [{"name": g} for g in gates],
                "containers": [{"name": n, "image": i} for n, i in containers]}
        if init:
            spec["initContainers"] = [{"name": n, "image": i} for n, i in init]
        return self.api.ok("POST", self.pod_path(), {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": {WAIT_ANN: wait}},
            "spec": spec})

    def pod(self, name):
        return self.api.ok("GET", self.pod_path(name), want=(200,))

    @staticmethod
    def gates(pod):
        return [g["name"] for g in pod["spec"].get("schedulingGates") or []]

    def wait_released(self, name, timeout=RELEASE_S, ctl=None):
        """The pod once its gate is gone; fails after timeout."""
        deadline = time.time() + timeout
        while True:
            p = self.pod(name)
            if GATE not in self.gates(p):
                return p
            if time.time() > deadline:
                raise AssertionError("%s still gated after %d s; log:\n%s" % (
                    name, timeout, ctl.log_tail(40) if ctl else ""))
            time.sleep(0.1)

    def ci(self, image):
        st, doc, _ = self.api.request("GET", CI_PATH + "/" + ci_name(image))
        return doc if st == 200 else None

    def phase(self, image):
        ci = self.ci(image)
        return ci and (ci.get("status") or {}).get("phase")


ENV = None


def setUpModule():
    global ENV
    ENV = Env()


def tearDownModule():
    if ENV:
        ENV.close()


class Release(unittest.TestCase):
    """One controller without leader election; each test one pod."""

    @classmethod
    def setUpClass(cls):
        cls.e = ENV
        cls.ctl = ENV.controller("ctl-release", ["--leader-elect=false"])
        cls.metrics_before = cls.ctl.metrics()

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("THAW_E2E_VERBOSE"):
            sys.stderr.write("controller log:\n%s\n" % cls.ctl.log_tail(80))
        stop_clean(cls.ctl)

    def released_line(self, pod):
        lines = [ln for ln in log_lines(self.ctl, "gated pod released") if ln.get("pod") == pod]
        self.assertEqual(len(lines), 1, lines)
        self.assertEqual(lines[0]["ns"], NS)
        return lines[0]

    def test_0_metrics_from_start(self):
        m = self.metrics_before
        for result in ("rewritten", "unchanged"):
            self.assertEqual(metric(m, "thaw_pods_released_total", {"result": result}), 0)
        self.assertEqual(metric(m, "thaw_cold_wait_seconds_count"), 0)
        self.assertEqual(metric(m, "thaw_cold_wait_seconds_bucket", {"le": "300"}), 0)

    def test_1_warmed_then_rewritten(self):
        """No CachedImage yet: the sweep records it, the leader warms it, the
        pod waits for that and is released with the image rewritten; an init
        container too; a gate of someone else stays."""
        app = ENV.push("rel-app", "release/app:v1")
        setup = ENV.push("rel-setup", "release/setup:v1")
        self.assertIsNone(ENV.ci(app))
        ENV.create_gated("warm", [("app", app)], init=[("setup", setup)],
                         gates=("example.com/other", GATE))
        uid = ENV.pod("warm")["metadata"]["uid"]
        p = ENV.wait_released("warm", ctl=self.ctl)
        self.assertEqual(ENV.phase(app), "Ready")
        self.assertEqual(ENV.phase(setup), "Ready")
        self.assertEqual(p["metadata"]["uid"], uid)
        self.assertEqual([c["image"] for c in p["spec"]["containers"]], [rewritten(app)])
        self.assertEqual([c["image"] for c in p["spec"]["initContainers"]], [rewritten(setup)])
        self.assertEqual(json.loads(p["metadata"]["annotations"][ANN]),
                         {"init/setup": setup, "container/app": app})
        self.assertEqual(p["metadata"]["annotations"][WAIT_ANN], "60")
        self.assertEqual(ENV.gates(p), ["example.com/other"])
        line = self.released_line("warm")
        self.assertEqual(line["result"], "rewritten")
        self.assertGreaterEqual(float(line["waited"]), 0)

    def test_2_failed_unchanged(self):
        """No such image upstream: Failed, and the pod is released as it is."""
        missing = ENV.uphost + "/release/missing:v1"
        ENV.create_gated("failed", [("app", missing)])
        p = ENV.wait_released("failed", ctl=self.ctl)
        self.assertEqual(ENV.phase(missing), "Failed")
        self.assertEqual([c["image"] for c in p["spec"]["containers"]], [missing])
        self.assertNotIn(ANN, p["metadata"].get("annotations") or {})
        self.assertEqual(ENV.gates(p), [])
        self.assertEqual(self.released_line("failed")["result"], "unchanged")

    def test_3_deadline_while_warming(self):
        """cold-wait-seconds 1, the upstream answers its manifest only after
        30 s: released unchanged at the deadline, the warm still going."""
        ENV.imgs.push(ENV.imgs.single(name="rel-slow"), "%s/release/slow:v1" % ENV.uphost)
        slow = ENV.proxy.host + "/release/slow:v1"
        ENV.proxy.add(match="/release/slow/manifests/", times=0, delay=30)
        try:
            t0 = time.time()
            ENV.create_gated("deadline", [("app", slow)], wait="1")
            p = ENV.wait_released("deadline", timeout=20, ctl=self.ctl)
            took = time.time() - t0
            self.assertIn(ENV.phase(slow), (None, "Pending", "Warming"))
        finally:
            ENV.proxy.clear()
        self.assertLess(took, 10, "released %.1f s after creation, cold wait 1 s" % took)
        self.assertEqual([c["image"] for c in p["spec"]["containers"]], [slow])
        self.assertNotIn(ANN, p["metadata"].get("annotations") or {})
        line = self.released_line("deadline")
        self.assertEqual(line["result"], "unchanged")
        self.assertLess(float(line["waited"]), 10)

    def test_4_metrics(self):
        """After the tests above (they run in name order)."""
        m = self.ctl.metrics()
        self.assertEqual(metric(m, "thaw_pods_released_total", {"result": "rewritten"}), 1)
        self.assertEqual(metric(m, "thaw_pods_released_total", {"result": "unchanged"}), 2)
        self.assertEqual(metric(m, "thaw_cold_wait_seconds_count"), 3)
        self.assertEqual(metric(m, "thaw_cold_wait_seconds_bucket", {"le": "300"}), 3)


class LeaderChange(unittest.TestCase):
    """Two replicas; a pod waits for a slow warm; the leader is killed; the
    standby, which tracked the pod all along, takes over and releases it."""

    def test_standby_releases_after_leader_killed(self):
        ENV.imgs.push(ENV.imgs.single(name="rel-lead"), "%s/release/lead:v1" % ENV.uphost)
        image = ENV.proxy.host + "/release/lead:v1"
        # The first manifest GET (the leader's) hangs; the next is answered.
        ENV.proxy.add(match="/release/lead/manifests/", times=1, delay=60)
        a = ENV.controller("ctl-lead-a")
        b = ENV.controller("ctl-lead-b")
        try:
            deadline = time.time() + 30
            while (metric(a.metrics(), "thaw_leader") or 0) + \
                    (metric(b.metrics(), "thaw_leader") or 0) != 1:
                self.assertLess(time.time(), deadline, "no single leader")
                time.sleep(0.2)
            leader, standby = (a, b) if metric(a.metrics(), "thaw_leader") == 1 else (b, a)
            ENV.create_gated("lead", [("app", image)], wait="120")
            deadline = time.time() + 20
            while ENV.phase(image) != "Warming":
                self.assertLess(time.time(), deadline, "the leader did not start the warm")
                time.sleep(0.1)
            time.sleep(0.5)
            self.assertIn(GATE, ENV.gates(ENV.pod("lead")))
            leader.kill()
            t0 = time.time()
            p = ENV.wait_released("lead", timeout=15 + 2.4 + RELEASE_S, ctl=standby)
            took = time.time() - t0
            self.assertEqual([c["image"] for c in p["spec"]["containers"]], [rewritten(image)])
            self.assertEqual(json.loads(p["metadata"]["annotations"][ANN]),
                             {"container/app": image})
            self.assertEqual(metric(standby.metrics(), "thaw_leader"), 1)
            self.assertEqual(metric(standby.metrics(), "thaw_pods_released_total",
                                    {"result": "rewritten"}), 1)
            self.assertEqual([ln["pod"] for ln in log_lines(standby, "gated pod released")],
                             ["lead"])
            self.assertEqual(log_lines(leader, "gated pod released"), [])
            sys.stderr.write("released by the new leader %.1f s after the kill\n" % took)
        finally:
            ENV.proxy.clear()
        stop_clean(standby)


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: test_release_e2e.py PATH/thaw-controller [unittest args]")
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
