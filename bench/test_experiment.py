#!/usr/bin/env python3
"""The reference experiment's image and report (meson test experiment-image,
suite bench):

- bench/experiment_image.py built twice gives byte-identical layouts (and
  a third build from its layer cache too), of
  the study's shape: 4 layers, two empty (an empty tar), the other two
  within 2% of 19.5 MB and 13.3 MB compressed; every blob matches its
  digest and the config's diff_ids match the uncompressed layers; the base
  layer holds the libraries and the loader, the app layer convert and its
  coders; the input is a PNG of a few hundred KB;
- as root (CI), the image pushed to a loopback docker-registry, pulled by a
  private containerd and run by it turns the input into a grayscale PNG;
- bench/experiment_run.py reads durations and thaw's --cold-wait from the
  rendered manifests/overlays/oscar;
- bench/experiment_report.py on a synthetic experiment.json prints the
  table's figures (the mean gate wait 0 where jobs have none) as this test
  computes them with the statistics module,
  marks each goal as this test decides it, writes the PNGs, and exits 2 on
  bad input.
"""
import gzip
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.join(os.path.dirname(HERE), "test")
sys.path[:0] = [HERE, TEST]

import unittest77  # noqa: E402
import experiment_image  # noqa: E402

REPORT = os.path.join(HERE, "experiment_report.py")
SCENARIOS = ["no-cache", "mirror", "thaw-cold", "thaw-prewarm", "floor"]
LABELS = {"no-cache": "no cache", "mirror": "registry mirror", "thaw-cold": "thaw, cold",
          "thaw-prewarm": "thaw, pre-warm", "floor": "floor (node-local, no auth, no delay)"}


def blob(layout, digest):
    return os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])


def tree_bytes(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


class Image(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="thaw-exp-image.")
        t0 = time.monotonic()
        cache = os.path.join(cls.work, "cache")
        cls.a = experiment_image.build(os.path.join(cls.work, "a"), cache=cache)  # stores
        cls.b = experiment_image.build(os.path.join(cls.work, "b"))
        t1 = time.monotonic()
        cls.c = experiment_image.build(os.path.join(cls.work, "c"), cache=cache)  # reads
        print("\ntwo builds in %.1f s, one from the cache in %.1f s: layers %s compressed,"
              " %s uncompressed" % (t1 - t0, time.monotonic() - t1, cls.a["layers"],
                                    cls.a["layers_uncompressed"]), file=sys.stderr)
        with open(os.path.join(cls.a["layout"], "index.json")) as f:
            cls.index = json.load(f)
        with open(blob(cls.a["layout"], cls.a["digest"]), "rb") as f:
            cls.manifest = json.load(f)
        with open(blob(cls.a["layout"], cls.manifest["config"]["digest"]), "rb") as f:
            cls.config = json.load(f)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def test_deterministic(self):
        self.assertEqual(self.a["digest"], self.b["digest"])
        ta, tb = tree_bytes(self.a["layout"]), tree_bytes(self.b["layout"])
        self.assertEqual(ta, tb)
        self.assertEqual(tree_bytes(self.c["layout"]), ta)   # the cache changes nothing
        self.assertEqual(len(os.listdir(os.path.join(self.work, "cache"))), 4)
        self.assertGreaterEqual(len(ta), 6)   # oci-layout, index, manifest, config, 3 layers

    def test_shape(self):
        self.assertEqual(self.index["manifests"][0]["digest"], self.a["digest"])
        self.assertEqual(self.index["manifests"][0]["annotations"]
                         ["org.opencontainers.image.ref.name"], "latest")
        layers = self.manifest["layers"]
        self.assertEqual(len(layers), 4)
        self.assertEqual([l["size"] for l in layers], self.a["layers"])
        big, empty = layers[:2], layers[2:]
        for l, target in zip(big, (19.5e6, 13.3e6)):
            self.assertLess(abs(l["size"] - target) / target, 0.02, l)
        self.assertEqual(empty[0]["digest"], empty[1]["digest"])
        self.assertLess(self.a["size"], 34e6)
        diff_ids = self.config["rootfs"]["diff_ids"]
        for l, diff_id in zip(layers, diff_ids):
            with open(blob(self.a["layout"], l["digest"]), "rb") as f:
                z = f.read()
            self.assertEqual("sha256:" + hashlib.sha256(z).hexdigest(), l["digest"])
            self.assertEqual(len(z), l["size"])
            raw = gzip.decompress(z)
            self.assertEqual("sha256:" + hashlib.sha256(raw).hexdigest(), diff_id)
            if l in empty:
                self.assertEqual(raw, b"\0" * 1024)   # an empty tar archive

    def members(self, i):
        with tarfile.open(blob(self.a["layout"], self.manifest["layers"][i]["digest"])) as t:
            return {m.name: m for m in t.getmembers()}

    def test_contents(self):
        base, app = self.members(0), self.members(1)
        lib = "usr/lib/x86_64-linux-gnu/"
        for name in ("libc.so.6", "ld-linux-x86-64.so.2", "libstdc++.so.6", "libxml2.so.2"):
            self.assertTrue(base[lib + name].isfile(), name)
        self.assertEqual(base["lib64"].linkname, "usr/lib64")
        self.assertTrue(app["usr/bin/convert-im6.q16"].mode & 0o111)
        self.assertEqual(app["usr/bin/convert"].linkname, "convert-im6.q16")
        self.assertTrue(app[lib + "libMagickCore-6.Q16.so.6"].isfile())
        modules = [n for n in app if "/modules-Q16/" in n and n.endswith(".so")]
        for c in ("coders/png.so", "coders/jpeg.so"):
            self.assertTrue(any(n.endswith("/" + c) for n in modules), c)
        self.assertEqual(len(modules), self.a["modules"])
        for name in ("etc/ImageMagick-6/policy.xml", "usr/share/ImageMagick-6/locale.xml"):
            self.assertTrue(app[name].isfile(), name)
        self.assertEqual(self.config["config"]["Cmd"], self.a["argv"])

    def test_input(self):
        size = os.path.getsize(self.a["input"])
        self.assertTrue(100e3 < size < 1e6, size)
        w, h, channels, rows = experiment_image.read_png(self.a["input"])
        self.assertEqual((w, h, channels), experiment_image.INPUT_SIZE + (3,))
        self.assertGreater(len(set(rows[h // 2])), 100)   # a picture, not a flat field
        # check_gray's own failure: the colour input is not gray.
        self.assertIn("not gray", experiment_image.check_gray(self.a["input"], self.a["input"]))

    def test_runs_in_containerd(self):
        if os.geteuid() != 0:
            self.skipTest("running the image needs root for containerd (CI has it)")
        for tool in ("docker-registry", "skopeo", "containerd", "ctr", "runc"):
            if not shutil.which(tool):
                raise AssertionError("%s not installed: test/deps.sh installs it" % tool)
        import containerd
        import registry
        reg = registry.Registry()
        try:
            ref = "%s/grycap/imagemagick:latest" % reg.url.split("//", 1)[1]
            experiment_image.push(self.a, ref, self.work)
            with containerd.Containerd() as cd:
                t0 = time.monotonic()
                got = cd.pull(ref)
                pulled = time.monotonic() - t0
                self.assertEqual(got["digest"], self.a["digest"])
                out = os.path.join(self.work, "out")
                os.makedirs(out)
                t0 = time.monotonic()
                r = experiment_image.run(cd, ref, os.path.dirname(self.a["input"]), out,
                                         "exp-image-%d" % os.getpid())
                ran = time.monotonic() - t0
                self.assertEqual(r.returncode, 0, r.stderr + cd.log_tail())
                problem = experiment_image.check_gray(self.a["input"],
                                                      os.path.join(out, "output.png"))
                self.assertIsNone(problem)
                print("\npulled in %.2f s (loopback, %s), job ran in %.2f s"
                      % (pulled, cd.snapshotter, ran), file=sys.stderr)
        finally:
            reg.close()


def synthetic(seed=5, nodes=3, jobs=9):
    """An experiment.json of both patterns and five scenarios; one failed job."""
    rng = random.Random(seed)
    base = {"no-cache": 2.4, "mirror": 1.6, "thaw-cold": 1.5, "thaw-prewarm": 0.35,
            "floor": 0.3}
    runs = []
    for pattern in ("burst", "paced"):
        for sc in SCENARIOS:
            js, seen = [], set()
            for i in range(jobs):
                node = "node-%d" % (i % nodes)
                pull = round(base[sc] * rng.uniform(0.5, 1.5) * (3 if node not in seen else 1), 3)
                wait = round(pull + (rng.uniform(0, 4) if pattern == "burst" else 0), 3)
                ok = not (sc == "mirror" and i == 4)
                js.append({"job": i, "node": node, "pod": "p-%d" % i, "image": "x",
                           "rewritten": sc.startswith("thaw"), "created": i * 0.1,
                           "queued": i * 0.1, "pull_start": 0.0, "pull_end": pull,
                           "run_end": pull + 0.5, "pull_s": pull if ok else None,
                           "pull_wait_s": wait if ok else None,
                           "e2e_s": round(wait + rng.uniform(0.3, 0.6), 3) if ok else None,
                           "first_on_node": node not in seen, "ok": ok,
                           "error": None if ok else "pull failed: 503"})
                if sc.startswith("thaw"):   # cold: the first pods gated; others without the field
                    gate = round(rng.uniform(1, 5), 3) if sc == "thaw-cold" and i < 4 else 0.0
                    js[-1].update(gated=gate > 0, gate_wait_s=gate)
                seen.add(node)
            remote = {"bytes": rng.randint(30_000_000, 200_000_000),
                      "manifest_gets": rng.randint(1, 12), "blob_gets": 10,
                      "token_gets": 3, "requests": 40}
            thaw = {"cpu_s": round(rng.uniform(0.1, 2), 2),
                    "peak_rss_mib": round(rng.uniform(5, 20), 1)} if sc.startswith("thaw") \
                else None
            runs.append({"scenario": sc, "pattern": pattern, "remote": remote, "thaw": thaw,
                         "jobs": js})
    return {"meta": {"commit": "abc", "date": "2024-01-01", "nodes": nodes, "jobs": jobs,
                     "interval_s": 2, "rate": "100mbit", "rtt_ms": 40,
                     "image": {"ref_name": "grycap/imagemagick", "tag": "latest",
                               "digest": "sha256:0", "layers": [19_500_000, 13_300_000, 29, 29],
                               "size": 32_802_000}},
            "runs": runs}


def expected_row(run):
    """The table's cells for a run, computed here with the statistics module."""
    ok = [j for j in run["jobs"] if j["ok"]]
    pulls = [j["pull_s"] for j in ok]
    firsts = [j["pull_s"] for j in ok if j["first_on_node"]]
    q = statistics.quantiles(pulls, n=100, method="inclusive")
    f = lambda v: "%.2f" % v
    thaw = run["thaw"]
    return [LABELS[run["scenario"]], "%d/%d" % (len(ok), len(run["jobs"])),
            f(statistics.fmean(pulls)), f(statistics.fmean(j["pull_wait_s"] for j in ok)),
            f(statistics.fmean(j.get("gate_wait_s", 0) for j in ok)),
            f(statistics.median(pulls)), f(q[94]),
            "%s / %s" % (f(statistics.fmean(firsts)), f(max(firsts))),
            f(statistics.fmean(j["e2e_s"] for j in ok)),
            "%.1f" % (run["remote"]["bytes"] / 1e6), "%d" % run["remote"]["manifest_gets"],
            f(thaw["cpu_s"]) if thaw else "-", "%.1f" % thaw["peak_rss_mib"] if thaw else "-"]


def expected_goals(runs, meta):
    by = {r["scenario"]: r for r in runs}
    mean = lambda sc, k: statistics.fmean(j[k] for j in by[sc]["jobs"] if j["ok"])
    first = lambda sc: statistics.fmean(j["pull_s"] for j in by[sc]["jobs"]
                                        if j["ok"] and j["first_on_node"])
    cold = by["thaw-cold"]["remote"]
    return [mean("thaw-prewarm", "pull_s") * 5 <= mean("no-cache", "pull_s"),
            mean("thaw-prewarm", "pull_s") <= 1.25 * mean("floor", "pull_s"),
            mean("thaw-cold", "pull_wait_s") <= mean("no-cache", "pull_wait_s"),
            cold["bytes"] <= 1.1 * meta["image"]["size"] and
            cold["manifest_gets"] <= 2,
            first("mirror") >= 3 * first("thaw-prewarm")]


class Driver(unittest.TestCase):
    """bench/experiment_run.py's pure parts."""

    @classmethod
    def setUpClass(cls):
        import experiment_run
        cls.run_mod = experiment_run

    def test_durations(self):
        sec = self.run_mod.seconds
        self.assertEqual([sec(d) for d in ("30s", "1m30s", "5m", "250ms", "0s")],
                         [30, 90, 300, 0.25, 0])
        for bad in ("30", "1x", "", "s"):
            self.assertRaises(ValueError, sec, bad)

    def test_cold_wait_is_the_oscar_overlays(self):
        # the thaw runs deploy the webhook as manifests/overlays/oscar does
        cw = self.run_mod.oscar_cold_wait()
        self.assertIsNotNone(cw, "manifests/overlays/oscar sets no --cold-wait")
        self.assertGreater(self.run_mod.seconds(cw), 0)


class Report(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="thaw-exp-report.")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def run_report(self, doc, *args):
        path = os.path.join(self.dir, "experiment.json")
        with open(path, "w") as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        return subprocess.run([sys.executable, REPORT, path] + list(args),
                              capture_output=True, text=True, timeout=60)

    def test_table_goals_plots(self):
        doc = synthetic()
        # Make two goals go each way whatever the seed: pre-warm far under
        # no cache (met), cold remote bytes 3 images (missed).
        for r in doc["runs"]:
            if r["scenario"] == "thaw-cold":
                r["remote"]["bytes"] = 3 * doc["meta"]["image"]["size"]
        plots = os.path.join(self.dir, "plots")
        r = self.run_report(doc, "--markdown", "--plots", plots)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        sections = out.split("## ")[1:]
        self.assertEqual([s.split("\n", 1)[0] for s in sections], ["burst", "paced"])
        for sec, pattern in zip(sections, ("burst", "paced")):
            runs = [x for x in doc["runs"] if x["pattern"] == pattern]
            rows = [[c.strip() for c in line.strip().strip("|").split("|")]
                    for line in sec.splitlines() if line.startswith("| ")][1:]
            rows = [row for row in rows if not row[0].startswith("---")]
            self.assertEqual(rows, [expected_row(x) for x in runs])
            status = [line.rsplit("**", 2)[1] for line in sec.splitlines()
                      if line.startswith("- ") and "**" in line]
            want = ["met" if ok else "missed" for ok in expected_goals(runs, doc["meta"])]
            self.assertEqual(status, want)
            self.assertEqual(status[0], "met")
            self.assertEqual(status[3], "missed")
            self.assertIn("mirror: failed jobs: pull failed: 503", sec)
            for name in ("pull-per-job-%s.png", "pull-cdf-%s.png"):
                with open(os.path.join(plots, name % pattern), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # The plain table carries the same cells.
        plain = self.run_report(doc)
        self.assertEqual(plain.returncode, 0, plain.stderr)
        first = expected_row(doc["runs"][0])
        line = [l for l in plain.stdout.splitlines() if l.startswith("no cache ")][0]
        self.assertEqual(line.split()[2:6], first[1:5])
        self.assertEqual(first[4], "0.00")     # no gate: 0
        cold = expected_row([r for r in doc["runs"] if r["scenario"] == "thaw-cold"][0])
        self.assertGreater(float(cold[4]), 0)

    def test_missing_scenario_is_not_measured(self):
        doc = synthetic()
        doc["runs"] = [r for r in doc["runs"] if r["scenario"] in ("no-cache", "thaw-cold")]
        r = self.run_report(doc)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.count("NOT MEASURED"), 2 * 3)

    def test_bad_input(self):
        for doc in ("{not json", {"meta": {}}, {"runs": [{"scenario": "nope", "pattern": "burst",
                                                         "jobs": []}]},
                    {"runs": [{"scenario": "floor", "pattern": "burst",
                               "jobs": [{"ok": True, "job": 0, "node": "n", "pull_s": "1"}]}]}):
            r = self.run_report(doc)
            self.assertEqual(r.returncode, 2, (doc, r.stdout, r.stderr))
            self.assertIn("experiment_report:", r.stderr)


if __name__ == "__main__":
    unittest77.main()
