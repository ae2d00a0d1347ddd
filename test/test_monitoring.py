"""thaw's monitoring, checked with real parts: the alerts
(manifests/components/monitoring/alerts.yaml) with promtool, the
ServiceMonitors' target labels, and the Grafana dashboard
(manifests/components/grafana-dashboard/thaw.json) against a real
Prometheus scraping the whole stack under a workload.

    python3 test/test_monitoring.py BUILD [--full] [unittest args]

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).

Rules: the PrometheusRule's spec, extracted from the rendered Component,
passes `promtool check rules`, and `promtool test rules` runs
tests/alerts_test.yaml, which must hold for every alert a case where it
fires and one where it does not; every runbook is a section of
docs/observability.md.
Targets: what the Prometheus Operator makes of the ServiceMonitors
(test/monitoring_targets.py): one job per part with the labels the
dashboard and the alerts use, the same with components/s3, and NetworkPolicy
lets Prometheus reach every target.
Live: the stack of test/monitoring_stack.py, scraped every second with
those labels; a workload of pods (rewritten, cold, invalid, missing
upstream; gated by the cold wait and released, rewritten and unchanged),
malformed reviews, an expiry and a garbage collection. Then
every panel query and template variable of the dashboard, walked from the
JSON, must parse, return a series carrying its legend's labels and a
finite value; a copy with a typo in a metric, a label or a job must be
flagged; the cold wait gated pods and released them both ways; every alert
expression is evaluated, the healthy stack fires none of the outage alerts
(nor ThawColdWaitInVain), the 2-day test certificate shows in
ThawWebhookCertificateExpiring's, and a stopped thaw-registry-gc in
ThawDaemonDown's. Each timeseries panel is plotted with gnuplot into
BUILD/monitoring/ (paths printed).

--full: a 4-minute workload (new images, expiries, a leader change), whose
plots are also copied into docs/img/ for docs/observability.md.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)
REPO = os.path.dirname(HERE)

import yaml  # noqa: E402

import monitoring_dashboard as dashboard  # noqa: E402
import monitoring_stack  # noqa: E402
import monitoring_targets as targets  # noqa: E402

COMPONENT = os.path.join(REPO, "manifests", "components", "monitoring")
UNIT_TESTS = os.path.join(COMPONENT, "tests", "alerts_test.yaml")
OBSERVABILITY = os.path.join(REPO, "docs", "observability.md")
DOC_IMAGES = os.path.join(REPO, "docs", "img")
JOBS = {"thaw-webhook": "webhook", "thaw-controller": "controller",
        "thaw-registry": "registry", "thaw-registry-gc": "registry-gc"}
# Panels copied into docs/img by --full.
DOC_PANELS = ["Images decided, by decision", "Cache hit ratio over time", "Admission latency",
              "CachedImages, by phase", "Cache size and bound", "Bytes warmed, by source",
              "Leader, by pod", "Memory (RSS), by pod"]
BUILD = None
FULL = False


def tool(name):
    path = shutil.which(name)
    if not path:
        raise AssertionError("%s not installed: test/deps.sh installs it" % name)
    return path


def rule_spec():
    """The PrometheusRule's spec from the rendered Component (base included)."""
    objs = targets.render(["components/monitoring"])
    rules = [o for o in objs if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1, rules
    return rules[0]["spec"]


def alerts(spec):
    return [r for g in spec["groups"] for r in g["rules"] if "alert" in r]


def write_rules(spec, d):
    path = os.path.join(d, "rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def anchors(markdown):
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    with open(markdown) as f:
        for line in f:
            m = re.match(r"#+\s+(.*)", line)
            if m:
                a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
                out.add(a)
    return out


def jobs_named(expr):
    """Every job a PromQL expression selects by job="..." or job=~"a|b"."""
    out = set()
    for op, val in re.findall(r'\bjob\s*(=~|=)\s*"([^"]*)"', expr):
        out.update(val.split("|") if op == "=~" else [val])
    return out


class Rules(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.spec = rule_spec()
        cls.tmp = tempfile.mkdtemp(prefix="thaw-rules.")
        cls.rules = write_rules(cls.spec, cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def promtool(self, *args):
        return subprocess.run([tool("promtool")] + list(args), capture_output=True,
                              text=True, timeout=120)

    def test_check_rules(self):
        r = self.promtool("check", "rules", self.rules)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS: %d rules found" % len(alerts(self.spec)), r.stdout)

    def test_unit_tests_pass(self):
        shutil.copy(UNIT_TESTS, self.tmp)
        r = self.promtool("test", "rules", os.path.join(self.tmp, "alerts_test.yaml"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("SUCCESS", r.stdout)

    def test_unit_tests_fail_on_a_wrong_annotation(self):
        """promtool really compares annotations (so the cases pin them)."""
        with open(UNIT_TESTS) as f:
            text = f.read()
        bad = os.path.join(self.tmp, "bad_test.yaml")
        with open(bad, "w") as f:
            f.write(text.replace("cannot reach the cache registry", "cannot reach it", 1))
        r = self.promtool("test", "rules", bad)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("ThawCacheRegistryDown", r.stdout + r.stderr)

    def test_every_alert_has_a_firing_and_a_quiet_case(self):
        with open(UNIT_TESTS) as f:
            cases = yaml.safe_load(f)["tests"]
        fires, quiet = set(), set()
        for case in cases:
            for t in case.get("alert_rule_test") or []:
                (fires if t.get("exp_alerts") else quiet).add(t["alertname"])
        names = {a["alert"] for a in alerts(self.spec)}
        self.assertEqual(fires, names, "alerts without a firing case")
        self.assertEqual(quiet, names, "alerts without a case where they stay quiet")

    def test_every_alert_is_complete_and_has_a_runbook(self):
        have = anchors(OBSERVABILITY)
        for a in alerts(self.spec):
            with self.subTest(alert=a["alert"]):
                self.assertTrue(a.get("for"))
                self.assertIn(a["labels"]["severity"], ("warning", "critical"))
                self.assertTrue(a["annotations"]["summary"])
                self.assertTrue(a["annotations"]["description"])
                url = a["annotations"]["runbook_url"]
                self.assertEqual(url, "docs/observability.md#" + a["alert"].lower())
                self.assertIn(a["alert"].lower(), have, "no section %s in %s" % (
                    a["alert"], OBSERVABILITY))


class Targets(unittest.TestCase):
    """The labels the Prometheus Operator gives thaw's targets, from the
    rendered manifests, are the ones the dashboard and the alerts use."""

    @classmethod
    def setUpClass(cls):
        cls.default = targets.render(["components/monitoring"])
        cls.s3 = targets.render(["components/s3", "components/monitoring"])

    def check_layout(self, objs):
        ts = targets.targets(objs)
        self.assertEqual({t["labels"]["job"] for t in ts}, set(JOBS))
        for t in ts:
            self.assertEqual(t["container"], JOBS[t["labels"]["job"]], t)
            self.assertEqual(set(t["labels"]), {"job", "namespace", "service", "pod",
                                                "container", "endpoint"})
            self.assertEqual(t["labels"]["namespace"], "thaw-system")
        return ts

    def test_one_job_per_part(self):
        ts = self.check_layout(self.default)
        by = {t["labels"]["job"]: t for t in ts}
        # The agent is a sidecar: the registry's pod.
        self.assertEqual(by["thaw-registry-gc"]["labels"]["pod"],
                         by["thaw-registry"]["labels"]["pod"])
        self.assertEqual(by["thaw-controller"]["labels"]["service"], "thaw-controller-metrics")

    def test_same_jobs_with_s3(self):
        ts = self.check_layout(self.s3)
        by = {t["labels"]["job"]: t for t in ts}
        self.assertNotEqual(by["thaw-registry-gc"]["labels"]["pod"],
                            by["thaw-registry"]["labels"]["pod"])

    def test_dashboard_and_alerts_use_these_jobs(self):
        exprs = [q.expr for q in dashboard.queries(dashboard.load())] + \
            [a["expr"] for a in alerts(rule_spec())]
        used = set()
        for e in exprs:
            used |= jobs_named(e)
        self.assertEqual(used, set(JOBS))

    def test_network_policies_let_prometheus_scrape(self):
        prom_ns = {"kubernetes.io/metadata.name": "monitoring"}
        prom = {"app.kubernetes.io/name": "prometheus"}
        for objs in (self.default, self.s3):
            for t in targets.targets(objs):
                with self.subTest(target=t["labels"]):
                    self.assertTrue(targets.admits(objs, t, prom_ns, prom))
        # ...and the agent's scrape port is not its /gc port, which admits
        # the controller only: scraping it cannot start a run.
        for objs in (self.default, self.s3):
            gc = [t for t in targets.targets(objs)
                  if t["labels"]["job"] == "thaw-registry-gc"][0]
            self.assertEqual((gc["port"], gc["labels"]["endpoint"]), (7441, "gc-metrics"))
            api = dict(gc, port=7440)
            self.assertFalse(targets.admits(objs, api, prom_ns, prom))
            ctl = {"app.kubernetes.io/name": "thaw", "app.kubernetes.io/component": "controller"}
            self.assertTrue(targets.admits(objs, api, {"kubernetes.io/metadata.name": "thaw-system"}, ctl))


class Dashboard(unittest.TestCase):
    """The dashboard's shape: what Grafana and its sidecar need."""

    def test_configmap_for_the_sidecar(self):
        objs = targets.render(["components/grafana-dashboard"])
        cms = [o for o in objs if o["kind"] == "ConfigMap"
               and (o["metadata"].get("labels") or {}).get("grafana_dashboard") == "1"]
        self.assertEqual([c["metadata"]["name"] for c in cms], ["thaw-dashboard"])  # no hash
        with open(dashboard.DASHBOARD) as f:
            self.assertEqual(cms[0]["data"]["thaw.json"], f.read())

    def test_panels(self):
        dash = dashboard.load()
        self.assertEqual(dash["uid"], "thaw")
        self.assertGreaterEqual(dash["schemaVersion"], 39)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual([p["title"] for p in dash["panels"] if p["type"] == "row"],
                         ["Admission", "Cache", "Health", "Resources"])
        cells = set()
        for p in dash["panels"]:
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            mine = {(g["x"] + i, g["y"] + j) for i in range(g["w"]) for j in range(g["h"])}
            self.assertFalse(cells & mine, "%s overlaps another panel" % p["title"])
            cells |= mine
        ds = {"type": "prometheus", "uid": "${datasource}"}
        for p in dashboard.panels(dash):
            self.assertIn(p["type"], ("timeseries", "stat", "gauge"))
            self.assertEqual(p["datasource"], ds, p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"], ds, p["title"])
                self.assertIn('namespace=~"$namespace"', t["expr"], p["title"])
                # windows are Grafana's: $__rate_interval, or $__range for a stat
                self.assertEqual(re.findall(r"\[(?!\$__rate_interval\]|\$__range\])[^\]]*\]",
                                            t["expr"]), [], p["title"])
        self.assertEqual([v["name"] for v in dash["templating"]["list"]],
                         ["datasource", "namespace", "pod"])


class Live(unittest.TestCase):
    """The dashboard and the alerts against a real Prometheus."""

    @classmethod
    def setUpClass(cls):
        cls.out = os.path.join(BUILD, "monitoring")
        shutil.rmtree(cls.out, ignore_errors=True)
        os.makedirs(cls.out)
        cls.tmp = tempfile.mkdtemp(prefix="thaw-live-rules.")
        cls.spec = rule_spec()
        cls.st = monitoring_stack.Stack(BUILD, cls.out, full=FULL)
        try:
            cls.prom = monitoring_stack.prometheus(cls.st, write_rules(cls.spec, cls.tmp))
            cls.start = time.time()
            n = cls.st.run(240 if FULL else 25, log=lambda s: print(s, flush=True))
            cls.st.wait_collected()
            time.sleep(4)  # a few more scrapes after the last event
            cls.end = time.time()
            print("workload: %d pods over %.0f s" % (n, cls.end - cls.start), flush=True)
        except BaseException:
            cls.st.close()
            raise
        cls.values = {"namespace": "thaw-system", "pod": ".*", "__rate_interval": "10s",
                      "__interval": "2s", "__range": "%ds" % int(cls.end - cls.start),
                      "datasource": "prometheus"}

    @classmethod
    def tearDownClass(cls):
        cls.st.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check(self, dash):
        return dashboard.check(self.prom, dash, self.values, self.start, self.end, 2)

    def test_1_targets_have_the_operator_labels(self):
        got = sorted(json.dumps({k: v for k, v in t["labels"].items() if k != "instance"},
                                sort_keys=True) for t in self.prom.targets())
        want = sorted(json.dumps(labels, sort_keys=True) for labels, _, _ in self.st.targets())
        self.assertEqual(got, want)

    def test_2_every_panel_query_and_variable(self):
        self.assertEqual(self.check(dashboard.load()), [])
        pods = self.prom.label_values("pod", 'thaw_build_info{namespace=~"thaw-system"}')
        self.assertEqual(set(pods), {"thaw-webhook-0", "thaw-controller-0", "thaw-controller-1",
                                     "thaw-registry-0"})

    def test_2b_the_cold_wait_gated_and_released(self):
        """The workload went through the cold wait: pods gated by the
        webhook, released by the leader both ways, their waits observed."""
        def total(expr):
            # from before the workload: its first events come at once
            rng = "[%ds]" % (self.end - self.start + 60)
            return {s["metric"].get("result", ""): float(s["value"][1])
                    for s in self.prom.query(expr.replace("[R]", rng), at=self.end)["result"]}
        gated = total('sum(increase(thaw_webhook_pods_gated_total{job="thaw-webhook"}[R]))')
        released = total('sum by (result) (increase(thaw_pods_released_total'
                         '{job="thaw-controller"}[R]))')
        waits = total('sum(increase(thaw_cold_wait_seconds_count{job="thaw-controller"}[R]))')
        self.assertGreaterEqual(gated.get("", 0), 2, gated)
        self.assertGreater(released.get("rewritten", 0), 0, released)
        self.assertGreater(released.get("unchanged", 0), 0, released)
        self.assertGreaterEqual(waits.get("", 0), 2, waits)

    def test_3_a_typo_is_flagged(self):
        """A wrong metric name, a wrong label in `by`, a wrong job: each
        makes its query fail the check."""
        for what, old, new in (
                ("metric", "thaw_warm_bytes_total", "thaw_warm_byte_total"),
                ("label", "sum by (decision)", "sum by (decison)"),
                ("job", 'job="thaw-controller"', 'job="thaw-controler"')):
            with self.subTest(typo=what):
                dash = copy.deepcopy(dashboard.load())
                hit = None
                for p in dashboard.panels(dash):
                    for t in p["targets"]:
                        if hit is None and old in t["expr"]:
                            t["expr"] = t["expr"].replace(old, new)
                            hit = p["title"]
                self.assertIsNotNone(hit, old)
                bad = self.check(dash)
                self.assertTrue(bad, what)
                self.assertTrue(all(b.startswith(hit + "/") for b in bad), bad)

    def test_4_alert_expressions(self):
        """Every rule evaluates against live data; a healthy stack fires
        none of the outage alerts; the test certificate (2 days) is one
        that ThawWebhookCertificateExpiring sees."""
        deadline = time.time() + 10
        while True:  # the rules are evaluated every second
            rules = self.prom.rules()
            if len(rules) == len(alerts(self.spec)) and \
                    all(r.get("lastEvaluation", "").startswith("2") for r in rules):
                break
            self.assertLess(time.time(), deadline, rules)
            time.sleep(0.5)
        for r in rules:
            self.assertEqual(r["health"], "ok", r)
        exprs = {a["alert"]: a["expr"] for a in alerts(self.spec)}
        for name, e in exprs.items():
            self.prom.query(e)  # parses and evaluates (PromError otherwise)
        for name in ("ThawDaemonDown", "ThawNoLeader", "ThawCacheRegistryDown",
                     "ThawCacheNearlyFull", "ThawWebhookRecordsFailing",
                     "ThawColdWaitInVain"):
            # Empty, or soon: a scrape that timed out on a loaded machine
            # is a blip; a label that does not match stays.
            deadline = time.time() + 10
            while self.prom.query(exprs[name])["result"]:
                self.assertLess(time.time(), deadline, "%s: %s" % (
                    name, self.prom.query(exprs[name])["result"]))
                time.sleep(1)
        cert = self.prom.query(exprs["ThawWebhookCertificateExpiring"])["result"]
        self.assertEqual([(s["metric"]["job"], s["metric"]["pod"]) for s in cert],
                         [("thaw-webhook", "thaw-webhook-0")])
        self.assertTrue(1 < float(cert[0]["value"][1]) <= 2, cert)

    def test_5_panels_render(self):
        dash = dashboard.load()
        drawn = {}
        for p in dashboard.panels(dash):
            if p["type"] != "timeseries":
                continue
            png = os.path.join(self.out, re.sub(r"[^a-z0-9]+", "-", p["title"].lower())
                               .strip("-") + ".png")
            drawn[p["title"]] = (dashboard.plot(self.prom, p, self.values, self.start,
                                                self.end, 2, png, self.out), png)
            self.assertGreater(os.path.getsize(png), 1000, png)
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", png)
            print("panel: %s" % png, flush=True)
        for title in DOC_PANELS:
            self.assertGreater(drawn[title][0], 0, title)
        if FULL:
            os.makedirs(DOC_IMAGES, exist_ok=True)
            for title in DOC_PANELS:
                dst = os.path.join(DOC_IMAGES, "dashboard-" + os.path.basename(drawn[title][1]))
                shutil.copy(drawn[title][1], dst)
                print("docs image: %s" % dst, flush=True)

    def test_9_a_stopped_daemon_shows_in_its_alert(self):
        """Last: stop thaw-registry-gc; ThawDaemonDown's expression
        names its job and pod once a scrape has failed."""
        self.st.agent.close()
        expr = {a["alert"]: a["expr"] for a in alerts(self.spec)}["ThawDaemonDown"]
        deadline = time.time() + 15
        while True:
            got = [(s["metric"].get("job"), s["metric"].get("pod"))
                   for s in self.prom.query(expr)["result"]]
            if got:
                break
            self.assertLess(time.time(), deadline, "ThawDaemonDown's expression stays empty")
            time.sleep(0.5)
        self.assertEqual(got, [("thaw-registry-gc", "thaw-registry-0")])


def main():
    global BUILD, FULL
    args = sys.argv[1:]
    if "--full" in args:
        args.remove("--full")
        FULL = True
    if not args:
        sys.exit("usage: test_monitoring.py BUILD [--full] [unittest args]")
    BUILD = os.path.abspath(args.pop(0))
    unittest77.main(argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
