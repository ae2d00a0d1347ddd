"""Body of bench/lifecycle-bench.sh (run it through that script): what use
tracking costs thaw-controller at scale, and how many API writes it makes.

Workload (the emulator of test/with-emulator.sh, bulk-loaded through
/_emulator/seed-many): IMAGES CachedImages (default 10,000), Ready, each a
digest reference docker.io/bench/svc-NNNNN@sha256:..., so the controller has
nothing to warm or refresh and needs no registry (--registry-url points at a
closed port); PODS OSCAR job pods (default 100,000; the object of
test/data/oscar-job-pod.json) over NAMESPACES namespaces, image i in
namespace i mod NAMESPACES, Zipf-distributed: image i has pods in proportion
to 1/(i+1)^ZIPF (at least one each), so one image has ~10% of the pods and
most have one or a few. The CachedImages start without usedBy (as on the
first start of a controller that tracks use).

Churn (REST requests like a cluster's, from WORKERS keep-alive HTTP/1.1
connections of the bench's own user): RATE pod creations per second (images
drawn by the same Zipf weights), RATE finishes per second (a status patch to
phase Succeeded, as a job ends; oldest pod first, the preloaded ones in a
shuffled order) and, TTL seconds behind, RATE deletions of finished pods per
second. The achieved rates are measured and printed, flagged when short:
when more than RATE requests wait for the emulator (Python, one core's worth
under its GIL), what falls due is dropped, not queued, so the window ends on
time.

Phases, each with a fresh thaw-controller (--leader-elect=false) running as
its ServiceAccount under the RBAC of manifests/ (test/rbac_stack.py), all in
one run against one emulator:
  cold   first start: from /readyz (informers synced) until every
         CachedImage's status.usedBy equals the truth (count and the first
         10 namespace/name in sort order of its unfinished pods);
  idle   DURATION seconds from /readyz with no churn (the baseline), then
         IDLE_TAIL seconds more (default 120) whose last 60 s give the CPU
         once the start-up pass is over (after a start the controller
         confirms every object's use: 64 objects a second at 8df6a89, all in
         one tick since 6b7ca21);
  churn  DURATION seconds from /readyz with churn, then a drain until the
         statuses converge again.
Measured per phase: the controller's VmRSS (sampled each second) and VmHWM
from /proc/PID/status, its CPU seconds (utime+stime of /proc/PID/stat) per
second, the emulator's CPU, and the controller's API writes from the
emulator's write log (/_emulator/writes, server times, by verb and
resource), cross-checked with the controller's own
thaw_kube_requests_total{verb="patch"}. Written values come from a watch on
CachedImages that the bench holds open throughout.

Checked (the run exits 1 when one fails; timings and memory are reported
against their goals, never asserted):
  - every CachedImage converges to the truth after cold start and after the
    churn (within --converge-max);
  - no object gets two use writes (merge patches of cachedimages/status)
    sent less than 10 s apart (by the lastUsedAt each carries) unless the
    later one changes unused <-> used; each write is one MODIFIED event;
  - idle: no use write at all;
  - churn: use writes <= the bound, the sum over objects of min(pod changes
    of its image, floor(T/10) + 1 + its unused<->used transitions), T the
    churn plus the drain;
  - every churn request succeeded.
--quick: 150 images, 1,500 pods, 5 namespaces, 50/s for 12 s (the meson
'bench' smoke, under 60 s)."""

import argparse
import bisect
import calendar
import collections
import hashlib
import heapq
import http.client
import itertools
import json
import os
import queue
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, "test"), os.path.join(REPO, "test", "kubeemu")]

import rbac_stack  # noqa: E402
import stack  # noqa: E402
from stack import CI_PATH, SYSTEM_NS, ci_name  # noqa: E402

SA = "thaw-controller"
SA_USER = rbac_stack.sa_user(SA)
COALESCE_S = 10.0   # use.h: at most one use write per object per 10 s
SAMPLE = 10         # usedBy.pods
MIB = 1 << 20
RSS_GOAL_MIB = 64
CLK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, flush=True)


def wall():
    return time.time()


# ---- /proc

def proc_status(pid):
    """(VmRSS, VmHWM) in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def proc_cpu(pid):
    """utime + stime in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def emulator_pid():
    """The kubeemu process of test/with-emulator.sh (its --ready-file is in
    THAW_EMU_DIR), for its CPU; None when not found."""
    want = os.path.join(os.environ["THAW_EMU_DIR"], "ready").encode()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if want in argv and any(a.endswith(b"server.py") for a in argv):
            return int(d)
    return None


# ---- the workload

class Workload:
    """Images, their Zipf weights, and the truth: which unfinished pods use
    each image, updated as the churn's requests are answered."""

    def __init__(self, images, pods, namespaces, zipf, seed):
        if pods < images:
            raise SystemExit("lifecycle-bench: --pods must be at least --images")
        self.rng = random.Random(seed)
        self.images = ["docker.io/bench/svc-%05d@sha256:%s"
                       % (i, hashlib.sha256(b"svc-%d" % i).hexdigest()) for i in range(images)]
        self.names = [ci_name(img) for img in self.images]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.ns = ["oscar-svc-u%03d" % (i % namespaces) for i in range(images)]
        w = [1.0 / (i + 1) ** zipf for i in range(images)]
        total = sum(w)
        self.cum = list(itertools.accumulate(w))
        counts = [max(1, round(pods * x / total)) for x in w]
        counts[0] += pods - sum(counts)
        if counts[0] < 1:
            raise SystemExit("lifecycle-bench: too few pods for the Zipf counts")
        self.preload = counts
        self.lock = threading.Lock()
        self.live = [set() for _ in range(images)]   # "ns/name" of unfinished pods
        order = []
        for i, c in enumerate(counts):
            for k in range(c):
                name = "job-%05d-%06d" % (i, k)
                self.live[i].add("%s/%s" % (self.ns[i], name))
                order.append((i, name))
        self.rng.shuffle(order)
        self.active = collections.deque(order)  # unfinished, oldest first: finish order
        self.done = collections.deque()         # (wall time finished, image, name)
        self.seq = 0
        self.changes = collections.Counter()    # image -> changes of its pod set
        self.flips = collections.Counter()      # image -> unused <-> used transitions

    def pick(self):
        return bisect.bisect_right(self.cum, self.rng.random() * self.cum[-1])

    def truth(self, i):
        """(count, first SAMPLE keys in sort order) of image i."""
        s = self.live[i]
        return len(s), tuple(heapq.nsmallest(SAMPLE, s))

    def changed(self, i, key, add):
        """The pod `key` of image i started (add) or finished."""
        with self.lock:
            s = self.live[i]
            before = len(s)
            (s.add if add else s.discard)(key)
            if len(s) != before:
                self.changes[i] += 1
                if (before == 0) != (len(s) == 0):
                    self.flips[i] += 1

    def reset_counts(self):
        with self.lock:
            self.changes.clear()
            self.flips.clear()


def pod_template():
    """The OSCAR job pod as a client sends it (no managedFields, status or
    server fields)."""
    with open(os.path.join(REPO, "test", "data", "oscar-job-pod.json")) as f:
        pod = json.load(f)
    md = pod["metadata"]
    for k in ("managedFields", "creationTimestamp", "name", "namespace"):
        md.pop(k, None)
    pod.pop("status", None)
    return pod


def pod_for(tpl, wl, i):
    pod = json.loads(json.dumps(tpl))
    svc = "svc-%05d" % i
    pod["metadata"]["labels"].update({"job-name": svc + "-job", "oscar_service": svc})
    pod["spec"]["containers"][0]["image"] = wl.images[i]
    pod["spec"]["volumes"][1]["configMap"]["name"] = svc
    return pod


def ci_template(img, size):
    t = "2026-12-01T00:00:00Z"
    digest = img.split("@", 1)[1]
    return {"metadata": {"labels": {"app.kubernetes.io/managed-by": "thaw"}},
            "spec": {"image": img},
            "status": {"phase": "Ready", "digest": digest, "upstreamDigest": digest,
                       "sizeBytes": size, "cachedAt": t, "lastCheckedAt": t, "attempts": 0,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Cached",
                                       "message": "", "lastTransitionTime": t}]}}


def preload(api, wl, tpl, batch=1000):
    """CachedImages, then pods, through /_emulator/seed-many."""
    t0 = time.monotonic()
    n = len(wl.images)
    for lo in range(0, n, batch):
        seeds = [{"resource": "cachedimages", "group": "thaw.dev", "names": [wl.names[i]],
                  "fieldManager": "thaw-controller",
                  "template": ci_template(wl.images[i], 10_000_000 + i)}
                 for i in range(lo, min(n, lo + batch))]
        api.control("seed-many", {"seeds": seeds})
    t1 = time.monotonic()
    for lo in range(0, n, batch):
        seeds = [{"resource": "pods", "namespace": wl.ns[i], "namePrefix": "job-%05d-" % i,
                  "count": wl.preload[i], "fieldManager": "kubectl-create",
                  "template": pod_for(tpl, wl, i)}
                 for i in range(lo, min(n, lo + batch))]
        api.control("seed-many", {"seeds": seeds})
    t2 = time.monotonic()
    return t1 - t0, t2 - t1


# ---- the bench's view of CachedImage status: a watch held open

class CIWatch(threading.Thread):
    """Lists CachedImages, then watches them: state[name] = (count or None,
    pods tuple or None); events[name] = [(wall time seen, count, lastUsedAt
    in seconds)] of every MODIFIED, in resourceVersion order."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.api = api
        self.lock = threading.Lock()
        self.state = {}
        self.events = collections.defaultdict(list)
        self.error = None
        doc = api.ok("GET", CI_PATH)
        for o in doc["items"]:
            self.state[o["metadata"]["name"]] = self.use_of(o)
        self.rv = doc["metadata"]["resourceVersion"]

    @staticmethod
    def use_of(o):
        by = (o.get("status") or {}).get("usedBy")
        if not isinstance(by, dict) or "count" not in by:
            return None, None
        return by["count"], tuple(by.get("pods") or ())

    @staticmethod
    def last_used(o):
        t = (o.get("status") or {}).get("lastUsedAt")
        return calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) if t else None

    def run(self):
        while True:
            try:
                self.watch()
            except Exception as e:   # reported by the checks that read state
                self.error = repr(e)
                time.sleep(0.5)

    def watch(self):
        resp, conn = self.api.watch(
            CI_PATH + "?watch=1&allowWatchBookmarks=true&timeoutSeconds=7200"
            "&resourceVersion=" + self.rv, timeout=None)
        try:
            if resp.status != 200:
                raise RuntimeError("watch: %s" % resp.status)
            while True:
                line = resp.readline()
                if not line:
                    return
                ev = json.loads(line)
                o = ev["object"]
                if ev["type"] == "ERROR":
                    raise RuntimeError("watch: %s" % o.get("message"))
                self.rv = o["metadata"]["resourceVersion"]
                if ev["type"] not in ("ADDED", "MODIFIED"):
                    continue
                name = o["metadata"]["name"]
                use = self.use_of(o)
                with self.lock:
                    self.state[name] = use
                    if ev["type"] == "MODIFIED":
                        self.events[name].append((wall(), use[0], self.last_used(o)))
        finally:
            conn.close()

    def mismatches(self, wl):
        """Names whose status differs from the truth."""
        with self.lock, wl.lock:
            return [n for i, n in enumerate(wl.names) if self.state.get(n) != wl.truth(i)]

    def events_between(self, t0, t1):
        with self.lock:
            return {n: [e for e in evs if t0 <= e[0] < t1] for n, evs in self.events.items()}


def converge(watch, wl, limit):
    """Seconds until every status equals the truth, or None after `limit`."""
    t0 = time.monotonic()
    while True:
        bad = watch.mismatches(wl)
        if not bad:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            log("  not converged after %d s: %d objects differ, e.g. %s" % (
                limit, len(bad), "; ".join("%s status %s truth %s" % (
                    n, watch.state.get(n), wl.truth(wl.index[n])) for n in bad[:3])))
            return None
        time.sleep(0.5)


# ---- the churn

class Churn:
    """RATE creations, finishes and (TTL behind) deletions per second from
    WORKERS threads with keep-alive connections; per-op counts and errors."""

    def __init__(self, api, wl, tpl, rate, ttl, workers):
        self.api, self.wl, self.rate, self.ttl, self.workers = api, wl, rate, ttl, workers
        body = json.dumps(dict(tpl, metadata=dict(tpl["metadata"], name="@NAME@")))
        self.body = body.replace('"grycap/imagemagick"', '"@IMAGE@"')
        assert "@IMAGE@" in self.body
        self.q = queue.Queue()
        self.done = collections.Counter()
        self.errors = collections.Counter()
        self.lock = threading.Lock()
        self.max_backlog = 0

    def conn(self):
        return http.client.HTTPSConnection("127.0.0.1", self.api.port, context=self.api.ctx,
                                           timeout=30)

    def request(self, c, method, path, body, ctype):
        h = {"Authorization": "Bearer " + self.api.token, "Accept": "application/json"}
        if body is not None:
            h["Content-Type"] = ctype
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, data

    def worker(self):
        c = self.conn()
        wl = self.wl
        while True:
            op = self.q.get()
            if op is None:
                break
            kind, i, name = op
            ns = wl.ns[i]
            base = "/api/v1/namespaces/%s/pods" % ns
            if kind == "create":
                args = ("POST", base, self.body.replace("@NAME@", name).replace(
                    "@IMAGE@", wl.images[i]), "application/json", 201)
            elif kind == "finish":
                args = ("PATCH", base + "/" + name + "/status",
                        '{"status":{"phase":"Succeeded"}}', "application/merge-patch+json", 200)
            else:
                args = ("DELETE", base + "/" + name, None, None, 200)
            for attempt in range(2):
                try:
                    st, data = self.request(c, *args[:4])
                    break
                except (OSError, http.client.HTTPException):
                    c.close()
                    c = self.conn()
                    st, data = None, b""
            if st != args[4]:
                with self.lock:
                    self.errors[kind] += 1
                    if self.errors[kind] <= 3:
                        log("  churn %s %s/%s: %s %s" % (kind, ns, name, st, data[:200]))
                continue
            key = "%s/%s" % (ns, name)
            if kind == "create":
                wl.changed(i, key, True)
                with wl.lock:
                    wl.active.append((i, name))
            elif kind == "finish":
                wl.changed(i, key, False)
                with wl.lock:
                    wl.done.append((wall(), i, name))
            with self.lock:
                self.done[kind] += 1

    def run(self, duration):
        """Issues the churn for `duration` seconds and waits for the last
        answers; returns the seconds until then. When the emulator falls
        behind (more than RATE requests queued), what falls due is dropped,
        not deferred: the achieved rate says so, and the window ends on time."""
        wl = self.wl
        threads = [threading.Thread(target=self.worker, daemon=True)
                   for _ in range(self.workers)]
        for t in threads:
            t.start()
        issued = collections.Counter()
        self.dropped = collections.Counter()
        cap = max(2 * self.workers, int(self.rate))
        t0 = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= t0 + duration:
                break
            due = int(self.rate * (now - t0))
            due_del = int(self.rate * max(0.0, now - t0 - self.ttl))
            full = self.q.qsize() >= cap
            for kind, n in (("create", due), ("finish", due), ("delete", due_del)):
                while issued[kind] < n:
                    if full:
                        self.dropped[kind] += n - issued[kind]
                        issued[kind] = n
                        break
                    op = self.next_op(kind)
                    if op is None:
                        break
                    issued[kind] += 1
                    self.q.put(op)
            self.max_backlog = max(self.max_backlog, self.q.qsize())
            time.sleep(0.005)
        for _ in threads:
            self.q.put(None)
        for t in threads:
            t.join()
        return time.monotonic() - t0

    def next_op(self, kind):
        """(kind, image, pod name), or None when no pod is ready for it."""
        wl = self.wl
        with wl.lock:
            if kind == "create":
                wl.seq += 1
                i = wl.pick()
                return kind, i, "job-%05d-r%07d" % (i, wl.seq)
            if kind == "finish":
                if not wl.active:
                    return None
                return (kind,) + wl.active.popleft()
            if not wl.done or wl.done[0][0] > wall() - self.ttl:
                return None
            return (kind,) + wl.done.popleft()[1:]


# ---- one phase: a fresh controller, sampled

class Phase:
    def __init__(self, name, env):
        self.name, self.env = name, env
        self.samples = []     # (wall, rss, hwm, cpu, emu cpu, patches by metrics)
        self.stop_sampling = threading.Event()

    def patches(self):
        try:
            text = self.ctl.metrics()
        except OSError:
            return None
        n = 0.0
        for line in text.splitlines():
            if line.startswith("thaw_kube_requests_total{") and 'verb="patch"' in line:
                n += float(line.rsplit(None, 1)[1])
        return n

    def sample(self):
        rss, hwm = proc_status(self.ctl.proc.pid)
        emu = proc_cpu(self.env.emu_pid) if self.env.emu_pid else None
        self.samples.append((wall(), rss, hwm, proc_cpu(self.ctl.proc.pid), emu,
                             self.patches()))

    def sampler(self):
        while not self.stop_sampling.wait(1.0):
            try:
                self.sample()
            except OSError:
                return

    def start(self):
        env = self.env
        env.api.control("writes", method="DELETE")
        self.t_start = wall()
        self.ctl = rbac_stack.SAController(env.kubeconfig, env.binary, "http://127.0.0.1:1",
                                           env.tmp, extra=["--leader-elect=false"],
                                           name="thaw-controller-" + self.name)
        env.closers.closers.append(self.ctl.stop)
        t0 = time.monotonic()
        self.ctl.start(timeout=300)
        self.sync_s = time.monotonic() - t0
        self.t_ready = wall()
        self.sample()
        self.thread = threading.Thread(target=self.sampler, daemon=True)
        self.thread.start()

    def stop(self):
        self.stop_sampling.set()
        self.thread.join()
        self.sample()
        self.t_end = wall()
        a, b = self.samples[0][5], self.samples[-1][5]
        self.patch_delta = b - a if a is not None and b is not None else None
        rc = self.ctl.stop()
        if rc != 0:
            raise SystemExit("lifecycle-bench: %s exited %s; log:\n%s"
                             % (self.ctl.name, rc, self.ctl.log_tail(30)))
        time.sleep(1.0)   # the watch sees the last writes
        self.writes = self.env.api.control("writes?user=" + SA_USER, method="GET")
        if self.writes["dropped"]:
            raise SystemExit("lifecycle-bench: the write log dropped %d entries"
                             % self.writes["dropped"])

    def window(self, t0, t1):
        """Figures of the samples between wall times t0 and t1."""
        ss = [s for s in self.samples if t0 - 0.6 <= s[0] <= t1 + 0.6]
        a, b = ss[0], ss[-1]
        secs = b[0] - a[0]
        rss = [s[1] for s in ss]
        m = ss[len(ss) // 2]
        out = {"secs": secs, "rss_start": a[1], "rss_end": b[1], "rss_max": max(rss),
               "rss_steady": statistics.median(rss[len(rss) // 2:]), "hwm": b[2],
               "cpu_s": b[3] - a[3], "cpu_per_s": (b[3] - a[3]) / secs if secs else 0.0,
               # the second half alone, and CPU s/s by 10-s slices
               "cpu_late_per_s": (b[3] - m[3]) / (b[0] - m[0]) if b[0] > m[0] else 0.0,
               "cpu_slices": [(y[3] - x[3]) / (y[0] - x[0])
                              for x, y in zip(ss[::10], ss[10::10]) if y[0] > x[0]]}
        if a[4] is not None:
            out["emu_cpu_per_s"] = (b[4] - a[4]) / secs if secs else 0.0
        return out


def write_stats(rows, t0, t1):
    """Writes between t0 and t1: by (verb, resource[/sub]), use writes per
    object (sorted times), per-second counts of use writes."""
    by_kind = collections.Counter()
    per_obj = collections.defaultdict(list)
    per_sec = collections.Counter()
    for ts, verb, res, sub, ns, name, code in rows:
        if not t0 <= ts < t1:
            continue
        by_kind["%s %s%s" % (verb, res, "/" + sub if sub else "")] += 1
        if verb == "patch" and res == "cachedimages" and sub == "status":
            per_obj[name].append(ts)
            per_sec[int(ts - t0)] += 1
    for v in per_obj.values():
        v.sort()
    return by_kind, per_obj, per_sec


def gaps(per_obj, events, slack):
    """The 10-s rule on one phase's use writes. The controller stamps each
    use write's lastUsedAt with the second it sends it, and every use write
    changes the object (lastUsedAt at least), so an object's MODIFIED events
    are its use writes: two consecutive ones less than 10 s apart by their
    stamps must change unused <-> used (count 0 or not), or they break the
    rule. (Sent >= 10 s apart, whole seconds differ by >= 10.) Times of
    receipt (the write log) are reported too: a busy emulator queues
    requests before it reads them, so they may arrive closer. Returns
    {"bad": [(name, stamp, stamp)], "stamp_min", "recv_min", "recv_close"
    (pairs received less than 10 - slack s apart), "mismatch" (objects whose
    events and writes differ in number)}."""
    out = {"bad": [], "stamp_min": None, "recv_min": None, "recv_close": 0, "mismatch": 0}

    def low(k, v):
        out[k] = v if out[k] is None else min(out[k], v)
    for name, ts in per_obj.items():
        for a, b in zip(ts, ts[1:]):
            low("recv_min", b - a)
            out["recv_close"] += b - a < COALESCE_S - slack
    for name, evs in events.items():
        if len(evs) != len(per_obj.get(name, ())):
            out["mismatch"] += 1
        for (_, c0, s0), (_, c1, s1) in zip(evs, evs[1:]):
            if s0 is None or s1 is None:
                continue
            low("stamp_min", s1 - s0)
            if s1 - s0 < COALESCE_S and bool(c0) == bool(c1):
                out["bad"].append((name, s0, s1))
    return out


def mib(b):
    return b / MIB


def ratio(x, y):
    return x / y if y else float("inf")


class Env:
    """What every phase shares: the API client, the controller binary and
    its kubeconfig, the pod template, a temporary folder, what to close."""


def run_phase(env, watch, wl, name, a, failures):
    """One phase with a fresh controller (see the module's docstring);
    prints its figures, appends failed checks; returns its figures."""
    wl.reset_counts()
    ph = Phase(name, env)
    ph.start()
    log("%s: /readyz after %.2f s" % (name, ph.sync_s))
    t0 = wall()
    churn, conv = None, None
    if name == "churn":
        churn = Churn(env.api, wl, env.tpl, a.rate, a.ttl, a.workers)
        took = churn.run(a.duration)
    elif name == "idle":
        time.sleep(a.duration)
    t_win = wall()
    settled = None
    if name == "idle" and a.idle_tail > 0:
        time.sleep(a.idle_tail)
        settled = ph.window(wall() - 60, wall())
    if name != "idle":
        conv = converge(watch, wl, a.converge_max)
        if conv is None:
            failures.append("%s: statuses did not converge in %d s" % (name, a.converge_max))
        if name == "cold":
            t_win = wall()
    ph.stop()
    rows = ph.writes["items"]
    w = ph.window(t0, t_win)
    by_kind, _, per_sec = write_stats(rows, t0, t_win)
    _, per_obj, all_sec = write_stats(rows, ph.t_start, ph.t_end + 1)
    uses, win_uses = sum(all_sec.values()), sum(per_sec.values())
    rates = [per_sec.get(k, 0) for k in range(max(1, int(round(w["secs"]))))]
    log("  %s: %.1f s window; controller RSS %.1f -> %.1f MiB (max %.1f, steady %.1f), "
        "VmHWM %.1f MiB; CPU %.3f s/s (second half %.3f; by 10 s: %s)%s" % (
            name, w["secs"], mib(w["rss_start"]), mib(w["rss_end"]), mib(w["rss_max"]),
            mib(w["rss_steady"]), mib(w["hwm"]), w["cpu_per_s"], w["cpu_late_per_s"],
            " ".join("%.3f" % c for c in w["cpu_slices"]) or "-",
            "; emulator CPU %.2f s/s" % w["emu_cpu_per_s"] if "emu_cpu_per_s" in w else ""))
    log("  %s: writes in the window: %s; use writes %.2f/s mean, %d/s max" % (
        name, ", ".join("%s %d (%.2f/s)" % (k, v, ratio(v, w["secs"]))
                        for k, v in sorted(by_kind.items())) or "none",
        ratio(win_uses, w["secs"]), max(rates)))
    patches = sum(1 for r in rows if r[1] == "patch")
    log("  %s: whole phase: %d use writes to %d objects; patches: write log %d, the "
        "controller's thaw_kube_requests_total{verb=\"patch\"} +%s" % (
            name, uses, len(per_obj), patches,
            "%d" % ph.patch_delta if ph.patch_delta is not None else "?"))
    g = gaps(per_obj, watch.events_between(ph.t_start, ph.t_end + 1), a.slack)
    log("  %s: two use writes of one object: at least %s apart as sent (lastUsedAt), %d "
        "closer than 10 s without unused<->used; at least %s apart as received, %d pairs "
        "under %g s" % (
            name, "%d s" % g["stamp_min"] if g["stamp_min"] is not None else "-", len(g["bad"]),
            "%.2f s" % g["recv_min"] if g["recv_min"] is not None else "-", g["recv_close"],
            COALESCE_S - a.slack))
    if g["bad"]:
        failures.append("%s: %d use writes sent closer than 10 s without unused<->used, "
                        "e.g. %s" % (name, len(g["bad"]), g["bad"][:3]))
    if g["mismatch"]:
        failures.append("%s: %d objects whose MODIFIED events and use writes differ in number "
                        "(a write that changed nothing, or another writer)"
                        % (name, g["mismatch"]))
    out = {"w": w, "uses": uses, "win_uses": win_uses, "conv": conv, "settled": settled}
    if settled is not None:
        tail = ph.window(t_win, wall())
        log("  idle: %g s more (by 10 s: %s); CPU over the last 60 s, %.0f s after /readyz: "
            "%.4f s/s" % (a.idle_tail, " ".join("%.3f" % c for c in tail["cpu_slices"]),
                          wall() - ph.t_ready, settled["cpu_per_s"]))
    if name == "cold":
        log("  cold: converged %s after /readyz" % ("in %.1f s" % conv if conv is not None
                                                   else "NOT"))
    elif name == "idle" and uses:
        failures.append("idle: %d use writes while no use changed" % uses)
    elif name == "churn":
        ach = {k: churn.done[k] / took for k in ("create", "finish")}
        ach["delete"] = churn.done["delete"] / max(1e-9, took - a.ttl)  # TTL behind
        short = [k for k in ach if ach[k] < 0.95 * a.rate]
        log("  churn: achieved %.1f creations/s, %.1f finishes/s, %.1f deletions/s "
            "(target %g/s%s; the last answer %.1f s after the start of the %g s window, "
            "backlog max %d requests, dropped as the emulator fell behind: %s); errors %s" % (
                ach["create"], ach["finish"], ach["delete"], a.rate,
                ", SHORT: " + ",".join(short) if short else "", took, a.duration,
                churn.max_backlog, dict(churn.dropped) or "none", dict(churn.errors) or "none"))
        if sum(churn.errors.values()):
            failures.append("churn: %d requests failed" % sum(churn.errors.values()))
        T = ph.t_end - t0
        with wl.lock:
            changed = [i for i, c in wl.changes.items() if c]
            bound = sum(min(wl.changes[i], int(T // COALESCE_S) + 1 + wl.flips[i])
                        for i in changed)
            flips = sum(wl.flips.values())
        log("  churn: %d use writes in churn + drain (%.1f s) for %d objects whose use "
            "changed (%d unused<->used flips); bound %d: %s; converged %s after the churn" % (
                uses, T, len(changed), flips, bound, "met" if uses <= bound else "EXCEEDED",
                "in %.1f s" % conv if conv is not None else "NOT"))
        if uses > bound:
            failures.append("churn: %d use writes over the bound %d" % (uses, bound))
        out.update(ach=ach, changed=len(changed), bound=bound)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--controller", required=True)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--images", type=int)
    p.add_argument("--pods", type=int)
    p.add_argument("--namespaces", type=int)
    p.add_argument("--rate", type=float, help="pod creations per second")
    p.add_argument("--duration", type=float, help="seconds of idle and of churn")
    p.add_argument("--zipf", type=float, default=1.0)
    p.add_argument("--ttl", type=float, default=5.0,
                   help="seconds between a pod's finish and its deletion")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--slack", type=float, default=1.0,
                   help="receipt gaps under 10 s - SLACK are counted (reported only)")
    p.add_argument("--converge-max", type=float)
    p.add_argument("--idle-tail", type=float,
                   help="seconds the idle controller runs on after its window; the CPU "
                        "of their last 60 s is reported (after the start-up pass)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    for k, full, quick in (("images", 10000, 150), ("pods", 100000, 1500),
                           ("namespaces", 50, 5), ("rate", 200.0, 50.0),
                           ("duration", 120.0, 12.0), ("converge_max", 900.0, 30.0),
                           ("idle_tail", 120.0, 0.0)):
        if getattr(a, k) is None:
            setattr(a, k, quick if a.quick else full)

    env = Env()
    env.binary = a.controller
    env.api = api = stack.Api()
    env.closers = stack.Closers()
    env.tmp = tempfile.mkdtemp(prefix="thaw-lifecycle-bench.")
    env.emu_pid = emulator_pid()
    env.tpl = pod_template()
    failures = []
    try:
        api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": SYSTEM_NS}})
        rbac_stack.load(api, rbac_stack.rbac_objects(rbac_stack.rendered(), sa=SA))
        env.kubeconfig = os.path.join(env.tmp, "kubeconfig-" + SA)
        rbac_stack.sa_kubeconfig(SA, env.kubeconfig)
        wl = Workload(a.images, a.pods, a.namespaces, a.zipf, a.seed)
        ci_s, pod_s = preload(api, wl, env.tpl)
        log("preloaded %d CachedImages (%.1f s) and %d pods in %d namespaces (%.1f s); "
            "Zipf %.2f: top image %d pods, %d images with 1" % (
                a.images, ci_s, a.pods, a.namespaces, pod_s, a.zipf, wl.preload[0],
                sum(1 for c in wl.preload if c == 1)))
        log("controller: %s (--leader-elect=false, as %s); churn %g/s creations, finishes "
            "and deletions (TTL %g s) for %g s; idle %g s; %d CPUs" % (
                env.binary, SA_USER, a.rate, a.ttl, a.duration, a.duration, os.cpu_count()))
        watch = CIWatch(api)
        watch.start()
        r = {name: run_phase(env, watch, wl, name, a, failures)
             for name in ("cold", "idle", "churn")}
        wi, wc = r["idle"]["w"], r["churn"]["w"]
        peak = max(mib(x["w"]["hwm"]) for x in r.values())
        log("RESULT images=%d pods=%d rate=%g achieved_create=%.1f duration=%g "
            "idle_cpu=%.4f churn_cpu=%.4f cpu_ratio=%.2f idle_rss_mib=%.1f churn_rss_mib=%.1f "
            "rss_ratio=%.3f hwm_mib=%.1f idle_use_writes=%d churn_use_writes=%d "
            "churn_use_writes_per_s=%.2f churn_changed=%d churn_bound=%d cold_converge_s=%s "
            "churn_converge_s=%s idle_late_cpu=%s" % (
                a.images, a.pods, a.rate, r["churn"]["ach"]["create"], a.duration,
                wi["cpu_per_s"], wc["cpu_per_s"], ratio(wc["cpu_per_s"], wi["cpu_per_s"]),
                mib(wi["rss_steady"]), mib(wc["rss_steady"]),
                ratio(wc["rss_steady"], wi["rss_steady"]), peak,
                r["idle"]["uses"], r["churn"]["uses"], ratio(r["churn"]["win_uses"], wc["secs"]),
                r["churn"]["changed"], r["churn"]["bound"],
                "%.1f" % r["cold"]["conv"] if r["cold"]["conv"] is not None else "none",
                "%.1f" % r["churn"]["conv"] if r["churn"]["conv"] is not None else "none",
                "%.4f" % r["idle"]["settled"]["cpu_per_s"] if r["idle"]["settled"] else "none"))
        log("RESULT churn/idle: CPU %.2fx (%.3f vs %.3f s/s; second halves %.3f vs %.3f), "
            "steady RSS %.2fx (%.1f vs %.1f MiB); peak RSS %.1f MiB (goal < %d: %s)" % (
                ratio(wc["cpu_per_s"], wi["cpu_per_s"]), wc["cpu_per_s"], wi["cpu_per_s"],
                wc["cpu_late_per_s"], wi["cpu_late_per_s"],
                ratio(wc["rss_steady"], wi["rss_steady"]), mib(wc["rss_steady"]),
                mib(wi["rss_steady"]), peak, RSS_GOAL_MIB,
                "met" if peak < RSS_GOAL_MIB else "MISSED"))
        if watch.error:
            log("note: the CachedImage watch restarted (%s)" % watch.error)
    finally:
        env.closers.close()
        shutil.rmtree(env.tmp, ignore_errors=True)
    for f in failures:
        log("FAIL " + f)
    log("lifecycle-bench: %s" % ("ok" if not failures else "%d checks failed" % len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
