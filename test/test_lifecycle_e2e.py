"""thaw-controller lifecycle end to end: use tracking, two-phase expiry,
LRU eviction under --max-cache-bytes, the cache-full Pending case, and
Expiring across a restart and a leader change. The real controller runs
against the emulator, real docker-registry upstream and cache, and a real
containerd pulls what stays cached.

    test/with-emulator.sh python3 test/test_lifecycle_e2e.py BUILD/controller/thaw-controller

Short durations: --expire-after 4s, --expire-grace 3s.
"""

import json
import os
import subprocess
import sys
import time
import unittest
import zlib

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)

import containerd  # noqa: E402
import images  # noqa: E402
import stack  # noqa: E402
import test_controller_e2e as e2e  # noqa: E402
from stack import metric, stop_clean  # noqa: E402
from test_controller_e2e import cache_repo, deterministic, http_get  # noqa: E402

EXPIRE, GRACE = 4, 3
NS = "apps"
ENV = None


def setUpModule():
    global ENV
    ENV = e2e.Env()
    e2e.ENV = ENV


def tearDownModule():
    if ENV:
        ENV.close()


def build(name, base_seed, base_size, own_size):
    """One image: a base layer shared by every image of the same seed, its
    own layer, a config. Returns the layout."""
    lo = ENV.imgs._layout(name)
    base = lo.layer({"base": deterministic(base_seed, base_size)})
    own = lo.layer({"own": deterministic(zlib.crc32(name.encode()), own_size)})
    return lo.tag(lo.image([base, own], "amd64", name))


def blob_sizes(lo, info):
    """digest -> bytes of every blob and manifest of the pushed image."""
    out = {d: os.path.getsize(lo.blob_path(d)) for d in info["blobs"]}
    out[info["digest"]] = os.path.getsize(lo.blob_path(info["digest"]))
    for c in info["children"]:
        out[c] = os.path.getsize(lo.blob_path(c))
    return out


def manifest_count(lo, digest):
    """The manifests an image is: its top one and an index's children."""
    with open(lo.blob_path(digest), "rb") as f:
        m = json.load(f)
    return 1 + sum(manifest_count(lo, c["digest"]) for c in m.get("manifests", []))


def manifest_status(image_name, ref):
    st, _, _ = http_get("%s/v2/%s/manifests/%s" % (ENV.cache.url, cache_repo(image_name), ref),
                        method="HEAD")
    return st


def pod(name, image, ns=NS):
    ENV.api.ok("POST", "/api/v1/namespaces/%s/pods" % ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": image}]}}, want=(201,))


def ensure_ci(image):
    """The CachedImage of image; the pod sweep may have made it already."""
    name = stack.ci_name(image)
    ENV.api.ok("POST", stack.CI_PATH, {
        "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
        "metadata": {"name": name}, "spec": {"image": image}}, want=(201, 409))
    return name


def delete_pod(name, ns=NS):
    ENV.api.ok("DELETE", "/api/v1/namespaces/%s/pods/%s" % (ns, name), want=(200, 202, 404))


def status(name):
    ci = ENV.get_ci(name)
    return ci.get("status", {}) if ci else None


def wait_gone(name, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if ENV.get_ci(name) is None:
            return
        time.sleep(0.1)
    raise AssertionError("%s still there after %d s: %s" % (name, timeout, status(name)))


def assert_pulls_exact(test, names):
    """Every named Ready image: the cache's manifest bytes equal upstream's
    (skopeo inspect --raw) and every blob reads back with its digest."""
    cache_host = ENV.cache.url.split("//")[1]
    for name in names:
        ci = ENV.get_ci(name)
        test.assertEqual(ci["status"]["phase"], "Ready", name)
        image = ci["spec"]["image"]
        repo, tag = image.rsplit(":", 1)
        raw = []
        for ref in ("docker://%s:%s" % (repo, tag),
                    "docker://%s/%s:%s" % (cache_host, cache_repo(repo), tag)):
            raw.append(subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
                                      capture_output=True, check=True).stdout)
        test.assertEqual(raw[0], raw[1], name)
        man = json.loads(raw[1])
        for d in [man["config"]["digest"]] + [l["digest"] for l in man["layers"]]:
            st, body, _ = http_get("%s/v2/%s/blobs/%s" % (ENV.cache.url, cache_repo(repo), d), "*/*")
            test.assertEqual((st, images.sha(body)), (200, d), name)


class ExpiryTest(unittest.TestCase):
    """One controller, no leader election, short expiry."""

    @classmethod
    def setUpClass(cls):
        ENV.api.ok("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
            want=(201, 409))
        cls.ctl = ENV.controller("ctl-life", ["--leader-elect=false",
                                              "--expire-after", "%ds" % EXPIRE,
                                              "--expire-grace", "%ds" % GRACE])

    @classmethod
    def tearDownClass(cls):
        stop_clean(cls.ctl)

    def ready(self, path, lo=None):
        info = ENV.push(lo or build(path.replace("/", "-").replace(":", "-"), 1, 4096, 2048),
                        ENV.uphost, path)
        image = ENV.uphost + "/" + path
        name = ENV.create_ci(image)
        ENV.wait_phase(name, "Ready")
        return name, image, info

    def test_01_timeline(self):
        name, image, info = self.ready("life/timeline:v1")
        t_ready = time.time()
        ci = ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        t_exp = time.time()
        self.assertGreaterEqual(t_exp - t_ready, EXPIRE - 1.5)
        st = ci["status"]
        expires = e2e.stack_time(st["expiresAt"])
        self.assertAlmostEqual(expires - t_exp, GRACE, delta=1.5)
        ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
        self.assertEqual((ready["status"], ready["reason"]), ("False", "Unused"))
        # Still cached during the grace.
        self.assertEqual(manifest_status(image.rsplit(":", 1)[0], info["digest"]), 200)
        wait_gone(name, timeout=GRACE + 10)
        self.assertGreaterEqual(time.time(), expires - 0.5)  # never before expiresAt
        self.assertEqual(manifest_status(image.rsplit(":", 1)[0], info["digest"]), 404)
        self.assertEqual(manifest_status(image.rsplit(":", 1)[0], "v1"), 404)
        ENV.wait_event(name, "Expiring")
        ENV.wait_event(name, "Expired")
        self.assertGreaterEqual(metric(self.ctl.metrics(), "thaw_expired_total",
                                       {"reason": "unused"}), 1)

    def test_02_use_is_tracked_and_a_pod_in_the_grace_keeps_it(self):
        name, image, info = self.ready("life/grace:v1")
        ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        pod("grace-1", image)
        ci = ENV.wait_phase(name, "Ready", timeout=5)
        st = ci["status"]
        self.assertNotIn("expiresAt", st)
        self.assertEqual(manifest_status(image.rsplit(":", 1)[0], info["digest"]), 200)
        ci = ENV.wait_ci(name, lambda c: c["status"].get("usedBy", {}).get("count") == 1,
                         timeout=5, what="usedBy 1")
        self.assertEqual(ci["status"]["usedBy"]["pods"], [NS + "/grace-1"])
        self.assertTrue(ci["status"].get("lastUsedAt"))
        ENV.wait_event(name, "Kept")
        # In use: never expires, whatever the time.
        time.sleep(EXPIRE + GRACE + 1)
        self.assertEqual(status(name)["phase"], "Ready")
        # A finished pod does not count.
        ENV.api.ok("PATCH", "/api/v1/namespaces/%s/pods/grace-1/status" % NS,
                   {"status": {"phase": "Succeeded"}}, ctype="application/merge-patch+json")
        ci = ENV.wait_ci(name, lambda c: c["status"].get("usedBy", {}).get("count") == 0,
                         timeout=5, what="usedBy 0")
        self.assertEqual(ci["status"]["usedBy"]["pods"], [])
        ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        wait_gone(name, timeout=GRACE + 10)
        delete_pod("grace-1")

    def test_03_admission_race_rewritten_pod(self):
        """A pod admitted with the rewritten reference just as the image
        turns Expiring: it counts as the original, so the image returns to
        Ready and its manifest is never deleted."""
        name, image, info = self.ready("life/race:v1")
        ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        # content-addressed, as the webhook writes it: it counts for the tag
        rewritten = ("localhost:7439/" + cache_repo(image.rsplit(":", 1)[0]) + ":v1@" +
                     info["digest"])
        pod("race-1", rewritten)
        ENV.wait_phase(name, "Ready", timeout=5)
        time.sleep(GRACE + 1)
        self.assertEqual(status(name)["phase"], "Ready")
        self.assertEqual(manifest_status(image.rsplit(":", 1)[0], info["digest"]), 200)
        assert_pulls_exact(self, [name])
        delete_pod("race-1")

    def test_04_retain(self):
        name, image, _ = self.ready("life/retain:v1")
        ENV.api.ok("PATCH", stack.CI_PATH + "/" + name, {"spec": {"retain": True}},
                   ctype="application/merge-patch+json")
        time.sleep(EXPIRE + GRACE + 2)
        self.assertEqual(status(name)["phase"], "Ready")
        assert_pulls_exact(self, [name])

    def test_05_two_tags_one_digest(self):
        lo = build("life-shared", 2, 4096, 1024)
        keep, keep_image, info = self.ready("life/twotags:keep", lo)
        gone, gone_image, info2 = self.ready("life/twotags:gone", lo)
        self.assertEqual(info["digest"], info2["digest"])
        pod("twotags-1", keep_image)
        ENV.wait_phase(gone, "Expiring", timeout=EXPIRE + 10)
        wait_gone(gone, timeout=GRACE + 10)
        # The shared digest stays: deleting it would untag :keep too.
        self.assertEqual(manifest_status(keep_image.rsplit(":", 1)[0], "keep"), 200)
        assert_pulls_exact(self, [keep])
        delete_pod("twotags-1")

    def test_06_refresh_deletes_the_old_digest(self):
        """A refresh keeps the old digest while a pod names it pinned (its
        next pull on another node must work), then for --expire-grace,
        then deletes it."""
        path = "life/refresh:v1"
        name, image, info = self.ready(path)
        repo = image.rsplit(":", 1)[0]
        pod("refresh-1", image)  # in use: only the refresh acts
        pinned = "localhost:7439/" + cache_repo(repo) + ":v1@" + info["digest"]
        pod("refresh-pinned", pinned)  # admitted before the refresh
        ENV.wait_ci(name, lambda c: len(c["status"].get("usedBy", {}).get("pods", [])) == 2,
                    timeout=30, what="both pods counted")
        new = ENV.push(build("life-refresh-2", 3, 4096, 1024), ENV.uphost, path)
        ENV.wait_ci(name, lambda c: c["status"].get("digest") == new["digest"], timeout=30,
                    what="the new digest")
        time.sleep(GRACE + 3)  # past the grace: only the pinned pod holds it
        self.assertEqual(manifest_status(repo, info["digest"]), 200,
                         "old digest deleted while a pod names it")
        delete_pod("refresh-pinned")
        t_gone = time.time()
        deadline = t_gone + GRACE + 15
        while manifest_status(repo, info["digest"]) != 404:
            self.assertLess(time.time(), deadline, "old digest still in the cache")
            time.sleep(0.2)
        # kept for the grace after the last pod (the informer's lag aside)
        self.assertGreaterEqual(time.time() - t_gone, GRACE - 0.5)
        self.assertEqual(manifest_status(repo, new["digest"]), 200)
        assert_pulls_exact(self, [name])
        delete_pod("refresh-1")

    def test_08_a_pod_between_two_looks_still_counts(self):
        """A pod that comes and goes within a second (between two looks
        of the leader) still moves lastUsedAt, and so the expiry."""
        name, image, _ = self.ready("life/blip:v1")
        time.sleep(2)
        t_pod = int(time.time())
        pod("blip-1", image)
        delete_pod("blip-1")
        ci = ENV.wait_ci(name, lambda c: c["status"].get("lastUsedAt"), timeout=5,
                         what="lastUsedAt")
        self.assertGreaterEqual(e2e.stack_time(ci["status"]["lastUsedAt"]), t_pod)
        self.assertEqual(ci["status"]["usedBy"]["count"], 0)
        ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        self.assertGreaterEqual(time.time(), t_pod + EXPIRE - 1)
        wait_gone(name, timeout=GRACE + 10)

    def test_09_prewarm_template_keeps_it(self):
        """An OSCAR-like service: a PodTemplate in a pre-warm namespace holds
        its image in use however long no job runs; deleting the service
        lets it expire."""
        ns = "life-prewarm"
        ENV.api.ok("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"thaw.dev/prewarm": "true"}}}, want=(201, 409))
        name, image, _ = self.ready("life/service:v1")
        ENV.api.ok("POST", "/api/v1/namespaces/%s/podtemplates" % ns, {
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "svc"},
            "template": {"spec": {"containers": [{"name": "c", "image": image}]}}},
            want=(201,))
        ENV.wait_ci(name, lambda c: c["status"].get("usedBy", {}).get("templates") == 1,
                    timeout=5, what="templates 1")
        time.sleep(EXPIRE + GRACE + 1)
        self.assertEqual(status(name)["phase"], "Ready")
        ENV.api.ok("DELETE", "/api/v1/namespaces/%s/podtemplates/svc" % ns)
        ENV.wait_ci(name, lambda c: c["status"].get("usedBy", {}).get("templates") == 0,
                    timeout=5, what="templates 0")
        ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        wait_gone(name, timeout=GRACE + 10)

    def test_07_failed_never_ready_expires(self):
        name = ENV.create_ci(ENV.uphost + "/life/never:v1")
        ENV.wait_phase(name, "Failed")
        ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 15)
        wait_gone(name, timeout=GRACE + 10)


class EvictionTest(unittest.TestCase):
    """--max-cache-bytes: LRU eviction counting shared layers once, and the
    cache-full Pending case."""

    def test_lru_shared_layers_and_cache_full(self):
        base, own = 64 << 10, 32 << 10
        los = {n: build("evict-" + n, 7, base, own) for n in "abcdef"}
        infos = {n: ENV.push(lo, ENV.uphost, "evict/%s:v1" % n) for n, lo in los.items()}
        sizes = {n: blob_sizes(los[n], infos[n]) for n in los}

        def unique(names):
            u = {}
            for n in names:
                u.update(sizes[n])
            return sum(u.values())
        bound = unique("abc") + own // 2
        self.assertGreater(unique("abcd"), bound)
        ctl = ENV.controller("ctl-evict", ["--leader-elect=false", "--expire-after", "1h",
                                           "--expire-grace", "%ds" % GRACE,
                                           "--max-cache-bytes", str(bound)])
        try:
            names = {}
            for n in "abc":
                image = ENV.uphost + "/evict/%s:v1" % n
                pod("evict-" + n, image)
                names[n] = ensure_ci(image)
                ENV.wait_phase(names[n], "Ready")
            deadline = time.time() + 10
            while metric(ctl.metrics(), "thaw_cache_size_bytes") != unique("abc"):
                self.assertLess(time.time(), deadline, "unique bytes: %s != %s" % (
                    metric(ctl.metrics(), "thaw_cache_size_bytes"), unique("abc")))
                time.sleep(0.2)
            self.assertEqual(metric(ctl.metrics(), "thaw_cache_max_bytes"), bound)
            for n in "abc":
                ENV.wait_ci(names[n], lambda c: c["status"].get("usedBy", {}).get("count") == 1,
                            timeout=10, what="used")
            # Last used: b, then a, then c (seconds apart: lastUsedAt has seconds).
            for n in "bac":
                delete_pod("evict-" + n)
                ENV.wait_ci(names[n], lambda c: c["status"].get("usedBy", {}).get("count") == 0,
                            timeout=10, what="unused")
                time.sleep(1.1)
            image_d = ENV.uphost + "/evict/d:v1"
            pod("evict-d", image_d)
            names["d"] = ensure_ci(image_d)
            ENV.wait_phase(names["d"], "Ready")
            ci = ENV.wait_phase(names["b"], "Expiring", timeout=10)
            ready = [c for c in ci["status"]["conditions"] if c["type"] == "Ready"][0]
            self.assertEqual(ready["reason"], "Evicted")
            wait_gone(names["b"], timeout=GRACE + 10)
            # b alone freed enough (its own layer; the base stays shared).
            for n in "acd":
                self.assertEqual(status(names[n])["phase"], "Ready", n)
            self.assertEqual(metric(ctl.metrics(), "thaw_expired_total", {"reason": "evicted"}), 1)
            deadline = time.time() + 10
            while metric(ctl.metrics(), "thaw_cache_size_bytes") != unique("acd"):
                self.assertLess(time.time(), deadline, "unique bytes after eviction")
                time.sleep(0.2)
            # Everything in use: e warms (there is room), f finds none and waits.
            for n in "ac":
                pod("evict-" + n + "2", ENV.uphost + "/evict/%s:v1" % n)
            for n in "e":
                image = ENV.uphost + "/evict/%s:v1" % n
                pod("evict-" + n, image)
                names[n] = ensure_ci(image)
                ENV.wait_phase(names[n], "Ready")
            image_f = ENV.uphost + "/evict/f:v1"
            pod("evict-f", image_f)
            names["f"] = ensure_ci(image_f)
            ci = ENV.wait_ci(names["f"], lambda c: "cache full" in (c.get("status", {}).get("message") or ""),
                             timeout=15, what="cache full")
            self.assertEqual(ci["status"]["phase"], "Pending")
            time.sleep(3)
            self.assertEqual(status(names["f"])["phase"], "Pending")
            for n in "acde":
                self.assertEqual(status(names[n])["phase"], "Ready", n)
            # a is no longer used: evicted, and f gets its room.
            delete_pod("evict-a2")
            ENV.wait_phase(names["a"], "Expiring", timeout=10)
            wait_gone(names["a"], timeout=GRACE + 10)
            ENV.wait_phase(names["f"], "Ready", timeout=30)
            assert_pulls_exact(self, [names[n] for n in "cdef"])
            with containerd.Containerd() as cd:
                host = ENV.cache.url.split("//")[1]
                for n in "cf":
                    ref = "%s/%s:v1" % (host, cache_repo(ENV.uphost + "/evict/" + n))
                    cd.pull(ref)
                    self.assertEqual(cd.rootfs(ref),
                                     containerd.layer_files(los[n].path, infos[n]["digest"]))
        except AssertionError:
            sys.stderr.write("controller log:\n%s\n" % ctl.log_tail(60))
            raise
        finally:
            for n in ("c2", "d", "e", "f", "c", "a", "b"):
                delete_pod("evict-" + n)
            stop_clean(ctl)


class RestartTest(unittest.TestCase):
    """Expiring lives in status: a SIGKILL and restart, or a leader change,
    continues the countdown (expiresAt unchanged) and never skips the
    grace."""

    def expiring(self, ctl_args, path):
        info = ENV.push(build(path.replace("/", "-"), 9, 2048, 1024), ENV.uphost, path + ":v1")
        image = ENV.uphost + "/" + path + ":v1"
        name = ensure_ci(image)
        ENV.wait_phase(name, "Ready")
        ci = ENV.wait_phase(name, "Expiring", timeout=EXPIRE + 10)
        return name, image, info, ci["status"]["expiresAt"]

    def test_restart_mid_expiring(self):
        args = ["--leader-elect=false", "--expire-after", "%ds" % EXPIRE,
                "--expire-grace", "8s"]
        ctl = ENV.controller("ctl-restart-1", args)
        name, image, info, expires = self.expiring(args, "life/restart")
        ctl.kill()
        ctl2 = ENV.controller("ctl-restart-2", args)
        try:
            time.sleep(1)
            self.assertEqual(status(name)["expiresAt"], expires)
            wait_gone(name, timeout=20)
            self.assertGreaterEqual(time.time(), e2e.stack_time(expires) - 0.5)
            self.assertEqual(manifest_status(image.rsplit(":", 1)[0], info["digest"]), 404)
        finally:
            stop_clean(ctl2)

    def test_leader_change_mid_expiring(self):
        args = ["--expire-after", "%ds" % EXPIRE, "--expire-grace", "25s"]
        a = ENV.controller("ctl-life-a", args)
        b = ENV.controller("ctl-life-b", args)
        deadline = time.time() + 30
        while (metric(a.metrics(), "thaw_leader") or 0) + (metric(b.metrics(), "thaw_leader") or 0) != 1:
            self.assertLess(time.time(), deadline, "no single leader")
            time.sleep(0.2)
        leader, standby = (a, b) if metric(a.metrics(), "thaw_leader") == 1 else (b, a)
        name, image, info, expires = self.expiring(args, "life/leader")
        leader.kill()
        try:
            while metric(standby.metrics(), "thaw_leader") != 1:
                self.assertLess(time.time(), e2e.stack_time(expires) + 10, "no takeover")
                time.sleep(0.2)
            self.assertEqual(status(name)["expiresAt"], expires)
            wait_gone(name, timeout=40)
            self.assertGreaterEqual(time.time(), e2e.stack_time(expires) - 0.5)
            self.assertEqual(manifest_status(image.rsplit(":", 1)[0], info["digest"]), 404)
        finally:
            stop_clean(standby)


class GcTest(unittest.TestCase):
    """Expired images leave the disk: a multi-arch index and an image that
    shares its base layer with a kept one expire, garbage collection runs
    (thaw-registry-gc on the cache's storage) while a warm is requested,
    the storage drops by exactly the unique bytes freed, and what stays
    pulls byte for byte (skopeo, containerd)."""

    def test_expire_then_collect_while_a_warm_waits(self):
        import registry
        import test_gc
        test_gc.AGENT = os.path.join(os.path.dirname(e2e.BINARY), "thaw-registry-gc")
        c = stack.Closers()
        try:
            self._run(c, registry, test_gc)
        finally:
            c.close()

    def _run(self, c, registry, test_gc):
        reg = c.own(registry.Registry())
        storage = os.path.join(reg.dir, "storage")
        agent = c.own(test_gc.Agent(reg, collector=test_gc.slow_collector(reg.dir, 4)))
        c.closers.append(agent.finish)
        keep_lo = build("gc-keep", 11, 96 << 10, 16 << 10)
        share_lo = build("gc-share", 11, 96 << 10, 48 << 10)  # the same base
        multi_lo = test_gc.index_layout(ENV.imgs, "gc-multi", "gc")
        infos = {}
        for n, lo in (("keep", keep_lo), ("share", share_lo), ("multi", multi_lo)):
            infos[n] = (lo, ENV.push(lo, ENV.uphost, "gc/%s:v1" % n))
        ctl = e2e.Controller(e2e.BINARY, reg.url, ENV.tmp, name="ctl-gc", extra=[
            "--insecure-registries", ENV.uphost, "--leader-elect=false",
            "--expire-after", "%ds" % EXPIRE, "--expire-grace", "2s",
            "--gc-url", agent.url, "--gc-interval", "1s"])
        c.closers.append(ctl.stop)
        ctl.start()
        names = {}
        pod("gc-keep", ENV.uphost + "/gc/keep:v1")
        for n in infos:
            names[n] = ensure_ci(ENV.uphost + "/gc/%s:v1" % n)
        for n in infos:
            ENV.wait_phase(names[n], "Ready")
        kept = test_gc.graph(keep_lo, infos["keep"][1]["digest"])
        gone = {}
        for n in ("share", "multi"):
            gone.update(test_gc.graph(infos[n][0], infos[n][1]["digest"]))
        freed = {d: b for d, b in gone.items() if d not in kept}
        self.assertLess(len(freed), len(gone))  # the base layer is shared
        before = test_gc.storage_bytes(storage)
        for n in ("share", "multi"):
            wait_gone(names[n], timeout=EXPIRE + 20)
        # The collection starts (the slow collector holds it 4 s): a warm
        # requested now must wait for its end.
        deadline = time.time() + 20
        while not agent.status()["running"]:
            self.assertLess(time.time(), deadline, "no garbage collection started")
            time.sleep(0.05)
        late_lo = build("gc-late", 12, 8 << 10, 8 << 10)
        late_info = ENV.push(late_lo, ENV.uphost, "gc/late:v1")
        pod("gc-late", ENV.uphost + "/gc/late:v1")
        names["late"] = ensure_ci(ENV.uphost + "/gc/late:v1")
        time.sleep(1)
        self.assertTrue(agent.status()["running"])
        self.assertNotEqual(status(names["late"]).get("phase"), "Ready")
        last = agent.wait_idle()["last"]
        self.assertEqual(last["result"], "success", last)
        ENV.wait_phase(names["late"], "Ready")
        # The collector ran with nothing pushed meanwhile: what it measured
        # dropped by exactly the unique bytes of the expired images (over
        # one run, or two when the second image's manifests were deleted
        # only after a first run had begun). In that second case the
        # manifest DELETEs fall inside the first run's measurement, so
        # their link files (71 bytes: "sha256:<hex>") count too.
        want = sum(freed.values())
        links = 71 * 3 * sum(manifest_count(infos[n][0], infos[n][1]["digest"])
                             for n in ("share", "multi"))
        deadline = time.time() + 30
        while True:
            got = metric(ctl.metrics(), "thaw_gc_reclaimed_bytes_total") or 0
            self.assertLessEqual(got, want + links)
            if got >= want:
                self.assertEqual((got - want) % 71, 0, "not link files")
                break
            self.assertLess(time.time(), deadline, "reclaimed %d of %d bytes" % (
                got, want))
            time.sleep(0.2)
        after = test_gc.storage_bytes(storage)
        late = sum(test_gc.graph(late_lo, late_info["digest"]).values())
        self.assertGreaterEqual(before - after + late, sum(freed.values()))
        deadline = time.time() + 10
        # (a new leader also queues one run of its own: at least ours)
        while (metric(ctl.metrics(), "thaw_gc_runs_total", {"result": "success"}) or 0) < 1:
            self.assertLess(time.time(), deadline, "thaw_gc_runs_total")
            time.sleep(0.2)
        # What stays is whole: manifests equal upstream's, blobs read back,
        # containerd pulls and unpacks it.
        cache_host = reg.url.split("//")[1]
        for n, lo, info in (("keep", keep_lo, infos["keep"][1]), ("late", late_lo, late_info)):
            ref = "%s/%s:v1" % (cache_host, cache_repo(ENV.uphost + "/gc/" + n))
            up = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                 "docker://%s/gc/%s:v1" % (ENV.uphost, n)],
                                capture_output=True, check=True).stdout
            got = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                  "docker://" + ref], capture_output=True, check=True).stdout
            self.assertEqual(up, got, n)
            with containerd.Containerd() as cd:
                cd.pull(ref)
                self.assertEqual(cd.rootfs(ref), containerd.layer_files(lo.path, info["digest"]))
        for n in ("share", "multi"):
            repo = cache_repo(ENV.uphost + "/gc/" + n)
            st, _, _ = http_get("%s/v2/%s/manifests/%s" % (reg.url, repo, infos[n][1]["digest"]),
                                method="HEAD")
            self.assertEqual(st, 404, n)
        delete_pod("gc-keep")
        delete_pod("gc-late")
        stop_clean(ctl)


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: test_lifecycle_e2e.py PATH/thaw-controller [unittest args]")
    e2e.BINARY = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
