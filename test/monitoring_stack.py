"""thaw's whole stack on loopback, scraped by a real Prometheus with the
labels manifests/components/monitoring gives each target, and a workload
that moves every dashboard panel (test/test_monitoring.py).

Parts: the emulator (test/with-emulator.sh), an upstream docker-registry
with small images, the cache docker-registry with its Prometheus metrics
on (http.debug, as manifests/registry/configmap.yaml), thaw-registry-gc on
the cache's storage, thaw-webhook in the emulator's admission chain with
the cold wait on, and two thaw-controllers with leader election (whose
Lease lets the webhook gate pods, and whose leader releases them), short
expiry, a size bound and garbage collection. Every process is stopped by
PID (close())."""

import os
import random
import shutil
import tempfile
import time
import urllib.error
import urllib.request

import images
import monitoring_prom
import monitoring_targets
import registry
import stack
import test_gc
import webhook_stub

NS = "apps"
EXPIRE, GRACE = 5, 2
COLD_WAIT = "30s"         # as the oscar overlay; warms here take a second or two
GATE = "thaw.dev/warming"
MAX_CACHE = 64 << 20


class MetricsRegistry(registry.Registry):
    """registry.Registry with distribution's debug server and its
    Prometheus metrics on a port of their own (http.debug.addr)."""

    def start(self, timeout=15):
        if not getattr(self, "debug_port", None):
            self.debug_port = registry.free_port()
            with open(self.config) as f:
                text = f.read()
            line = "  addr: 127.0.0.1:%d\n" % self.port
            assert line in text, text
            text = text.replace(line, line + (
                "  debug:\n    addr: 127.0.0.1:%d\n"
                "    prometheus:\n      enabled: true\n      path: /metrics\n"
                % self.debug_port))
            with open(self.config, "w") as f:
                f.write(text)
        super().start(timeout)


class ColdWaitWebhook(stack.Webhook):
    """thaw-webhook with --cold-wait: pods with a cold image are gated."""

    def argv(self):
        return super().argv() + ["--cold-wait=" + COLD_WAIT]


def image(imgs, name, base_seed, own_size):
    """A layout: a 64 KiB base layer shared by images of one seed, its own
    layer of own_size random bytes."""
    lo = imgs._layout(name)
    base = lo.layer({"base": random.Random(base_seed).randbytes(64 << 10)})
    own = lo.layer({"own": random.Random(name).randbytes(own_size)})
    return lo.tag(lo.image([base, own], "amd64", name))


class Stack(stack.Closers):
    """The stack, started; targets() are (labels, address, path) for
    Prometheus, from the rendered ServiceMonitors."""

    def __init__(self, build, workdir, full=False):
        super().__init__()
        self.full = full
        # full (docs/img): images of MiBs, a bound they reach, slower expiry.
        self.expire, self.grace = (40, 5) if full else (EXPIRE, GRACE)
        self.max_cache = (12 << 20) if full else MAX_CACHE
        self.mib = (1 << 20) if full else (128 << 10)
        self.tmp = tempfile.mkdtemp(prefix="thaw-monitoring.")
        self.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))
        self.logs = workdir
        try:
            self._start(build)
        except BaseException:
            self.close()
            raise

    def _start(self, build):
        self.api = stack.Api()
        self.up = self.own(registry.Registry())
        self.uphost = self.up.url.split("//", 1)[1]
        self.cache = self.own(MetricsRegistry())
        test_gc.AGENT = os.path.join(build, "controller", "thaw-registry-gc")
        self.agent = self.own(test_gc.Agent(self.cache))
        self.imgs = images.Images(os.path.join(self.tmp, "layouts"))
        for ns in (stack.SYSTEM_NS, NS):
            self.api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                want=(201, 409))
        certs = webhook_stub.make_certs(self.tmp)
        self.hook = ColdWaitWebhook(os.path.join(build, "webhook", "thaw-webhook"), certs,
                                    self.cache.url, self.logs)
        self.closers.append(self.hook.stop)
        self.hook.start()
        self.api.ok("POST", stack.MWC_PATH,
                    stack.webhook_configuration(self.hook.url, certs["ca_bundle"]), want=(201,))
        self.ctls = []
        for i in range(2):
            c = stack.Controller(
                os.path.join(build, "controller", "thaw-controller"), self.cache.url,
                self.logs, name="thaw-controller-%d" % i, extra=[
                    "--insecure-registries", self.uphost,
                    "--expire-after", "%ds" % self.expire,
                    "--expire-grace", "%ds" % self.grace,
                    "--max-cache-bytes", str(self.max_cache),
                    "--gc-url", self.agent.url, "--gc-interval", "1s"])
            self.closers.append(c.stop)
            self.ctls.append(c.start())

    def targets(self):
        """Each rendered ServiceMonitor target that has a local process:
        replica i of the controller is self.ctls[i]; one webhook; the
        registry pod holds the cache registry and thaw-registry-gc."""
        ports = {("webhook", 0): self.hook.metrics_port,
                 ("registry", 0): self.cache.debug_port,
                 ("registry-gc", 0): int(self.agent.metrics_url.rsplit(":", 1)[1])}
        for i, c in enumerate(self.ctls):
            ports[("controller", i)] = c.metrics_port
        out = []
        for t in monitoring_targets.targets(monitoring_targets.render(["components/monitoring"])):
            port = ports.get((t["container"], t["replica"]))
            if port:
                out.append((t["labels"], "127.0.0.1:%d" % port, t["path"]))
        if len(out) != len(ports):
            raise AssertionError("targets %s for processes %s" % (out, sorted(ports)))
        return out

    def leader(self):
        for c in self.ctls:
            if c.proc and stack.metric(c.metrics(), "thaw_leader") == 1:
                return c
        return None

    # --- workload -------------------------------------------------------

    def pod(self, name, imgs):
        """Creates the pod through the admission chain; returns it."""
        return self.api.ok("POST", "/api/v1/namespaces/%s/pods" % NS, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "c%d" % i, "image": im}
                                    for i, im in enumerate(imgs)]}}, want=(201,))

    def wait_gating(self, timeout=20):
        """Until the webhook gates a pod, which takes a leader's Lease, the
        webhook's watch of it and an open health gate. Each probe pod has
        an image of its own that upstream lacks: once its warm fails the
        leader releases it unchanged. Returns the probe pods' names."""
        deadline = time.time() + timeout
        names = []
        while True:
            names.append("cold-probe-%d" % len(names))
            pod = self.pod(names[-1], ["%s/app/absent-%d:v1" % (self.uphost, len(names))])
            if any(g.get("name") == GATE for g in pod["spec"].get("schedulingGates") or []):
                return names
            if time.time() > deadline:
                raise AssertionError("no pod gated in %d s; webhook log:\n%s" % (
                    timeout, self.hook.log_tail()))
            time.sleep(0.5)

    def bad_review(self):
        """A malformed body straight to /mutate: 400 (an admission error)."""
        req = urllib.request.Request(self.hook.url, data=b"{", method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, context=self.hook.ctx, timeout=5).read()
        except urllib.error.HTTPError as e:
            if e.code != 400:
                raise

    def push(self, name, base_seed, own_size):
        self.imgs.push(image(self.imgs, name.replace("/", "-").replace(":", "-"), base_seed,
                             own_size), "%s/%s" % (self.uphost, name))
        return "%s/%s" % (self.uphost, name)

    def unused(self, img):
        """A CachedImage no pod uses: warmed, then expired (GC follows)."""
        self.api.ok("POST", stack.CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": stack.ci_name(img)}, "spec": {"image": img}},
            want=(201, 409))

    def run(self, seconds, log=print):
        """Pods every 0.25 s for `seconds` (two images, now and then an
        invalid reference or an image upstream lacks; the oldest deleted
        beyond 40), a malformed review every 20 pods, an unused image that
        expires and is collected. The cold wait: a probe pod gated and
        released unchanged (wait_gating), then the first pods, gated
        until their two images are warm and released rewritten. full:
        every 30 s a new image the pods use from then on (gated again) and
        an unused one, and the leader stopped and started again midway
        (the standby takes over)."""
        m = self.mib
        apps = [self.push("app/web:v1", 1, 2 * m), self.push("app/worker:v1", 1, 3 * m)]
        missing = "%s/app/missing:v1" % self.uphost
        live = self.wait_gating()
        self.unused(self.push("app/once:v1", 2, 2 * m))
        t0, n, extra = time.time(), 0, []
        switched = not self.full
        while time.time() - t0 < seconds:
            n += 1
            imgs = list(apps) + extra[-1:]
            if n % 10 == 3:
                imgs.append("Bad/Image:tag")   # invalid: stays as it is
            if n % 10 == 7:
                imgs.append(missing)          # cold; its warm fails
            name = "job-%d" % n
            self.pod(name, imgs)
            live.append(name)
            if len(live) > 40:
                self.api.ok("DELETE", "/api/v1/namespaces/%s/pods/%s" % (NS, live.pop(0)),
                            want=(200, 202, 404))
            if n % 20 == 0:
                self.bad_review()
            k = len(extra)
            if self.full and time.time() - t0 > 30 * (k + 1) and time.time() - t0 < seconds - 45:
                extra.append(self.push("app/tool-%d:v1" % k, 3 + k, m + m * k // 2))
                self.unused(self.push("app/batch-%d:v1" % k, 9, 2 * m + m * k // 2))
            if not switched and time.time() - t0 > seconds / 2:
                switched = True
                old = self.leader()
                if old is not None:
                    log("stopping the leader (%s)" % old.log_path)
                    old.stop()
                    time.sleep(5)
                    old.start()
            time.sleep(0.25)
        for name in live:
            self.api.ok("DELETE", "/api/v1/namespaces/%s/pods/%s" % (NS, name),
                        want=(200, 202, 404))
        return n

    def wait_collected(self, timeout=60):
        """Until an image expired and a collection after it reclaimed bytes."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            c = self.leader()
            text = c.metrics() if c else ""
            if stack.metric_sum(text, "thaw_expired_total") >= 1 and \
                    (stack.metric(text, "thaw_gc_reclaimed_bytes_total") or 0) > 0:
                return
            time.sleep(0.5)
        raise AssertionError("no expiry and collection in %d s; leader log:\n%s" % (
            timeout, (self.leader() or self.ctls[0]).log_tail()))


def prometheus(st, rules):
    p = monitoring_prom.Prometheus(st.targets(), rules=rules)
    st.own(p)
    p.wait_targets_up()
    return p

