#!/usr/bin/env python3
"""experiment_report.py - the reference experiment's table, goals and plots,
from the per-run JSON that bench/experiment_run.py writes.

    python3 bench/experiment_report.py OUTDIR/experiment.json [--plots DIR] [--markdown]

Prints, for each arrival pattern (burst, paced), the study's table with one
row per scenario (no cache, registry mirror, thaw cold, thaw pre-warm,
floor), then the issue's goals each marked met, missed or not measured,
with the figures. --plots DIR writes PNGs with gnuplot: pull time per job
for each scenario (pull-per-job-PATTERN.png) and the pull-time CDF
(pull-cdf-PATTERN.png). --markdown prints the tables as Markdown.

Definitions (the study's, see the experiment's docs): "pull" is a job's
pull_s (containerd's pull: resolve, fetch, unpack); "total" is pull_wait_s
(from the pod's creation to the pull's end: the kubelet's "including
waiting", plus the scheduling gate's wait and the binding before it);
"gate wait" is gate_wait_s (pod created to its last scheduling gate gone;
0 for a pod created without one, or a job recorded without the field);
"end-to-end" is e2e_s (pod created to container exit). Means and
percentiles are over the jobs that succeeded (ok); the ok column says how
many did. Percentiles interpolate linearly between the
closest ranks (numpy's default). The first pull on a node is the pull of
the job marked first_on_node.

Exit status: 0 whenever the input is readable (a missed goal is reported,
not an error), 2 on bad input, 1 when gnuplot fails.
"""
import argparse
import json
import math
import os
import subprocess
import sys

SCENARIOS = [("no-cache", "no cache"), ("mirror", "registry mirror"),
             ("thaw-cold", "thaw, cold"), ("thaw-prewarm", "thaw, pre-warm"),
             ("floor", "floor (node-local, no auth, no delay)")]
PATTERNS = ["burst", "paced"]
# Goals (issue 11): thresholds as the issue states them.
PREWARM_VS_NOCACHE = 1 / 5
PREWARM_VS_FLOOR = 1.25
FIRST_PULL_SPEEDUP = 3.0
READ_ONCE_SLACK = 1.10   # remote bytes within 10% of the image: retries, tokens aside
READ_ONCE_MANIFESTS = 2  # manifest GETs answered 2xx: an index and its child


class BadInput(Exception):
    pass


def percentile(values, p):
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def mean(values):
    return math.fsum(values) / len(values) if values else None


def row_stats(run):
    """The table's figures for one run (one scenario, one pattern)."""
    jobs = run["jobs"]
    ok = [j for j in jobs if j.get("ok")]
    pulls = [j["pull_s"] for j in ok]
    firsts = [j["pull_s"] for j in ok if j.get("first_on_node")]
    remote = run.get("remote") or {}
    thaw = run.get("thaw") or None
    return {
        "ok": len(ok), "jobs": len(jobs),
        "mean_pull": mean(pulls),
        "mean_total": mean([j["pull_wait_s"] for j in ok]),
        "mean_gate": mean([j.get("gate_wait_s") or 0.0 for j in ok]),
        "p50_pull": percentile(pulls, 50), "p95_pull": percentile(pulls, 95),
        "first_mean": mean(firsts), "first_max": max(firsts) if firsts else None,
        "mean_e2e": mean([j["e2e_s"] for j in ok]),
        "remote_bytes": remote.get("bytes"), "manifest_gets": remote.get("manifest_gets"),
        "thaw_cpu_s": thaw.get("cpu_s") if thaw else None,
        "thaw_rss_mib": thaw.get("peak_rss_mib") if thaw else None,
        "errors": sorted({j.get("error") or "failed" for j in jobs if not j.get("ok")}),
    }


def validate(doc):
    """Raises BadInput unless doc has the fields the report reads."""
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise BadInput("no runs list")
    known = {s for s, _ in SCENARIOS}
    for i, r in enumerate(doc["runs"]):
        where = "run %d" % i
        if not isinstance(r, dict):
            raise BadInput("%s: not an object" % where)
        if r.get("scenario") not in known:
            raise BadInput("%s: unknown scenario %r" % (where, r.get("scenario")))
        if r.get("pattern") not in PATTERNS:
            raise BadInput("%s: unknown pattern %r" % (where, r.get("pattern")))
        if not isinstance(r.get("jobs"), list):
            raise BadInput("%s: no jobs list" % where)
        for j in r["jobs"]:
            if not isinstance(j, dict) or "ok" not in j:
                raise BadInput("%s: a job without ok" % where)
            if j["ok"]:
                for k in ("pull_s", "pull_wait_s", "e2e_s", "job", "node"):
                    if k != "node" and not isinstance(j.get(k), (int, float)):
                        raise BadInput("%s: job %s: %s is not a number"
                                       % (where, j.get("job"), k))
                    if k == "node" and not isinstance(j.get(k), str):
                        raise BadInput("%s: job %s: no node" % (where, j.get("job")))
    return doc


def fmt(v, spec="%.2f"):
    return "-" if v is None else spec % v


def mb(v):
    return "-" if v is None else "%.1f" % (v / 1e6)


COLUMNS = ["setup", "ok", "mean pull (s)", "mean total incl. waiting (s)", "mean gate wait (s)",
           "p50 pull (s)", "p95 pull (s)", "first pull per node, mean / max (s)",
           "mean end-to-end (s)", "remote MB", "remote manifest GETs", "thaw CPU (s)",
           "thaw peak RSS (MiB)"]


def table_rows(runs):
    rows = []
    for key, label in SCENARIOS:
        for r in runs:
            if r["scenario"] != key:
                continue
            s = row_stats(r)
            rows.append([label, "%d/%d" % (s["ok"], s["jobs"]), fmt(s["mean_pull"]),
                         fmt(s["mean_total"]), fmt(s["mean_gate"]),
                         fmt(s["p50_pull"]), fmt(s["p95_pull"]),
                         "%s / %s" % (fmt(s["first_mean"]), fmt(s["first_max"])),
                         fmt(s["mean_e2e"]), mb(s["remote_bytes"]),
                         fmt(s["manifest_gets"], "%d"), fmt(s["thaw_cpu_s"]),
                         fmt(s["thaw_rss_mib"], "%.1f")])
    return rows


def render(rows, markdown):
    if markdown:
        out = ["| " + " | ".join(COLUMNS) + " |",
               "| " + " | ".join(["---"] + ["---:"] * (len(COLUMNS) - 1)) + " |"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
              for i, c in enumerate(COLUMNS)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(COLUMNS)] + [line(r) for r in rows])


def image_bytes(meta):
    """The image's size as the remote serves it: its layers (+ config and
    manifest when the image dict has its total)."""
    img = (meta or {}).get("image") or {}
    if isinstance(img.get("size"), (int, float)):
        return img["size"]
    if isinstance(img.get("layers"), list):
        return sum(img["layers"])
    return None


def goals(runs, meta):
    """[(goal, status, figures)] with status "met", "missed" or "not measured"."""
    by = {r["scenario"]: row_stats(r) for r in runs}
    out = []

    def need(*names):
        return all(n in by and by[n]["ok"] for n in names)

    def add(goal, ok, figures):
        out.append((goal, "met" if ok else "missed", figures))

    def compare(goal, a_name, b_name, field, limit, figures):
        """a's field <= limit x b's; figures % (a, b, a / b)."""
        if need(a_name, b_name):
            a, b = by[a_name][field], by[b_name][field]
            add(goal, a <= b * limit, figures % (a, b, a / b))
        else:
            out.append((goal, "not measured", "needs %s and %s" % (a_name, b_name)))

    compare("thaw pre-warm mean pull <= 1/5 of no cache", "thaw-prewarm", "no-cache",
            "mean_pull", PREWARM_VS_NOCACHE,
            "%%.2f s vs %%.2f s: %%.2f of no cache (goal <= %.2f)" % PREWARM_VS_NOCACHE)
    compare("thaw pre-warm mean pull <= 1.25 x floor", "thaw-prewarm", "floor",
            "mean_pull", PREWARM_VS_FLOOR,
            "%%.2f s vs floor %%.2f s: %%.2f x (goal <= %.2f x)" % PREWARM_VS_FLOOR)
    compare("thaw cold mean total (incl. waiting) never above no cache", "thaw-cold",
            "no-cache", "mean_total", 1.0, "%.2f s vs %.2f s: %.2f x")
    g = "thaw cold reads the remote once per image"
    size = image_bytes(meta)
    nodes = (meta or {}).get("nodes")
    if need("thaw-cold") and size and by["thaw-cold"]["remote_bytes"] is not None \
            and by["thaw-cold"]["manifest_gets"] is not None and isinstance(nodes, int):
        got, gets = by["thaw-cold"]["remote_bytes"], by["thaw-cold"]["manifest_gets"]
        # Bound: thaw's one copy, an index and its child at most. (Before
        # the cold wait, the first run allowed one resolve per node too.)
        bound = READ_ONCE_MANIFESTS
        add(g, got <= size * READ_ONCE_SLACK and gets <= bound,
            "%d bytes = %.2f x the image (%d bytes; goal <= %.2f x), %d manifest GETs "
            "(bound %d) for %d jobs on %d nodes"
            % (got, got / size, size, READ_ONCE_SLACK, gets, bound,
               by["thaw-cold"]["jobs"], nodes))
    else:
        out.append((g, "not measured", "needs thaw-cold remote counts, meta.nodes and "
                    "meta.image sizes"))
    g = "thaw's first pull on a node >= 3 x faster than the mirror's"
    if need("thaw-prewarm", "mirror") and by["thaw-prewarm"]["first_mean"] \
            and by["mirror"]["first_mean"] is not None:
        a, b = by["thaw-prewarm"]["first_mean"], by["mirror"]["first_mean"]
        add(g, b >= FIRST_PULL_SPEEDUP * a,
            "mean first pull per node %.2f s (thaw pre-warm) vs %.2f s (mirror): %.1f x "
            "(goal >= %.0f x)" % (a, b, b / a, FIRST_PULL_SPEEDUP))
    else:
        out.append((g, "not measured", "needs thaw-prewarm and mirror first pulls"))
    return out


def plot(runs, pattern, plots):
    """Two PNGs for one pattern; returns their paths. Raises on gnuplot failure."""
    os.makedirs(plots, exist_ok=True)
    series = []
    for key, label in SCENARIOS:
        for r in runs:
            if r["scenario"] == key:
                ok = sorted((j for j in r["jobs"] if j.get("ok")), key=lambda j: j["job"])
                if ok:
                    series.append((key, label, ok))
    if not series:
        return []
    files = []
    for key, _, ok in series:
        path = os.path.join(plots, "data-%s-%s.dat" % (pattern, key))
        pulls = sorted(j["pull_s"] for j in ok)
        with open(path, "w") as f:
            f.write("# job pull_s | pull_s sorted, cumulative fraction\n")
            for i, j in enumerate(ok):
                f.write("%d %.6f %.6f %.6f\n" % (j["job"], j["pull_s"], pulls[i],
                                                 (i + 1) / len(pulls)))
        files.append(path)
    per_job = os.path.join(plots, "pull-per-job-%s.png" % pattern)
    cdf = os.path.join(plots, "pull-cdf-%s.png" % pattern)
    head = ['set terminal pngcairo noenhanced size 900,480 font "sans,10"',
            "set grid", "set key inside right top opaque"]
    cmds = head + ['set output "%s"' % per_job,
                   'set title "pull time per job (%s)"' % pattern,
                   'set xlabel "job"', 'set ylabel "pull (s)"', "set yrange [0:*]",
                   "plot " + ", ".join('"%s" using 1:2 with linespoints pt 7 ps 0.5 title "%s"'
                                       % (f, s[1].split(" (")[0]) for f, s in zip(files, series)),
                   'set output "%s"' % cdf,
                   'set title "pull time CDF (%s)"' % pattern,
                   'set xlabel "pull (s)"', 'set ylabel "fraction of jobs"',
                   "set yrange [0:1]", "set xrange [0:*]", "set key inside right bottom",
                   "plot " + ", ".join('"%s" using 3:4 with steps lw 2 title "%s"'
                                       % (f, s[1].split(" (")[0]) for f, s in zip(files, series))]
    r = subprocess.run(["gnuplot"], input="\n".join(cmds) + "\n", capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError("gnuplot: %s" % r.stderr.strip())
    return [per_job, cdf]


def report(doc, markdown=False, plots=None, out=sys.stdout):
    meta = doc.get("meta") or {}
    img = meta.get("image") or {}
    w = lambda s="": print(s, file=out)
    w("# reference experiment: %s jobs, %s nodes, commit %s, %s"
      % (meta.get("jobs", "?"), meta.get("nodes", "?"), meta.get("commit", "?"),
         meta.get("date", "?")))
    if img:
        w("image %s:%s, %s, layers %s bytes"
          % (img.get("ref_name", "?"), img.get("tag", "?"), img.get("digest", "?"),
             img.get("layers", "?")))
    link = [("rate", "%s"), ("rtt_ms", "%s ms round trip"), ("interval_s", "paced every %s s")]
    w(", ".join(f % meta[k] for k, f in link if k in meta))
    pngs = []
    for pattern in PATTERNS:
        runs = [r for r in doc["runs"] if r["pattern"] == pattern]
        if not runs:
            continue
        w()
        w("## %s" % pattern)
        w()
        w(render(table_rows(runs), markdown))
        w()
        for r in runs:
            errs = row_stats(r)["errors"]
            if errs:
                w("%s: failed jobs: %s" % (r["scenario"], "; ".join(errs)[:300]))
                w()
        w("goals (%s):" % pattern)
        for g, status, figures in goals(runs, meta):
            if markdown:
                w("- %s: **%s** (%s)" % (g, status, figures))
            else:
                w("  %-12s %s: %s" % (status.upper(), g, figures))
        if plots:
            pngs += plot(runs, pattern, plots)
    if pngs:
        w()
        w("plots: " + ", ".join(pngs))
    return pngs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="OUTDIR/experiment.json")
    ap.add_argument("--plots", metavar="DIR", help="write PNGs (gnuplot) into DIR")
    ap.add_argument("--markdown", action="store_true", help="tables as Markdown")
    a = ap.parse_args()
    try:
        with open(a.json) as f:
            doc = validate(json.load(f))
    except (OSError, ValueError, BadInput) as e:
        print("experiment_report: %s: %s" % (a.json, e), file=sys.stderr)
        return 2
    try:
        report(doc, a.markdown, a.plots)
    except RuntimeError as e:
        print("experiment_report: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
