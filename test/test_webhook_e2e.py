"""thaw-webhook end to end: the emulator's real admission chain calls the real
thaw-webhook over TLS, which probes a real docker-registry.

    test/with-emulator.sh python3 test/test_webhook_e2e.py BUILD/webhook/thaw-webhook

(run without THAW_EMU_URL it re-runs itself under test/with-emulator.sh).
Pods are created through the API with generateName, as OSCAR's Job controller
does, and the stored (or dry-run) object is what is checked. Every server runs
on a free loopback port and is stopped by PID; temp dirs are removed.
Bounds: docs/design.md's health gate (down within 10 s; up again after one
success, probes every 2 s) and 10 s for an informer to see a change.
Cold wait (--cold-wait=30s, test_08b): the test writes the controller's Lease
itself, fresh, stale or released, and a cold pod is gated only while fresh.
"""

import base64
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)

import registry  # noqa: E402
import stack  # noqa: E402
from stack import (CACHE_HOST, CI_PATH, SYSTEM_NS, Api, Webhook, ci_name,  # noqa: E402
                   metric, metric_sum)
import webhook_stub  # noqa: E402


BINARY = None                      # argv[1]
NS = "oscar-svc"                   # OSCAR's services namespace
NS_OPTOUT = "oscar-optout"         # labelled thaw.dev/caching=disabled
ANNOTATION = "thaw.dev/original-images"
GATE = "thaw.dev/warming"
COLD_WAIT = "thaw.dev/cold-wait-seconds"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % SYSTEM_NS
GATE_DOWN_S = 10                   # docs/design.md: a dead registry stops rewriting within 10 s
GATE_UP_S = 8                      # one success, probes every 2 s (+1 s timeout, + slack)
SEEN_S = 10                        # an informer sees a change


def load_job_pod():
    """test/data/oscar-job-pod.json (the recorded OSCAR job pod) as a Job
    controller would send it: generateName, no name, no managedFields."""
    with open(os.path.join(HERE, "data", "oscar-job-pod.json")) as f:
        pod = json.load(f)
    md = pod["metadata"]
    md.pop("managedFields", None)
    md["generateName"] = md.pop("name").rsplit("-", 1)[0] + "-"
    return pod


JOB_POD = load_job_pod()


def job_pod(image, ns=NS, labels=None, init_image=None):
    pod = copy.deepcopy(JOB_POD)
    pod["metadata"]["namespace"] = ns
    pod["metadata"]["labels"].update(labels or {})
    pod["spec"]["containers"][0]["image"] = image
    if init_image:
        pod["spec"]["initContainers"] = [{
            "name": "rclone-container", "image": init_image,
            "command": ["/bin/sh", "-c", "true"],
            "securityContext": {"privileged": True}}]
    return pod


def pinned(normalised):
    """The rewritten form of a Ready image that make_ready() wrote: pinned to
    its status.digest (docs/design.md "Image references")."""
    host, path = normalised.split("/", 1)
    return "%s/%s/%s@sha256:%s" % (CACHE_HOST, host.replace(":", "__"), path,
                                   hashlib.sha256(normalised.encode()).hexdigest())


def image_of(pod, kind="containers", idx=0):
    return pod["spec"][kind][idx]["image"]


def annotations(pod):
    return (pod["metadata"].get("annotations") or {})


class WebhookE2E(unittest.TestCase):
    # Images (as written in the pod) and their normalised references.
    COLD = ("grycap/imagemagick", "docker.io/grycap/imagemagick:latest")
    RCLONE = ("rclone/rclone", "docker.io/rclone/rclone:latest")
    BUSYBOX = ("busybox:1.36", "docker.io/library/busybox:1.36")

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="thaw-e2e.")
        cls.addClassCleanup(lambda: __import__("shutil").rmtree(cls.tmp, ignore_errors=True))
        cls.api = Api()
        cls.certs = webhook_stub.make_certs(cls.tmp)
        cls.reg = registry.Registry()
        cls.addClassCleanup(cls.reg.close)
        # Namespaces exist before thaw-webhook starts: its Namespace informer
        # has them once /readyz is 200.
        for ns, labels in ((NS, {"team": "oscar"}),
                           (NS_OPTOUT, {"thaw.dev/caching": "disabled"}),
                           (SYSTEM_NS, {})):
            cls.api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}, want=(201, 409))
        cls.hook = Webhook(BINARY, cls.certs, cls.reg.url, cls.tmp)
        cls.addClassCleanup(cls._stop_hook)
        cls.hook.start()
        cls.api.ok("POST", stack.MWC_PATH, stack.webhook_configuration(
            cls.hook.url, cls.certs["ca_bundle"]), want=(201,))

    @classmethod
    def _stop_hook(cls):
        cls.hook.stop()
        if os.environ.get("THAW_E2E_VERBOSE"):
            sys.stderr.write("thaw-webhook log tail:\n%s\n" % cls.hook.log_tail(60))

    # ---- helpers

    def create(self, pod, dry_run=False):
        ns = pod["metadata"]["namespace"]
        path = "/api/v1/namespaces/%s/pods" % ns + ("?dryRun=All" if dry_run else "")
        return self.api.ok("POST", path, pod, want=(201,))

    def get_ci(self, normalised):
        st, doc, _ = self.api.request("GET", CI_PATH + "/" + ci_name(normalised))
        if st == 404:
            return None
        self.assertEqual(st, 200, doc)
        return doc

    def wait_ci(self, normalised, timeout=SEEN_S):
        deadline = time.time() + timeout
        while time.time() < deadline:
            ci = self.get_ci(normalised)
            if ci is not None:
                return ci
            time.sleep(0.1)
        names = [o["metadata"]["name"] + " (" + o["spec"].get("image", "") + ")"
                 for o in self.api.ok("GET", CI_PATH)["items"]]
        self.fail("no CachedImage %s for %s after %d s; CachedImages: %s\nlog:\n%s"
                  % (ci_name(normalised), normalised, timeout, names, self.hook.log_tail()))

    def barrier(self, tag):
        """Records are asynchronous: create a pod with a fresh cold image and
        wait for its CachedImage, so that earlier records had their chance."""
        img = "thaw-e2e/barrier-%s:%d" % (tag, int(time.time() * 1000))
        self.create(job_pod(img))
        self.wait_ci("docker.io/" + img)
        time.sleep(0.3)

    def make_ready(self, normalised):
        """Create the CachedImage if absent (as the webhook or controller
        would, with docs/design.md's name) and set status Ready with a digest."""
        name = ci_name(normalised)
        if self.get_ci(normalised) is None:
            self.api.ok("POST", CI_PATH, {
                "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                "metadata": {"name": name}, "spec": {"image": normalised}},
                want=(201, 409))
        digest = "sha256:" + hashlib.sha256(normalised.encode()).hexdigest()
        ci = self.api.ok("PATCH", CI_PATH + "/" + name + "/status",
                         {"status": {"phase": "Ready", "digest": digest,
                                     "upstreamDigest": digest, "sizeBytes": 1234}},
                         ctype="application/merge-patch+json")
        self.assertEqual(ci["status"]["phase"], "Ready")

    def poll_create(self, pod, want_rewritten, timeout, dry_run=False):
        """Create pods until the first container's rewrite state is as
        wanted; returns (pod, seconds). Fails after timeout."""
        t0 = time.time()
        seen = []
        while True:
            got = self.create(pod, dry_run=dry_run)
            img = image_of(got)
            if img.startswith(CACHE_HOST + "/") == want_rewritten:
                return got, time.time() - t0
            seen.append(img)
            if time.time() - t0 > timeout:
                self.fail("after %.1f s (%d pods) the image is still %r (want %s); "
                          "registry_up=%s\nlog:\n%s"
                          % (time.time() - t0, len(seen), img,
                             "rewritten" if want_rewritten else "unchanged",
                             self.registry_up(), self.hook.log_tail()))
            time.sleep(0.2)

    def registry_up(self):
        try:
            return metric(self.hook.metrics(), "thaw_cache_registry_up")
        except OSError as e:
            return "metrics unreachable: %s" % e

    def ensure_rewriting(self):
        """Precondition of the Ready-image tests: COLD is Ready and rewritten."""
        self.make_ready(self.COLD[1])
        self.poll_create(job_pod(self.COLD[0]), True, SEEN_S, dry_run=True)

    # ---- tests, in order

    def test_00_name_rule(self):
        # docs/design.md's worked example, so the python rule is docs/design.md's rule.
        n = ci_name("docker.io/grycap/imagemagick:latest")
        self.assertRegex(n, r"^docker-io-grycap-imagemagick-latest-[0-9a-f]{10}$")
        long_ref = "registry.example.com:5000/" + "a/" * 40 + "x:V1"
        n = ci_name(long_ref)
        self.assertLessEqual(len(n), 63)
        self.assertFalse(n.split("-")[0] == "" or "--" in n[:-11], n)
        self.assertTrue(n.endswith(hashlib.sha256(long_ref.encode()).hexdigest()[:10]))

    def test_01_cold_image_unchanged_and_recorded(self):
        img, norm = self.COLD
        pod = self.create(job_pod(img))
        self.assertTrue(pod["metadata"]["name"].startswith(JOB_POD["metadata"]["generateName"]))
        stored = self.api.ok("GET", "/api/v1/namespaces/%s/pods/%s"
                             % (NS, pod["metadata"]["name"]))
        self.assertEqual(image_of(stored), img)
        self.assertNotIn(ANNOTATION, annotations(stored))
        ci = self.wait_ci(norm)
        self.assertEqual(ci["spec"]["image"], norm)
        self.assertNotEqual((ci.get("status") or {}).get("phase"), "Ready")
        # an already-rewritten image is left alone and not recorded again
        already = CACHE_HOST + "/docker.io/grycap/imagemagick:latest"
        got = self.create(job_pod(already))
        self.assertEqual(image_of(got), already)
        self.barrier("already")
        for o in self.api.ok("GET", CI_PATH)["items"]:
            self.assertFalse(o["spec"]["image"].startswith(CACHE_HOST), o["spec"]["image"])

    def test_02_ready_image_rewritten(self):
        img, norm = self.COLD
        self.make_ready(norm)
        # rclone: Ready too, created by this test with docs/design.md's name
        self.make_ready(self.RCLONE[1])
        got, secs = self.poll_create(job_pod(img, init_image=self.RCLONE[0]), True, SEEN_S)
        stored = self.api.ok("GET", "/api/v1/namespaces/%s/pods/%s"
                             % (NS, got["metadata"]["name"]))
        # content-addressed: pinned to each CachedImage's status.digest
        self.assertEqual(image_of(stored), pinned("docker.io/grycap/imagemagick:latest"))
        self.assertEqual(image_of(stored, "initContainers"),
                         pinned("docker.io/rclone/rclone:latest"))
        self.assertIn(ANNOTATION, annotations(stored))
        self.assertEqual(json.loads(annotations(stored)[ANNOTATION]),
                         {"container/oscar-container": img,
                          "init/rclone-container": self.RCLONE[0]})
        # the rest of the pod is untouched
        want = copy.deepcopy(job_pod(img, init_image=self.RCLONE[0])["spec"]["containers"][0])
        have = copy.deepcopy(stored["spec"]["containers"][0])
        for c in (want, have):
            c.pop("image")
        for k, v in want.items():
            self.assertEqual(have.get(k), v, k)
        # a Warming image is not rewritten; a Ready one written after it is
        # the barrier (watch events arrive in order)
        warm = "docker.io/grycap/warming:1"
        self.api.ok("POST", CI_PATH, {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                                      "metadata": {"name": ci_name(warm)},
                                      "spec": {"image": warm}})
        self.api.ok("PATCH", CI_PATH + "/" + ci_name(warm) + "/status",
                    {"status": {"phase": "Warming"}}, ctype="application/merge-patch+json")
        self.make_ready("docker.io/grycap/after-warming:1")
        self.poll_create(job_pod("grycap/after-warming:1"), True, SEEN_S, dry_run=True)
        self.assertEqual(image_of(self.create(job_pod("grycap/warming:1"))), "grycap/warming:1")
        # a Ready object without a status.digest has nothing to pin: cold
        nod = "docker.io/grycap/no-digest:1"
        self.api.ok("POST", CI_PATH, {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                                      "metadata": {"name": ci_name(nod)},
                                      "spec": {"image": nod}})
        self.api.ok("PATCH", CI_PATH + "/" + ci_name(nod) + "/status",
                    {"status": {"phase": "Ready"}}, ctype="application/merge-patch+json")
        self.make_ready("docker.io/grycap/after-no-digest:1")
        self.poll_create(job_pod("grycap/after-no-digest:1"), True, SEEN_S, dry_run=True)
        self.assertEqual(image_of(self.create(job_pod("grycap/no-digest:1"))),
                         "grycap/no-digest:1")
        # and a Ready image that turns Failed is no longer rewritten
        self.api.ok("PATCH", CI_PATH + "/" + ci_name("docker.io/grycap/after-warming:1")
                    + "/status", {"status": {"phase": "Failed", "message": "e2e"}},
                    ctype="application/merge-patch+json")
        self.poll_create(job_pod("grycap/after-warming:1"), False, SEEN_S, dry_run=True)

    def test_03_opted_out_namespace_and_pod(self):
        self.ensure_rewriting()
        before = len(self.api.ok("GET", CI_PATH)["items"])
        # Ready image: never rewritten when opted out
        got = self.create(job_pod(self.COLD[0], ns=NS_OPTOUT))
        self.assertEqual(image_of(got), self.COLD[0])
        self.assertNotIn(ANNOTATION, annotations(got))
        got = self.create(job_pod(self.COLD[0], labels={"thaw.dev/caching": "disabled"}))
        self.assertEqual(image_of(got), self.COLD[0])
        self.assertNotIn(ANNOTATION, annotations(got))
        # cold images: never recorded
        ns_img, pod_img = "grycap/optout-ns:1", "grycap/optout-pod:1"
        self.create(job_pod(ns_img, ns=NS_OPTOUT))
        self.create(job_pod(pod_img, labels={"thaw.dev/caching": "disabled"}))
        # The same, straight to thaw-webhook (not filtered by the selectors):
        # its own opt-out checks must hold too.
        direct_ns, direct_pod = "grycap/optout-direct-ns:1", "grycap/optout-direct-pod:1"
        for ns, labels, img in ((NS_OPTOUT, {}, direct_ns),
                                (NS_OPTOUT, {}, self.COLD[0]),
                                (NS, {"thaw.dev/caching": "disabled"}, direct_pod),
                                (NS, {"thaw.dev/caching": "disabled"}, self.COLD[0]),
                                (SYSTEM_NS, {}, self.COLD[0]),
                                ("kube-system", {}, self.COLD[0])):
            pod = job_pod(img, ns=ns, labels=labels)
            uid = "e2e-%d" % int(time.time() * 1e6)
            out = self.hook.review({
                "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "request": {"uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
                            "resource": {"group": "", "version": "v1", "resource": "pods"},
                            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                            "requestResource": {"group": "", "version": "v1",
                                                "resource": "pods"},
                            "namespace": ns, "operation": "CREATE",
                            "userInfo": {"username": "system:serviceaccount:kube-system:"
                                                     "job-controller"},
                            "object": pod, "oldObject": None, "dryRun": False,
                            "options": {"kind": "CreateOptions",
                                        "apiVersion": "meta.k8s.io/v1"}}})
            resp = out["response"]
            self.assertEqual(resp["uid"], uid)
            self.assertTrue(resp["allowed"])
            patch = json.loads(base64.b64decode(resp["patch"])) if resp.get("patch") else []
            self.assertEqual(patch, [], "%s %s %s: %s" % (ns, labels, img, patch))
        self.barrier("optout")
        for img in (ns_img, pod_img, direct_ns, direct_pod):
            self.assertIsNone(self.get_ci("docker.io/" + img), img)
        # only the barrier's CachedImage is new
        self.assertEqual(len(self.api.ok("GET", CI_PATH)["items"]), before + 1)

    def test_04_dry_run(self):
        self.ensure_rewriting()
        img = "grycap/dry-run-only:2"
        pods_before = {p["metadata"]["name"] for p in
                       self.api.ok("GET", "/api/v1/namespaces/%s/pods" % NS)["items"]}
        got = self.create(job_pod(img), dry_run=True)
        self.assertEqual(image_of(got), img)
        self.assertNotIn(ANNOTATION, annotations(got))
        st, _, _ = self.api.request("GET", "/api/v1/namespaces/%s/pods/%s"
                                    % (NS, got["metadata"].get("name", "-")))
        self.assertEqual(st, 404, "a dry-run pod was stored")
        # a Ready image is still rewritten in the dry-run answer
        got = self.create(job_pod(self.COLD[0]), dry_run=True)
        self.assertEqual(image_of(got), pinned("docker.io/grycap/imagemagick:latest"))
        self.barrier("dryrun")
        self.assertIsNone(self.get_ci("docker.io/" + img), "dry run recorded a CachedImage")
        pods_after = {p["metadata"]["name"] for p in
                      self.api.ok("GET", "/api/v1/namespaces/%s/pods" % NS)["items"]}
        self.assertEqual(len(pods_after - pods_before), 1, "only the barrier pod is new")

    def test_05_webhook_down_failure_policy_ignore(self):
        self.ensure_rewriting()
        rc, secs = self.hook.stop()
        try:
            self.assertIsInstance(rc, int, "thaw-webhook did not exit on SIGTERM")
            self.assertLess(secs, 10)
            for _ in range(3):
                got = self.create(job_pod(self.COLD[0]))
                self.assertEqual(image_of(got), self.COLD[0])
                self.assertNotIn(ANNOTATION, annotations(got))
        finally:
            # /readyz waits for the informers: with every API request delayed
            # by 1.5 s, it cannot turn 200 sooner than 1.5 s after start
            self.api.control("latency", {"ms": 1500})
            t0 = time.time()
            try:
                self.hook.start()
            finally:
                self.api.control("latency", {"ms": 0})
        self.assertGreaterEqual(time.time() - t0, 1.5,
                                "/readyz was 200 before the informers could have listed")
        # the probe starts down: rewriting resumes once it has succeeded
        self.poll_create(job_pod(self.COLD[0]), True, GATE_UP_S + SEEN_S)

    def test_06_registry_gate(self):
        self.ensure_rewriting()
        deadline = time.time() + GATE_UP_S
        while self.registry_up() != 1 and time.time() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.registry_up(), 1)
        self.reg.stop()
        try:
            got, secs = self.poll_create(job_pod(self.COLD[0]), False, GATE_DOWN_S)
            sys.stderr.write("gate closed %.1f s after the registry stopped\n" % secs)
            self.assertNotIn(ANNOTATION, annotations(got))
            # and it stays closed
            for _ in range(3):
                self.assertEqual(image_of(self.create(job_pod(self.COLD[0]))), self.COLD[0])
            self.assertEqual(self.registry_up(), 0)
        finally:
            self.reg.start()
        got, secs = self.poll_create(job_pod(self.COLD[0]), True, GATE_UP_S)
        sys.stderr.write("gate open %.1f s after the registry restarted\n" % secs)
        self.assertEqual(self.registry_up(), 1)

    def test_07_ephemeral_container(self):
        self.ensure_rewriting()
        self.make_ready(self.BUSYBOX[1])
        self.poll_create(job_pod(self.BUSYBOX[0]), True, SEEN_S, dry_run=True)
        pod = self.create(job_pod(self.COLD[0]))
        self.assertTrue(image_of(pod).startswith(CACHE_HOST + "/"))
        ann = annotations(pod).get(ANNOTATION)
        name = pod["metadata"]["name"]
        # what `kubectl debug -it POD --image=busybox:1.36 -c debugger` sends
        out = self.api.ok(
            "PATCH", "/api/v1/namespaces/%s/pods/%s/ephemeralcontainers" % (NS, name),
            {"spec": {"ephemeralContainers": [{
                "name": "debugger", "image": self.BUSYBOX[0], "stdin": True, "tty": True,
                "targetContainerName": "oscar-container",
                "terminationMessagePolicy": "File"}]}},
            ctype="application/strategic-merge-patch+json")
        stored = self.api.ok("GET", "/api/v1/namespaces/%s/pods/%s" % (NS, name))
        for p in (out, stored):
            self.assertEqual(image_of(p, "ephemeralContainers"),
                             pinned("docker.io/library/busybox:1.36"))
            self.assertEqual(image_of(p), image_of(pod))
            self.assertEqual(annotations(p).get(ANNOTATION), ann)
        # a cold ephemeral image stays as it is, and is recorded; kubectl
        # sends the existing ephemeral containers as stored, plus the new one
        cold = "busybox:1.37-e2e"
        self.api.ok(
            "PATCH", "/api/v1/namespaces/%s/pods/%s/ephemeralcontainers" % (NS, name),
            {"spec": {"ephemeralContainers": stored["spec"]["ephemeralContainers"] + [
                {"name": "debugger2", "image": cold,
                 "terminationMessagePolicy": "File"}]}},
            ctype="application/strategic-merge-patch+json")
        stored = self.api.ok("GET", "/api/v1/namespaces/%s/pods/%s" % (NS, name))
        ecs = {c["name"]: c["image"] for c in stored["spec"]["ephemeralContainers"]}
        self.assertEqual(ecs, {"debugger": pinned("docker.io/library/busybox:1.36"),
                               "debugger2": cold})
        self.wait_ci("docker.io/library/" + cold)

    def test_08_metrics(self):
        self.ensure_rewriting()
        self.barrier("metrics")
        text = self.hook.metrics()
        rewritten = metric(text, "thaw_webhook_images_total", {"decision": "rewritten"})
        self.assertIsNotNone(rewritten, "no thaw_webhook_images_total{decision=\"rewritten\"}")
        self.assertGreater(rewritten, 0)
        self.assertEqual(metric(text, "thaw_cache_registry_up"), 1)
        for name in ("thaw_webhook_requests_total",
                     "thaw_webhook_admission_duration_seconds_bucket",
                     "thaw_webhook_admission_duration_seconds_count",
                     "thaw_webhook_records_total", "thaw_build_info",
                     "process_resident_memory_bytes", "process_cpu_seconds_total",
                     "process_start_time_seconds"):
            self.assertIsNotNone(metric(text, name), name + " missing")
        self.assertGreater(metric(text, "thaw_webhook_admission_duration_seconds_count"), 0)
        self.assertGreater(metric_sum(text, "thaw_webhook_records_total"), 0,
                           "thaw_webhook_records_total is 0 after several records")
        p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.assertEqual(p.returncode, 0, "promtool check metrics: %s\n%s"
                         % (p.returncode, p.stdout.decode()))


    def test_09_clean_shutdown(self):
        """SIGTERM: exits within 10 s, status 0, and (in a sanitizer build)
        no sanitizer report in its log over the whole run."""
        rc, secs = self.hook.stop()
        try:
            self.assertEqual(rc, 0, "thaw-webhook exit status after SIGTERM: %s" % rc)
            self.assertLess(secs, 10)
            with open(self.hook.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                           "runtime error:", "WARNING: ThreadSanitizer"):
                self.assertNotIn(marker, text, "thaw-webhook log:\n" + text[-4000:])
        finally:
            self.hook.start()

    # ---- cold wait (--cold-wait): gated while the controller's Lease is fresh

    def put_lease(self, renew_age_s, duration_s=15, holder="thaw-e2e-leader"):
        """Creates or replaces the Lease thaw-controller, renewed renew_age_s
        ago (MicroTime, as the controller writes it)."""
        t = time.time() - renew_age_s
        renew = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + \
            ".%06dZ" % int((t % 1) * 1e6)
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": "thaw-controller", "namespace": SYSTEM_NS},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_s,
                         "acquireTime": renew, "renewTime": renew,
                         "leaseTransitions": 0}}
        st, cur, _ = self.api.request("GET", LEASE_PATH + "/thaw-controller")
        if st == 404:
            return self.api.ok("POST", LEASE_PATH, body, want=(201,))
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        return self.api.ok("PUT", LEASE_PATH + "/thaw-controller", body, want=(200,))

    def poll_gated(self, pod, want, timeout=SEEN_S):
        """Dry-run creates until the pod's gated state is as wanted."""
        t0 = time.time()
        while True:
            got = self.create(pod, dry_run=True)
            if (GATE in [g.get("name") for g in got["spec"].get("schedulingGates") or []]) \
                    == want:
                return got
            if time.time() - t0 > timeout:
                self.fail("after %.1f s the pod is %s gated\nlog:\n%s" % (
                    time.time() - t0, "still not" if want else "still", self.hook.log_tail()))
            time.sleep(0.2)

    def gated_total(self):
        return metric(self.hook.metrics(), "thaw_webhook_pods_gated_total")

    def test_08b_cold_wait(self):
        self.ensure_rewriting()
        self.api.request("DELETE", LEASE_PATH + "/thaw-controller")
        self.hook.stop()
        self.hook.extra = ["--cold-wait=30s"]
        try:
            self.hook.start()
            self.assertEqual(self.gated_total(), 0, "thaw_webhook_pods_gated_total not at 0")
            self.poll_create(job_pod(self.COLD[0]), True, GATE_UP_S + SEEN_S, dry_run=True)
            cold = "grycap/cold-wait-%d:1" % int(time.time())
            # No Lease: no leader to release a pod, so nothing is gated.
            got = self.create(job_pod(cold))
            self.assertNotIn("schedulingGates", got["spec"])
            self.assertNotIn(COLD_WAIT, annotations(got))
            self.wait_ci("docker.io/" + cold)
            cold2 = "grycap/cold-wait-%d:2" % int(time.time())
            # A Lease renewed now: the cold pod waits behind the gate.
            self.put_lease(0)
            self.poll_gated(job_pod(cold2), True)
            got = self.create(job_pod(cold2, init_image=self.RCLONE[0]))
            stored = self.api.ok("GET", "/api/v1/namespaces/%s/pods/%s"
                                 % (NS, got["metadata"]["name"]))
            for p in (got, stored):
                self.assertEqual(p["spec"]["schedulingGates"], [{"name": GATE}])
                self.assertEqual(annotations(p).get(COLD_WAIT), "30")
                # images as submitted, even the Ready one (the release rewrites)
                self.assertEqual(image_of(p), cold2)
                self.assertEqual(image_of(p, "initContainers"), self.RCLONE[0])
                self.assertNotIn(ANNOTATION, annotations(p))
            self.wait_ci("docker.io/" + cold2)
            self.assertEqual(self.gated_total(), 1, "the dry runs count too")
            # Row 6: a Failed CachedImage has no warm to come: not gated; a
            # Warming one (written after it: watch events come in order) is.
            for img, phase in (("docker.io/grycap/cw-failed:1", "Failed"),
                               ("docker.io/grycap/cw-warming:1", "Warming")):
                self.api.ok("POST", CI_PATH, {
                    "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                    "metadata": {"name": ci_name(img)}, "spec": {"image": img}})
                self.api.ok("PATCH", CI_PATH + "/" + ci_name(img) + "/status",
                            {"status": {"phase": phase}},
                            ctype="application/merge-patch+json")
            self.poll_gated(job_pod("grycap/cw-warming:1"), True)
            got = self.create(job_pod("grycap/cw-failed:1"), dry_run=True)
            self.assertNotIn("schedulingGates", got["spec"])
            # A pod of Ready images only is rewritten as before, not gated.
            got = self.create(job_pod(self.COLD[0]))
            self.assertNotIn("schedulingGates", got["spec"])
            self.assertTrue(image_of(got).startswith(CACHE_HOST + "/"))
            # A pod bound to a node already is never gated.
            pod = job_pod(cold2)
            pod["spec"]["nodeName"] = "node-1"
            got = self.create(pod, dry_run=True)
            self.assertNotIn("schedulingGates", got["spec"])
            # A Lease older than its duration: the leader is gone.
            self.put_lease(16)
            got = self.poll_gated(job_pod(cold2), False)
            self.assertNotIn(COLD_WAIT, annotations(got))
            # Renewed again; then released (no holder, as on SIGTERM).
            self.put_lease(0)
            self.poll_gated(job_pod(cold2), True)
            self.put_lease(0, duration_s=1, holder="")
            self.poll_gated(job_pod(cold2), False)
            self.assertEqual(self.gated_total(), 1)
        finally:
            self.api.request("DELETE", LEASE_PATH + "/thaw-controller")
            self.hook.stop()
            self.hook.extra = ()
            self.hook.start()


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: test_webhook_e2e.py PATH/thaw-webhook [unittest args]")
    BINARY = os.path.abspath(sys.argv.pop(1))
    if not os.access(BINARY, os.X_OK):
        sys.exit("test_webhook_e2e: %s is not an executable" % BINARY)
    unittest77.main()


if __name__ == "__main__":
    main()
