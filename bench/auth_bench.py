"""Body of bench/auth-bench.sh (run it through that script): public pulls
through thaw with the cache registry's token auth (issue 12) against the
same pulls without it, in one run, like with like.

Two stacks, side by side, both warm before any clock starts:
  A (auth)     the cache registry with manifests/registry's config WITH its
               auth.token section (realm thaw-controller's GET /token on a
               free port, rootcertbundle the certificate made here: EC P-256
               as certs/gen-webhook-certs.sh makes, or RSA 2048 with
               --key rsa); thaw-controller with --token-key-file,
               --token-cert-file and --token-bind-address warms the image
               into it (its own tokens) and serves the node-local
               endpoints' anonymous pull tokens.
  B (no auth)  the same config without `auth`; the same image pushed into
               it with skopeo (same repository, tag and digest).
The image: bench/experiment_image.py's (the study's grycap/imagemagick
shape, 32.8 MB in 4 layers), layers kept by content in --image-cache.

Each round (default 5, --quick 1) runs A and B, alternating which goes
first. Per stack, a fresh node-local endpoint (manifests/node-local's
config, proxy remoteurl the stack's cache; started and answering before
the clock) is the "cold node", and one private containerd (test/containerd.py,
`--hosts-dir` maps localhost:7439 onto that endpoint) pulls:
  cold      <cache path>:latest@<digest> (what thaw-webhook writes) with the
            endpoint empty: every blob goes through to the cache;
  warm      the same again after `ctr image rm --sync`: the endpoint holds
            the manifest and every blob;
  warm-tag  <cache path>:latest (the tag alone) after another rm: the tag
            is resolved at the cache again (the proxy's tag lookup always
            asks its remote), the blobs come from the endpoint;
  fetch     on another fresh endpoint, the registry traffic of a cold pull
            without containerd and its unpack (which dominate the pull and
            its noise): GET of the manifest by digest, then of each distinct
            blob in turn, bodies read to the end, from Python.
Timing: `ctr images pull` (fetch and unpack) from exec to exit; fetch from
the first request to the last byte. Each pull is checked: containerd
records the image's digest; fetch: every blob byte the manifest lists came.
Token requests per pull:
the change of thaw-controller's thaw_token_requests_total (all codes)
across it (B's pulls must leave it unmoved). One untimed warm-up pull per
stack comes first (containerd, page cache, the controller's first token).

Then the token endpoint alone: `wrk --latency` for --wrk-seconds (default
10, --quick 2) on GET /token?service=thaw-registry&scope=repository:x:pull,
with 1 connection (what one caller waits) and with --wrk-connections
(default 16, 2 threads): requests/s, p50 and p99, non-2xx must be 0.

Prints every pull, then medians and the ratios auth/no-auth ("cold pull:
auth 1.41 s, no auth 1.38 s, ratio 1.02 ...") and RESULT lines. Exits 1
when a check fails: a wrong digest, no token request in an auth cold pull,
one in a no-auth pull, a ratio that is not a finite number between 0.1 and
10 (a broken stack, not a slow one), non-2xx answers from /token, a
controller that does not exit 0 on SIGTERM or logs a sanitizer report.
Needs root (containerd) and the environment of test/with-emulator.sh.
"""

import argparse
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(REPO, "test"), os.path.join(REPO, "test", "kubeemu")]

import containerd  # noqa: E402
import experiment_image  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
from test_ctr_pull import MANIFESTS, ConfigRegistry, manifest_config  # noqa: E402

SERVICE = "thaw-registry"
CASES = ("cold", "warm", "warm-tag", "fetch")
LABELS = {"cold": "cold pull (empty node-local endpoint)",
          "warm": "warm node, pinned re-pull",
          "warm-tag": "warm node, pull by tag",
          "fetch": "cold fetch, HTTP only (no containerd, no unpack)"}
ACCEPT = "application/vnd.oci.image.manifest.v1+json"
WARM_S = 180   # the controller's warm of 33 MB on a loaded machine
RATIO_SANE = (0.1, 10.0)


def log(*a):
    print(*a, flush=True)


def make_key(work, kind):
    """The token signing key and its self-signed certificate (PEM paths)."""
    key, cert = os.path.join(work, "token.key"), os.path.join(work, "token.crt")
    newkey = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if kind == "ec"
              else ["-newkey", "rsa:2048"])
    subprocess.run(["openssl", "req", "-x509", "-nodes", "-sha256", "-days", "2"] + newkey +
                   ["-keyout", key, "-out", cert, "-subj", "/CN=thaw-token"],
                   check=True, capture_output=True)
    return key, cert


class Stack:
    """One side of the comparison: a cache registry, a containerd hosts dir
    for localhost:7439, and the node-local endpoint of the current round."""

    def __init__(self, name, cache, work):
        self.name = name
        self.cache = cache
        self.hosts = os.path.join(work, "hosts-" + name)
        os.makedirs(os.path.join(self.hosts, stack.CACHE_HOST))
        self.node = None
        self.node_cfg = manifest_config(os.path.join(MANIFESTS, "node-local", "configmap.yaml"),
                                        "thaw-node-local")

    def fresh_node(self):
        """A new, empty node-local endpoint (the last one stopped and
        removed), answering before this returns; containerd's hosts.toml
        points at it."""
        self.close_node()
        self.node = ConfigRegistry(self.node_cfg, "node-local-" + self.name,
                                   remoteurl=self.cache.url)
        with open(os.path.join(self.hosts, stack.CACHE_HOST, "hosts.toml"), "w") as f:
            f.write('server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
                    % (self.node.url, self.node.url))

    def close_node(self):
        if self.node is not None:
            self.node.close()
            self.node = None

    close = close_node


class Bench:
    def __init__(self, a, work):
        self.a = a
        self.work = work
        self.closers = stack.Closers()
        self.ctl = None

    def tokens(self):
        """thaw_token_requests_total, all codes."""
        return stack.metric_sum(self.ctl.metrics(), "thaw_token_requests_total")

    def setup(self):
        a, own = self.a, self.closers.own
        api = stack.Api()
        api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": stack.SYSTEM_NS}},
               want=(201, 409))
        t = time.monotonic()
        info = experiment_image.build(os.path.join(self.work, "image"), cache=a.image_cache)
        log("image: bench/experiment_image.py, %d bytes (layers %s), %s (%.1f s to make)"
            % (info["size"], ", ".join(str(s) for s in info["layers"]), info["digest"],
               time.monotonic() - t))
        upstream = own(registry.Registry())
        up = upstream.url.split("://", 1)[1]
        self.ref = "%s/%s:%s" % (up, info["ref_name"], info["tag"])
        experiment_image.push(info, self.ref, os.path.join(self.work, "push"))
        self.digest = info["digest"]
        repo, suffix = containerd.cache_repo(self.ref)
        self.by_tag = "%s/%s%s" % (stack.CACHE_HOST, repo, suffix)
        self.pinned = self.by_tag + "@" + self.digest
        self.repo = repo
        cache_cfg = manifest_config(os.path.join(MANIFESTS, "registry", "configmap.yaml"),
                                    "thaw-registry")

        # A: the controller's token endpoint first (the cache's config names it).
        key, cert = make_key(self.work, a.key)
        port = registry.free_port()
        self.realm = "http://127.0.0.1:%d/token" % port
        cache_a = own(ConfigRegistry(cache_cfg, "cache-auth",
                                     token={"realm": self.realm, "rootcertbundle": cert}))
        self.ctl = stack.Controller(
            a.controller, cache_a.url, self.work,
            extra=["--insecure-registries", up, "--leader-elect=false",
                   "--token-key-file", key, "--token-cert-file", cert,
                   "--token-bind-address", "127.0.0.1:%d" % port])
        self.closers.closers.append(self.ctl.stop)
        self.ctl.start()
        api.ok("POST", stack.CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": stack.ci_name(self.ref)}, "spec": {"image": self.ref}})
        t = time.monotonic()
        ci = stack.wait_ci_ready(api, self.ref, WARM_S, poll=0.05)
        if ci is None or ci["status"].get("digest") != self.digest:
            raise RuntimeError("the controller did not warm %s into A (%s); log:\n%s"
                               % (self.ref, ci and ci.get("status"), self.ctl.log_tail()))
        log("A (auth): cache %s, token endpoint %s (%s key), warmed by thaw-controller "
            "in %.1f s" % (cache_a.url, self.realm, a.key.upper(), time.monotonic() - t))

        # B: the same config without auth, the same bytes pushed by skopeo.
        cache_b = own(ConfigRegistry(cache_cfg, "cache-noauth"))
        t = time.monotonic()
        got = experiment_image.push(info, "%s/%s%s" % (cache_b.url.split("://", 1)[1], repo,
                                                       suffix), os.path.join(self.work, "push"))
        if got["digest"] != self.digest:
            raise RuntimeError("B holds %s, not %s" % (got["digest"], self.digest))
        log("B (no auth): cache %s, pushed by skopeo in %.1f s"
            % (cache_b.url, time.monotonic() - t))
        self.stacks = {"auth": own(Stack("auth", cache_a, self.work)),
                       "noauth": own(Stack("noauth", cache_b, self.work))}
        self.cd = own(containerd.Containerd())
        log("containerd: snapshotter %s; pulls of %s" % (self.cd.snapshotter, self.pinned))

    def pull(self, st, ref):
        """One timed `ctr images pull` of ref through st's node-local
        endpoint, checked and removed after. Returns (seconds, token requests)."""
        t0 = self.tokens()
        args = ["images", "pull", "--snapshotter", self.cd.snapshotter, "--plain-http",
                "--hosts-dir", st.hosts, ref]
        start = time.monotonic()
        r = self.cd.ctr(*args, check=False)
        seconds = time.monotonic() - start
        if r.returncode != 0:
            raise RuntimeError("%s: pull %s failed: %s\nnode-local log:\n%s\ncache log:\n%s"
                               % (st.name, ref, r.stderr.strip(), st.node.log_tail(),
                                  st.cache.log_tail()))
        tokens = self.tokens() - t0
        img = self.cd.image(ref)
        if not img or img["digest"] != self.digest:
            raise RuntimeError("%s: %s pulled as %s, want %s" % (st.name, ref, img, self.digest))
        self.cd.remove(ref)
        return seconds, int(tokens)

    def fetch(self, st):
        """The registry traffic of a cold pull alone: GET of the manifest by
        digest, then of each distinct blob, one after the other, bodies read
        to the end, from st's node-local endpoint. Returns (seconds, token
        requests)."""
        t0 = self.tokens()
        base = "%s/v2/%s" % (st.node.url, self.repo)
        start = time.monotonic()
        with urllib.request.urlopen(urllib.request.Request(
                "%s/manifests/%s" % (base, self.digest), headers={"Accept": ACCEPT}),
                timeout=60) as r:
            man = json.loads(r.read())
        blobs = dict((d["digest"], d["size"]) for d in [man["config"]] + man["layers"])
        n = 0
        for d in blobs:
            with urllib.request.urlopen("%s/blobs/%s" % (base, d), timeout=120) as r:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    n += len(chunk)
        seconds = time.monotonic() - start
        if n != sum(blobs.values()):
            raise RuntimeError("%s: fetched %d blob bytes, the manifest lists %d"
                               % (st.name, n, sum(blobs.values())))
        return seconds, int(self.tokens() - t0)

    def round(self, st):
        """cold, warm and warm-tag on a fresh node-local endpoint, fetch on
        another: {case: (seconds, tokens)}."""
        st.fresh_node()
        out = {"cold": self.pull(st, self.pinned)}
        out["warm"] = self.pull(st, self.pinned)
        out["warm-tag"] = self.pull(st, self.by_tag)
        st.fresh_node()
        out["fetch"] = self.fetch(st)
        st.close_node()
        return out

    def check_token(self):
        """One anonymous GET /token: 200 and a JWS granting pull on x (so
        wrk measures real answers, not errors)."""
        q = urllib.parse.urlencode({"service": SERVICE, "scope": "repository:x:pull"})
        with urllib.request.urlopen(self.realm + "?" + q, timeout=10) as r:
            doc = json.loads(r.read())
        if doc.get("token", "").count(".") != 2 or doc.get("expires_in", 0) <= 0:
            raise RuntimeError("GET /token answered %s" % doc)

    def pulls(self):
        a = self.a
        for name in ("auth", "noauth"):   # untimed: containerd, caches, first token
            self.stacks[name].fresh_node()
            self.pull(self.stacks[name], self.pinned)
            self.stacks[name].close_node()
        runs = {"auth": [], "noauth": []}
        for rnd in range(a.rounds):
            order = ("auth", "noauth") if rnd % 2 == 0 else ("noauth", "auth")
            for name in order:
                r = self.round(self.stacks[name])
                runs[name].append(r)
                log("  round %d  %-6s  " % (rnd + 1, name) + "  ".join(
                    "%s %.3f s %d tok" % (c, r[c][0], r[c][1]) for c in CASES))
        return runs

    def wrk(self, connections, threads):
        """wrk --latency on the token endpoint: {rps, p50_ms, p99_ms,
        requests, non2xx}."""
        url = "%s?service=%s&scope=repository:x:pull" % (self.realm, SERVICE)
        r = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections),
                            "-d", "%ds" % self.a.wrk_seconds, "--latency", url],
                           capture_output=True, text=True, timeout=self.a.wrk_seconds + 60)
        if r.returncode != 0:
            raise RuntimeError("wrk: %s" % (r.stderr or r.stdout).strip())
        return parse_wrk(r.stdout)


def to_ms(value):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError("wrk latency %r" % value)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[m.group(2)]


def parse_wrk(text):
    """The figures of `wrk --latency` output."""
    def find(pattern):
        m = re.search(pattern, text, re.M)
        if not m:
            raise ValueError("wrk output without %r:\n%s" % (pattern, text))
        return m.group(1)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:(.*)$", text, re.M)
    return {"rps": float(find(r"^Requests/sec:\s+([\d.]+)")),
            "p50_ms": to_ms(find(r"^\s+50%\s+(\S+)")),
            "p99_ms": to_ms(find(r"^\s+99%\s+(\S+)")),
            "requests": int(find(r"^\s+(\d+) requests in")),
            "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "errors": errors.group(1).strip() if errors else ""}


def sane(ratio):
    return math.isfinite(ratio) and RATIO_SANE[0] < ratio < RATIO_SANE[1]


def report(runs, wrk, a):
    """Prints medians, ratios and RESULT lines; returns the failed checks."""
    bad = []
    log("")
    log("medians of %d round%s (seconds, token requests per pull):"
        % (a.rounds, "" if a.rounds == 1 else "s"))
    results = []
    for c in CASES:
        med = {}
        tok = {}
        for name in ("auth", "noauth"):
            med[name] = statistics.median(r[c][0] for r in runs[name])
            tok[name] = statistics.median(r[c][1] for r in runs[name])
        ratio = med["auth"] / med["noauth"] if med["noauth"] > 0 else float("nan")
        line = ("%s: auth %.2f s, no auth %.2f s, ratio %.2f; token requests per pull: "
                "auth %g, no auth %g" % (LABELS[c], med["auth"], med["noauth"], ratio,
                                         tok["auth"], tok["noauth"]))
        results.append("RESULT " + line)
        log("  " + line)
        log("    auth:    " + " ".join("%.3f" % r[c][0] for r in runs["auth"]))
        log("    no auth: " + " ".join("%.3f" % r[c][0] for r in runs["noauth"]))
        if not sane(ratio):
            bad.append("%s: ratio %r outside %s" % (c, ratio, RATIO_SANE))
        if any(r[c][1] for r in runs["noauth"]):
            bad.append("%s: token requests during no-auth pulls" % c)
    if not all(r["cold"][1] > 0 for r in runs["auth"]):
        bad.append("cold: an auth pull without a token request (is auth on?)")
    for conns, w in wrk:
        line = ("token endpoint, %d connection%s, %d s: %.0f requests/s, p50 %.2f ms, "
                "p99 %.2f ms, %d requests, non-2xx %d%s"
                % (conns, "" if conns == 1 else "s", a.wrk_seconds, w["rps"], w["p50_ms"],
                   w["p99_ms"], w["requests"], w["non2xx"],
                   ", socket errors: " + w["errors"] if w["errors"] else ""))
        log("  " + line)
        results.append("RESULT " + line)
        if w["non2xx"] or w["errors"] or w["rps"] <= 0:
            bad.append("token endpoint with %d connections: %s" % (conns, w))
    log("")
    for line in results:
        log(line)
    return bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--controller", required=True, help="thaw-controller binary")
    ap.add_argument("--quick", action="store_true", help="1 round, 2-s wrk runs (the smoke)")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--wrk-seconds", type=int)
    ap.add_argument("--wrk-connections", type=int, default=16)
    ap.add_argument("--key", choices=("ec", "rsa"), default="ec",
                    help="token signing key: EC P-256 (as deployed) or RSA 2048")
    ap.add_argument("--image-cache", help="keep the image's layers here (by content)")
    ap.add_argument("--json", help="write the runs and wrk figures here")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.quick else 5)
    a.wrk_seconds = a.wrk_seconds or (2 if a.quick else 10)
    a.controller = os.path.abspath(a.controller)
    if not os.environ.get("THAW_EMU_URL"):
        sys.exit("auth_bench: needs test/with-emulator.sh (use bench/auth-bench.sh)")
    for tool in ("docker-registry", "skopeo", "containerd", "ctr", "openssl", "wrk"):
        if not shutil.which(tool):
            sys.exit("auth_bench: %s not installed (test/deps.sh installs it)" % tool)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally-blocks run

    work = tempfile.mkdtemp(prefix="thaw-auth-bench.")
    b = Bench(a, work)
    try:
        b.setup()
        log("%d round%s, auth and no auth alternating who goes first"
            % (a.rounds, "" if a.rounds == 1 else "s"))
        runs = b.pulls()
        b.check_token()
        wrk = [(1, b.wrk(1, 1)), (a.wrk_connections, b.wrk(a.wrk_connections, 2))]
        stack.stop_clean(b.ctl)   # exit 0, no sanitizer report (an ASan build)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"runs": runs, "wrk": wrk, "digest": b.digest,
                           "rounds": a.rounds, "key": a.key}, f, indent=1)
    except BaseException:
        if b.ctl is not None:
            log("controller log tail:\n" + b.ctl.log_tail())
        raise
    finally:
        b.closers.close()
        shutil.rmtree(work, ignore_errors=True)
    bad = report(runs, wrk, a)
    for line in bad:
        log("CHECK FAILED: " + line)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
