"""Registry garbage collection with real parts: thaw-registry-gc (the agent)
runs Debian's `docker-registry garbage-collect` on a real filesystem
registry, and thaw-controller (against the emulator) stops pushing around a
run.

    test/with-emulator.sh python3 test/test_gc.py \\
        BUILD/controller/thaw-registry-gc BUILD/controller/thaw-controller

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).

Collect: images pushed with skopeo (a multi-arch index kept, one deleted
with its children, one deleted without them, one sharing layers with a kept
image, one with a larger layer); manifests deleted by digest through the
registry API; one run through the agent. The storage (apparent bytes of its
files, and `du`) drops by exactly the bytes of the blobs only deleted
images referenced, computed from the manifests; the agent reports the same
bytes and blob count; every kept image and every child of a kept index
still matches `skopeo inspect --raw` byte for byte and its blobs GET with
the right digest; a second run frees nothing.
Agent: 409 while a run is in flight; an empty registry is a success; a
missing collector and a configuration it refuses are failures; a run nobody
polls is stopped; SIGTERM mid-run stops the collector and exits 0; flags
and methods. Descriptor cache: why the manifests' registry config has none
(with it, a push after a collection commits an image whose layers are gone).
Controller: a logging proxy in front of the cache registry records every
request with its start and end; no write reaches the registry between the
agent's startedAt and finishedAt (a new leader waits for a run a former
leader started; a run of its own pauses, lets the warm in flight finish,
and a warm requested meanwhile starts only after the run); metrics; an
agent that cannot be reached delays pushes 30 s at most and counts
failures. To widen a run, the collector may be a wrapper that sleeps and
then execs the real docker-registry. Every server runs on a free loopback
port and is stopped by PID.
"""

import datetime
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)

import fault_proxy  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from stack import SANITIZER, CI_PATH, SYSTEM_NS, Api, Controller, ci_name, metric, stop_clean  # noqa: E402

AGENT = CONTROLLER = None
COLLECTOR = registry.BINARY  # docker-registry
ACCEPT = ", ".join([images.OCI_MANIFEST, images.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])
WRITES = ("POST", "PUT", "PATCH", "DELETE")
READY_S = 90


# --- helpers ------------------------------------------------------------

def http(method, url, body=None, accept=ACCEPT, timeout=10):
    """(status, body bytes, headers) of one request; HTTP errors included."""
    req = urllib.request.Request(url, method=method, data=body,
                                 headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def rfc3339(s):
    """Seconds since the epoch of 2024-01-01T00:00:00.123456Z (the agent's
    times) or .123Z (the logs')."""
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def storage_bytes(d):
    """Apparent bytes of the regular files under d (what the agent counts)."""
    total = 0
    for root, _, files in os.walk(d):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if not os.path.islink(os.path.join(root, f)):
                total += st.st_size
    return total


def du_bytes(d):
    return int(subprocess.run(["du", "-sb", d], check=True, capture_output=True,
                              text=True).stdout.split()[0])


def slow_collector(dirname, delay):
    """A collector that sleeps `delay` s before exec'ing the real one, so a
    test can act while a run is in flight. exec: no grandchild holds the
    agent's pipes."""
    path = os.path.join(dirname, "slow-registry-%s" % delay)
    with open(path, "w") as f:
        f.write("#!%s\nimport os, sys, time\n"
                "if sys.argv[1:2] == ['garbage-collect']:\n"
                "    time.sleep(%r)\n"
                "os.execvp(%r, [%r] + sys.argv[1:])\n"
                % (sys.executable, float(delay), COLLECTOR, COLLECTOR))
    os.chmod(path, 0o755)
    return path


def graph(lo, digest):
    """digest -> size of every blob the registry stores for the image whose
    top manifest is `digest`: the manifest, child manifests, configs and
    layers (as the layout holds them, byte for byte)."""
    out = {}
    with open(lo.blob_path(digest), "rb") as f:
        data = f.read()
    out[digest] = len(data)
    m = json.loads(data)
    for c in m.get("manifests", []):
        out.update(graph(lo, c["digest"]))
    if "config" in m:
        out[m["config"]["digest"]] = m["config"]["size"]
    for l in m.get("layers", []):
        out[l["digest"]] = l["size"]
    return out


def index_layout(imgs, name, seed):
    """A two-platform OCI index whose bytes depend on `seed` (images.py's
    multiarch() is one fixed image)."""
    lo = imgs._layout(name)
    kids = []
    for arch in ("amd64", "arm64"):
        rnd = random.Random("%s/%s" % (seed, arch)).randbytes(8192)
        l = lo.layer({"arch": arch.encode(), "seed": seed.encode(), "bin/x": rnd})
        kids.append(lo.image([l], arch, "%s-%s" % (seed, arch)))
    lo.children = [k["digest"] for k in kids]
    index = {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": kids}
    return lo.tag(lo.put(json.dumps(index, sort_keys=True).encode(), images.OCI_INDEX))


def random_layout(imgs, name, size, seed):
    lo = imgs._layout(name)
    layer = lo.layer({"blob": random.Random(seed).randbytes(size)})
    return lo.tag(lo.image([layer], "amd64", name))


class Agent(registry.ChildServer):
    """thaw-registry-gc on a free loopback port, stopped by PID."""

    def __init__(self, reg, storage=True, collector=COLLECTOR, extra=(), config=None):
        self.dir = tempfile.mkdtemp(prefix="thaw-gc-agent.")
        self.port = registry.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.metrics_url = "http://127.0.0.1:%d" % registry.free_port()
        self.log_path = os.path.join(self.dir, "agent.log")
        argv = [AGENT, "--config", config or reg.config, "--registry-binary", collector,
                "--bind-address", "127.0.0.1:%d" % self.port,
                "--metrics-bind-address", self.metrics_url[7:]] + list(extra)
        if storage:
            argv += ["--storage-dir", os.path.join(reg.dir, "storage")]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=registry.die_with_parent)
        deadline = time.time() + 15
        while registry.http_status(self.url + "/healthz", 0.5) != 200 or \
                registry.http_status(self.metrics_url + "/readyz", 0.5) != 200:
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise AssertionError("agent not up: %s" % self.log())
            time.sleep(0.05)

    def post(self):
        st, body, _ = http("POST", self.url + "/gc", body=b"")
        return st, json.loads(body)

    def status(self):
        st, body, _ = http("GET", self.url + "/gc")
        assert st == 200, (st, body)
        return json.loads(body)

    def wait_idle(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status()
            if not s["running"]:
                return s
            time.sleep(0.1)
        raise AssertionError("agent still running after %d s: %s" % (timeout, self.log()))

    def run(self):
        """One run, start to end: its record."""
        st, doc = self.post()
        assert st == 202, (st, doc)
        last = self.wait_idle()["last"]
        assert last["id"] == doc["id"], (last, doc)
        return last

    def metrics(self):
        return http("GET", self.metrics_url + "/metrics")[1].decode()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, timeout=15):
        """SIGTERM by PID: (exit status, seconds)."""
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = "killed"
        return rc, time.time() - t0

    def assert_clean(self, rc):
        log = self.log()
        bad = [s for s in SANITIZER if s in log]
        if rc != 0 or bad:
            raise AssertionError("agent: exit %s, %s; log tail:\n%s" % (
                rc, bad, "\n".join(log.splitlines()[-40:])))

    def finish(self):
        """SIGTERM: it must exit 0 with no sanitizer report in its log."""
        if self.proc is not None and self.proc.poll() is None:
            self.assert_clean(self.stop()[0])

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self._log.close()
        super().close()


class RecordingProxy:
    """fault_proxy's forwarding in this process, in front of a registry,
    keeping (start, end, method, path) of every request it relays: start
    before it is forwarded, end when the registry's answer arrived (the
    registry is done with it then; relaying the answer takes longer)."""

    def __init__(self, upstream):
        log, lock = [], threading.Lock()

        class Handler(fault_proxy.Handler):
            def handle_any(self):
                t0, self.answered = time.time(), None
                try:
                    super().handle_any()
                finally:
                    with lock:
                        log.append((t0, self.answered or time.time(), self.command,
                                    urllib.parse.urlsplit(self.path).path))

            def relay(self, resp, rule):
                self.answered = time.time()
                super().relay(resp, rule)
            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

        self.srv = fault_proxy.Server(("127.0.0.1", 0), Handler)
        self.srv.state = fault_proxy.State()
        self.srv.upstream = urllib.parse.urlsplit(upstream)
        self.srv.upstream_base = "%s://%s" % (self.srv.upstream.scheme, self.srv.upstream.netloc)
        self.port = self.srv.server_address[1]
        self.srv.base = self.url = "http://127.0.0.1:%d" % self.port
        self.log, self.lock = log, lock
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def writes(self, repo=None):
        with self.lock:
            return [r for r in self.log if r[2] in WRITES and
                    (repo is None or r[3].startswith("/v2/%s/" % repo))]

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# --- the collection itself ---------------------------------------------

class Collect(unittest.TestCase):
    """Push, delete by digest, one run; what is left is checked byte by byte."""

    @classmethod
    def setUpClass(cls):
        cls.c = stack.Closers()
        try:
            cls._setup()
        except BaseException:
            cls.c.close()
            raise

    @classmethod
    def _setup(cls):
        cls.tmp = tempfile.mkdtemp(prefix="thaw-gc-collect.")
        cls.c.closers.append(lambda: shutil.rmtree(cls.tmp, ignore_errors=True))
        cls.reg = cls.c.own(registry.Registry())
        cls.storage = os.path.join(cls.reg.dir, "storage")
        cls.host = cls.reg.url.split("//", 1)[1]
        imgs = images.Images(os.path.join(cls.tmp, "layouts"))
        a, b = imgs.shared()
        pushed = {  # name -> (repo, layout)
            "kept-shared": ("keep/shared-a", a),
            "kept-index": ("keep/multi", imgs.multiarch()),
            "gone-shared": ("gone/shared-b", b),
            "gone-index": ("gone/multi", index_layout(imgs, "gone-index", "gone")),
            "gone-big": ("gone/big", random_layout(imgs, "gone-big", 256 << 10, 7)),
            "half-index": ("half/multi", index_layout(imgs, "half-index", "half")),
        }
        cls.img = {}
        for name, (repo, lo) in pushed.items():
            info = imgs.push(lo, "%s/%s:v1" % (cls.host, repo))
            cls.img[name] = {"repo": repo, "lo": lo, "digest": info["digest"],
                             "graph": graph(lo, info["digest"]),
                             "children": list(lo.children)}
        # Deleted: three images whole (an index with its children), and one
        # index without its children, which stay as manifests of their own.
        cls.deleted_manifests = []
        for name in ("gone-shared", "gone-index", "gone-big"):
            i = cls.img[name]
            cls.deleted_manifests += [(i["repo"], d) for d in [i["digest"]] + i["children"]]
        half = cls.img["half-index"]
        cls.deleted_manifests.append((half["repo"], half["digest"]))
        kept, gone = {}, {}
        for name in ("kept-shared", "kept-index"):
            kept.update(cls.img[name]["graph"])
        for name in ("gone-shared", "gone-index", "gone-big"):
            gone.update(cls.img[name]["graph"])
        for kid in half["children"]:
            kept.update(graph(half["lo"], kid))
        gone[half["digest"]] = half["graph"][half["digest"]]
        cls.freed = {d: n for d, n in gone.items() if d not in kept}
        cls.kept = kept
        assert len(cls.freed) < len(gone), "the shared layers must be kept"

        cls.agent = cls.c.own(Agent(cls.reg))
        for repo, d in cls.deleted_manifests:
            st, body, _ = http("DELETE", "%s/v2/%s/manifests/%s" % (cls.reg.url, repo, d))
            assert st == 202, (repo, d, st, body)
        cls.before, cls.du_before = storage_bytes(cls.storage), du_bytes(cls.storage)
        cls.last = cls.agent.run()
        cls.after, cls.du_after = storage_bytes(cls.storage), du_bytes(cls.storage)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.agent.finish()
        finally:
            cls.c.close()

    def test_run_succeeded(self):
        self.assertEqual(self.last["result"], "success", self.last)
        self.assertEqual(self.last["id"], 1)
        self.assertLessEqual(rfc3339(self.last["startedAt"]), rfc3339(self.last["finishedAt"]))

    def test_storage_drops_by_the_unique_bytes_of_deleted_images(self):
        expected = sum(self.freed.values())
        self.assertGreater(expected, 256 << 10)
        self.assertEqual(self.before - self.after, expected)
        # du counts directories too: the blobs' own directories go as well.
        self.assertGreaterEqual(self.du_before - self.du_after, expected)

    def test_agent_reports_the_same_bytes_and_blobs(self):
        self.assertEqual(self.last["bytesBefore"], self.before)
        self.assertEqual(self.last["bytesAfter"], self.after)
        self.assertEqual(self.last["blobsDeleted"], len(self.freed))
        self.assertEqual(self.last["manifestsDeleted"], 0)  # never --delete-untagged
        self.assertEqual(self.last["blobsMarked"], len(self.kept))
        self.assertIn("%d blobs and 0 manifests" % len(self.freed), self.last["message"])

    def kept_manifests(self):
        """(repo, digest, layout) of every manifest that must survive: the
        kept images, the kept index's children, and the children of the
        index deleted alone."""
        out = []
        for name in ("kept-shared", "kept-index"):
            i = self.img[name]
            out += [(i["repo"], d, i["lo"]) for d in [i["digest"]] + i["children"]]
        half = self.img["half-index"]
        out += [(half["repo"], d, half["lo"]) for d in half["children"]]
        return out

    def test_kept_images_byte_for_byte(self):
        n_blobs = 0
        for repo, digest, lo in self.kept_manifests():
            raw = subprocess.run(
                ["skopeo", "inspect", "--raw", "--tls-verify=false",
                 "docker://%s/%s@%s" % (self.host, repo, digest)],
                capture_output=True, check=True).stdout
            with open(lo.blob_path(digest), "rb") as f:
                self.assertEqual(raw, f.read(), (repo, digest))
            m = json.loads(raw)
            for d in ([m["config"]["digest"]] if "config" in m else []) + \
                    [l["digest"] for l in m.get("layers", [])]:
                st, body, _ = http("GET", "%s/v2/%s/blobs/%s" % (self.reg.url, repo, d))
                self.assertEqual(st, 200, (repo, d))
                self.assertEqual("sha256:" + hashlib.sha256(body).hexdigest(), d)
                n_blobs += 1
        self.assertGreaterEqual(n_blobs, 10)

    def test_children_of_a_kept_index_survive(self):
        kept = self.img["kept-index"]
        self.assertEqual(len(kept["children"]), 2)
        for d in kept["children"]:  # untagged: what --delete-untagged would take
            st, _, _ = http("HEAD", "%s/v2/%s/manifests/%s" % (self.reg.url, kept["repo"], d))
            self.assertEqual(st, 200, d)

    def test_deleted_are_gone(self):
        for repo, d in self.deleted_manifests:
            st, _, _ = http("GET", "%s/v2/%s/manifests/%s" % (self.reg.url, repo, d))
            self.assertEqual(st, 404, (repo, d))
        for name in ("gone-shared", "gone-index", "gone-big"):
            repo = self.img[name]["repo"]
            for d in self.img[name]["graph"]:
                if d in self.freed:
                    st, _, _ = http("HEAD", "%s/v2/%s/blobs/%s" % (self.reg.url, repo, d))
                    self.assertEqual(st, 404, (repo, d))

    def test_second_run_frees_nothing(self):
        before = storage_bytes(self.storage)
        last = self.agent.run()
        self.assertEqual(last["result"], "success")
        self.assertEqual(last["blobsDeleted"], 0)
        self.assertEqual(last["bytesBefore"], last["bytesAfter"])
        self.assertEqual(storage_bytes(self.storage), before)
        m = self.agent.metrics()
        self.assertEqual(metric(m, "thaw_registry_gc_runs_total", {"result": "success"}),
                         last["id"])
        self.assertEqual(metric(m, "thaw_registry_gc_runs_total", {"result": "failure"}), 0)
        self.assertEqual(metric(m, "thaw_registry_gc_blobs_deleted_total"), len(self.freed))
        self.assertEqual(metric(m, "thaw_registry_gc_reclaimed_bytes_total"),
                         self.before - self.after)
        self.assertEqual(metric(m, "thaw_registry_gc_running"), 0)


# --- the agent's behaviour ----------------------------------------------

class AgentCase(unittest.TestCase):
    """Each test its own servers; every agent must stop cleanly."""

    def setUp(self):
        self.c = stack.Closers()
        self.agents = []
        self.tmp = tempfile.mkdtemp(prefix="thaw-gc-test.")
        self.c.closers.append(lambda: shutil.rmtree(self.tmp, ignore_errors=True))

    def tearDown(self):
        try:
            for a in self.agents:
                a.finish()
        finally:
            self.c.close()

    def agent(self, reg, **kw):
        a = self.c.own(Agent(reg, **kw))
        self.agents.append(a)
        return a


class AgentRuns(AgentCase):
    def setUp(self):
        super().setUp()
        self.reg = self.c.own(registry.Registry())

    def push_one(self):
        imgs = images.Images(os.path.join(self.tmp, "layouts"))
        host = self.reg.url.split("//", 1)[1]
        info = imgs.push(imgs.single(), host + "/t/single:v1")
        st, _, _ = http("DELETE", "%s/v2/t/single/manifests/%s" % (self.reg.url, info["digest"]))
        self.assertEqual(st, 202)

    def test_one_run_at_a_time(self):
        self.push_one()
        agent = self.agent(self.reg, collector=slow_collector(self.tmp, 2))
        st, first = agent.post()
        self.assertEqual(st, 202)
        self.assertEqual(first["id"], 1)
        st, busy = agent.post()
        self.assertEqual(st, 409)
        self.assertEqual(busy["id"], 1)
        s = agent.status()
        self.assertIs(s["running"], True)
        self.assertEqual(s["current"]["id"], 1)
        self.assertEqual(s["runs"], 1)
        last = agent.wait_idle()["last"]
        self.assertEqual((last["id"], last["result"]), (1, "success"))
        self.assertEqual(last["blobsDeleted"], 3)  # manifest, config, layer
        self.assertGreaterEqual(rfc3339(last["finishedAt"]) - rfc3339(last["startedAt"]), 2)
        self.assertEqual(agent.run()["id"], 2)  # free again
        self.assertEqual(metric(agent.metrics(), "thaw_registry_gc_runs_total",
                                {"result": "success"}), 2)

    def test_empty_registry_is_a_success(self):
        agent = self.agent(self.reg)
        last = agent.run()
        self.assertEqual(last["result"], "success", last)
        self.assertIn("nothing stored yet", last["message"])
        self.assertEqual((last["blobsDeleted"], last["bytesBefore"], last["bytesAfter"]),
                         (0, 0, 0))

    def test_missing_collector_is_a_failure(self):
        agent = self.agent(self.reg, collector="thaw-no-such-collector")
        last = agent.run()
        self.assertEqual(last["result"], "failure")
        self.assertIn("cannot run thaw-no-such-collector", last["message"])
        m = agent.metrics()
        self.assertEqual(metric(m, "thaw_registry_gc_runs_total", {"result": "failure"}), 1)
        self.assertEqual(metric(m, "thaw_registry_gc_runs_total", {"result": "success"}), 0)

    def test_refused_configuration_is_a_failure(self):
        bad = os.path.join(self.tmp, "bad.yml")
        with open(bad, "w") as f:
            f.write("version: 0.1\nstorage:\n  nosuchdriver: {}\n")
        agent = self.agent(self.reg, storage=False, config=bad)
        last = agent.run()
        self.assertEqual(last["result"], "failure")
        self.assertTrue(last["message"].startswith("exit status 1: "), last["message"])
        self.assertIsNone(last["bytesBefore"])  # no --storage-dir: not measured
        self.assertIsNone(last["blobsDeleted"])

    def test_a_run_nobody_polls_is_stopped(self):
        agent = self.agent(self.reg, collector=slow_collector(self.tmp, 60),
                                 extra=["--orphan-timeout", "1s"])
        st, doc = agent.post()
        self.assertEqual(st, 202)
        # Not a GET /gc meanwhile (that is the sign of life): the log says
        # when the run has ended.
        deadline = time.time() + 30
        while '"garbage collection ended"' not in agent.log():
            self.assertLess(time.time(), deadline, agent.log())
            time.sleep(0.1)
        s = agent.status()
        self.assertIs(s["running"], False, s)
        self.assertEqual(s["last"]["result"], "failure")
        self.assertIn("nobody asked about this run", s["last"]["message"])
        self.assertLess(rfc3339(s["last"]["finishedAt"]) - rfc3339(s["last"]["startedAt"]), 10)

    def test_polled_runs_are_not_stopped(self):
        self.push_one()
        agent = self.agent(self.reg, collector=slow_collector(self.tmp, 3),
                                 extra=["--orphan-timeout", "1s"])
        last = agent.run()  # polls every 0.1 s
        self.assertEqual(last["result"], "success", last)

    def test_sigterm_mid_run_stops_the_collector(self):
        agent = self.agent(self.reg, collector=slow_collector(self.tmp, 60))
        self.assertEqual(agent.post()[0], 202)
        pid, deadline = None, time.time() + 10
        while pid is None and time.time() < deadline:
            for line in agent.log().splitlines():
                if '"collector started"' in line:
                    pid = int(json.loads(line)["pid"])
            time.sleep(0.05)
        self.assertIsNotNone(pid, agent.log())
        rc, secs = agent.stop()
        agent.assert_clean(rc)
        self.assertLess(secs, 10)
        self.assertFalse(os.path.exists("/proc/%d" % pid), "the collector is left")
        self.assertIn("stopped: the agent is shutting down", agent.log())

    def test_methods(self):
        agent = self.agent(self.reg)
        st, _, hdrs = http("POST", agent.url + "/healthz", body=b"")
        self.assertEqual((st, hdrs.get("Allow")), (405, "GET, HEAD"))
        st, _, hdrs = http("DELETE", agent.url + "/gc")
        self.assertEqual((st, hdrs.get("Allow")), (405, "GET, HEAD, POST"))
        st, _, _ = http("POST", agent.url + "/gc", body=b"{}")
        self.assertEqual(st, 413)  # no body is read; nothing started
        self.assertEqual(agent.status()["runs"], 0)
        self.assertEqual(http("GET", agent.url + "/nope")[0], 404)
        # the scrape port cannot start a run, and the API port does not serve
        # metrics: a NetworkPolicy can admit Prometheus to one only
        self.assertEqual(http("GET", agent.url + "/metrics")[0], 404)
        st, _, hdrs = http("POST", agent.metrics_url + "/gc", body=b"")
        self.assertEqual((st, hdrs.get("Allow")), (405, "GET, HEAD"))
        self.assertEqual(http("GET", agent.metrics_url + "/gc")[0], 404)
        self.assertEqual(agent.status()["runs"], 0)
        st, body, _ = http("GET", agent.metrics_url + "/metrics")
        self.assertEqual(st, 200)
        self.assertIn(b"thaw_registry_gc_runs_total", body)
        st, body, hdrs = http("GET", agent.url + "/gc")
        self.assertEqual((st, hdrs.get("Content-Type")), (200, "application/json"))
        self.assertEqual(json.loads(body), {"running": False, "runs": 0, "current": None,
                                            "last": None})

    def test_flags(self):
        def run(*args):
            return subprocess.run([AGENT] + list(args), capture_output=True, text=True,
                                  timeout=10)
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: thaw-registry-gc --config PATH", r.stdout)
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^thaw-registry-gc [0-9]+\.[0-9]+\.[0-9]+\n$")
        for args in ([], ["--config", "/nonexistent.yml"],
                     ["--config", self.reg.config, "--orphan-timeout", "soon"],
                     ["--config", self.reg.config, "--storage-dir", "/nonexistent"],
                     ["--config", self.reg.config, "--registry-binary", "/nonexistent/registry"],
                     ["--config", self.reg.config, "--bind-address", "nowhere"],
                     ["--config", self.reg.config, "--metrics-bind-address", "nowhere"],
                     ["--config", self.reg.config, "--log-level", "loud"],
                     ["--config", self.reg.config, "--frobnicate"],
                     ["--config", self.reg.config, "extra"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(r.stderr.splitlines()), 1, (args, r.stderr))
            self.assertTrue(r.stderr.startswith("thaw-registry-gc: "), r.stderr)


class DescriptorCache(AgentCase):
    """Why the manifests' registry config has no `cache: blobdescriptor`:
    with it, the serving registry still answers HEAD 200 for blobs the
    collector deleted, so a later push of the same image skips them and
    commits a manifest whose layers cannot be read. Without it, that push
    uploads them again."""

    def repush_after_collection(self, cache):
        reg = self.c.own(registry.Registry())
        if cache:
            with open(reg.config) as f:
                cfg = f.read()
            with open(reg.config, "w") as f:
                f.write(cfg.replace("storage:\n", "storage:\n  cache:\n"
                                    "    blobdescriptor: inmemory\n", 1))
            reg.stop()
            reg.start()
        imgs = images.Images(os.path.join(self.tmp, "layouts-%s" % cache))
        host = reg.url.split("//", 1)[1]
        a, b = imgs.shared()
        info = imgs.push(a, host + "/t/a:v1")
        imgs.push(b, host + "/t/b:v1")
        self.assertEqual(http("DELETE", "%s/v2/t/a/manifests/%s" % (
            reg.url, info["digest"]))[0], 202)
        last = self.agent(reg).run()
        self.assertEqual((last["result"], last["blobsDeleted"]), ("success", 3))
        imgs.push(a, host + "/t/a:v1")  # as a warm of the same image would
        whole = {}
        for d in info["blobs"]:
            try:
                st, body, _ = http("GET", "%s/v2/t/a/blobs/%s" % (reg.url, d))
                whole[d] = st == 200 and "sha256:" + hashlib.sha256(body).hexdigest() == d
            except Exception:  # the length promised, the bytes not there
                whole[d] = False
        return whole

    def test_with_the_cache_a_push_after_collection_loses_blobs(self):
        whole = self.repush_after_collection(True)
        self.assertFalse(all(whole.values()), whole)

    def test_without_it_the_push_is_whole(self):
        whole = self.repush_after_collection(False)
        self.assertTrue(all(whole.values()), whole)


# --- the controller's protocol ------------------------------------------



def log_time(log, msg):
    """ts of the first log line with this msg, in seconds, or None."""
    for line in log.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("msg") == msg:
            return rfc3339(doc["ts"])
    return None


def cache_repo(ref):
    host, path = ref.split("/", 1)
    return host.replace(":", "__") + "/" + path.rsplit(":", 1)[0]


class ControllerProtocol(AgentCase):
    """thaw-controller with --gc-url against the emulator; the cache
    registry behind a RecordingProxy."""

    def setUp(self):
        super().setUp()
        self.api = Api()
        self.api.ok("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SYSTEM_NS}},
            want=(201, 409))
        self.up = self.c.own(registry.Registry())
        self.upproxy = self.c.own(FaultProxy(self.up.url))
        self.cache = self.c.own(registry.Registry())
        self.rec = self.c.own(RecordingProxy(self.cache.url))
        self.imgs = images.Images(os.path.join(self.tmp, "layouts"))
        self.names = []
        self.c.closers.append(self.delete_cis)

    def delete_cis(self):
        for n in self.names:
            self.api.request("DELETE", CI_PATH + "/" + n)

    def controller(self, name, extra):
        ctl = Controller(CONTROLLER, self.rec.url, self.tmp, name=name, extra=[
            "--leader-elect=false",
            "--insecure-registries", ",".join([self.up.url.split("//")[1], self.upproxy.host])]
            + list(extra))
        self.c.closers.append(lambda: ctl.proc and ctl.stop())
        return ctl.start()

    def upstream(self, lo, path):
        """Pushed upstream; the reference the controller reads, through the
        fault proxy."""
        info = self.imgs.push(lo, "%s/%s" % (self.up.url.split("//")[1], path))
        return "%s/%s" % (self.upproxy.host, path), info

    def create_ci(self, image):
        name = ci_name(image)
        self.api.ok("POST", CI_PATH, {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                                      "metadata": {"name": name}, "spec": {"image": image}},
                    want=(201,))
        self.names.append(name)
        return name

    def wait_ready(self, name, timeout=READY_S):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, doc, _ = self.api.request("GET", CI_PATH + "/" + name)
            if st == 200 and doc.get("status", {}).get("phase") == "Ready":
                return doc, time.time()
            time.sleep(0.1)
        raise AssertionError("%s not Ready after %d s: %s" % (name, timeout, doc.get("status")))

    def assert_no_write_during(self, last):
        t0, t1 = rfc3339(last["startedAt"]), rfc3339(last["finishedAt"])
        during = [w for w in self.rec.writes() if not (w[1] < t0 or w[0] > t1)]
        self.assertEqual(during, [], "writes between %s and %s" % (last["startedAt"],
                                                                   last["finishedAt"]))

    def test_a_new_leader_waits_for_a_run_in_flight(self):
        ref, info = self.upstream(self.imgs.single(), "gc/wait:v1")
        agent = self.agent(self.cache, collector=slow_collector(self.tmp, 4))
        st, doc = agent.post()  # as a former leader would have
        self.assertEqual(st, 202)
        name = self.create_ci(ref)
        ctl = self.controller("ctl-wait", ["--gc-url", agent.url, "--gc-interval", "1h"])
        ci, _ = self.wait_ready(name)
        self.assertEqual(ci["status"]["digest"], info["digest"])
        last = agent.wait_idle()["last"]
        self.assertEqual((last["id"], last["result"]), (doc["id"], "success"))
        writes = self.rec.writes(cache_repo(ref))
        self.assertTrue(writes)
        self.assertEqual([w for w in writes if w[0] <= rfc3339(last["finishedAt"])], [])
        self.assert_no_write_during(last)
        m = ctl.metrics()
        self.assertEqual(metric(m, "thaw_gc_runs_total", {"result": "success"}), 0)
        self.assertEqual(metric(m, "thaw_gc_runs_total", {"result": "failure"}), 0)
        stop_clean(ctl)

    def test_b_pause_drain_run_resume(self):
        # Garbage already in the cache: an image pushed and deleted.
        host = self.cache.url.split("//")[1]
        glo = random_layout(self.imgs, "garbage", 64 << 10, 11)
        g = self.imgs.push(glo, host + "/old/garbage:v1")
        self.assertEqual(http("DELETE", "%s/v2/old/garbage/manifests/%s" % (
            self.cache.url, g["digest"]))[0], 202)
        garbage = sum(graph(glo, g["digest"]).values())
        # A: warming when the run falls due, 3 s after leadership (its layer
        # trickles in over ~6 s).
        alo = random_layout(self.imgs, "slow", 6 * 250000, 12)
        a_ref, a = self.upstream(alo, "gc/slow:v1")
        with open(alo.blob_path(a["digest"]), "rb") as f:
            layer = json.load(f)["layers"][0]["digest"]
        self.upproxy.add(match="/blobs/" + layer, method="GET", rate=250000, times=0)
        b_ref, b = self.upstream(self.imgs.single(), "gc/during:v1")
        agent = self.agent(self.cache, collector=slow_collector(self.tmp, 2))
        a_name = self.create_ci(a_ref)
        ctl = self.controller("ctl-run", ["--gc-url", agent.url, "--gc-interval", "3s"])
        # The run is due 3 s after leadership: pushes pause, A drains.
        deadline = time.time() + 30
        while log_time(ctl.log_tail(10000), "garbage collection due: pausing "
                       "pushes until none is in flight") is None:
            self.assertLess(time.time(), deadline, ctl.log_tail())
            time.sleep(0.05)
        b_name = self.create_ci(b_ref)  # requested while paused
        self.wait_ready(a_name)
        self.wait_ready(b_name)
        s = agent.wait_idle()
        last = s["last"]
        self.assertEqual((s["runs"], last["id"], last["result"]), (1, 1, "success"), s)
        m = ctl.metrics()
        log = stop_clean(ctl)
        paused = log_time(log, "garbage collection due: pausing pushes until none is in flight")
        resumed = log_time(log, "garbage collection done: pushes resumed")
        started, finished = rfc3339(last["startedAt"]), rfc3339(last["finishedAt"])
        self.assertTrue(paused <= started <= finished < resumed + 0.001,
                        (paused, started, finished, resumed))
        self.assert_no_write_during(last)
        # A was in flight at the pause and finished before the run began.
        a_writes = self.rec.writes(cache_repo(a_ref))
        a_manifest = [w for w in a_writes if w[2] == "PUT" and "/manifests/" in w[3]]
        self.assertEqual(len(a_manifest), 1, a_writes)
        self.assertGreater(a_manifest[0][1], paused)
        self.assertLess(max(w[1] for w in a_writes), started)
        # B, requested during the pause, pushed only after the run.
        b_writes = self.rec.writes(cache_repo(b_ref))
        self.assertTrue(b_writes)
        self.assertGreater(min(w[0] for w in b_writes), finished)
        # What the run freed: the garbage, measured by the agent.
        self.assertEqual(last["bytesBefore"] - last["bytesAfter"], garbage)
        self.assertEqual(metric(m, "thaw_gc_runs_total", {"result": "success"}), 1)
        self.assertEqual(metric(m, "thaw_gc_runs_total", {"result": "failure"}), 0)
        self.assertEqual(metric(m, "thaw_gc_reclaimed_bytes_total"), garbage)

    def test_d_one_run_per_leadership_without_deletes(self):
        agent = self.agent(self.cache)
        host = self.cache.url.split("//")[1]
        glo = random_layout(self.imgs, "garbage2", 32 << 10, 13)
        g = self.imgs.push(glo, host + "/old/garbage2:v1")
        self.assertEqual(http("DELETE", "%s/v2/old/garbage2/manifests/%s" % (
            self.cache.url, g["digest"]))[0], 202)
        ctl = self.controller("ctl-metrics", ["--gc-url", agent.url, "--gc-interval", "1s"])
        deadline = time.time() + 30
        m = ctl.metrics()
        while metric(m, "thaw_gc_runs_total", {"result": "success"}) != 1:
            self.assertLess(time.time(), deadline, ctl.log_tail())
            time.sleep(0.1)
            m = ctl.metrics()
        self.assertEqual(metric(m, "thaw_gc_runs_total", {"result": "failure"}), 0)
        self.assertEqual(metric(m, "thaw_gc_reclaimed_bytes_total"),
                         sum(graph(glo, g["digest"]).values()))
        self.assertGreater(metric(m, "thaw_gc_last_success_timestamp_seconds"),
                           time.time() - 60)
        time.sleep(2.5)  # no deletes: no further run
        self.assertEqual(agent.status()["runs"], 1)
        stop_clean(ctl)

    def test_c_unreachable_agent(self):
        ref, _ = self.upstream(self.imgs.single(), "gc/unreachable:v1")
        name = self.create_ci(ref)
        t0 = time.time()
        ctl = self.controller("ctl-unreachable", [
            "--gc-url", "http://127.0.0.1:%d" % registry.free_port(), "--gc-interval", "1s"])
        _, ready_at = self.wait_ready(name)
        # A new leader waits for the agent 30 s at most, then pushes.
        self.assertGreater(ready_at - t0, 29)
        deadline = time.time() + 30
        m = ctl.metrics()
        while (metric(m, "thaw_gc_runs_total", {"result": "failure"}) or 0) < 2:
            self.assertLess(time.time(), deadline, ctl.log_tail())
            time.sleep(0.2)
            m = ctl.metrics()
        self.assertEqual(metric(m, "thaw_gc_runs_total", {"result": "success"}), 0)
        log = stop_clean(ctl)
        self.assertIn("garbage collection agent unreachable", log)
        # Later runs fail on the check before the pause: nothing waits.
        self.assertIn("garbage collection failed: nothing was paused", log)


def main():
    global AGENT, CONTROLLER
    if len(sys.argv) < 3:
        sys.exit("usage: test_gc.py PATH/thaw-registry-gc PATH/thaw-controller [unittest args]")
    AGENT = os.path.abspath(sys.argv.pop(1))
    CONTROLLER = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
