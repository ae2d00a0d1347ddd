"""The thaw stack on loopback, for tests and the demo: a client of the
emulator that test/with-emulator.sh started, thaw-webhook and thaw-controller
as processes on free ports, its MutatingWebhookConfiguration, and metric parsing."""

import hashlib
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

import registry
import testclient

CACHE_HOST = "localhost:7439"
SYSTEM_NS = "thaw-system"
CI_PATH = "/apis/thaw.dev/v1alpha1/cachedimages"
MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def ci_name(normalised):
    """docs/design.md's CachedImage name, computed independently of the C code."""
    s = re.sub(r"[^a-z0-9]+", "-", normalised.lower()).strip("-")[:52].strip("-")
    return s + "-" + hashlib.sha256(normalised.encode()).hexdigest()[:10]


def wait_ci_ready(api, image, timeout, poll=0.1):
    """The CachedImage of normalised image once its phase is Ready, or None
    after timeout seconds."""
    name = ci_name(image)
    deadline = time.time() + timeout
    while time.time() < deadline:
        st, doc, _ = api.request("GET", CI_PATH + "/" + name)
        if st == 200 and (doc.get("status") or {}).get("phase") == "Ready":
            return doc
        time.sleep(poll)
    return None


class Api(testclient.Emulator):
    """testclient's HTTPS client, attached to the emulator that
    with-emulator.sh started (THAW_EMU_URL, THAW_EMU_CA, THAW_EMU_TOKEN)."""

    def __init__(self):
        url = os.environ["THAW_EMU_URL"]
        self.port = int(url.rsplit(":", 1)[1])
        self.ca = os.environ["THAW_EMU_CA"]
        self.token = os.environ["THAW_EMU_TOKEN"]
        self.ctx = ssl.create_default_context(cafile=self.ca)
        self.proc = None
        self.dir = None

    def stop(self):
        pass        # with-emulator.sh owns the emulator

    def ok(self, method, path, body=None, ctype="application/json", want=(200, 201)):
        st, doc, _ = self.request(method, path, body, ctype=ctype)
        if st not in want:
            raise AssertionError("%s %s -> %s %s" % (method, path, st, doc))
        return doc


class Closers:
    """What a test environment must undo, undone last first; close() goes
    on past a failure so that nothing is left running."""

    def __init__(self):
        self.closers = []

    def own(self, thing):
        """Closes `thing` (its close()) with the rest; returns it."""
        self.closers.append(thing.close)
        return thing

    def close(self):
        for c in reversed(self.closers):
            try:
                c()
            except Exception as e:  # keep closing the rest
                sys.stderr.write("cleanup: %s\n" % e)


class Daemon:
    """A thaw daemon as a child process on a free metrics port, stopped by
    PID: start() waits for /readyz; subclasses give argv()."""

    name = "thaw"

    def __init__(self, binary, registry_url, workdir, log_name=None):
        self.binary = binary
        self.registry_url = registry_url
        self.metrics_port = registry.free_port()
        self.metrics_url = "http://127.0.0.1:%d" % self.metrics_port
        self.log_path = os.path.join(workdir, (log_name or self.name) + ".log")
        self.proc = None
        self._log = None

    def argv(self):
        return [self.binary, "--kubeconfig", os.environ["KUBECONFIG"],
                "--namespace", SYSTEM_NS, "--registry-url", self.registry_url,
                "--cache-host", CACHE_HOST,
                "--metrics-bind-address", "127.0.0.1:%d" % self.metrics_port]

    def start(self, timeout=20, wait_ready=True):
        assert self.proc is None
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=registry.die_with_parent)
        deadline = time.time() + timeout
        while wait_ready and registry.http_status(self.metrics_url + "/readyz", 0.5) != 200:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited with %s before /readyz; log:\n%s"
                                     % (self.name, self.proc.returncode, self.log_tail()))
            if time.time() > deadline:
                raise AssertionError("%s /readyz not 200 after %d s (healthz %s); log:\n%s"
                                     % (self.name, timeout, registry.http_status(
                                         self.metrics_url + "/healthz"), self.log_tail()))
            time.sleep(0.05)
        return self

    def stop_timed(self, timeout=10):
        """SIGTERM by PID; returns (exit status, seconds), or kills after timeout."""
        if self.proc is None:
            return None, 0
        t0 = time.time()
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = "killed after %d s" % timeout
        self.proc = None
        self._log.close()
        return rc, time.time() - t0

    def kill(self):
        """SIGKILL by PID: no graceful anything (a crash)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self._log.close()

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def metrics(self):
        with urllib.request.urlopen(self.metrics_url + "/metrics", timeout=5) as r:
            return r.read().decode()


class Webhook(Daemon):
    """thaw-webhook on fixed free ports (kept across restarts, since the
    MutatingWebhookConfiguration names its URL); extra: more flags, which
    may be changed before a start()."""

    name = "thaw-webhook"

    def __init__(self, binary, certs, registry_url, workdir, extra=()):
        super().__init__(binary, registry_url, workdir)
        self.certs = certs
        self.extra = list(extra)
        self.port = registry.free_port()
        self.url = "https://127.0.0.1:%d/mutate" % self.port
        self.ctx = ssl.create_default_context(cafile=certs["ca"])

    def argv(self):
        return super().argv() + [
            "--bind-address", "127.0.0.1:%d" % self.port,
            "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"]
        ] + list(self.extra)

    def stop(self, timeout=10):
        return self.stop_timed(timeout)

    def review(self, review):
        """POST an AdmissionReview directly (not through the chain)."""
        req = urllib.request.Request(self.url, data=json.dumps(review).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=5) as r:
            return json.load(r)


class Controller(Daemon):
    """thaw-controller; extra: more flags (e.g. ["--leader-elect=false"])."""

    name = "thaw-controller"

    def __init__(self, binary, registry_url, workdir, extra=(), name="thaw-controller"):
        super().__init__(binary, registry_url, workdir, log_name=name)
        self.extra = list(extra)

    def argv(self):
        return super().argv() + self.extra

    def stop(self, timeout=15):
        """SIGTERM by PID; returns the exit status, or kills after timeout."""
        return self.stop_timed(timeout)[0]



SANITIZER = ("AddressSanitizer", "LeakSanitizer", "runtime error:")


def stop_clean(proc):
    """SIGTERM: the daemon must exit 0 (a sanitizer report or a leak found
    at exit fails it) and its log must hold no sanitizer report. Returns
    the log."""
    rc = proc.stop()
    if isinstance(rc, tuple):  # Webhook.stop: (status, seconds)
        rc = rc[0]
    with open(proc.log_path, errors="replace") as f:
        log = f.read()
    bad = [s for s in SANITIZER if s in log]
    if rc != 0 or bad:
        raise AssertionError("%s: exit %s, %s; log tail:\n%s" % (
            proc.log_path, rc, bad, "\n".join(log.splitlines()[-60:])))
    return log


def poll(cond, timeout, interval=0.2):
    """cond()'s first true value within timeout seconds, else None."""
    deadline = time.time() + timeout
    while True:
        got = cond()
        if got or time.time() > deadline:
            return got or None
        time.sleep(interval)


def metric(text, name, labels=None):
    """Value of one sample, or None. labels: dict that must all match."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in (labels or {}).items()):
            return float(m.group(4))
    return None


def metric_sum(text, name):
    """Sum of every sample of name (any labels)."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if m and m.group(1) == name:
            total += float(m.group(3))
    return total


def webhook_configuration(url, ca_bundle, timeout_seconds=5):
    """The MutatingWebhookConfiguration of manifests/webhook, pointed at url."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "thaw-webhook"},
        "webhooks": [{
            "name": "thaw.thaw.dev",
            "admissionReviewVersions": ["v1"],
            "clientConfig": {"url": url, "caBundle": ca_bundle},
            "rules": [
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                 "resources": ["pods"], "scope": "Namespaced"},
                {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                 "resources": ["pods/ephemeralcontainers"], "scope": "Namespaced"}],
            "failurePolicy": "Ignore",
            "sideEffects": "NoneOnDryRun",
            "reinvocationPolicy": "IfNeeded",
            "timeoutSeconds": timeout_seconds,
            "namespaceSelector": {"matchExpressions": [
                {"key": "thaw.dev/caching", "operator": "NotIn", "values": ["disabled"]},
                {"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                 "values": [SYSTEM_NS, "kube-system"]}]},
            "objectSelector": {"matchExpressions": [
                {"key": "thaw.dev/caching", "operator": "NotIn", "values": ["disabled"]}]},
        }]}
