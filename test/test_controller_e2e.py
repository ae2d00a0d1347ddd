"""thaw-controller end to end: the real controller against the emulator, real
docker-registry upstreams (plain and htpasswd) and a real cache registry.

    test/with-emulator.sh python3 test/test_controller_e2e.py BUILD/controller/thaw-controller

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).
Covers: phases Pending -> Warming -> Ready with byte-exact manifests (skopeo
inspect --raw; images built by images.py and by umoci itself), tag vs digest
pushes, index children, Events, Failed with
attempts then Ready, tag refresh, private images through pull secrets of a
cache-private namespace, OSCAR pre-warm from a PodTemplate, the pod sweep,
metrics, a SIGKILL mid-warm resumed without copying done blobs again, and a
leader killed mid-warm taken over by the standby within the lease.
Every server runs on a free loopback port and is stopped by PID.
"""

import base64
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)
import urllib.error
import urllib.request

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)

import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from stack import CI_PATH, SYSTEM_NS, Api, Controller, ci_name, metric, stop_clean  # noqa: E402

BINARY = None
ACCEPT = ", ".join([images.OCI_MANIFEST, images.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])
NS_APPS, NS_PRIVATE, NS_OSCAR = "apps", "private-apps", "oscar-svc"
READY_S = 60  # bound for one small warm on a loaded CI machine


def cache_repo(ref_name):
    """The cache repository of "host[:port]/path" (docs/design.md rewritten form)."""
    host, path = ref_name.split("/", 1)
    return host.replace(":", "__") + "/" + path


def http_get(url, accept=ACCEPT, method="GET"):
    req = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)






def stack_time(rfc3339):
    """Seconds since the epoch of an RFC 3339 UTC time."""
    import calendar
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def deterministic(seed, n):
    return random.Random(seed).randbytes(n)


class Env(stack.Closers):
    """Registries and images shared by the test classes."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="thaw-ctl-e2e.")
        super().__init__()
        self.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.api = Api()
        self.up = self.own(registry.Registry())
        self.cache = self.own(registry.Registry())
        self.priv = self.own(registry.Registry(htpasswd={"alice": "wonderland"}))
        self.proxy = self.own(FaultProxy(self.up.url))
        self.imgs = images.Images(os.path.join(self.tmp, "layouts"))
        self.uphost = self.up.url.split("//", 1)[1]
        self.privhost = self.priv.url.split("//", 1)[1]
        for ns, labels in ((SYSTEM_NS, {}), (NS_APPS, {}),
                           (NS_PRIVATE, {"thaw.dev/cache-private": "true"}),
                           (NS_OSCAR, {})):
            self.api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}, want=(201, 409))

    def push(self, layout, host, path, creds=None):
        return self.imgs.push(layout, "%s/%s" % (host, path), creds)

    def resumable(self):
        """4 small layers and one 8 MiB incompressible layer (the slow one)."""
        lo = self.imgs._layout("resumable")
        layers = [lo.layer({"small%d" % i: deterministic(i, 64 << 10)}) for i in range(4)]
        big = lo.layer({"big": deterministic(99, 8 << 20)})
        return lo.tag(lo.image(layers + [big], "amd64", "resumable")), big[0]

    def controller(self, name, extra=(), **kw):
        c = Controller(BINARY, self.cache.url, self.tmp, name=name, extra=[
            "--insecure-registries", ",".join([self.uphost, self.privhost, self.proxy.host]),
            "--refresh-interval", "3s"] + list(extra))
        self.closers.append(c.stop)
        return c.start(**kw)

    # ---- API helpers

    def create_ci(self, image):
        name = ci_name(image)
        self.api.ok("POST", CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": name}, "spec": {"image": image}}, want=(201,))
        return name

    def get_ci(self, name):
        st, doc, _ = self.api.request("GET", CI_PATH + "/" + name)
        return doc if st == 200 else None

    def wait_ci(self, name, pred, timeout=READY_S, what="condition"):
        deadline = time.time() + timeout
        ci = None
        while time.time() < deadline:
            ci = self.get_ci(name)
            if ci is not None and pred(ci):
                return ci
            time.sleep(0.1)
        raise AssertionError("%s: no %s after %d s; last: %s" % (
            name, what, timeout, json.dumps(ci and ci.get("status"))))

    def wait_phase(self, name, phase, timeout=READY_S):
        return self.wait_ci(name, lambda c: c.get("status", {}).get("phase") == phase,
                            timeout, "phase " + phase)

    def events(self, name):
        doc = self.api.ok("GET", "/api/v1/namespaces/default/events")
        return [e for e in doc["items"] if e["involvedObject"]["name"] == name]

    def wait_event(self, name, reason, timeout=10):
        """Events are posted next to the status write, not before it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = [e for e in self.events(name) if e["reason"] == reason]
            if evs:
                return evs[0]
            time.sleep(0.1)
        raise AssertionError("%s: no %s event after %d s; have %s" % (
            name, reason, timeout, [e["reason"] for e in self.events(name)]))


ENV = None


def setUpModule():
    global ENV
    ENV = Env()


def tearDownModule():
    if ENV:
        ENV.close()


class WarmTest(unittest.TestCase):
    """One controller without leader election, for most behaviour."""

    @classmethod
    def setUpClass(cls):
        cls.e = ENV
        cls.ctl = ENV.controller("ctl-main", ["--leader-elect=false", "--allow-private",
                                              "--prewarm-namespaces", NS_OSCAR])

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("THAW_E2E_VERBOSE"):
            sys.stderr.write("controller log:\n%s\n" % cls.ctl.log_tail(80))
        stop_clean(cls.ctl)

    def assert_cached_like_upstream(self, image_name, ref, upstream_url):
        """Same manifest bytes (and so digest) in the cache as upstream."""
        st, up, _ = http_get("%s/v2/%s/manifests/%s" % (upstream_url, image_name.split("/", 1)[1], ref))
        self.assertEqual(st, 200)
        st, got, hdr = http_get("%s/v2/%s/manifests/%s" % (ENV.cache.url, cache_repo(image_name), ref))
        self.assertEqual(st, 200, got)
        self.assertEqual(got, up)
        return hdr

    def test_01_single_tag(self):
        info = ENV.push(ENV.imgs.single(), ENV.uphost, "e2e/single:v1")
        image = ENV.uphost + "/e2e/single:v1"
        name = ENV.create_ci(image)
        ci = ENV.wait_phase(name, "Ready")
        st = ci["status"]
        self.assertEqual(st["digest"], info["digest"])
        self.assertEqual(st["upstreamDigest"], info["digest"])
        self.assertGreater(st["sizeBytes"], 0)
        self.assertEqual(st.get("attempts", 0), 0)
        self.assertNotIn("progress", st)
        for k in ("cachedAt", "lastCheckedAt"):
            self.assertRegex(st[k], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual([c["status"] for c in st["conditions"] if c["type"] == "Ready"], ["True"])
        self.assert_cached_like_upstream(ENV.uphost + "/e2e/single", "v1", ENV.up.url)
        # skopeo reads the same digests from the cache as from upstream.
        out = {}
        for host, repo in ((ENV.uphost, "e2e/single"),
                           (ENV.cache.url.split("//")[1], cache_repo(ENV.uphost + "/e2e/single"))):
            r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                "docker://%s/%s:v1" % (host, repo)],
                               capture_output=True, check=True)
            out[host] = r.stdout
        self.assertEqual(len(set(out.values())), 1)
        ENV.wait_event(name, "Warming")
        ev = ENV.wait_event(name, "Cached")
        self.assertEqual(ev["type"], "Normal")
        self.assertIn(info["digest"], ev["message"])

    def test_01b_umoci_built_image(self):
        """An image built by umoci itself, pushed with skopeo, warmed, and read
        back with skopeo: the same manifest and blobs in the cache."""
        lo = ENV.imgs.umoci("umoci", {"etc/thaw": b"built by umoci\n",
                                      "usr/share/doc/x": deterministic(3, 4096)})
        info = ENV.push(lo, ENV.uphost, "e2e/umoci:v1")
        name = ENV.create_ci(ENV.uphost + "/e2e/umoci:v1")
        ci = ENV.wait_phase(name, "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])
        raw = {}
        for host, repo in ((ENV.uphost, "e2e/umoci"),
                           (ENV.cache.url.split("//")[1], cache_repo(ENV.uphost + "/e2e/umoci"))):
            raw[host] = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                        "docker://%s/%s:v1" % (host, repo)],
                                       capture_output=True, check=True).stdout
        self.assertEqual(len(set(raw.values())), 1)
        repo = cache_repo(ENV.uphost + "/e2e/umoci")
        for b in info["blobs"]:
            st, body, _ = http_get("%s/v2/%s/blobs/%s" % (ENV.cache.url, repo, b), "*/*")
            self.assertEqual((st, images.sha(body)), (200, b))

    def test_02_index_by_digest(self):
        info = ENV.push(ENV.imgs.multiarch(), ENV.uphost, "e2e/multi:v1")
        image = "%s/e2e/multi@%s" % (ENV.uphost, info["digest"])
        name = ENV.create_ci(image)
        ci = ENV.wait_phase(name, "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])
        repo = cache_repo(ENV.uphost + "/e2e/multi")
        self.assert_cached_like_upstream(ENV.uphost + "/e2e/multi", info["digest"], ENV.up.url)
        for child in info["children"]:
            st, _, _ = http_get("%s/v2/%s/manifests/%s" % (ENV.cache.url, repo, child), method="HEAD")
            self.assertEqual(st, 200, child)
        # A digest reference is pushed by digest only: no tag in the cache.
        st, body, _ = http_get("%s/v2/%s/tags/list" % (ENV.cache.url, repo), "application/json")
        tags = json.loads(body).get("tags") if st == 200 else None
        self.assertFalse(tags, body)

    def test_03_failed_then_ready(self):
        image = ENV.uphost + "/e2e/later:v1"
        name = ENV.create_ci(image)
        ci = ENV.wait_phase(name, "Failed")
        st = ci["status"]
        self.assertGreaterEqual(st["attempts"], 1)
        self.assertTrue(st["message"])
        self.assertEqual(ENV.wait_event(name, "WarmFailed")["type"], "Warning")
        info = ENV.push(ENV.imgs.single("arm64", name="later"), ENV.uphost, "e2e/later:v1")
        ci = ENV.wait_phase(name, "Ready")  # the backoff retry (2 s, 4 s, ...)
        self.assertEqual(ci["status"]["digest"], info["digest"])
        self.assertEqual(ci["status"]["attempts"], 0)
        self.assertNotIn("message", ci["status"])

    def test_03b_repeated_failures_aggregate_events(self):
        """Three failed attempts leave one WarmFailed Event whose count grows
        (client-go's correlation), not three Events."""
        name = ENV.create_ci(ENV.uphost + "/e2e/never:v1")
        ENV.wait_ci(name, lambda c: c.get("status", {}).get("attempts", 0) >= 3,
                    timeout=30, what="3 attempts")

        def failed():
            return [e for e in ENV.events(name) if e["reason"] == "WarmFailed"]
        deadline = time.time() + 10
        while not (failed() and failed()[0]["count"] >= 3) and time.time() < deadline:
            time.sleep(0.1)
        evs = failed()
        self.assertEqual(len(evs), 1, evs)
        self.assertGreaterEqual(evs[0]["count"], 3)
        self.assertEqual(evs[0]["type"], "Warning")
        self.assertGreater(evs[0]["lastTimestamp"], evs[0]["firstTimestamp"])
        ENV.api.ok("DELETE", CI_PATH + "/" + name)

    def test_03c_unparsable_image_fails_once(self):
        """A CachedImage someone wrote by hand with a bad reference: Failed,
        with the reason, and not retried."""
        name = "bad-by-hand"
        ENV.api.ok("POST", CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": name}, "spec": {"image": "Bad/Image:tag"}}, want=(201,))
        ci = ENV.wait_phase(name, "Failed")
        self.assertIn("does not parse", ci["status"]["message"])
        time.sleep(4)  # past two backoff periods
        self.assertEqual(ENV.get_ci(name)["status"]["attempts"], 1)

    def test_04_refresh_moves_tag(self):
        first = ENV.push(ENV.imgs.single(name="moving1"), ENV.uphost, "e2e/moving:v1")
        name = ENV.create_ci(ENV.uphost + "/e2e/moving:v1")
        ENV.wait_ci(name, lambda c: c.get("status", {}).get("digest") == first["digest"])
        second = ENV.push(ENV.imgs.single("arm64", name="moving2"), ENV.uphost, "e2e/moving:v1")
        self.assertNotEqual(first["digest"], second["digest"])
        ci = ENV.wait_ci(name, lambda c: c["status"].get("digest") == second["digest"],
                         timeout=30, what="refreshed digest")
        self.assertEqual(ci["status"]["phase"], "Ready")
        ENV.wait_event(name, "Refreshed")
        self.assert_cached_like_upstream(ENV.uphost + "/e2e/moving", "v1", ENV.up.url)

    def test_05_private_via_pod_pull_secret(self):
        creds = "alice:wonderland"
        ENV.push(ENV.imgs.single(name="secret"), ENV.privhost, "e2e/secret:v1", creds)
        auth = base64.b64encode(creds.encode()).decode()
        cfg = json.dumps({"auths": {ENV.privhost: {"auth": auth}}}).encode()
        ENV.api.ok("POST", "/api/v1/namespaces/%s/secrets" % NS_PRIVATE, {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "regcred"},
            "data": {".dockerconfigjson": base64.b64encode(cfg).decode()}}, want=(201,))
        image = ENV.privhost + "/e2e/secret:v1"
        ENV.api.ok("POST", "/api/v1/namespaces/%s/pods" % NS_PRIVATE, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "uses-secret"},
            "spec": {"imagePullSecrets": [{"name": "regcred"}],
                     "containers": [{"name": "c", "image": image}]}}, want=(201,))
        name = ci_name(image)  # created by the pod sweep
        ci = ENV.wait_phase(name, "Ready")
        self.assertTrue(ci["status"]["private"])
        self.assertEqual(ci["spec"]["pullSecrets"], [{"namespace": NS_PRIVATE, "name": "regcred"}])
        # cached under private/ only, where anonymous pull tokens never reach
        repo = cache_repo(ENV.privhost + "/e2e/secret")
        st, body, _ = http_get("%s/v2/private/%s/manifests/%s" % (ENV.cache.url, repo,
                                                                 ci["status"]["digest"]))
        self.assertEqual(st, 200)
        self.assertEqual(http_get("%s/v2/%s/manifests/v1" % (ENV.cache.url, repo))[0], 404)
        with open(ENV.tmp + "/ctl-main.log") as f:
            log = f.read()
        self.assertNotIn("wonderland", log)
        self.assertNotIn(auth, log)
        for e in ENV.events(name):
            self.assertNotIn("wonderland", e["message"])
        # The refresh (every 3 s here) resolves with the same credentials and
        # finds nothing new: lastCheckedAt moves, no Refreshed, no message.
        checked = ci["status"]["lastCheckedAt"]
        ci = ENV.wait_ci(name, lambda c: c["status"]["lastCheckedAt"] != checked,
                         timeout=15, what="a later lastCheckedAt")
        self.assertEqual(ci["status"]["phase"], "Ready")
        self.assertNotIn("message", ci["status"])
        self.assertNotIn("Refreshed", [e["reason"] for e in ENV.events(name)])

    def test_06_private_without_cache_private_namespace(self):
        creds = "alice:wonderland"
        ENV.push(ENV.imgs.single(name="secret2"), ENV.privhost, "e2e/secret2:v1", creds)
        image = ENV.privhost + "/e2e/secret2:v1"
        ENV.api.ok("POST", "/api/v1/namespaces/%s/pods" % NS_APPS, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "no-secret"},
            "spec": {"containers": [{"name": "c", "image": image}]}}, want=(201,))
        name = ci_name(image)
        ci = ENV.wait_ci(name, lambda c: c.get("status", {}).get("private") is True
                         and c["status"].get("phase") == "Failed"
                         and "cache-private" in c["status"].get("message", ""),
                         what="Failed private with a cache-private message")
        self.assertNotIn("digest", ci["status"])

    def test_07_oscar_prewarm(self):
        info = ENV.push(ENV.imgs.single(name="oscar"), ENV.uphost, "grycap/imagemagick:v1")
        image = ENV.uphost + "/grycap/imagemagick:v1"
        ENV.api.ok("POST", "/api/v1/namespaces/%s/podtemplates" % NS_OSCAR, {
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "imagemagick"},
            "template": {"spec": {"containers": [{"name": "svc", "image": image}]}}},
            want=(201,))
        ci = ENV.wait_phase(ci_name(image), "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])

    def test_09_upstream_429_retry_after(self):
        info = ENV.push(ENV.imgs.single(name="throttled"), ENV.uphost, "e2e/throttled:v1")
        ENV.proxy.clear()
        ENV.proxy.add(match="/v2/e2e/throttled/manifests/", status=429, retry_after="5", times=1)
        name = ENV.create_ci(ENV.proxy.host + "/e2e/throttled:v1")
        failed = ENV.wait_phase(name, "Failed")
        self.assertIn("429", failed["status"]["message"])
        ready = ENV.wait_phase(name, "Ready")
        self.assertEqual(ready["status"]["digest"], info["digest"])
        # Retry-After (5 s) outweighs the first backoff (2 s), even though the
        # Failed status's own watch event queues the object again at once.
        waited = (stack_time(ready["status"]["cachedAt"]) -
                  stack_time(failed["status"]["lastCheckedAt"]))
        self.assertGreaterEqual(waited, 4, (failed["status"], ready["status"]))
        ENV.proxy.clear()

    def test_10_cache_down_mid_copy(self):
        lo = ENV.imgs.big(4 << 20, seed=11)
        info = ENV.push(lo, ENV.uphost, "e2e/cachedown:v1")
        ENV.proxy.clear()
        ENV.proxy.add(match="/blobs/", method="GET", times=0, rate=512 << 10)
        name = ENV.create_ci(ENV.proxy.host + "/e2e/cachedown:v1")
        ENV.wait_ci(name, lambda c: c.get("status", {}).get("progress", {})
                    .get("doneBytes", 0) > 0, what="progress")
        ENV.cache.stop()
        try:
            ci = ENV.wait_phase(name, "Failed")
            self.assertTrue(ci["status"]["message"])
        finally:
            ENV.cache.start()
            ENV.proxy.clear()
        ci = ENV.wait_phase(name, "Ready", timeout=READY_S + 30)
        self.assertEqual(ci["status"]["digest"], info["digest"])
        repo = cache_repo(ENV.proxy.host + "/e2e/cachedown")
        for b in info["blobs"]:
            st, body, _ = http_get("%s/v2/%s/blobs/%s" % (ENV.cache.url, repo, b), "*/*")
            self.assertEqual(st, 200, b)
            self.assertEqual(images.sha(body), b)

    def test_11_api_server_refuses_status_writes(self):
        """The API server fails the first status writes (500) and drops every
        watch mid-warm: the object still ends Ready, with the right digest."""
        info = ENV.push(ENV.imgs.single(name="apifail"), ENV.uphost, "e2e/apifail:v1")
        image = ENV.uphost + "/e2e/apifail:v1"
        name = ci_name(image)
        ENV.api.control("fail", {"count": 3, "code": 500, "methods": ["PATCH"],
                                 "pathPrefix": CI_PATH + "/" + name + "/status"})
        ENV.create_ci(image)
        ENV.api.control("drop-watches", {})
        ci = ENV.wait_phase(name, "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])
        # All three injected failures were consumed (only the probe is left).
        probe = ENV.api.control("fail", {"count": 1, "pathPrefix": "/nowhere"})
        ENV.api.control("fail", {"count": 0})
        self.assertEqual(probe["pending"], 1)

    def test_12_slow_api_server(self):
        """Every API request answered 400 ms late: the warm still ends Ready."""
        info = ENV.push(ENV.imgs.single(name="slowapi"), ENV.uphost, "e2e/slowapi:v1")
        ENV.api.control("latency", {"ms": 400})
        try:
            name = ENV.create_ci(ENV.uphost + "/e2e/slowapi:v1")
            ci = ENV.wait_phase(name, "Ready")
        finally:
            ENV.api.control("latency", {"ms": 0})
        self.assertEqual(ci["status"]["digest"], info["digest"])

    def test_13_many_repositories_share_layers(self):
        """30 repositories of one image, created at once: all Ready (4 warms
        at a time), and after the first the layers are mounted, not copied."""
        lo = ENV.imgs.single(name="fanout")
        before = self.ctl.metrics()
        names, infos = [], []
        for i in range(30):
            infos.append(ENV.push(lo, ENV.uphost, "e2e/fan%02d:v1" % i))
        for i in range(30):
            names.append(ENV.create_ci(ENV.uphost + "/e2e/fan%02d:v1" % i))
        for name, info in zip(names, infos):
            self.assertEqual(ENV.wait_phase(name, "Ready")["status"]["digest"], info["digest"])
        after = self.ctl.metrics()

        def delta(source):
            return (metric(after, "thaw_warm_bytes_total", {"source": source}) -
                    metric(before, "thaw_warm_bytes_total", {"source": source}))
        layer = sum(os.path.getsize(lo.blob_path(b)) for b in infos[0]["blobs"])
        self.assertGreaterEqual(delta("mounted"), 20 * layer)  # most were mounted
        self.assertLessEqual(delta("upstream"), 10 * layer)    # few were copied

    def test_99_metrics(self):
        text = self.ctl.metrics()
        self.assertGreaterEqual(metric(text, "thaw_warm_total", {"result": "success"}), 3)
        self.assertGreaterEqual(metric(text, "thaw_warm_total", {"result": "failure"}), 1)
        self.assertGreaterEqual(metric(text, "thaw_cachedimages", {"phase": "Ready"}), 3)
        self.assertGreater(metric(text, "thaw_cache_size_bytes"), 0)
        self.assertGreater(metric(text, "thaw_warm_bytes_total", {"source": "upstream"}), 0)
        self.assertIsNotNone(metric(text, "thaw_warm_duration_seconds_count"))
        self.assertGreater(metric(text, "thaw_upstream_requests_total",
                                  {"registry": ENV.uphost, "code": "200"}), 0)
        self.assertGreater(metric(text, "thaw_kube_requests_total", {"verb": "patch"}), 0)
        self.assertEqual(metric(text, "thaw_leader"), 1)
        self.assertIsNotNone(metric(text, "thaw_expired_total", {"reason": "unused"}))
        self.assertIsNotNone(metric(text, "process_resident_memory_bytes"))
        for path, want in (("/healthz", 200), ("/readyz", 200), ("/nope", 404)):
            self.assertEqual(registry.http_status(self.ctl.metrics_url + path), want, path)


class PlatformsTest(unittest.TestCase):
    """--platforms narrows a tag's index: the cache holds a re-serialised
    index (its own digest), upstreamDigest stays upstream's, and a refresh
    that finds upstream unchanged does not warm again."""

    def test_platforms_narrow_and_refresh_is_quiet(self):
        info = ENV.push(ENV.imgs.multiarch(), ENV.uphost, "e2e/plat:v1")
        ctl = ENV.controller("ctl-platforms", ["--leader-elect=false",
                                               "--platforms", "linux/arm64"])
        name = ENV.create_ci(ENV.uphost + "/e2e/plat:v1")
        ci = ENV.wait_phase(name, "Ready")
        st = ci["status"]
        self.assertEqual(st["upstreamDigest"], info["digest"])
        self.assertNotEqual(st["digest"], info["digest"])
        repo = cache_repo(ENV.uphost + "/e2e/plat")
        code, body, _ = http_get("%s/v2/%s/manifests/v1" % (ENV.cache.url, repo))
        self.assertEqual((code, images.sha(body)), (200, st["digest"]))
        kids = json.loads(body)["manifests"]
        self.assertEqual([k["platform"]["architecture"] for k in kids], ["arm64"])
        checked = st["lastCheckedAt"]
        ci = ENV.wait_ci(name, lambda c: c["status"]["lastCheckedAt"] != checked,
                         timeout=15, what="a refresh")
        self.assertEqual(ci["status"]["digest"], st["digest"])
        self.assertEqual(ci["status"]["cachedAt"], st["cachedAt"])
        self.assertNotIn("Refreshed", [e["reason"] for e in ENV.events(name)])
        self.assertEqual(metric(ctl.metrics(), "thaw_warm_total", {"result": "success"}), 1)
        stop_clean(ctl)


class RefreshFailTest(unittest.TestCase):
    """A refresh that fails keeps the image Ready and is not retried before
    the refresh interval (here 8 s; the backoff cap is 5 min): an upstream
    that stays down is not asked, patched about and evented every 2 s."""

    def test_failed_refresh_waits_the_interval(self):
        info = ENV.push(ENV.imgs.single(name="flaky"), ENV.uphost, "e2e/flaky:v1")
        ENV.proxy.clear()
        ctl = ENV.controller("ctl-refresh", ["--leader-elect=false",
                                             "--refresh-interval", "8s"])
        name = ENV.create_ci(ENV.proxy.host + "/e2e/flaky:v1")
        self.assertEqual(ENV.wait_phase(name, "Ready")["status"]["digest"], info["digest"])
        ENV.proxy.add(match="/v2/e2e/flaky/manifests/", status=500, times=0)
        ci = ENV.wait_ci(name, lambda c: "refresh failed" in (c["status"].get("message") or ""),
                         timeout=20, what="a failed refresh")
        self.assertEqual(ci["status"]["phase"], "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])
        ENV.wait_event(name, "WarmFailed")
        hits = ENV.proxy.hits("/v2/e2e/flaky/manifests/")
        time.sleep(5)       # the old 2 s retry would have asked twice more
        self.assertEqual(ENV.proxy.hits("/v2/e2e/flaky/manifests/"), hits)
        fails = [e for e in ENV.events(name) if e["reason"] == "WarmFailed"]
        self.assertEqual([e.get("count", 1) for e in fails], [1])
        ENV.proxy.clear()
        ci = ENV.wait_ci(name, lambda c: "refresh failed" not in (c["status"].get("message") or ""),
                         timeout=20, what="a refresh that works again")
        self.assertEqual(ci["status"]["phase"], "Ready")
        stop_clean(ctl)


class PrivateMoveTest(unittest.TestCase):
    """A private image cached before private/ existed sits under its public
    path, where anonymous tokens reach it. A new controller deletes that
    copy (through the inventory's safe deletion) and its next refresh finds
    the private copy missing and makes it, the image staying Ready."""

    def test_public_copy_of_a_private_image_moves_under_private(self):
        creds = "alice:wonderland"
        lo = ENV.imgs.single(name="legacy")
        info = ENV.push(lo, ENV.privhost, "e2e/legacy:v1", creds)
        image = ENV.privhost + "/e2e/legacy:v1"
        repo = cache_repo(ENV.privhost + "/e2e/legacy")
        cache = ENV.cache.url.split("://", 1)[1]
        self.assertEqual(ENV.push(lo, cache, repo + ":v1")["digest"], info["digest"])
        cfg = json.dumps({"auths": {ENV.privhost: {
            "auth": base64.b64encode(creds.encode()).decode()}}}).encode()
        ENV.api.ok("POST", "/api/v1/namespaces/%s/secrets" % NS_PRIVATE, {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": "legacycred"},
            "data": {".dockerconfigjson": base64.b64encode(cfg).decode()}}, want=(201,))
        # What the earlier version left: Ready, private, the public copy.
        name = ci_name(image)
        ENV.api.ok("POST", CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": name},
            "spec": {"image": image,
                     "pullSecrets": [{"namespace": NS_PRIVATE, "name": "legacycred"}]}},
            want=(201,))
        ci = ENV.get_ci(name)
        ci["status"] = {"phase": "Ready", "private": True, "digest": info["digest"],
                        "upstreamDigest": info["digest"],
                        "lastCheckedAt": "2026-01-01T00:00:00Z",
                        "cachedAt": "2026-01-01T00:00:00Z"}
        ENV.api.ok("PUT", CI_PATH + "/" + name + "/status", ci)
        manifest = "%s/v2/%%s/manifests/%s" % (ENV.cache.url, info["digest"])
        self.assertEqual(http_get(manifest % repo)[0], 200)
        ctl = ENV.controller("ctl-move", ["--leader-elect=false", "--allow-private"])
        deadline = time.time() + 30
        while http_get(manifest % repo)[0] != 404 or \
                http_get(manifest % ("private/" + repo))[0] != 200:
            if time.time() > deadline:
                self.fail("public copy %d, private copy %d; log:\n%s" % (
                    http_get(manifest % repo)[0],
                    http_get(manifest % ("private/" + repo))[0], ctl.log_tail(40)))
            time.sleep(0.3)
        ci = ENV.get_ci(name)
        self.assertEqual((ci["status"]["phase"], ci["status"]["digest"]),
                         ("Ready", info["digest"]))
        self.assertTrue(any("missing from the cache" in e["message"]
                            for e in ENV.events(name)), ENV.events(name))
        stop_clean(ctl)


class ResumeTest(unittest.TestCase):
    """SIGKILL mid-warm; the restarted controller copies only what is missing."""

    def test_sigkill_mid_warm_resumes(self):
        lo, big = ENV.resumable()
        info = ENV.push(lo, ENV.uphost, "e2e/resume:v1")
        ENV.proxy.clear()
        ENV.proxy.add(match="/blobs/" + big["digest"], method="GET", times=0, rate=512 << 10)
        image = ENV.proxy.host + "/e2e/resume:v1"
        ctl = ENV.controller("ctl-resume-1", ["--leader-elect=false"])
        name = ENV.create_ci(image)
        repo = cache_repo(ENV.proxy.host + "/e2e/resume")
        small = [b for b in info["blobs"] if b != big["digest"]]

        def small_cached():
            return all(http_get("%s/v2/%s/blobs/%s" % (ENV.cache.url, repo, b),
                                method="HEAD")[0] == 200 for b in small)
        deadline = time.time() + READY_S
        while not (small_cached() and (ENV.get_ci(name) or {}).get("status", {})
                   .get("progress", {}).get("doneBytes", 0) > 0):
            self.assertLess(time.time(), deadline, "small layers never cached")
            time.sleep(0.2)
        self.assertEqual(ENV.get_ci(name)["status"]["phase"], "Warming")
        ctl.kill()
        # Never a manifest whose blobs are missing.
        st, _, _ = http_get("%s/v2/%s/manifests/v1" % (ENV.cache.url, repo), method="HEAD")
        self.assertEqual(st, 404)
        ENV.proxy.clear()
        ctl2 = ENV.controller("ctl-resume-2", ["--leader-elect=false"])
        ci = ENV.wait_phase(name, "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])
        text = ctl2.metrics()
        small_bytes = sum(os.path.getsize(lo.blob_path(b)) for b in small)
        self.assertGreaterEqual(metric(text, "thaw_warm_bytes_total", {"source": "present"}),
                                small_bytes)
        self.assertLess(metric(text, "thaw_warm_bytes_total", {"source": "upstream"}),
                        os.path.getsize(lo.blob_path(big["digest"])) + (64 << 10))
        stop_clean(ctl2)


class LeaderTest(unittest.TestCase):
    """Two replicas; the leader is killed mid-warm; the standby takes over
    within the lease (15 s) plus one retry period, and finishes the warm.
    The standby never warms while the leader lives."""

    def test_leader_killed_standby_takes_over(self):
        lo = ENV.imgs.big(6 << 20, seed=7)
        info = ENV.push(lo, ENV.uphost, "e2e/lead:v1")
        ENV.proxy.clear()
        ENV.proxy.add(match="/blobs/", method="GET", times=0, rate=256 << 10)
        a = ENV.controller("ctl-lead-a")
        b = ENV.controller("ctl-lead-b")
        deadline = time.time() + 30
        while (metric(a.metrics(), "thaw_leader") or 0) + (metric(b.metrics(), "thaw_leader") or 0) != 1:
            self.assertLess(time.time(), deadline, "no single leader")
            time.sleep(0.2)
        leader, standby = (a, b) if metric(a.metrics(), "thaw_leader") == 1 else (b, a)
        name = ENV.create_ci(ENV.proxy.host + "/e2e/lead:v1")
        ENV.wait_phase(name, "Warming")
        time.sleep(1)
        self.assertEqual(stack.metric_sum(standby.metrics(), "thaw_warm_total"), 0)
        self.assertEqual(metric(standby.metrics(), "thaw_leader"), 0)
        leader.kill()
        t0 = time.time()
        ENV.proxy.clear()
        while metric(standby.metrics(), "thaw_leader") != 1:
            # lease 15 s, then the next retry (2 s, jittered up to 1.2x), plus
            # slack for a loaded CI machine
            self.assertLess(time.time() - t0, 15 + 2.4 + 4, "standby did not take over")
            time.sleep(0.2)
        ci = ENV.wait_phase(name, "Ready")
        self.assertEqual(ci["status"]["digest"], info["digest"])
        self.assertEqual(metric(standby.metrics(), "thaw_warm_total", {"result": "success"}), 1)
        stop_clean(standby)


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: test_controller_e2e.py PATH/thaw-controller [unittest args]")
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
