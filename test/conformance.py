#!/usr/bin/env python3
"""Replays every request of the kube-apiserver captures
(test/fixtures/kube-api) against a fresh kubeemu and
compares status codes and bodies, ignoring what differs between runs (uids,
resourceVersions, timestamps, the rvs inside continue tokens, numbers in
messages). managedFields are compared without their times: manager,
operation, apiVersion, fieldsType, subresource, order and the fieldsV1 set.
One line per fixture; exit 1 on any failure."""

import base64
import json
import os
import re
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "kubeemu"))
from testclient import Emulator, read_events  # noqa: E402

FIXTURES = os.path.join(HERE, "fixtures", "kube-api")

VOLATILE = {"uid", "resourceVersion", "creationTimestamp", "time",
            "lastTransitionTime", "buildDate", "serverAddressByClientCIDRs"}
# The apiserver without a watch cache words the 410 differently; ours is a
# watch cache, so only the Status shape is compared for those captures.
NO_WATCHCACHE = {"watch-410-compacted-rv-no-watchcache.json",
                 "watch-410-rv1-no-watchcache.json"}

PLAN = [
    "discovery-version.json", "discovery-api.json",
    "crd-create-201.json", "crd-get-established.json",
    "discovery-apis-example.com.json", "discovery-apis-example.com-v1.json",
    "discovery-apis.json",
    "widgets-list-empty.json", "watch-410-rv1-watchcache.json",
    "widgets-watch-transcript.json",    # replays its own actions meanwhile
    # etcd compaction: the watch cache still serves the rv, Exact lists and
    # continue tokens from before it get 410
    "COMPACT",
    "watch-compacted-rv-served-from-watchcache.json",
    "list-410-exact-compacted-rv.json", "list-notolderthan-compacted-rv-200.json",
    "list-410-expired-continue-token.json", "list-continue-with-token-from-410-200.json",
    "RESTART",     # an apiserver restart: the watch caches start over
    "watch-410-after-apiserver-restart-watchcache.json",
    "watch-410-compacted-rv-no-watchcache.json", "watch-410-rv1-no-watchcache.json",
    "PODS",    # also creates the namespaces the events below need
    "lease-create-201.json", "lease-update-put-200.json", "lease-update-409-conflict-stale.json",
    "lease-create-409-already-exists.json", "lease-create-400-bad-microtime.json",
    "event-create-201.json", "event-create-422-namespace-mismatch.json",
    "lease-delete-200.json",
    "pods-list-all-namespaces.json", "pods-list-labelselector-all-namespaces.json",
    "pods-list-labelselector-namespaced.json", "pods-list-fieldselector-namespace.json",
    "pods-list-labelselector-invalid-400.json", "pods-list-fieldselector-unsupported-400.json",
    "COLLIDE", "pods-create-generatename-409-collision.json",
]


def load(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return json.load(f)


def norm(x, key=None):
    """What must match: volatile fields dropped, numbers in messages and
    the random suffix of the service-account volume blanked."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if k in VOLATILE:
                continue
            if k == "continue":
                out[k] = bool(v)
                continue
            if k == "fieldsV1":
                out[k] = v     # keys like k:{"name":"x"} are compared verbatim
                continue
            if k == "managedFields" and isinstance(v, list):
                # their order depends on the entries' times (seconds)
                out[k] = sorted((norm(e) for e in v), key=lambda e: json.dumps(
                    [e.get(f) for f in ("operation", "manager", "apiVersion", "subresource")]))
                continue
            out[k] = norm(v, k)
        return out
    if isinstance(x, list):
        return [norm(v) for v in x]
    if isinstance(x, str):
        if key == "message":
            return re.sub(r"\d+", "N", x)
        return re.sub(r"kube-api-access-[a-z0-9]{5}", "kube-api-access-X", x)
    return x


def diff(want, got, path=""):
    """First differences between two normalised documents."""
    out = []
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got:
                out.append("%s.%s missing" % (path, k))
            elif k not in want:
                out.append("%s.%s unexpected (%s)" % (path, k, json.dumps(got[k])[:80]))
            else:
                out += diff(want[k], got[k], "%s.%s" % (path, k))
    elif isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            out.append("%s: %d items, want %d" % (path, len(got), len(want)))
        for i, (a, b) in enumerate(zip(want, got)):
            out += diff(a, b, "%s[%d]" % (path, i))
    elif want != got:
        out.append("%s: got %s, want %s" % (path, json.dumps(got)[:120], json.dumps(want)[:120]))
    return out


class Runner:
    def __init__(self, emu):
        self.emu = emu
        self.rv = {}        # captured resourceVersion -> ours
        self.uid = {}
        self.failures = 0

    def learn(self, want, got):
        """Map the capture's rvs and uids to ours, from matching documents."""
        if isinstance(want, dict) and isinstance(got, dict):
            for k in ("resourceVersion", "uid"):
                if isinstance(want.get(k), str) and isinstance(got.get(k), str):
                    (self.rv if k == "resourceVersion" else self.uid)[want[k]] = got[k]
            for k in want:
                if k in got:
                    self.learn(want[k], got[k])
        elif isinstance(want, list) and isinstance(got, list):
            for a, b in zip(want, got):
                self.learn(a, b)

    def token(self, tok):
        raw = json.loads(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
        if raw["rv"] != -1:
            raw["rv"] = int(self.rv.get(str(raw["rv"]), raw["rv"]))
        return base64.urlsafe_b64encode(json.dumps(raw, separators=(",", ":")).encode()) \
            .decode().rstrip("=")

    def path(self, p):
        p = re.sub(r"resourceVersion=(\d+)",
                   lambda m: "resourceVersion=" + self.rv.get(m.group(1), m.group(1)), p)
        p = re.sub(r"continue=([A-Za-z0-9_-]+)", lambda m: "continue=" + self.token(m.group(1)), p)
        return p

    def body(self, b):
        if isinstance(b, dict):
            b = json.loads(json.dumps(b))
            md = b.get("metadata") or {}
            if md.get("resourceVersion") in self.rv:
                md["resourceVersion"] = self.rv[md["resourceVersion"]]
            if md.get("uid") in self.uid:
                md["uid"] = self.uid[md["uid"]]
        return b

    def report(self, name, problems):
        if problems:
            self.failures += 1
            print("FAIL %s" % name)
            for p in problems[:12]:
                print("     %s" % p)
        else:
            print("ok   %s" % name)
        sys.stdout.flush()

    def replay(self, name, fx=None):
        fx = fx or load(name)
        req, resp = fx["request"], fx["response"]
        body = req.get("body")
        ctype = (req.get("headers") or {}).get("Content-Type", "application/json")
        st, got, r = self.emu.request(req["method"], self.path(req["path"]),
                                      self.body(body) if body is not None else None, ctype)
        problems = []
        if st != resp["status"]:
            problems.append("status %d, want %d" % (st, resp["status"]))
        ct = r.getheader("Content-Type", "")
        if ct != resp["headers"].get("content-type"):
            problems.append("content-type %r" % ct)
        if r.getheader("Retry-After") != resp["headers"].get("retry-after"):
            problems.append("retry-after %r" % r.getheader("Retry-After"))
        if isinstance(resp["body"], dict) and isinstance(got, dict):
            self.learn(resp["body"], got)
            problems += diff(norm(resp["body"]), norm(got))
        elif resp["body"] != got:
            problems.append("body differs")
        self.report(name, problems)
        return got

    def watch(self, name, fx=None, timeout=None, during=None, shape_only=False):
        fx = fx or load(name)
        path = self.path(fx["request"]["path"])
        if timeout is not None:
            path = re.sub(r"timeoutSeconds=\d+", "timeoutSeconds=%d" % timeout, path)
        resp, conn = self.emu.watch(path, timeout=120)
        problems = []
        if resp.status != fx["response"]["status"]:
            problems.append("status %d" % resp.status)
        for h in ("content-type", "transfer-encoding"):
            if resp.getheader(h) != fx["response"]["headers"].get(h):
                problems.append("%s %r" % (h, resp.getheader(h)))
        got = []
        t = threading.Thread(target=lambda: got.extend(read_events(resp)))
        t.start()
        if during:
            during()
        t.join(150)
        conn.close()
        want = fx["events"]
        if [e["type"] for e in got] != [e["type"] for e in want]:
            problems.append("events %s, want %s" % ([e["type"] for e in got],
                                                    [e["type"] for e in want]))
        else:
            for i, (a, b) in enumerate(zip(want, got)):
                if shape_only:
                    a = {k: a["object"].get(k) for k in ("kind", "status", "reason", "code")}
                    b = {k: b["object"].get(k) for k in ("kind", "status", "reason", "code")}
                problems += diff(norm(a), norm(b), "[%d]" % i)
        self.report(name, problems)

    def transcript(self):
        fx = load("widgets-watch-transcript.json")

        def actions():
            time.sleep(0.3)
            for a in fx["actions_during_watch"]:
                self.replay(a["fixture"])
        # 90 s in the capture; 6 s here with 2 s bookmarks gives the same two
        # BOOKMARKs (one periodic, one 2 s before the deadline).
        self.watch("widgets-watch-transcript.json", fx, timeout=6, during=actions)

    def collide(self):
        """The capture's generated name, twice: the first create takes it."""
        fx = load("pods-create-generatename-409-collision.json")
        name = fx["response"]["body"]["details"]["name"]
        self.emu.request("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
        self.emu.control("generate-name", {"suffixes": [name[-5:]] * 2})
        st, doc, _ = self.emu.request("POST", fx["request"]["path"], fx["request"]["body"])
        if st != 201:
            self.report("first generateName create", ["status %d: %s" % (st, doc)])

    def seed_pods(self):
        """Recreate the captured pods through the API, so defaulting and
        admission run: each writer's managed fields only, written with its
        fieldManager, the creator's first."""
        items = load("pods-list-all-namespaces.json")["response"]["body"]["items"]
        for ns in sorted({p["metadata"]["namespace"] for p in items}):
            self.emu.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        for p in items:
            md = p["metadata"]
            first, *later = md["managedFields"]
            body = owned(p, first["fieldsV1"])
            body.setdefault("metadata", {}).update(name=md["name"], namespace=md["namespace"])
            path = "/api/v1/namespaces/%s/pods" % md["namespace"]
            st, doc, _ = self.emu.request("POST", path + "?fieldManager=" + first["manager"],
                                          body)
            if st != 201:
                self.report("create pod %s" % md["name"], ["status %d: %s" % (st, doc)])
            for e in later:
                st, doc, _ = self.emu.request(
                    "PATCH", "%s/%s?fieldManager=%s" % (path, md["name"], e["manager"]),
                    owned(p, e["fieldsV1"]), "application/merge-patch+json")
                if st != 200:
                    self.report("patch pod %s" % md["name"], ["status %d: %s" % (st, doc)])
            eph = p["spec"].get("ephemeralContainers")
            if eph:
                # the capture has no entry for them: add them through their
                # subresource, then put the captured managedFields back (a
                # client may replace them with valid ones)
                for verb, sub, patch in (
                        ("PATCH", "/ephemeralcontainers", {"spec": {"ephemeralContainers": eph}}),
                        ("PATCH", "", {"metadata": {"managedFields": md["managedFields"]}})):
                    st, doc, _ = self.emu.request(verb, "%s/%s%s" % (path, md["name"], sub),
                                                  patch, "application/strategic-merge-patch+json")
                    if st != 200:
                        self.report("patch pod %s" % md["name"], ["status %d: %s" % (st, doc)])


def owned(obj, fields):
    """The part of obj that a managedFields entry's fieldsV1 covers."""
    if not isinstance(obj, (dict, list)) or not fields or set(fields) == {"."}:
        return obj
    if isinstance(obj, dict):
        return {k[2:]: owned(obj[k[2:]], v) for k, v in fields.items()
                if k.startswith("f:") and k[2:] in obj}
    keys = [json.loads(k[2:]) for k in fields if k.startswith("k:")]
    return [owned(x, fields['k:' + json.dumps(kv, separators=(",", ":"))])
            for x in obj for kv in keys
            if isinstance(x, dict) and all(x.get(f) == v for f, v in kv.items())]


def main():
    with Emulator(bookmark_interval=2) as emu:
        run = Runner(emu)
        for step in PLAN:
            if step == "COMPACT":
                emu.control("compact")
            elif step == "RESTART":
                emu.control("watch-cache", {"restart": True})
            elif step == "COLLIDE":
                run.collide()
            elif step == "PODS":
                run.seed_pods()
            elif step == "widgets-watch-transcript.json":
                run.transcript()
            elif step.startswith("watch-"):
                run.watch(step, shape_only=step in NO_WATCHCACHE)
            else:
                run.replay(step)
        covered = set(PLAN) | {a["fixture"] for a in
                               load("widgets-watch-transcript.json")["actions_during_watch"]}
        for name in sorted(os.listdir(FIXTURES)):
            if name.endswith(".json") and name not in covered:
                run.report(name, ["not replayed by conformance.py"])
        print("%d failure(s)" % run.failures)
        return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
