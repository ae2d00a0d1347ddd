"""Body of bench/warm-bench.sh (run it through that script): how long a warm
takes, thaw-controller against a cold `skopeo copy` of the same image.

The image: LAYERS layers of LAYER_MIB MiB of seeded random bytes each
(incompressible; test/images.py big(), cached in THAW_IMAGE_CACHE), one
config, one OCI manifest: 5 x 20 MiB by default, 5 x 2 MiB with --quick.

Cases (each REPS times (default: loopback 5, netns 3), thaw and skopeo interleaved, alternating who goes
first; every run copies into a fresh cache registry (new storage), and the
controller is a fresh process pointed at it):
  loopback  upstream docker-registry on 127.0.0.1;
            reported: thaw / skopeo (target <= 0.8).
  netns     upstream docker-registry inside a network namespace of our own,
            reached over a veth pair with `tc tbf rate RATE` on both ends'
            egress (so both directions are limited); the image is pushed
            before the limit is set. Reported: thaw / (bytes moved / rate)
            (target <= 1.1) and thaw / skopeo (target <= 1.0).
Timing: skopeo from exec to exit (a private mount namespace with an empty
tmpfs blob-info cache, so it is cold every time); thaw from the CachedImage
POST to status.phase Ready seen (polled every 10 ms; the controller is
started and /readyz before the clock starts, as in a cluster). Every copy is
checked: the digest returned equals upstream's.
Peak RSS: VmHWM of thaw-controller read from /proc/PID/status just before
it is stopped, after the copy (target <= 32 MiB); the max over runs.

--thaw skopeo runs the skopeo stand-in in thaw's place (a dry run of the
plumbing: both columns are skopeo, no RSS). With a binary it needs the
environment of test/with-emulator.sh (warm-bench.sh provides it).
Prints every run, medians and one RESULT line per case.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [os.path.join(REPO, "test"), os.path.join(REPO, "test", "kubeemu")]

import containerd  # noqa: E402  (the copiers)
import images  # noqa: E402
import registry  # noqa: E402

MIB = 1 << 20
TARGETS = {"loopback_ratio": 0.8, "link_ratio": 1.1, "netns_ratio": 1.0, "rss_mib": 32}


def log(*a):
    print(*a, flush=True)


def rate_bits(rate):
    """tc rate ("100mbit", "1gbit", "500kbit") in bits per second."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|m|g)?bit", rate.lower())
    if not m:
        raise ValueError("rate like 100mbit expected: %r" % rate)
    return float(m.group(1)) * {"k": 1e3, "m": 1e6, "g": 1e9, None: 1}[m.group(2)]


def layered_image(imgs, layers, size):
    """One OCI layout: `layers` random layers of `size` bytes (seeds 1..n),
    each made (and cached) by images.big(). Returns (layout, bytes of all
    blobs and the manifest)."""
    lo = imgs._layout("warm-bench-%dx%d" % (layers, size))
    descs = []
    for seed in range(1, layers + 1):
        src = imgs.big(size, seed=seed)
        with open(src.blob_path(src.top["digest"])) as f:
            man = json.load(f)
        with open(src.blob_path(man["config"]["digest"])) as f:
            diff_id = json.load(f)["rootfs"]["diff_ids"][0]
        l = man["layers"][0]
        descs.append((lo.put_file(src.blob_path(l["digest"]), l["digest"], l["mediaType"]),
                      diff_id))
        shutil.rmtree(src.path, ignore_errors=True)
    lo.tag(lo.image(descs, "amd64", "warm-bench"))
    total = sum(os.path.getsize(lo.blob_path(d)) for d in lo.blobs) + lo.top["size"]
    return lo, total


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), r.stderr.strip()))
    return r


class Netns:
    """A network namespace of our own and a veth pair into it, 10.201.X.0/30
    (X free on this host): .1 on our side, .2 inside. close() deletes both."""

    def __init__(self, name):
        self.name = name
        self.veth_root, self.veth_ns = name[:12] + "-r", name[:12] + "-n"
        used = sh("ip", "-o", "-4", "addr").stdout
        x = next(i for i in list(range(os.getpid() % 200, 250)) + list(range(0, 200))
                 if "10.201.%d." % i not in used)
        self.host_ip, self.ns_ip = "10.201.%d.1" % x, "10.201.%d.2" % x
        self.made = False
        try:
            sh("ip", "netns", "add", name)
            self.made = True
            sh("ip", "link", "add", self.veth_root, "type", "veth", "peer", "name", self.veth_ns)
            sh("ip", "link", "set", self.veth_ns, "netns", name)
            sh("ip", "addr", "add", self.host_ip + "/30", "dev", self.veth_root)
            sh("ip", "link", "set", self.veth_root, "up")
            self.exec("ip", "addr", "add", self.ns_ip + "/30", "dev", self.veth_ns)
            self.exec("ip", "link", "set", self.veth_ns, "up")
            self.exec("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def exec(self, *cmd):
        return sh("ip", "netns", "exec", self.name, *cmd)

    def limit(self, rate):
        """tbf on the egress of both veth ends (burst 64 KiB, latency 50 ms)."""
        tbf = ["root", "tbf", "rate", rate, "burst", "64kb", "latency", "50ms"]
        sh("tc", "qdisc", "add", "dev", self.veth_root, *tbf)
        self.exec("tc", "qdisc", "add", "dev", self.veth_ns, *tbf)

    def close(self):
        sh("ip", "link", "del", self.veth_root, check=False)
        if self.made:
            sh("ip", "netns", "del", self.name, check=False)
            self.made = False


class NetnsRegistry(registry.ChildServer):
    """docker-registry inside `ns` on NS_IP:5000 (`ip netns exec` execs into
    it, so its PID is the registry's), stopped by PID."""

    def __init__(self, ns, timeout=20):
        self.dir = tempfile.mkdtemp(prefix="thaw-wb-upstream.")
        self.host = "%s:5000" % ns.ns_ip
        self.url = "http://" + self.host
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    "storage:\n  filesystem:\n    rootdirectory: %s/storage\n"
                    "http:\n  addr: %s\n" % (self.dir, self.host))
        try:
            with open(os.path.join(self.dir, "registry.log"), "ab") as lg:
                self.proc = subprocess.Popen(
                    ["ip", "netns", "exec", ns.name, registry.BINARY, "serve", cfg],
                    stdout=lg, stderr=subprocess.STDOUT, preexec_fn=registry.die_with_parent)
            deadline = time.time() + timeout
            while registry.http_status(self.url + "/v2/", 0.5) != 200:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("upstream registry in %s did not come up (rc %s)"
                                       % (ns.name, self.proc.poll()))
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise


def one_run(kind, a, ref, digest, insecure, work):
    """One copy of ref into a fresh cache registry. Returns (seconds, VmHWM
    KiB or None)."""
    with registry.Registry() as cache:
        if kind == "thaw" and a.thaw != "skopeo":
            copier = containerd.make_copier("thaw", cache.url, work, binary=a.thaw,
                                            insecure=insecure, concurrency=a.concurrency,
                                            blob_concurrency=a.blob_concurrency)
        else:
            copier = containerd.make_copier("skopeo", cache.url, work)
        try:
            copier.start()
            t0 = time.monotonic()
            got = copier.warm(ref)
            seconds = time.monotonic() - t0
            if copier.kind == "thaw":
                seconds = copier.last_seconds
                copier.forget()
        finally:
            copier.close()
        if got != digest:
            raise RuntimeError("%s copied %s as %s, upstream has %s" % (kind, ref, got, digest))
        return seconds, getattr(copier, "peak_rss_kib", None)


def run_case(name, ref, digest, insecure, a, work):
    times = {"thaw": [], "skopeo": []}
    rss = []
    reps = a.reps or (1 if a.quick else {"loopback": 5}.get(name, 3))
    for rep in range(reps):
        order = ("thaw", "skopeo") if rep % 2 == 0 else ("skopeo", "thaw")
        for kind in order:
            s, hwm = one_run(kind, a, ref, digest, insecure, work)
            times[kind].append(s)
            if kind == "thaw" and hwm:
                rss.append(hwm)
            log("  %-8s run %d  %-6s %7.3f s  %6.1f MB/s%s"
                % (name, rep + 1, kind, s, a.total / s / 1e6,
                   "  VmHWM %.1f MiB" % (hwm / 1024) if hwm and kind == "thaw" else ""))
    med = {k: statistics.median(v) for k, v in times.items()}
    return med, (max(rss) if rss else None), times


def verdict(value, target):
    return "met" if value <= target else "MISSED"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--thaw", required=True,
                    help="thaw-controller binary, or 'skopeo' for a dry run")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--layer-mib", type=float)
    ap.add_argument("--rate", default="100mbit")
    ap.add_argument("--cases", default="loopback,netns")
    ap.add_argument("--concurrency", type=int, default=4, help="thaw-controller's flag")
    ap.add_argument("--blob-concurrency", type=int, default=6, help="thaw-controller's flag")
    ap.add_argument("--netns", default="thaw-wb-%d" % os.getpid(),
                    help="name of the network namespace to create (warm-bench.sh's trap "
                         "deletes it too)")
    a = ap.parse_args()
    size = int((a.layer_mib or (2 if a.quick else 20)) * MIB)
    cases = [c for c in a.cases.split(",") if c]
    dry = a.thaw == "skopeo"
    if not dry:
        a.thaw = os.path.abspath(a.thaw)
        if not os.environ.get("THAW_EMU_URL"):
            sys.exit("warm_bench: --thaw BIN needs test/with-emulator.sh (use warm-bench.sh)")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # finally-blocks run

    work = tempfile.mkdtemp(prefix="thaw-warm-bench.")
    results = []
    try:
        imgs = images.Images(os.path.join(work, "images"))
        t = time.monotonic()
        lo, total = layered_image(imgs, a.layers, size)
        a.total = total
        log("image: %d layers x %.1f MiB random, %d bytes moved per copy (%.1f s to make)"
            % (a.layers, size / MIB, total, time.monotonic() - t))
        log("thaw: %s; runs interleaved; skopeo %s, cold blob-info cache"
            % ("skopeo stand-in (DRY RUN: both columns are skopeo)" if dry else a.thaw,
               subprocess.run(["skopeo", "--version"], capture_output=True,
                                      text=True).stdout.strip()))
        for case in cases:
            if case == "loopback":
                with registry.Registry() as up:
                    host = up.url.split("://")[1]
                    ref = "%s/bench/warm:v1" % host
                    digest = imgs.push(lo, ref)["digest"]
                    med, rss, _ = run_case("loopback", ref, digest, [host], a, work)
                ratio = med["thaw"] / med["skopeo"]
                results.append(
                    "RESULT loopback: thaw %.3f s, skopeo %.3f s, thaw/skopeo %.2f "
                    "(target <= %.1f: %s), peak RSS %s"
                    % (med["thaw"], med["skopeo"], ratio, TARGETS["loopback_ratio"],
                       verdict(ratio, TARGETS["loopback_ratio"]), rss_text(rss)))
            elif case == "netns":
                ns = Netns(a.netns)
                try:
                    with NetnsRegistry(ns) as up:
                        ref = "%s/bench/warm:v1" % up.host
                        digest = imgs.push(lo, ref)["digest"]
                        ns.limit(a.rate)
                        link_s = total * 8 / rate_bits(a.rate)
                        log("netns %s: upstream %s behind tbf %s both ways; "
                            "bytes/rate = %.3f s" % (ns.name, up.url, a.rate, link_s))
                        med, rss, _ = run_case("netns", ref, digest, [up.host], a, work)
                finally:
                    ns.close()
                r_link, r_sk = med["thaw"] / link_s, med["thaw"] / med["skopeo"]
                results.append(
                    "RESULT netns %s: thaw %.3f s, skopeo %.3f s, bytes/rate %.3f s; "
                    "thaw/(bytes/rate) %.2f (target <= %.1f: %s), thaw/skopeo %.2f "
                    "(target <= %.1f: %s), peak RSS %s"
                    % (a.rate, med["thaw"], med["skopeo"], link_s, r_link,
                       TARGETS["link_ratio"], verdict(r_link, TARGETS["link_ratio"]),
                       r_sk, TARGETS["netns_ratio"], verdict(r_sk, TARGETS["netns_ratio"]),
                       rss_text(rss)))
            else:
                sys.exit("warm_bench: unknown case %r" % case)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log("")
    for line in results:
        log(line + (" [DRY RUN: thaw is skopeo]" if dry else ""))


def rss_text(kib):
    if kib is None:
        return "n/a"
    mib = kib / 1024
    return "%.1f MiB (target <= %d: %s)" % (mib, TARGETS["rss_mib"],
                                             verdict(mib, TARGETS["rss_mib"]))


if __name__ == "__main__":
    main()
