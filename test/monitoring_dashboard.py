"""thaw's Grafana dashboard as data: every panel query and template
variable read from the JSON itself (no list kept beside it), Grafana's
variables substituted, each query checked against a live Prometheus, and
panels plotted with gnuplot.

    dash = load()
    for q in queries(dash): q.panel, q.ref, q.expr, q.legend
    problems = check(prom, dash, values, start, end, step)   # [] when all good
    plot(prom, panel, values, start, end, step, png_path)"""

import json
import math
import os
import re
import subprocess
from collections import namedtuple

import monitoring_prom

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(os.path.dirname(HERE), "manifests", "components",
                         "grafana-dashboard", "thaw.json")

Query = namedtuple("Query", "panel ref expr legend instant")


def load(path=DASHBOARD):
    with open(path) as f:
        return json.load(f)


def panels(dash):
    """Every panel that queries, rows' nested panels included, in order."""
    def walk(ps):
        for p in ps:
            if p.get("type") == "row":
                yield from walk(p.get("panels") or [])
            elif p.get("targets"):
                yield p
    return list(walk(dash["panels"]))


def queries(dash):
    return [Query(p["title"], t["refId"], t["expr"], t.get("legendFormat", ""),
                  bool(t.get("instant")))
            for p in panels(dash) for t in p["targets"]]


def variables(dash):
    """(name, Grafana query) of each query variable."""
    out = []
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append((v["name"], q["query"] if isinstance(q, dict) else q))
    return out


def label_values_call(q):
    """label_values(MATCH, LABEL) -> (MATCH, LABEL); other forms refused."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)\s*", q)
    if not m:
        raise AssertionError("variable query not modelled: %s" % q)
    return m.group(1), m.group(2)


def substitute(expr, values):
    """Grafana's variables ($name, ${name}) replaced from values; a
    variable left over is an error (Grafana would send it as is)."""
    out = re.sub(r"\$\{(\w+)\}|\$(\w+)",
                 lambda m: values.get(m.group(1) or m.group(2), m.group(0)), expr)
    left = re.findall(r"\$\{?\w+", out)
    if left:
        raise AssertionError("unknown variables %s in %s" % (left, expr))
    return out


def legend_labels(legend):
    return re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)


def finite(v):
    return not math.isnan(float(v)) and not math.isinf(float(v))


def check_query(prom, q, values, start, end, step):
    """Problems with one panel query: it must parse, return a series at
    the end of the range, give each series every label its legend names,
    and (range queries) have a finite value somewhere in the range."""
    expr = substitute(q.expr, values)
    where = "%s/%s: %s" % (q.panel, q.ref, expr)
    try:
        if q.instant:
            series = prom.query(expr, at=end)["result"]
            points = [s["value"] for s in series]
        else:
            series = prom.query_range(expr, start, end, step)
            points = [v for s in series for v in s["values"]]
    except monitoring_prom.PromError as e:
        return ["%s: %s" % (where, e)]
    if not series:
        return ["%s: no series" % where]
    bad = []
    for label in legend_labels(q.legend):
        missing = [s["metric"] for s in series if not s["metric"].get(label)]
        if missing:
            bad.append("%s: legend label %r missing in %s" % (where, label, missing[:3]))
    if not any(finite(v) for _, v in points):
        bad.append("%s: no finite value in the range" % where)
    return bad


def check(prom, dash, values, start, end, step):
    """Every panel query and every variable of dash against prom."""
    bad = []
    for q in queries(dash):
        bad += check_query(prom, q, values, start, end, step)
    for name, vq in variables(dash):
        match, label = label_values_call(substitute(vq, values))
        try:
            got = prom.label_values(label, match)
        except monitoring_prom.PromError as e:
            bad.append("variable %s: %s" % (name, e))
            continue
        if not got:
            bad.append("variable %s: label_values(%s, %s) is empty" % (name, match, label))
    return bad


# --- plots -----------------------------------------------------------------

def scale(unit, top):
    """(factor, axis label) for a Grafana unit and the largest value."""
    if unit in ("bytes", "Bps"):
        for f, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB"), (1, "B")):
            if top >= f:
                return 1.0 / f, name + ("/s" if unit == "Bps" else "")
        return 1.0, "B" + ("/s" if unit == "Bps" else "")
    if unit == "s":
        return (1000.0, "ms") if top < 1 else (1.0, "s")
    if unit == "percentunit":
        return 100.0, "%"
    return 1.0, {"ops": "per second", "reqps": "requests/s"}.get(unit, "")


COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8"]


def legend_text(legend, metric):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), legend)
    return text.strip() or json.dumps(metric)


def plot(prom, panel, values, start, end, step, png, workdir):
    """panel's queries over [start, end] as a PNG, x in seconds from start.
    Returns the number of series drawn."""
    series = []
    for t in panel["targets"]:
        for s in prom.query_range(substitute(t["expr"], values), start, end, step):
            pts = [(float(ts) - start, float(v)) for ts, v in s["values"] if finite(v)]
            if pts:
                series.append((legend_text(t.get("legendFormat", ""), s["metric"]), pts))
    unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
    top = max([abs(v) for _, pts in series for _, v in pts] or [0])
    factor, ylabel = scale(unit, top)
    bars = panel.get("fieldConfig", {}).get("defaults", {}).get("custom", {}) \
        .get("drawStyle") == "bars"
    base = os.path.join(workdir, re.sub(r"[^a-z0-9]+", "-", panel["title"].lower()))
    cmds = ['set terminal pngcairo noenhanced size 900,420 font "sans,9"',
            'set output "%s"' % png,
            'set title "%s"' % panel["title"].replace('"', "'"),
            'set xlabel "seconds"', 'set ylabel "%s"' % ylabel,
            "set key outside right top", "set grid", "set yrange [0:*]",
            "set xrange [0:%g]" % (end - start)]
    plots = []
    for i, (name, pts) in enumerate(series):
        path = "%s.%d.dat" % (base, i)
        with open(path, "w") as f:
            for x, v in pts:
                f.write("%g %g\n" % (x, v * factor))
        style = "impulses lw 4" if bars else "lines lw 2"
        plots.append('"%s" using 1:2 with %s lc rgb "%s" dt %d title "%s"' % (
            path, style, COLORS[i % len(COLORS)], 1 + i // len(COLORS),
            name.replace('"', "'")[:40]))
    if not plots:
        cmds.append('set label "no data" at graph 0.45, graph 0.5')
        plots.append("NaN notitle")
    cmds.append("plot " + ", ".join(plots))
    r = subprocess.run(["gnuplot"], input="\n".join(cmds) + "\n", capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("gnuplot for %s: %s" % (panel["title"], r.stderr))
    return len(series)
