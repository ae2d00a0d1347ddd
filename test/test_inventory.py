#!/usr/bin/env python3
"""test_inventory.py INVENTORY_CLI - controller/inventory (the cache
inventory) against a real docker-registry (deletes enabled), through
test/inventory_cli.c: unique bytes with layers shared across repositories,
the bytes removing a set frees, two tags of one digest (expiring one
deletes nothing), tag refresh (the old digest deleted unless a digest
reference holds it), a multi-arch index deleted before its children and the
freed bytes matched by a real garbage-collect, a child held by a digest
reference, an index listing a child twice, an object removed before its
tree was read (read, then deleted), an unread manifest blocking its
repository, may_delete postponing and kick, an orphan referenced again (and
a removed name set again), a 404 top pushed later, the registry down then
up, failed deletes retried with backoff, set_registry(NULL) and free with
requests in flight (the driver must exit with its loop empty: no leak under
ASan), and 10,000 objects' memory.

Images are built by test/images.py (skopeo) or pushed by hand over HTTP;
servers run on free loopback ports and are stopped by PID."""

import hashlib
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import images  # noqa: E402
import unittest77  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from registry import Registry, die_with_parent  # noqa: E402

CLI = None
ACCEPT = ", ".join([images.OCI_MANIFEST, images.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def http(method, url, data=None, headers=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def manifest_status(reg, repo, ref):
    return http("GET", "%s/v2/%s/manifests/%s" % (reg.url, repo, ref),
                headers={"Accept": ACCEPT})[0]


def tree(reg, repo, digest, out=None):
    """digest -> size of every manifest and blob of the tree in the cache."""
    out = {} if out is None else out
    st, _, body = http("GET", "%s/v2/%s/manifests/%s" % (reg.url, repo, digest),
                       headers={"Accept": ACCEPT})
    assert st == 200, (repo, digest, st)
    out[digest] = len(body)
    m = json.loads(body)
    if "manifests" in m:
        for c in m["manifests"]:
            tree(reg, repo, c["digest"], out)
    else:
        for d in [m["config"]] + m.get("layers", []):
            if not d.get("urls"):
                out[d["digest"]] = d["size"]
    return out


def blob_bytes(reg):
    """Bytes of every blob in the registry's storage."""
    total = 0
    root = os.path.join(reg.dir, "storage", "docker", "registry", "v2", "blobs")
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f == "data":
                total += os.path.getsize(os.path.join(dirpath, f))
    return total


class Driver:
    """One inventory_cli: commands in, replies and events out."""

    def __init__(self, host=None, concurrency=None):
        self.dir = tempfile.mkdtemp(prefix="thaw-inventory.")
        self.log_path = os.path.join(self.dir, "stderr.log")
        self._log = open(self.log_path, "wb")
        argv = [CLI] + (["--concurrency", str(concurrency)] if concurrency else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, preexec_fn=die_with_parent)
        self.replies = queue.Queue()
        self.events = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if host:
            self.cmd("registry", host)

    def _read(self):
        for line in self.proc.stdout:
            o = json.loads(line)
            if "event" in o:
                with self.lock:
                    o["t"] = time.monotonic()
                    self.events.append(o)
            else:
                self.replies.put(o)
        self.replies.put(None)

    def send(self, lines):
        self.proc.stdin.write(b"".join(l.encode() + b"\n" for l in lines))
        self.proc.stdin.flush()

    def reply(self, timeout=30):
        try:
            r = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("inventory_cli did not answer; stderr:\n" + self.stderr())
        if r is None:
            raise AssertionError("inventory_cli exited; stderr:\n" + self.stderr())
        return r

    def cmd(self, *args, ok=True):
        self.send([" ".join(str(a) for a in args)])
        r = self.reply()
        if ok:
            assert r["rc"] == "OK", (args, r)
        return r

    def batch(self, lines):
        self.send(lines)
        rs = [self.reply() for _ in lines]
        bad = [r for r in rs if r["rc"] != "OK"]
        assert not bad, bad[:3]
        return rs

    def query(self, *names):
        return self.cmd("query", *names)

    def deleted(self):
        with self.lock:
            return [e for e in self.events if e["event"] == "deleted"]

    def wait(self, pred, what, timeout=30, names=()):
        deadline = time.monotonic() + timeout
        while True:
            q = self.query(*names)
            if pred(q):
                return q
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for %s; last query %s; stderr tail:\n%s"
                                     % (what, json.dumps(q)[:2000], self.stderr()[-3000:]))
            time.sleep(0.05)

    def wait_loaded(self, *names, timeout=30):
        return self.wait(lambda q: all(q["objects"][n]["loaded"] for n in names),
                         "loaded %s" % (names,), timeout, names)

    def wait_deleted(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        while len(self.deleted()) < n:
            if time.monotonic() > deadline:
                raise AssertionError("%d deleted events, wanted %d; stderr tail:\n%s"
                                     % (len(self.deleted()), n, self.stderr()[-3000:]))
            time.sleep(0.05)
        return self.deleted()

    def stderr(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def close(self):
        """quit; the exit status must be 0 (loop closed empty, and under
        ASan no leak)."""
        if self.proc.poll() is None:
            try:
                self.send(["quit"])
            except OSError:
                pass
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        for f in (self.proc.stdin, self.proc.stdout, self._log):
            try:
                f.close()
            except OSError:
                pass
        rc, err = self.proc.returncode, self.stderr()
        shutil.rmtree(self.dir, ignore_errors=True)
        return rc, err


class InventoryTest(unittest.TestCase):
    reg = None

    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="thaw-inventory-test.")
        cls.imgs = images.Images(os.path.join(cls.work, "images"))
        cls.reg = Registry()
        cls.host = cls.reg.url[len("http://"):]

    @classmethod
    def tearDownClass(cls):
        if cls.reg:
            cls.reg.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        self.drivers = []

    def tearDown(self):
        for d in self.drivers:
            rc, err = d.close()
            self.assertEqual(rc, 0, "inventory_cli exit %s; stderr tail:\n%s" % (rc, err[-3000:]))

    def driver(self, host=None, **kw):
        d = Driver(host or self.host, **kw)
        self.drivers.append(d)
        return d

    def image(self, name, text, arch="amd64"):
        """A one-layer image of its own content (a fresh layout)."""
        lo = images.Layout(os.path.join(self.work, "layouts", name))
        layer = lo.layer({"file": text.encode() * 50})
        return lo.tag(lo.image([layer], arch, name))

    def push(self, lo, ref, reg=None):
        return self.imgs.push(lo, "%s/%s" % ((reg or self.reg).url[len("http://"):], ref))

    def no_deletes_for(self, d, seconds, before=0):
        time.sleep(seconds)
        self.assertEqual(len(d.deleted()), before, d.deleted())

    # ---- byte accounting ----

    def test_unique_bytes_shared_layers(self):
        a, b = self.imgs.shared()
        ia = self.push(a, "acct/sa:v1")
        ib = self.push(b, "acct/sb:v1")
        ia2 = self.push(a, "acct/sa2:v1")  # the same image in another repository
        ic = self.push(self.image("acct-one", "one"), "acct/one:v1")
        ta, tb = tree(self.reg, "acct/sa", ia["digest"]), tree(self.reg, "acct/sb", ib["digest"])
        tc = tree(self.reg, "acct/one", ic["digest"])
        shared = set(ta) & set(tb)
        self.assertEqual(len(shared), 2, "the two base layers")

        d = self.driver(host="none")  # no registry yet: hints count
        d.batch(["set a acct/sa %s 1000" % ia["digest"], "set b acct/sb %s 300" % ib["digest"],
                 "set a2 acct/sa2 %s 1000" % ia2["digest"], "set c acct/one %s 7" % ic["digest"],
                 "set none acct/x - 99"])
        q = d.query("a", "none")
        self.assertEqual(q["unique"], 1000 + 300 + 1000 + 7, "unread objects count their hints")
        self.assertEqual(q["stats"]["unloaded"], 4)
        self.assertFalse(q["objects"]["a"]["loaded"])
        self.assertTrue(q["objects"]["none"]["loaded"], "holding nothing is loaded")
        self.assertEqual(q["objects"]["a"]["bytes"], 1000)

        d.cmd("registry", self.host)
        q = d.wait_loaded("a", "b", "a2", "c")
        union = dict(ta, **tb, **tc)
        self.assertEqual(q["unique"], sum(union.values()))
        self.assertEqual(q["stats"]["contents"], len(union), "one entry per digest")
        self.assertEqual(q["stats"]["manifests"], 4, "(repository, digest) entries")
        q = d.query("a", "a2", "b", "c")
        self.assertEqual(q["objects"]["a"]["bytes"], sum(ta.values()))
        self.assertEqual(q["objects"]["a2"]["bytes"], sum(ta.values()))
        self.assertEqual(q["objects"]["b"]["bytes"], sum(tb.values()))

        freed = lambda *n: d.cmd("freed", *n)["bytes"]
        own_a = sum(v for k, v in ta.items() if k not in shared)
        self.assertEqual(freed("a"), 0, "a2 holds the same digest")
        self.assertEqual(freed("a", "a2"), own_a, "not the layers b shares")
        self.assertEqual(freed("a", "a", "a2", "nosuch"), own_a, "repeats and unknown names")
        self.assertEqual(freed("a", "a2", "b"), sum(dict(ta, **tb).values()))
        self.assertEqual(freed("a", "a2", "b", "c", "none"), q["unique"])
        self.assertEqual(freed("b"), sum(v for k, v in tb.items() if k not in shared))
        self.assertEqual(d.query()["unique"], q["unique"], "freed changes nothing")
        self.no_deletes_for(d, 0.5)

    def test_absent_top_then_pushed(self):
        lo = self.image("late", "late")
        digest = lo.top["digest"]  # known before the push
        d = self.driver()
        d.cmd("set", "late", "acct/late", digest, 5000)
        q = d.wait_loaded("late")
        self.assertEqual(q["objects"]["late"]["bytes"], 0, "404: holds nothing")
        self.assertEqual(q["unique"], 0, "no hint once read")
        self.push(lo, "acct/late:v1")
        d.cmd("set", "late", "acct/late", digest, 5000)  # same digest: read again
        t = tree(self.reg, "acct/late", digest)
        q = d.wait(lambda q: q["objects"]["late"]["bytes"] == sum(t.values()), "re-read",
                   names=("late",))
        self.assertEqual(q["unique"], sum(t.values()))
        d.cmd("remove", "late")
        ev = d.wait_deleted(1)
        self.assertEqual(ev[0]["digest"], digest)
        self.assertEqual(ev[0]["freed"], sum(t.values()))

    # ---- safe deletion ----

    def test_two_tags_one_digest(self):
        lo = self.image("alpine", "alpine 3.19")
        i3 = self.push(lo, "safe/alpine:3")
        i319 = self.push(lo, "safe/alpine:3.19")
        self.assertEqual(i3["digest"], i319["digest"])
        dg = i3["digest"]
        d = self.driver()
        d.batch(["set alpine-3 safe/alpine %s 1" % dg, "set alpine-3.19 safe/alpine %s 1" % dg])
        d.wait_loaded("alpine-3", "alpine-3.19")
        d.cmd("remove", "alpine-3")
        q = d.query("alpine-3")
        self.assertFalse(q["objects"]["alpine-3"]["pending"], "nothing of its own to delete")
        self.assertEqual(q["stats"]["orphans"], 0)
        self.no_deletes_for(d, 1.5)
        self.assertEqual(manifest_status(self.reg, "safe/alpine", "3.19"), 200)
        self.assertEqual(manifest_status(self.reg, "safe/alpine", dg), 200)
        for b in tree(self.reg, "safe/alpine", dg):  # pullable: the blobs too
            if b != dg:
                self.assertEqual(http("HEAD", "%s/v2/safe/alpine/blobs/%s"
                                      % (self.reg.url, b))[0], 200)
        d.cmd("remove", "alpine-3.19")
        self.assertTrue(d.query("alpine-3.19")["objects"]["alpine-3.19"]["pending"])
        ev = d.wait_deleted(1)
        self.assertEqual((ev[0]["repo"], ev[0]["digest"]), ("safe/alpine", dg))
        d.wait(lambda q: not q["objects"]["alpine-3.19"]["pending"], "not pending",
               names=("alpine-3.19",))
        self.assertEqual(manifest_status(self.reg, "safe/alpine", "3.19"), 404)

    def test_tag_refresh(self):
        v1 = self.push(self.image("fn-v1", "function v1"), "safe/fn:latest")
        d = self.driver()
        d.batch(["set fn safe/fn %s 1" % v1["digest"],
                 "set fn-pinned safe/fn %s 1" % v1["digest"],  # a digest reference
                 "set solo safe/solo %s 1" % self.push(
                     self.image("solo-v1", "solo v1"), "safe/solo:latest")["digest"]])
        d.wait_loaded("fn", "fn-pinned", "solo")
        v2 = self.push(self.image("fn-v2", "function v2"), "safe/fn:latest")
        solo2 = self.push(self.image("solo-v2", "solo v2"), "safe/solo:latest")
        d.cmd("set", "fn", "safe/fn", v2["digest"], 1)
        d.cmd("set", "solo", "safe/solo", solo2["digest"], 1)
        ev = d.wait_deleted(1)
        self.assertEqual(ev[0]["repo"], "safe/solo", "only solo's old digest")
        d.wait(lambda q: not q["objects"]["solo"]["pending"], "solo settled", names=("solo",))
        self.assertEqual(manifest_status(self.reg, "safe/solo", "latest"), 200, "the new one kept")
        self.assertEqual(manifest_status(self.reg, "safe/solo", solo2["digest"]), 200)
        q = d.wait_loaded("fn")
        self.assertFalse(q["objects"]["fn"]["pending"], "its old digest is held by fn-pinned")
        self.no_deletes_for(d, 1.5, before=1)
        self.assertEqual(manifest_status(self.reg, "safe/fn", v1["digest"]), 200)
        self.assertEqual(manifest_status(self.reg, "safe/fn", "latest"), 200)
        d.cmd("remove", "fn-pinned")
        ev = d.wait_deleted(2)
        self.assertEqual((ev[1]["repo"], ev[1]["digest"]), ("safe/fn", v1["digest"]))
        self.assertEqual(manifest_status(self.reg, "safe/fn", v1["digest"]), 404)
        self.assertEqual(manifest_status(self.reg, "safe/fn", "latest"), 200)
        self.assertEqual(manifest_status(self.reg, "safe/fn", v2["digest"]), 200)

    def test_multiarch_index_first_and_gc(self):
        reg = Registry()  # its own: the GC measures all of its storage
        fp = None
        try:
            info = self.imgs.push(self.imgs.multiarch(), reg.url[7:] + "/multi/app:v1")
            t = tree(reg, "multi/app", info["digest"])
            # the index's DELETE takes 1 s: the children must still wait for it
            fp = FaultProxy(reg.url)
            fp.add(match="/manifests/" + info["digest"], method="DELETE", delay=1, times=0)
            d = self.driver(host=fp.host, concurrency=4)
            d.cmd("set", "app", "multi/app", info["digest"], 1)
            q = d.wait_loaded("app")
            self.assertEqual(q["objects"]["app"]["bytes"], sum(t.values()))
            self.assertEqual(q["stats"]["manifests"], 3)
            d.cmd("remove", "app")
            ev = d.wait_deleted(3)
            self.assertEqual(ev[0]["digest"], info["digest"], "the index first")
            self.assertEqual(sorted(e["digest"] for e in ev[1:]), sorted(info["children"]))
            for dg in [info["digest"]] + info["children"]:
                self.assertEqual(manifest_status(reg, "multi/app", dg), 404)
            self.assertEqual(sum(e["freed"] for e in ev), sum(t.values()))
            q = d.wait(lambda q: q["stats"]["manifests"] == 0, "forgotten")
            self.assertEqual(q["reclaimable"], sum(t.values()))
            self.assertEqual(q["stats"]["contents"], 0)
            # a real GC reclaims exactly that
            before = blob_bytes(reg)
            reg.stop()
            subprocess.run(["docker-registry", "garbage-collect", reg.config],
                           check=True, capture_output=True)
            self.assertEqual(before - blob_bytes(reg), q["reclaimable"])
            d.cmd("collected")
            self.assertEqual(d.query()["reclaimable"], 0)
        finally:
            if fp:
                fp.close()
            reg.close()

    def test_removed_before_read(self):
        # after a restart: expired before its tree was read; the tree is
        # read first (the children are learnt from the index), then deleted
        info = self.push(self.imgs.multiarch(), "safe/early:v1")
        d = self.driver(host="none")
        d.batch(["set early safe/early %s 1" % info["digest"], "remove early"])
        q = d.query("early")
        self.assertTrue(q["objects"]["early"]["pending"])
        self.assertEqual(q["unique"], 0)
        d.cmd("registry", self.host)
        ev = d.wait_deleted(3)
        self.assertEqual(ev[0]["digest"], info["digest"], "the index first")
        self.assertEqual(sorted(e["digest"] for e in ev[1:]), sorted(info["children"]))
        d.wait(lambda q: not q["objects"]["early"]["pending"], "settled", names=("early",))

    def test_index_child_held_by_digest_reference(self):
        info = self.push(self.imgs.multiarch(), "safe/multi:v1")
        kid = info["children"][0]
        d = self.driver()
        d.batch(["set multi safe/multi %s 1" % info["digest"], "set amd64 safe/multi %s 1" % kid])
        d.wait_loaded("multi", "amd64")
        kt = tree(self.reg, "safe/multi", kid)
        self.assertEqual(d.cmd("freed", "multi")["bytes"],
                         sum(tree(self.reg, "safe/multi", info["digest"]).values()) - sum(kt.values()))
        d.cmd("remove", "multi")
        ev = d.wait_deleted(2)
        self.assertEqual(ev[0]["digest"], info["digest"])
        self.assertEqual(ev[1]["digest"], info["children"][1])
        self.no_deletes_for(d, 1, before=2)
        self.assertEqual(manifest_status(self.reg, "safe/multi", kid), 200)
        self.assertEqual(d.query("amd64")["objects"]["amd64"]["bytes"], sum(kt.values()))

    def test_index_listing_a_child_twice(self):
        info = self.push(self.image("twice", "twice"), "odd/twice:child")
        kid = info["digest"]
        size = len(http("GET", "%s/v2/odd/twice/manifests/%s" % (self.reg.url, kid),
                        headers={"Accept": ACCEPT})[2])
        desc = {"mediaType": images.OCI_MANIFEST, "digest": kid, "size": size,
                "platform": {"architecture": "amd64", "os": "linux"}}
        index = json.dumps({"schemaVersion": 2, "mediaType": images.OCI_INDEX,
                            "manifests": [desc, desc]}).encode()
        st, h, body = http("PUT", "%s/v2/odd/twice/manifests/v1" % self.reg.url, index,
                           {"Content-Type": images.OCI_INDEX})
        self.assertEqual(st, 201, body)
        d = self.driver()
        d.cmd("set", "twice", "odd/twice", sha(index), 1)
        q = d.wait_loaded("twice")
        t = tree(self.reg, "odd/twice", sha(index))
        self.assertEqual(q["objects"]["twice"]["bytes"], sum(t.values()))
        self.assertEqual(d.cmd("freed", "twice")["bytes"], sum(t.values()))
        d.cmd("remove", "twice")
        ev = d.wait_deleted(2)
        self.assertEqual([e["digest"] for e in ev], [sha(index), kid])
        d.wait(lambda q: q["stats"]["manifests"] == 0 and q["unique"] == 0, "forgotten")
        self.no_deletes_for(d, 0.5, before=2)

    def test_unread_blocks_its_repository(self):
        ix = self.push(self.image("blk-x", "x"), "blk/app:x")
        iy = self.push(self.image("blk-y", "y"), "blk/app:y")
        iz = self.push(self.image("blk-z", "z"), "blk/other:z")
        fp = FaultProxy(self.reg.url)
        try:
            fp.add(match="/v2/blk/app/manifests/" + iy["digest"], method="GET",
                   status=500, times=0)
            d = self.driver(host=fp.host)
            d.batch(["set x blk/app %s 1" % ix["digest"], "set y blk/app %s 1" % iy["digest"],
                     "set z blk/other %s 1" % iz["digest"]])
            d.wait_loaded("x", "z")
            q = d.wait(lambda q: q["stats"]["waiting"] >= 1, "y retrying", names=("y",))
            self.assertFalse(q["objects"]["y"]["loaded"])
            d.batch(["remove x", "remove z"])
            ev = d.wait_deleted(1)
            self.assertEqual(ev[0]["repo"], "blk/other", "another repository goes on")
            self.no_deletes_for(d, 2.5, before=1)
            self.assertTrue(d.query("x")["objects"]["x"]["pending"])
            self.assertEqual(manifest_status(self.reg, "blk/app", ix["digest"]), 200)
            self.assertEqual([f["method"] for f in fp.stats()["faults"]
                              if "/blk/app/" in f["path"] and f["method"] == "DELETE"], [])
            fp.clear()  # y reads at its next retry (backoff <= 8 s by now)
            d.wait_loaded("y", timeout=40)
            ev = d.wait_deleted(2, timeout=20)
            self.assertEqual((ev[1]["repo"], ev[1]["digest"]), ("blk/app", ix["digest"]))
            self.assertEqual(manifest_status(self.reg, "blk/app", iy["digest"]), 200)
        finally:
            fp.close()

    def test_may_delete_postpones(self):
        info = self.push(self.image("deny", "deny"), "deny/app:v1")
        dg = info["digest"]
        d = self.driver()
        d.batch(["deny deny/app", "set o deny/app %s 1" % dg])
        d.wait_loaded("o")
        d.cmd("remove", "o")
        self.no_deletes_for(d, 2.5)
        q = d.query("o")
        self.assertTrue(q["objects"]["o"]["pending"])
        self.assertGreaterEqual(q["denied_asks"], 2, "asked again while it says no")
        self.assertEqual(manifest_status(self.reg, "deny/app", dg), 200)
        # right after a poll (they come 1 s apart), so only the kick can be quick
        asks = q["denied_asks"]
        d.wait(lambda q: q["denied_asks"] > asks, "the next poll", timeout=5)
        t0 = time.monotonic()
        d.batch(["allow deny/app", "kick"])
        ev = d.wait_deleted(1)
        self.assertLess(ev[0]["t"] - t0, 0.6, "kick: at once, not at the next poll")
        d.wait(lambda q: not q["objects"]["o"]["pending"], "settled", names=("o",))
        self.assertEqual(manifest_status(self.reg, "deny/app", dg), 404)

    def test_orphan_referenced_again(self):
        info = self.push(self.image("again", "again"), "deny/again:v1")
        dg = info["digest"]
        d = self.driver()
        d.batch(["deny deny/again", "set p deny/again %s 1" % dg])
        d.wait_loaded("p")
        d.cmd("remove", "p")
        q = d.query("p")
        self.assertTrue(q["objects"]["p"]["pending"])
        self.assertEqual(q["stats"]["orphans"], 1)
        d.cmd("set", "q", "deny/again", dg, 1)
        q = d.query("p", "q")
        self.assertFalse(q["objects"]["p"]["pending"], "dropped from the orphans")
        self.assertEqual(q["stats"]["orphans"], 0)
        self.assertTrue(q["objects"]["q"]["loaded"], "the tree read before is kept")
        # a removed name set again, to the digest it orphaned
        d.cmd("remove", "q")
        self.assertTrue(d.query("q")["objects"]["q"]["pending"])
        d.cmd("set", "q", "deny/again", dg, 1)
        q = d.query("q")
        self.assertFalse(q["objects"]["q"]["pending"])
        self.assertTrue(q["objects"]["q"]["loaded"])
        self.assertEqual(q["stats"]["objects"], 1)
        d.batch(["allow deny/again", "kick"])
        self.no_deletes_for(d, 1.5)
        self.assertEqual(manifest_status(self.reg, "deny/again", dg), 200)

    # ---- failures ----

    def test_registry_down_then_up(self):
        reg = Registry()
        try:
            host = reg.url[7:]
            a = self.imgs.push(self.image("down-a", "a"), host + "/down/a:v1")
            b = self.imgs.push(self.image("down-b", "b"), host + "/down/b:v1")
            d = self.driver(host=host)
            d.cmd("set", "a", "down/a", a["digest"], 1)
            d.wait_loaded("a")
            reg.stop()
            d.batch(["remove a", "set b down/b %s 1" % b["digest"]])
            q = d.wait(lambda q: q["stats"]["waiting"] == 2, "both retrying", names=("a", "b"))
            self.assertTrue(q["objects"]["a"]["pending"])
            self.assertFalse(q["objects"]["b"]["loaded"])
            time.sleep(2)
            self.assertEqual(d.deleted(), [])
            reg.start()
            d.wait_loaded("b", timeout=40)
            ev = d.wait_deleted(1, timeout=40)
            self.assertEqual(ev[0]["digest"], a["digest"])
            self.assertFalse(d.query("a")["objects"]["a"]["pending"])
            self.assertEqual(manifest_status(reg, "down/a", a["digest"]), 404)
            self.assertEqual(manifest_status(reg, "down/b", b["digest"]), 200)
        finally:
            reg.close()

    def test_failed_delete_backs_off(self):
        info = self.push(self.image("retry", "retry"), "retry/app:v1")
        fp = FaultProxy(self.reg.url)
        try:
            fp.add(match="/v2/retry/app/manifests/", method="DELETE", status=500, times=2)
            d = self.driver(host=fp.host)
            d.cmd("set", "o", "retry/app", info["digest"], 1)
            d.wait_loaded("o")
            t0 = time.monotonic()
            d.cmd("remove", "o")
            ev = d.wait_deleted(1, timeout=20)
            took = ev[0]["t"] - t0
            self.assertGreaterEqual(took, 2.9, "1 s, then 2 s")
            self.assertLess(took, 6.5)
            self.assertEqual(len(fp.stats()["faults"]), 2)
            self.assertEqual(manifest_status(self.reg, "retry/app", info["digest"]), 404)
        finally:
            fp.close()

    def test_registry_gone_mid_operation(self):
        names = []
        lines = []
        for i in range(6):
            info = self.push(self.image("mid-%d" % i, "mid %d" % i), "mid/app%d:v1" % i)
            names.append("m%d" % i)
            lines.append("set m%d mid/app%d %s 1" % (i, i, info["digest"]))
        multi = self.push(self.imgs.multiarch(), "mid/multi:v1")
        names.append("multi")
        lines.append("set multi mid/multi %s 1" % multi["digest"])
        fp = FaultProxy(self.reg.url)
        try:
            fp.add(match="/manifests/", delay=1, times=0)  # every request in flight 1 s
            d = self.driver(host=fp.host, concurrency=4)
            d.batch(lines)
            q = d.wait(lambda q: q["stats"]["inflight"] == 4, "4 reads in flight")
            d.cmd("registry", "none")  # set_registry(NULL) mid-read
            q = d.query(*names)
            self.assertEqual(q["stats"]["inflight"], 0)
            self.assertFalse(any(q["objects"][n]["loaded"] for n in names))
            time.sleep(1.5)
            self.assertEqual(d.query()["stats"]["inflight"], 0, "nothing runs without a client")
            d.cmd("registry", fp.host)
            q = d.wait(lambda q: q["stats"]["inflight"] == 4, "at most 4 at once")
            d.wait_loaded(*names, timeout=30)
            d.batch(["remove m0", "remove m1", "remove multi"])
            d.wait(lambda q: q["stats"]["inflight"] >= 1, "deletes in flight")
            self.assertGreaterEqual(d.cmd("deleting", "mid/app0")["n"]
                                    + d.cmd("deleting", "mid/app1")["n"]
                                    + d.cmd("deleting", "mid/multi")["n"], 1)
            d.cmd("registry", "drop")  # the client freed first, then NULL
            q = d.query("m0", "m1", "multi")
            self.assertEqual(q["stats"]["inflight"], 0)
            self.assertTrue(all(q["objects"][n]["pending"] for n in ("m0", "m1", "multi")))
            fp.clear()
            d.cmd("registry", fp.host)
            d.wait_deleted(2 + 3)
            d.wait(lambda q: not any(q["objects"][n]["pending"] for n in ("m0", "m1", "multi")),
                   "settled", names=("m0", "m1", "multi"))
            # free, and quit, with requests in flight
            fp.add(match="/manifests/", delay=1, times=0)
            d.batch(["remove m2", "remove m3"])
            d.wait(lambda q: q["stats"]["inflight"] >= 1, "in flight again")
            d.cmd("free")
            d2 = self.driver(host=fp.host)
            d2.batch(lines[4:])
            d2.wait(lambda q: q["stats"]["inflight"] >= 1, "reads in flight")
            # tearDown quits both: exit 0 means the loop closed empty (no leak
            # under ASan)
        finally:
            for d in self.drivers:
                rc, err = d.close()
                self.assertEqual(rc, 0, err[-3000:])
            self.drivers = []
            fp.close()

    # ---- scale ----

    def test_ten_thousand_objects(self):
        repos, per_repo = 250, 40
        base = [b"base layer one\n" * 4000, b"base layer two\n" * 2000]
        conn = Pusher(self.reg.url)
        for b in base:
            conn.blob("scale/r0", b)
        objs, expect = [], {sha(b): len(b) for b in base}
        for i in range(repos):
            repo = "scale/r%d" % i
            if i:
                for b in base:
                    conn.mount(repo, sha(b), "scale/r0")
            own = ("own layer %d\n" % i).encode() * 10
            config = json.dumps({"architecture": "amd64", "os": "linux",
                                 "rootfs": {"type": "layers", "diff_ids": []},
                                 "n": i}).encode()
            conn.blob(repo, own)
            conn.blob(repo, config)
            man = json.dumps({"schemaVersion": 2, "mediaType": images.OCI_MANIFEST,
                              "config": {"mediaType": images.OCI_CONFIG, "digest": sha(config),
                                         "size": len(config)},
                              "layers": [{"mediaType": images.OCI_LAYER_GZ, "digest": sha(b),
                                          "size": len(b)} for b in base + [own]]}).encode()
            conn.manifest(repo, "v1", man)
            expect.update({sha(own): len(own), sha(config): len(config), sha(man): len(man)})
            if i == 0:
                own0 = len(own) + len(config) + len(man)
            objs += ["set %s-%d %s %s 1" % (repo.replace("/", "-"), j, repo, sha(man))
                     for j in range(per_repo)]
        conn.close()
        d = self.driver()
        t0 = time.monotonic()
        d.batch(objs)
        q = d.wait(lambda q: q["stats"]["unloaded"] == 0, "all loaded", timeout=120)
        print("# 10,000 objects loaded in %.1f s, %d bytes of inventory"
              % (time.monotonic() - t0, q["stats"]["memory"]), flush=True)
        self.assertEqual(q["stats"]["objects"], repos * per_repo)
        self.assertEqual(q["stats"]["manifests"], repos)
        self.assertEqual(q["stats"]["contents"], len(expect), "each digest once")
        self.assertEqual(q["unique"], sum(expect.values()))
        self.assertLess(q["stats"]["memory"], 200 * repos * per_repo,
                        "under 200 bytes an object, all in")
        names0 = ["scale-r0-%d" % j for j in range(per_repo)]
        self.assertEqual(d.cmd("freed", *names0[:-1])["bytes"], 0, "one name of r0 still holds it")
        self.assertEqual(d.cmd("freed", *names0)["bytes"], own0, "r0's own, not the base layers")
        self.assertEqual(d.cmd("freed", *[l.split()[1] for l in objs])["bytes"], q["unique"])
        self.no_deletes_for(d, 0.2)


class Pusher:
    """Blob uploads, mounts and manifest PUTs over one HTTP connection."""

    def __init__(self, url):
        import http.client
        import urllib.parse
        u = urllib.parse.urlsplit(url)
        self.c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)

    def req(self, method, path, body=None, headers=None):
        self.c.request(method, path, body=body, headers=headers or {})
        r = self.c.getresponse()
        data = r.read()
        return r.status, r.getheader("Location"), data

    def blob(self, repo, data):
        st, loc, _ = self.req("POST", "/v2/%s/blobs/uploads/" % repo)
        assert st == 202, st
        sep = "&" if "?" in loc else "?"
        path = loc.split("://", 1)[-1]
        path = path[path.index("/"):] if not loc.startswith("/") else loc
        st, _, body = self.req("PUT", "%s%sdigest=%s" % (path, sep, sha(data)), data,
                               {"Content-Type": "application/octet-stream"})
        assert st == 201, (st, body)

    def mount(self, repo, digest, src):
        st, _, body = self.req("POST", "/v2/%s/blobs/uploads/?mount=%s&from=%s"
                               % (repo, digest, src))
        assert st == 201, (st, body)

    def manifest(self, repo, tag, data):
        st, _, body = self.req("PUT", "/v2/%s/manifests/%s" % (repo, tag), data,
                               {"Content-Type": images.OCI_MANIFEST})
        assert st == 201, (st, body)

    def close(self):
        self.c.close()


def main():
    global CLI
    if len(sys.argv) < 2:
        sys.exit("usage: test_inventory.py PATH/inventory_cli [unittest args]")
    CLI = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
