"""The reference experiment's driver (issue 11): OSCAR imagemagick jobs on
N nodes, side by side with no cache, a registry mirror, thaw (cold and
pre-warmed) and the floor. Run it through bench/oscar-experiment.sh (root;
it re-runs itself under test/with-emulator.sh when no emulator is given).

    experiment_run.py --webhook BIN --controller BIN --out DIR
        [--jobs 75] [--nodes 3] [--interval 2] [--rate 100mbit] [--rtt-ms 40]
        [--scenarios no-cache,mirror,thaw-cold,thaw-prewarm,floor]
        [--patterns burst,paced] [--image-cache DIR] [--cold-wait DURATION] [--check]

The network, remote and nodes: bench/experiment_net.py. The image:
bench/experiment_image.py (the study's shape, runnable). Each run (one
scenario, one pattern) starts from cold nodes (a new containerd, empty
root) and an empty cache (new cache registry, mirror and node-local
endpoints; no CachedImage left), with the remote's counters reset:
- no-cache: pods keep the remote's reference; nodes pull from it.
- mirror: the same reference; each node's containerd has a hosts.toml
  (ctr --hosts-dir) mirroring the remote to a distribution pull-through
  proxy on the cluster network.
- thaw-cold: thaw-webhook in the emulator's admission chain with the
  --cold-wait of manifests/overlays/oscar (read from its render),
  thaw-controller with leader election (the webhook gates a pod only while
  the Lease is fresh) warming from the remote into the cache registry and
  releasing gated pods, the node-local endpoint on each node's
  127.0.0.1:7439; nothing pre-warmed.
- thaw-prewarm: the same, and the OSCAR service exists as a PodTemplate in
  oscar-svc first; jobs start once its CachedImage is Ready (prewarm_s).
- floor: pods name the image on the node's own loopback registry.
Jobs: pods created through the emulator as OSCAR creates them
(generateName, imagePullPolicy Always, no nodeName, a 409 on a
generateName collision retried), all at once (burst) or one every
--interval s (paced). The driver plays kube-scheduler, the same way in
every scenario: one watch on the namespace's pods per run; as soon as the
API server holds a pod without scheduling gates (at once for a pod created
without any), a binder POSTs its pods/binding to its round-robin node, then
the node's kubelet reads the pod and queues it. Each node has one FIFO pull
worker (the kubelet's serialized pulls): `ctr images pull` of the image the
API server stored (pulled under Always even when present: the tag is
resolved again), then the job runs in its own container (`ctr run --rm`,
concurrently, as the kubelet starts containers) converting the input
picture to grayscale; the output is checked.

Per job (seconds since the run's first pod creation): created (POST sent),
admitted (201 received: the pod exists), ungated (seen without scheduling
gates; = admitted when it had none), bound (binding answered), queued (read
back, on its node's queue), pull_start, pull_end, run_end; gated (created
with a scheduling gate), gate_wait_s (admitted -> ungated, 0 without a
gate), pull_s (the kubelet's pullDuration), pull_wait_s (admitted ->
pull_end: the study's "total", the kubelet's "including waiting" plus the
gate wait and the binding before it), e2e_s (created -> container exited).
Per thaw run: cpu_s (utime+stime of thaw-webhook + thaw-controller, start
to end of the run) and peak_rss_mib (the sum of their VmHWM), and
thaw_log: warn/error lines in their logs.
A run's remote counts what the remote served: body bytes, manifest and
blob GETs answered 2xx (a 401 token challenge is not a pull), token GETs,
401 challenges and all requests; remote_requests ({"METHOD path": n}) says
what it was asked. Writes OUT/experiment.json after every run and OUT/jobs.jsonl as jobs end,
then prints the report (bench/experiment_report.py, else a short table).
--check (the smoke test) fails unless every job ran ok, pulls happened,
the pre-warmed thaw run's pods were all rewritten, the cold thaw run's pods
(with more than one job) were gated and every gated pod released, and the
remote's counters moved: structure only, never timings.
--image-cache DIR keeps the image's compressed layers by content
(bench/experiment_image.py), so a run does not rebuild them. --cold-wait
overrides the overlay's (0s: off)."""

import argparse
import datetime
import json
import os
import platform
import queue
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "test"))
import emu_reexec  # noqa: E402

emu_reexec.setup(__file__, __name__)
sys.path.insert(0, HERE)

import experiment_image  # noqa: E402
import experiment_net  # noqa: E402
import stack  # noqa: E402
import webhook_stub  # noqa: E402

SCENARIOS = ["no-cache", "mirror", "thaw-cold", "thaw-prewarm", "floor"]
PATTERNS = ["burst", "paced"]
NS = "oscar-svc"
PODS = "/api/v1/namespaces/%s/pods" % NS
PREWARM_TIMEOUT = 300
LEADER_TIMEOUT = 30
OSCAR_OVERLAY = os.path.join(REPO, "manifests", "overlays", "oscar")
BINDERS = 4          # kube-scheduler binds asynchronously, several at a time


def log(*a):
    print(*a, flush=True)


def proc_usage(pid):
    """(utime+stime seconds, VmHWM MiB) of a live process from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    hwm = 0.0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) / 1024.0
    return cpu, hwm


def log_problems(paths):
    """warn and error lines of thaw's JSON logs: counts and a few messages."""
    out = {"warn": 0, "error": 0, "examples": []}
    for p in paths:
        try:
            lines = open(p, errors="replace").read().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            lvl = doc.get("level")
            if lvl in ("warn", "error"):
                out[lvl] += 1
                msg = "%s: %s" % (os.path.basename(p).split(".")[0], doc.get("msg"))
                if msg not in out["examples"] and len(out["examples"]) < 8:
                    out["examples"].append(msg)
    return out


def oscar_cold_wait():
    """The --cold-wait that manifests/overlays/oscar gives thaw-webhook (its
    kustomize render), or None when it sets none."""
    import test_manifests
    hook = test_manifests.find(test_manifests.kubectl_kustomize(OSCAR_OVERLAY),
                               "Deployment", "thaw-webhook")
    args = hook["spec"]["template"]["spec"]["containers"][0].get("args") or []
    vals = [x.split("=", 1)[1] for x in args if x.startswith("--cold-wait=")]
    return vals[-1] if vals else None


class Webhook(stack.Webhook):
    """stack's thaw-webhook with more flags."""

    def __init__(self, *args, extra=()):
        super().__init__(*args)
        self.extra = list(extra)

    def argv(self):
        return super().argv() + self.extra


LEASE = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/thaw-controller" % stack.SYSTEM_NS


class Thaw:
    """thaw-webhook (in the admission chain, --cold-wait as the oscar
    overlay sets it) and thaw-controller (leader election on, as deployed)
    for one run, against a fresh cache registry on the cluster network.
    Ready once the controller holds the Lease."""

    def __init__(self, a, net, api, workdir, certdir):
        self.api = api
        self.cache = net.cluster_registry("cache")
        certs = webhook_stub.make_certs(certdir)
        self.hook = Webhook(a.webhook, certs, self.cache.url, workdir,
                            extra=["--cold-wait=" + a.cold_wait] if a.cold_wait else [])
        self.ctl = stack.Controller(a.controller, self.cache.url, workdir, extra=[
            "--insecure-registries", net.remote.host, "--prewarm-namespaces", NS])
        self.logs = [self.hook.log_path, self.ctl.log_path]
        self.hook.start()
        api.ok("POST", stack.MWC_PATH, stack.webhook_configuration(
            self.hook.url, certs["ca_bundle"]), want=(201,))
        self.ctl.start()
        deadline = time.monotonic() + LEADER_TIMEOUT
        while stack.metric(self.ctl.metrics(), "thaw_leader") != 1:
            if time.monotonic() > deadline:
                raise RuntimeError("thaw-controller not leader after %d s; log:\n%s"
                                   % (LEADER_TIMEOUT, self.ctl.log_tail()))
            time.sleep(0.05)

    def usage(self):
        cpu = hwm = 0.0
        for d in (self.hook, self.ctl):
            c, h = proc_usage(d.proc.pid)
            cpu, hwm = cpu + c, hwm + h
        return {"cpu_s": round(cpu, 3), "peak_rss_mib": round(hwm, 2)}

    def close(self):
        self.api.request("DELETE", stack.MWC_PATH + "/thaw-webhook")
        self.hook.stop()
        self.ctl.stop()
        self.api.request("DELETE", LEASE)   # released on shutdown; the next run starts clean
        # No controller any more: drop finalizers so the objects go now.
        st, doc, _ = self.api.request("GET", stack.CI_PATH)
        for ci in (doc.get("items") or []) if st == 200 else []:
            path = stack.CI_PATH + "/" + ci["metadata"]["name"]
            self.api.request("PATCH", path, {"metadata": {"finalizers": None}},
                             ctype="application/merge-patch+json")
            self.api.request("DELETE", path)
        self.cache.close()


def call(api, conn, method, path, body=None):
    """api.request on a kept-alive connection, reopened once if the
    emulator closed it; (status, doc, response, conn)."""
    for attempt in (0, 1):
        try:
            st, doc, resp = api.request(method, path, body, conn=conn)
            return st, doc, resp, conn
        except OSError:
            conn.close()
            conn = api.conn()
            if attempt:
                raise


def create_pod(api, conn, image):
    """POST a job pod as OSCAR does (no node: the scheduler binds it);
    returns (stored pod, conn). A 409 on a generateName collision is
    retried (a new random suffix)."""
    body = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "imagemagick-", "namespace": NS,
                         "labels": {"oscar_service": "imagemagick"}},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "oscar-container", "image": image,
                                     "imagePullPolicy": "Always"}]}}
    for attempt in range(10):
        st, doc, resp, conn = call(api, conn, "POST", PODS, body)
        if st == 201:
            return doc, conn
        if st == 409 and attempt >= 2:
            time.sleep(float(resp.getheader("Retry-After") or 1))
        elif st != 409:
            raise RuntimeError("pod create: %s %s" % (st, doc))
    raise RuntimeError("pod create: 409 ten times")


class Scheduler:
    """kube-scheduler, as far as the experiment needs it, for one run. One
    watch on the namespace's pods (a dispatcher thread) sees each pod lose
    its scheduling gates; BINDERS threads then POST its pods/binding to its
    round-robin node, read the pod back (the kubelet's view: the image the
    API server stored) and put the job on its node's queue. A pod created
    without gates goes to the binders at once. wait(timeout) returns once
    every job is on a node or failed; a job still gated then fails."""

    def __init__(self, api, run, workers):
        self.api, self.run, self.workers = api, run, workers
        self.cond = threading.Condition()
        self.waiting = {}     # pod name -> job created gated, not yet seen ungated
        self.ungated = {}     # pod name -> time seen ungated before it was added
        self.pending = 0      # jobs added and not yet queued on a node or failed
        self.stopped = False
        self.q = queue.Queue()
        st, doc, _ = api.request("GET", PODS + "?limit=1")
        if st != 200:
            raise RuntimeError("pod list: %s %s" % (st, doc))
        self.rv = doc["metadata"]["resourceVersion"]
        self.watch_conn = None
        self.threads = [threading.Thread(target=self.dispatch, daemon=True)] + \
            [threading.Thread(target=self.binder, daemon=True) for _ in range(BINDERS)]
        for t in self.threads:
            t.start()

    def add(self, job, pod):
        """A created pod (the 201's object) and its job."""
        name = pod["metadata"]["name"]
        job["gated"] = bool(pod["spec"].get("schedulingGates"))
        with self.cond:
            self.pending += 1
            t = job["admitted"] if not job["gated"] else self.ungated.pop(name, None)
            if t is None:
                self.waiting[name] = job
                return
        job["ungated"] = t
        self.q.put(job)

    def dispatch(self):
        """The watch: pods seen without gates go to the binders."""
        while not self.stopped:
            try:
                resp, self.watch_conn = self.api.watch(
                    PODS + "?watch=1&resourceVersion=%s&timeoutSeconds=600" % self.rv,
                    timeout=900)
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":     # 410: start again from now
                        self.rv = self.api.request("GET", PODS + "?limit=1")[1][
                            "metadata"]["resourceVersion"]
                        break
                    self.rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] in ("ADDED", "MODIFIED") and \
                            not (obj.get("spec") or {}).get("schedulingGates"):
                        self.seen_ungated(obj["metadata"]["name"])
            except (OSError, ValueError, KeyError):
                if self.stopped:
                    return
                time.sleep(0.1)
            finally:
                if self.watch_conn:
                    self.watch_conn.close()

    def seen_ungated(self, name):
        t = self.run.now()
        with self.cond:
            job = self.waiting.pop(name, None)
            if job is None:
                self.ungated.setdefault(name, t)
                return
        job["ungated"] = t
        self.q.put(job)

    def binder(self):
        conn = self.api.conn()
        while True:
            job = self.q.get()
            if job is None:
                break
            err = None
            try:
                err, conn = self.bind(job, conn)
            except Exception as e:   # noqa: BLE001 - the job fails, the run goes on
                err = "bind: %r" % e
            worker = self.workers[job["worker"]]
            if err:
                worker.finish(job, err)
            else:
                worker.q.put(job)
            with self.cond:
                self.pending -= 1
                self.cond.notify_all()
        conn.close()

    def bind(self, job, conn):
        """POST the binding, then read the pod; (error or None, conn)."""
        path = "%s/%s" % (PODS, job["pod"])
        st, doc, _, conn = call(self.api, conn, "POST", path + "/binding", {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": job["pod"], "namespace": NS, "uid": job["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": job["node"]}})
        if st != 201:
            return "binding: %s %s" % (st, doc.get("message") if isinstance(doc, dict)
                                       else doc), conn
        job["bound"] = self.run.now()
        st, pod, _, conn = call(self.api, conn, "GET", path)
        if st != 200:
            return "read: %s" % st, conn
        job["image"] = pod["spec"]["containers"][0]["image"]
        job["rewritten"] = job["image"] != job["submitted"]
        job["queued"] = self.run.now()
        return None, conn

    def wait(self, timeout):
        """Until every job added is on a node or failed; jobs still gated
        after timeout fail. Then the binders and the watch stop."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.pending and time.monotonic() < deadline:
                self.cond.wait(0.5)
            stuck, self.waiting = list(self.waiting.values()), {}
            self.pending -= len(stuck)
        for job in stuck:
            self.workers[job["worker"]].finish(
                job, "still gated after %.0f s (never released)" % timeout)
        with self.cond:
            while self.pending:     # the binders finish what they hold
                self.cond.wait(0.5)
        self.close()

    def close(self):
        self.stopped = True
        for _ in range(BINDERS):
            self.q.put(None)
        c = self.watch_conn
        if c is not None and c.sock is not None:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class NodeWorker(threading.Thread):
    """A node's kubelet, as far as images go: one FIFO pull worker, then
    each job's container started on its own thread."""

    def __init__(self, node, run, hosts_dir, image_info, outdir, done):
        super().__init__(daemon=True)
        self.node, self.run_ctx, self.hosts_dir = node, run, hosts_dir
        self.image_info, self.outdir, self.done = image_info, outdir, done
        self.q = queue.Queue()
        self.runners = []
        self.first = True

    def run(self):
        cd = self.node.cd
        while True:
            job = self.q.get()
            if job is None:
                break
            job["first_on_node"], self.first = self.first, False
            args = ["images", "pull", "--snapshotter", cd.snapshotter, "--plain-http"]
            if self.hosts_dir:
                args += ["--hosts-dir", self.hosts_dir]
            job["pull_start"] = self.run_ctx.now()
            r = cd.ctr(*(args + [job["image"]]), check=False, timeout=900)
            job["pull_end"] = self.run_ctx.now()
            job["pull_s"] = job["pull_end"] - job["pull_start"]
            job["pull_wait_s"] = job["pull_end"] - job["admitted"]
            if r.returncode != 0:
                self.finish(job, "pull: " + (r.stderr or r.stdout).strip()[-300:])
                continue
            t = threading.Thread(target=self.run_job, args=(job,), daemon=True)
            t.start()
            self.runners.append(t)
        for t in self.runners:
            t.join()

    def run_job(self, job):
        out = os.path.join(self.outdir, "job-%d" % job["job"])
        os.makedirs(out, exist_ok=True)
        info = self.image_info
        r = experiment_image.run(self.node.cd, job["image"], os.path.dirname(info["input"]),
                                 out, "job-%d" % job["job"])
        job["run_end"] = self.run_ctx.now()
        err = None
        if r.returncode != 0:
            err = "run: exit %d: %s" % (r.returncode, (r.stderr or r.stdout).strip()[-300:])
        else:
            bad = experiment_image.check_gray(info["input"], os.path.join(out, "output.png"))
            if bad:
                err = "output: " + bad
        self.finish(job, err)

    def finish(self, job, err):
        """Any thread: the job's end (err None when it ran ok)."""
        job.setdefault("run_end", self.run_ctx.now())
        job["e2e_s"] = job["run_end"] - job["created"]
        if job.get("ungated") is not None:
            job["gate_wait_s"] = job["ungated"] - job["admitted"]
        job["ok"], job["error"] = err is None, err
        for k in ("created", "admitted", "ungated", "bound", "queued", "pull_start",
                  "pull_end", "run_end", "pull_s", "pull_wait_s", "gate_wait_s", "e2e_s"):
            if job.get(k) is not None:
                job[k] = round(job[k], 4)
        self.done(job)


class Run:
    def __init__(self, scenario, pattern):
        self.scenario, self.pattern = scenario, pattern
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.jobs = []

    def now(self):
        return time.monotonic() - self.t0


def seconds(duration):
    """A Go duration of h, m, s and ms parts ("30s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError("not a duration: %r" % duration)
    return sum(float(n) * units[u] for n, u in parts)


def gate_timeout(a):
    """How long the scheduler waits for the last gated pod: the cold wait
    (every gated pod has that deadline) and a minute for the release."""
    return (seconds(a.cold_wait) if a.cold_wait else 0) + 60


def write_hosts_dir(path, remote_host, mirror_url):
    """containerd's hosts.toml: the remote mirrored to the pull-through proxy."""
    d = os.path.join(path, remote_host)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "hosts.toml"), "w") as f:
        f.write('server = "http://%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
                % (remote_host, mirror_url))
    return path


def delete_pods(api):
    st, doc, _ = api.request("GET", "/api/v1/namespaces/%s/pods" % NS)
    conn = api.conn()
    for p in (doc.get("items") or []) if st == 200 else []:
        api.request("DELETE", "/api/v1/namespaces/%s/pods/%s" % (NS, p["metadata"]["name"]),
                    conn=conn)
    conn.close()


def one_run(a, net, api, info, scenario, pattern, workdir, jsonl):
    """One scenario under one pattern; returns its "runs" entry."""
    rdir = os.path.join(workdir, "%s-%s" % (pattern, scenario))
    os.makedirs(rdir)
    logdir = os.path.join(a.out, "logs", "%s-%s" % (pattern, scenario))
    os.makedirs(logdir, exist_ok=True)
    for n in net.nodes[:a.nodes]:
        n.fresh_containerd()
    remote_ref = net.remote.ref("%s:%s" % (info["ref_name"], info["tag"]))
    thaw, mirror, hosts_dir, result = None, None, None, {}
    net.remote.reset_counters()
    try:
        if scenario == "mirror":
            mirror = net.cluster_registry("mirror", extra={"proxy": {
                "remoteurl": net.remote.proxy.url}})
            hosts_dir = write_hosts_dir(os.path.join(rdir, "hosts"), net.remote.host, mirror.url)
        if scenario.startswith("thaw"):
            thaw = Thaw(a, net, api, logdir, rdir)
            for n in net.nodes[:a.nodes]:
                n.start_node_local(thaw.cache.url)
        if scenario == "thaw-prewarm":
            t = time.monotonic()
            api.ok("POST", "/api/v1/namespaces/%s/podtemplates" % NS, {
                "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "imagemagick"},
                "template": {"spec": {"containers": [{"name": "oscar-container",
                                                      "image": remote_ref}]}}})
            if stack.wait_ci_ready(api, remote_ref, PREWARM_TIMEOUT, poll=0.05) is None:
                raise RuntimeError("pre-warm not Ready after %d s; controller log:\n%s"
                                   % (PREWARM_TIMEOUT, thaw.ctl.log_tail()))
            result["prewarm_s"] = round(time.monotonic() - t, 3)
            log("    pre-warmed in %.2f s" % result["prewarm_s"])
        run = Run(scenario, pattern)

        def done(job):
            with run.lock:
                run.jobs.append(job)
                jsonl.write(json.dumps(dict(job, scenario=scenario, pattern=pattern)) + "\n")
                jsonl.flush()

        outdir = os.path.join(rdir, "out")
        workers = [NodeWorker(n, run, hosts_dir, info, outdir, done)
                   for n in net.nodes[:a.nodes]]
        for w in workers:
            w.start()
        sched = Scheduler(api, run, workers)
        conn = api.conn()
        run.t0 = time.monotonic()
        try:
            for j in range(a.jobs):
                if pattern == "paced":
                    wait = run.t0 + j * a.interval - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                node = net.nodes[j % a.nodes]
                image = (node.floor_ref if scenario == "floor" else remote_ref)
                created = run.now()
                pod, conn = create_pod(api, conn, image)
                sched.add({"job": j, "node": node.name, "worker": j % a.nodes,
                           "pod": pod["metadata"]["name"], "uid": pod["metadata"]["uid"],
                           "submitted": image, "created": created, "admitted": run.now()}, pod)
            conn.close()
            sched.wait(gate_timeout(a))
        finally:
            sched.close()
        for w in workers:
            w.q.put(None)
        for w in workers:
            w.join()
        result["wall_s"] = round(run.now(), 3)
        result["remote"] = net.remote.counters()
        result["remote_requests"] = net.remote.requests()
        result["thaw"] = thaw.usage() if thaw else None
        if thaw:
            result["thaw_log"] = log_problems(thaw.logs)
        result["jobs"] = sorted(run.jobs, key=lambda j: j["job"])
    finally:
        delete_pods(api)
        if scenario == "thaw-prewarm":
            api.request("DELETE", "/api/v1/namespaces/%s/podtemplates/imagemagick" % NS)
        if thaw:
            thaw.close()
        for n in net.nodes[:a.nodes]:
            n.stop_node_local()
        if mirror:
            mirror.close()
    return dict({"scenario": scenario, "pattern": pattern}, **result)


def short_table(doc):
    """The fallback when bench/experiment_report.py is not there."""
    for pattern in PATTERNS:
        runs = [r for r in doc["runs"] if r["pattern"] == pattern]
        if not runs:
            continue
        log("\n%s: %-13s %9s %9s %9s %9s %11s %9s" % (pattern, "setup", "mean pull",
                                                     "mean wait", "p95 pull", "mean e2e",
                                                     "remote MB", "manif GET"))
        for r in runs:
            p = sorted(j["pull_s"] for j in r["jobs"] if j.get("pull_s") is not None) or [0]
            log("%s  %-13s %9.3f %9.3f %9.3f %9.3f %11.1f %9d" % (
                " " * len(pattern), r["scenario"], statistics.mean(p),
                statistics.mean(j.get("pull_wait_s") or 0 for j in r["jobs"]),
                p[min(len(p) - 1, int(0.95 * len(p)))],
                statistics.mean(j["e2e_s"] for j in r["jobs"]),
                r["remote"]["bytes"] / 1e6, r["remote"]["manifest_gets"]))


def check(doc, a):
    """--check: structure, never timings. Returns a list of problems."""
    bad = []
    for r in doc["runs"]:
        name = "%s/%s" % (r["pattern"], r["scenario"])
        if len(r["jobs"]) != a.jobs:
            bad.append("%s: %d jobs of %d" % (name, len(r["jobs"]), a.jobs))
        for j in r["jobs"]:
            if not j["ok"]:
                bad.append("%s: job %d: %s" % (name, j["job"], j["error"]))
            elif not j.get("pull_s", 0) > 0:
                bad.append("%s: job %d: no pull" % (name, j["job"]))
        if r["scenario"] == "thaw-prewarm":
            if not all(j.get("rewritten") and j["image"].startswith("localhost:7439/")
                       for j in r["jobs"]):
                bad.append("%s: pods not all rewritten to localhost:7439" % name)
        elif r["scenario"] in ("no-cache", "mirror", "floor"):
            if any(j.get("rewritten") or j.get("gated") for j in r["jobs"]):
                bad.append("%s: pods rewritten or gated without thaw" % name)
        if r["scenario"] == "thaw-cold" and a.jobs > 1:
            gated = [j for j in r["jobs"] if j.get("gated")]
            if not gated:
                bad.append("%s: no pod was gated (--cold-wait %s)" % (name, a.cold_wait))
            if any(j.get("ungated") is None or j.get("bound") is None for j in gated):
                bad.append("%s: gated pods not all released and bound" % name)
        if any(j.get("bound") is None for j in r["jobs"] if j["ok"]):
            bad.append("%s: a job ran without a binding" % name)
        rem = r["remote"]
        if r["scenario"] != "floor" and not (rem["bytes"] > 0 and rem["manifest_gets"] > 0
                                             and rem["token_gets"] > 0):
            bad.append("%s: the remote's counters did not move: %s" % (name, rem))
        if r["scenario"].startswith("thaw") and not (r["thaw"] or {}).get("cpu_s", 0) > 0:
            bad.append("%s: no thaw CPU time" % name)
    return bad


def estimate(a, scenarios, patterns):
    per = {"burst": 25 + a.jobs * 0.3, "paced": (a.jobs - 1) * a.interval + 12}
    extra = {"thaw-cold": 8, "thaw-prewarm": 10, "mirror": 2}
    return 40 + sum(per[p] + extra.get(s, 0) + 3 * a.nodes for p in patterns for s in scenarios)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--webhook", required=True)
    ap.add_argument("--controller", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=75)
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--rtt-ms", type=float, default=40)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--patterns", default=",".join(PATTERNS))
    ap.add_argument("--image-cache", help="keep the image's layers here (by content)")
    ap.add_argument("--cold-wait", help="thaw-webhook's (default: manifests/overlays/oscar's)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--suffix", help="of the network's names (bench/experiment_net.py)")
    a = ap.parse_args()
    scenarios = [s for s in a.scenarios.split(",") if s]
    patterns = [p for p in a.patterns.split(",") if p]
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit("unknown scenario %r (of %s)" % (s, ", ".join(SCENARIOS)))
    for p in patterns:
        if p not in PATTERNS:
            sys.exit("unknown pattern %r (of %s)" % (p, ", ".join(PATTERNS)))
    if os.geteuid() != 0:
        sys.exit("experiment_run: needs root (network namespaces, tc, containerd)")
    a.webhook, a.controller = os.path.abspath(a.webhook), os.path.abspath(a.controller)
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)
    if a.cold_wait is None and any(s.startswith("thaw") for s in scenarios):
        a.cold_wait = oscar_cold_wait()
        if a.cold_wait is None:
            log("warning: manifests/overlays/oscar sets no --cold-wait: thaw runs without it")
    if a.cold_wait is not None and not seconds(a.cold_wait):
        a.cold_wait = None      # 0s: off, as the webhook's default
    experiment_net.install_signal_handlers()
    log("experiment: %d jobs on %d nodes, scenarios %s, patterns %s (paced: one every %g s);"
        " remote %s, %g ms per request; thaw's --cold-wait %s; estimated %.0f min"
        % (a.jobs, a.nodes, ",".join(scenarios), ",".join(patterns), a.interval, a.rate,
           a.rtt_ms, a.cold_wait or "off", estimate(a, scenarios, patterns) / 60))
    log("output: %s" % a.out)
    work = tempfile.mkdtemp(prefix="thaw-exp-run.")
    net = None
    t_start = time.monotonic()
    try:
        t = time.monotonic()
        info = experiment_image.build(os.path.join(work, "image"), cache=a.image_cache)
        log("image %s:%s %s, layers %s (%.1f s to build)" % (
            info["ref_name"], info["tag"], info["digest"], info["layers"],
            time.monotonic() - t))
        net = experiment_net.Network(a.nodes, a.rate, a.rtt_ms / 1000.0,
                                     workdir=os.path.join(work, "net"),
                                     logdir=os.path.join(a.out, "logs"), suffix=a.suffix)
        policy = os.path.join(work, "policy.json")
        with open(policy, "w") as f:
            f.write('{"default":[{"type":"insecureAcceptAnything"}]}')
        net.remote.push(info["layout"], info["ref_name"], info["tag"], policy)
        net.remote.shape()
        if "floor" in scenarios:
            for n in net.nodes:
                n.floor_ref = n.start_floor(info["layout"], info["ref_name"], info["tag"], policy)
        api = stack.Api()
        for ns in (NS, stack.SYSTEM_NS):
            api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": ns}}, want=(201, 409))
        cd0 = net.nodes[0].fresh_containerd()
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        doc = {"meta": {
            "commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "nodes": a.nodes, "jobs": a.jobs, "interval_s": a.interval, "rate": a.rate,
            "rtt_ms": a.rtt_ms, "remote": net.remote.ref(""), "cold_wait": a.cold_wait,
            "image": {k: v for k, v in info.items() if k not in ("layout", "input")},
            "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                     "containerd": subprocess.run(["containerd", "--version"],
                                                  capture_output=True,
                                                  text=True).stdout.strip(),
                     "snapshotter": cd0.snapshotter}},
            "runs": []}
        jsonl = open(os.path.join(a.out, "jobs.jsonl"), "w")
        for pattern in patterns:
            for scenario in scenarios:
                t = time.monotonic()
                log("  %s / %s ..." % (pattern, scenario))
                r = one_run(a, net, api, info, scenario, pattern, work, jsonl)
                doc["runs"].append(r)
                with open(os.path.join(a.out, "experiment.json.tmp"), "w") as f:
                    json.dump(doc, f, indent=1)
                os.rename(os.path.join(a.out, "experiment.json.tmp"),
                          os.path.join(a.out, "experiment.json"))
                ok = sum(j["ok"] for j in r["jobs"])
                pulls = [j["pull_s"] for j in r["jobs"] if j.get("pull_s") is not None]
                log("    %d/%d ok, mean pull %.3f s, remote %.1f MB / %d manifest GETs%s"
                    " (%.0f s)" % (ok, len(r["jobs"]), statistics.mean(pulls) if pulls else 0,
                                   r["remote"]["bytes"] / 1e6, r["remote"]["manifest_gets"],
                                   ", %d gated, %d rewritten" % (
                                       sum(bool(j.get("gated")) for j in r["jobs"]),
                                       sum(bool(j.get("rewritten")) for j in r["jobs"]))
                                   if r["scenario"].startswith("thaw") else "",
                                   time.monotonic() - t))
                for e in (r.get("thaw_log") or {}).get("examples", []):
                    log("      thaw log: %s" % e)
        jsonl.close()
    finally:
        if net:
            net.close()
        shutil.rmtree(work, ignore_errors=True)
    log("done in %.1f min; %s" % ((time.monotonic() - t_start) / 60,
                                  os.path.join(a.out, "experiment.json")))
    report = os.path.join(HERE, "experiment_report.py")
    if os.path.exists(report):
        subprocess.call([sys.executable, report, os.path.join(a.out, "experiment.json"),
                         "--plots", a.out])
    else:
        short_table(doc)
    if a.check:
        bad = check(doc, a)
        for b in bad:
            log("CHECK FAILED: " + b)
        log("check: %d problems" % len(bad))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
