"""A real Prometheus (Debian's `prometheus`) for tests: a temporary config
with one static target per scraped process, carrying the labels a
ServiceMonitor would give it, a rules file, and its HTTP API.

    p = Prometheus(workdir, [(labels, "127.0.0.1:PORT", "/metrics"), ...],
                   rules="rules.yaml", interval="1s")
    p.wait_targets_up(); p.query("up"); p.query_range(expr, start, end, step)
    p.close()                   # stopped by PID

Each target is its own scrape job: Prometheus keeps a `job` (and any other)
label set in static_configs over the job name, so the labels are exactly
the given ones plus instance."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

import registry


class PromError(Exception):
    pass


class Prometheus(registry.ChildServer):
    def __init__(self, targets, rules=None, interval="1s", binary="prometheus"):
        self.dir = tempfile.mkdtemp(prefix="thaw-prometheus.")
        self.port = registry.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(self.dir, "prometheus.log")
        config = {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                             "scrape_timeout": interval},
                  "scrape_configs": [
                      {"job_name": "t%d-%s" % (i, labels["job"]), "metrics_path": path,
                       "static_configs": [{"targets": [addr], "labels": labels}]}
                      for i, (labels, addr, path) in enumerate(targets)]}
        if rules:
            shutil.copy(rules, os.path.join(self.dir, "rules.yaml"))
            config["rule_files"] = [os.path.join(self.dir, "rules.yaml")]
        self.config = os.path.join(self.dir, "prometheus.yml")
        with open(self.config, "w") as f:
            yaml.safe_dump(config, f)
        self.expected = len(targets)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "--config.file", self.config,
             "--storage.tsdb.path", os.path.join(self.dir, "data"),
             "--web.listen-address", "127.0.0.1:%d" % self.port, "--log.level", "warn"],
            stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=registry.die_with_parent)
        deadline = time.time() + 30
        while registry.http_status(self.url + "/-/ready", 0.5) != 200:
            if self.proc.poll() is not None or time.time() > deadline:
                log = self.log()
                self.close()
                raise AssertionError("prometheus not ready: %s" % log)
            time.sleep(0.1)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def close(self):
        super().close()
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def api(self, path, **params):
        """GET /api/v1/<path>: the `data` of a success, PromError (with
        Prometheus's errorType and error) otherwise."""
        q = urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen("%s/api/v1/%s?%s" % (self.url, path, q),
                                        timeout=30) as r:
                doc = json.load(r)
        except urllib.error.HTTPError as e:
            doc = json.load(e)
        if doc.get("status") != "success":
            raise PromError("%s: %s" % (doc.get("errorType"), doc.get("error")))
        return doc["data"]

    def query(self, expr, at=None):
        """Instant vector (list of {metric, value}) or scalar of expr."""
        params = {"query": expr}
        if at is not None:
            params["time"] = "%.3f" % at
        return self.api("query", **params)

    def query_range(self, expr, start, end, step):
        return self.api("query_range", query=expr, start="%.3f" % start, end="%.3f" % end,
                        step="%gs" % step)["result"]

    def label_values(self, label, match):
        """What Grafana's label_values(match, label) lists."""
        return self.api("label/%s/values" % label, **{"match[]": match})

    def targets(self):
        return self.api("targets")["activeTargets"]

    def wait_targets_up(self, timeout=30):
        deadline = time.time() + timeout
        while True:
            ts = self.targets()
            if len(ts) == self.expected and all(t["health"] == "up" for t in ts):
                return ts
            if time.time() > deadline:
                raise AssertionError("targets not up after %d s: %s" % (timeout, [
                    (t["labels"].get("job"), t["scrapeUrl"], t["health"], t["lastError"])
                    for t in ts]))
            time.sleep(0.2)

    def rules(self):
        return [r for g in self.api("rules")["groups"] for r in g["rules"]]
