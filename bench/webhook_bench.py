"""Body of bench/webhook-bench.sh (run it through that script): thaw-webhook
under h2load over TLS, against h2o serving the same response as the ceiling.

Needs the environment of test/with-emulator.sh. Steps:
  1. seed N CachedImages (distinct images, docs/design.md names; every 10th and the
     job pod's image docker.io/grycap/imagemagick:latest set Ready);
  2. a real docker-registry (so the health gate is up) and thaw-webhook;
     wait for /readyz and for the job pod to be rewritten;
  3. the request: the OSCAR job pod AdmissionReview (generateName form), as
     the apiserver sends it (compact JSON); the response is captured, and h2o
     serves exactly those bytes;
  4. REPS times, interleaved: peak req/s of thaw and h2o over HTTP/2
     (-c 4 -m 10) and HTTP/1.1 keep-alive (--h1 -c 8);
  5. REPS times: latency (p50/p99 from h2load --log-file) at half of thaw's
     median peak, per protocol, thaw then h2o at the same rate. The load is
     spread (SMOOTH: HTTP/2 32 clients -m 2, HTTP/1.1 64 clients). h2load's
     --rps is per client and its timer fires at most every 10 ms, so the old
     configuration (4 or 8 clients, HTTP/2 -m 10) started 40 streams at once
     every tick and measured that burst's queueing more than the server. It
     still runs (not with --quick), labelled "burst", for comparison. The
     achieved rate is printed: a run that falls 5% short is flagged;
  6. thaw-webhook's VmRSS/VmHWM (idle with the index, after all load).
Prints every run, medians, the commands, and RESULT lines.
"""

import argparse
import base64
import http.client
import json
import os
import shlex
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, "test"), os.path.join(REPO, "test", "kubeemu")]

import registry  # noqa: E402
import test_webhook_e2e as e2e  # noqa: E402  (Api, Webhook, ci_name; no side effects)
import webhook_stub  # noqa: E402

# Latency runs ("smooth"): clients and streams per client. Each client's share
# of half the peak is sent from a 10 ms timer, but only this many requests are
# in flight per connection (the rest wait in h2load, outside the measured
# time), so the server never sees more than clients x streams at once. Fewer
# clients or one stream each could not deliver half of thaw's HTTP/2 peak
# here: h2load itself saturates (RESULTS.md, "latency method").
SMOOTH = {"h2": (32, 2), "h1": (64, 1)}
PEAK_CLIENTS = {"h2": 4, "h1": 8}     # peak runs, and the old "burst" latency runs

JOB_IMAGE = "docker.io/grycap/imagemagick:latest"
FIXTURE = os.path.join(REPO, "test", "fixtures", "admission",
                       "oscar-job-pod-generatename.json")


def log(*a):
    print(*a, flush=True)


def seed(api, count):
    """count CachedImages with distinct images; ~10% Ready, plus the job's."""
    conn = api.conn(timeout=60)
    images = [JOB_IMAGE] + ["registry.example.com/oscar/svc-%05d/worker:v%d" % (i, i % 7)
                            for i in range(count - 1)]
    t0 = time.time()
    ready = 0
    for i, img in enumerate(images):
        name = e2e.ci_name(img)
        st, doc, _ = api.request("POST", e2e.CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": name}, "spec": {"image": img}}, conn=conn)
        if st != 201:
            raise SystemExit("seed: POST %s -> %s %s" % (name, st, doc))
        if i % 10 == 0:
            digest = "sha256:%064x" % i
            st, doc, _ = api.request(
                "PATCH", e2e.CI_PATH + "/" + name + "/status",
                {"status": {"phase": "Ready", "digest": digest, "sizeBytes": 12345678}},
                ctype="application/merge-patch+json", conn=conn)
            if st != 200:
                raise SystemExit("seed: status %s -> %s %s" % (name, st, doc))
            ready += 1
    conn.close()
    return ready, time.time() - t0


def review_body():
    """The OSCAR job pod AdmissionReview, compact as the apiserver sends it."""
    with open(FIXTURE) as f:
        doc = json.load(f)
    return json.dumps(doc, separators=(",", ":")).encode()


def post_raw(port, ca, body):
    ctx = ssl.create_default_context(cafile=ca)
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    c.request("POST", "/mutate?timeout=5s", body=body,
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


def parse_h2load(out):
    res = {}
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("finished in"):
            # finished in 2.00s, 116535.00 req/s, 181.38MB/s
            parts = line.split(",")
            res["rps"] = float(parts[1].split()[0])
        elif line.startswith("requests:"):
            w = line.replace(",", "").split()
            res["total"] = int(w[1])
            res["succeeded"] = int(w[w.index("succeeded") - 1])
            res["failed"] = int(w[w.index("failed") - 1])
            res["errored"] = int(w[w.index("errored") - 1])
        elif line.startswith("status codes:"):
            w = line.replace(",", "").split()
            res["2xx"] = int(w[2])
    return res


class H2load:
    def __init__(self, url, data_file):
        self.url = url
        self.data_file = data_file

    def cmd(self, proto, duration, warmup, rps=None, log_file=None, smooth=False):
        """The peak shape, or with smooth the SMOOTH latency shape."""
        c = ["h2load"]
        if proto == "h1":
            c += ["--h1", "-c", str(SMOOTH["h1"][0] if smooth else PEAK_CLIENTS["h1"])]
        elif smooth:
            c += ["-c", str(SMOOTH["h2"][0]), "-m", str(SMOOTH["h2"][1])]
        else:
            c += ["-c", str(PEAK_CLIENTS["h2"]), "-m", "10"]
        c += ["-D", str(duration)]
        if warmup:
            c += ["--warm-up-time", str(warmup)]
        if rps:
            c += ["--rps", str(rps)]
        if log_file:
            c += ["--log-file", log_file]
        c += ["--data", self.data_file, "-H", "content-type: application/json", self.url]
        return c

    def run(self, *a, **kw):
        c = self.cmd(*a, **kw)
        p = subprocess.run(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        out = p.stdout.decode(errors="replace")
        res = parse_h2load(out)
        if p.returncode != 0 or "rps" not in res:
            raise SystemExit("h2load failed (%s): %s\n%s" % (p.returncode, " ".join(c), out))
        return res


def percentiles(log_file):
    lat = []
    bad = 0
    with open(log_file) as f:
        for line in f:
            w = line.split()
            if len(w) < 3:
                continue
            if w[1] != "200":
                bad += 1
            lat.append(int(w[2]))
    lat.sort()
    if not lat:
        raise SystemExit("no requests in %s" % log_file)

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))] / 1000.0
    return {"n": len(lat), "bad": bad, "p50": pct(50), "p99": pct(99), "max": lat[-1] / 1000.0}


def proc_mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024.0     # MiB
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--webhook", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--images", type=int)
    ap.add_argument("--duration", type=int)
    a = ap.parse_args()
    reps = a.reps or (1 if a.quick else 3)
    nimg = a.images or (500 if a.quick else 10000)
    dur = a.duration or (1 if a.quick else 8)
    warm = 0 if a.quick else 1
    lat_dur = 1 if a.quick else 10
    lat_warm = 0 if a.quick else 1     # not in the log: the handshakes' burst

    tmp = tempfile.mkdtemp(prefix="thaw-wbench.")
    reg = hook = h2o = None
    try:
        api = e2e.Api()
        api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": "oscar-svc"}},
               want=(201, 409))
        ready, secs = seed(api, nimg)
        log("seeded %d CachedImages (%d Ready) in %.1f s" % (nimg, ready, secs))
        certs = webhook_stub.make_certs(tmp)
        reg = registry.Registry()
        hook = e2e.Webhook(os.path.abspath(a.webhook), certs, reg.url, tmp)
        t0 = time.time()
        hook.start(timeout=300)
        log("thaw-webhook pid %d ready in %.1f s" % (hook.proc.pid, time.time() - t0))

        body = review_body()
        req_file = os.path.join(tmp, "review.json")
        with open(req_file, "wb") as f:
            f.write(body)
        deadline = time.time() + 20
        while True:     # the probe starts down: wait for the first rewrite
            st, resp = post_raw(hook.port, certs["ca"], body)
            doc = json.loads(resp) if st == 200 else {}
            patch = (doc.get("response") or {}).get("patch")
            if st == 200 and patch and "localhost:7439" in base64.b64decode(patch).decode():
                break
            if time.time() > deadline:
                raise SystemExit("thaw-webhook never rewrote the job pod: %s %s\n%s"
                                 % (st, resp[:300], hook.log_tail()))
            time.sleep(0.2)
        resp_file = os.path.join(tmp, "response.json")
        with open(resp_file, "wb") as f:
            f.write(resp)
        log("request %d bytes, response %d bytes (rewritten: %s)"
            % (len(body), len(resp), json.dumps(json.loads(base64.b64decode(patch)))[:200]))
        mem_idle = proc_mem(hook.proc.pid)

        # h2o, same cert, serving the same bytes
        h2o_port = registry.free_port()
        with open(os.path.join(HERE, "h2o-ceiling.conf")) as f:
            conf = f.read()
        for k, v in (("@PORT@", str(h2o_port)), ("@CERT@", certs["cert"]),
                     ("@KEY@", certs["key"]), ("@FILE@", resp_file),
                     ("@ERRLOG@", os.path.join(tmp, "h2o-error.log"))):
            conf = conf.replace(k, v)
        if os.geteuid() != 0:
            conf = "\n".join(ln for ln in conf.splitlines() if not ln.startswith("user:"))
        conf_file = os.path.join(tmp, "h2o.conf")
        with open(conf_file, "w") as f:
            f.write(conf)
        h2o_out = open(os.path.join(tmp, "h2o.out"), "wb")
        h2o = subprocess.Popen(["h2o", "-c", conf_file], stdout=h2o_out,
                               stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while True:
            try:
                st, got = post_raw(h2o_port, certs["ca"], body)
                if st == 200 and got == resp:
                    break
                raise SystemExit("h2o answered %s with %d bytes" % (st, len(got)))
            except OSError:
                if h2o.poll() is not None or time.time() > deadline:
                    raise SystemExit("h2o did not start: %s" % open(
                        os.path.join(tmp, "h2o.out")).read())
                time.sleep(0.1)

        thaw = H2load("https://127.0.0.1:%d/mutate?timeout=5s" % hook.port, req_file)
        ceil = H2load("https://127.0.0.1:%d/mutate?timeout=5s" % h2o_port, req_file)
        peaks = {(s, p): [] for s in ("thaw", "h2o") for p in ("h2", "h1")}
        for r in range(reps):
            for p in ("h2", "h1"):
                for s, h in (("thaw", thaw), ("h2o", ceil)):
                    res = h.run(p, dur, warm)
                    if res.get("failed") or res.get("errored") or res.get("2xx") != res["total"]:
                        raise SystemExit("%s %s: not all requests succeeded: %s" % (s, p, res))
                    peaks[s, p].append(res["rps"])
                    log("rep %d %-4s %s peak %9.0f req/s (%d requests)"
                        % (r + 1, s, p, res["rps"], res["total"]))
        med = {k: statistics.median(v) for k, v in peaks.items()}

        mem_peak = proc_mem(hook.proc.pid)

        # Latency at half of thaw's peak: "smooth" (many clients, small rate
        # each) is the figure; "burst" is the old 4/8-client shape.
        shapes = ["smooth"] if a.quick else ["smooth", "burst"]
        plan = {}
        for p in ("h2", "h1"):
            half = med["thaw", p] / 2
            n = SMOOTH[p][0]
            plan["smooth", p] = (n, max(1, int(round(half / n))))
            n = PEAK_CLIENTS[p]
            plan["burst", p] = (n, max(1, int(round(half / n))))
        lats = {(sh, s, p): [] for sh in shapes for s in ("thaw", "h2o") for p in ("h2", "h1")}
        for r in range(reps):
            for sh in shapes:
                for p in ("h2", "h1"):
                    n, rate = plan[sh, p]
                    for s, h in (("thaw", thaw), ("h2o", ceil)):
                        lf = os.path.join(tmp, "lat-%s-%s-%s-%d.log" % (sh, s, p, r))
                        h.run(p, lat_dur, lat_warm, rps=rate, log_file=lf,
                              smooth=sh == "smooth")
                        pc = percentiles(lf)
                        if pc["bad"]:
                            raise SystemExit("latency run %s %s %s: %d non-200 answers"
                                             % (sh, s, p, pc["bad"]))
                        pc["rate"] = pc["n"] / float(lat_dur)
                        short = "" if pc["rate"] >= 0.95 * n * rate else "  SHORT OF THE RATE"
                        lats[sh, s, p].append(pc)
                        log("rep %d %-6s %-4s %s %3d clients x %4d req/s: p50 %.3f ms "
                            "p99 %.3f ms (%.0f req/s achieved)%s"
                            % (r + 1, sh, s, p, n, rate, pc["p50"], pc["p99"], pc["rate"], short))
        mem_load = proc_mem(hook.proc.pid)

        log("")
        log("== thaw-webhook vs h2o (%d CPUs, h2load and both servers share them; "
            "medians of %d; %d CachedImages, %d Ready)" % (os.cpu_count(), reps, nimg, ready))
        for p, name in (("h2", "HTTP/2 -c 4 -m 10"), ("h1", "HTTP/1.1 --h1 -c 8")):
            log("%-20s thaw %9.0f req/s  h2o %9.0f req/s  ratio %.2f" % (
                name, med["thaw", p], med["h2o", p], med["thaw", p] / med["h2o", p]))
        for sh in shapes:
            for p in ("h2", "h1"):
                n, rate = plan[sh, p]
                mp = {k: statistics.median(x[k] for x in lats[sh, "thaw", p])
                      for k in ("p50", "p99")}
                hp = {k: statistics.median(x[k] for x in lats[sh, "h2o", p])
                      for k in ("p50", "p99")}
                log("latency %-6s %s, %d clients x %d req/s (half of thaw's peak; achieved %.0f): "
                    "thaw p50 %.3f ms, p99 %.3f ms (reps: %s); h2o p50 %.3f ms, p99 %.3f ms "
                    "(reps: %s)"
                    % (sh, p, n, rate, statistics.median(x["rate"] for x in lats[sh, "thaw", p]),
                       mp["p50"], mp["p99"],
                       ", ".join("%.2f" % x["p99"] for x in lats[sh, "thaw", p]),
                       hp["p50"], hp["p99"],
                       ", ".join("%.2f" % x["p99"] for x in lats[sh, "h2o", p])))
        log("thaw-webhook memory: idle VmRSS %.1f MiB; after the peak runs VmRSS %.1f MiB; "
            "after the latency runs (%d connections) VmRSS %.1f MiB, VmHWM %.1f MiB"
            % (mem_idle["VmRSS"], mem_peak["VmRSS"], SMOOTH["h1"][0], mem_load["VmRSS"],
               mem_load["VmHWM"]))
        log("commands:")
        log("  " + shlex.join(thaw.cmd("h2", dur, warm)))
        log("  " + shlex.join(thaw.cmd("h1", dur, warm)))
        for sh in shapes:
            for p in ("h2", "h1"):
                n, rate = plan[sh, p]
                log("  " + shlex.join(thaw.cmd(p, lat_dur, lat_warm, rps=rate, log_file="LOG",
                                             smooth=sh == "smooth")))
        result = {
            "cpus": os.cpu_count(), "reps": reps, "images": nimg,
            "req_bytes": len(body), "resp_bytes": len(resp),
            "thaw_h2_rps": med["thaw", "h2"], "h2o_h2_rps": med["h2o", "h2"],
            "ratio_h2": med["thaw", "h2"] / med["h2o", "h2"],
            "thaw_h1_rps": med["thaw", "h1"], "h2o_h1_rps": med["h2o", "h1"],
            "ratio_h1": med["thaw", "h1"] / med["h2o", "h1"],
            "h2_clients": plan["smooth", "h2"][0], "h2_rps_per_client": plan["smooth", "h2"][1],
            "h1_clients": plan["smooth", "h1"][0], "h1_rps_per_client": plan["smooth", "h1"][1]}
        for sh in shapes:
            pre = "" if sh == "smooth" else "burst_"
            for s_ in ("thaw", "h2o"):
                for p in ("h2", "h1"):
                    for k in ("p50", "p99"):
                        key = "%s%s%s_%s_ms" % (pre, "" if s_ == "thaw" else "h2o_", p, k)
                        result[key] = statistics.median(x[k] for x in lats[sh, s_, p])
        result.update({
            "rss_idle_mib": mem_idle["VmRSS"], "rss_mib": mem_load["VmRSS"],
            "rss_peak_mib": mem_peak["VmRSS"], "hwm_mib": mem_load["VmHWM"]})
        log("RESULT " + " ".join("%s=%s" % (k, ("%.3f" % v) if isinstance(v, float) else v)
                                 for k, v in result.items()))
        for k in ("thaw_h2_rps", "h2o_h2_rps", "thaw_h1_rps", "h2o_h1_rps", "h2_p99_ms",
                  "h1_p99_ms", "rss_mib"):
            if not result[k] > 0:
                raise SystemExit("no figure for %s" % k)
    finally:
        if h2o is not None:
            h2o.terminate()
            try:
                h2o.wait(10)
            except subprocess.TimeoutExpired:
                h2o.kill()
                h2o.wait()
        if hook is not None:
            hook.stop()
        if reg is not None:
            reg.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
