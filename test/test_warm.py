#!/usr/bin/env python3
"""test_warm.py WARM_CLI - controller/warm against real docker-registry
instances: upstream A (plain, behind fault_proxy.py), upstream B (Bearer,
test/token_server.py), the cache, lying_registry.py and a crafted upstream
served from here (odd manifests). Every image kind is copied byte for byte;
tag and digest push rules, --platforms, mounts, repeats, resolve, and a fault
matrix (500, 429, reset, truncation, wrong digest, slow upstream, the cache
going down, a warm killed mid-copy, cancel). After every case the cache is
walked: every manifest's blobs and children exist and every blob hashes to
its digest.

THAW_BIG=1 adds the 200 MB layer (cached after the first run)."""
import contextlib
import copy
import hashlib
import http.server as httpserver
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import images  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from registry import QuietHandler, Registry, die_with_parent, spawn_ready, stop_proc  # noqa: E402
from token_server import TokenServer  # noqa: E402

ACCEPT = ", ".join([images.OCI_MANIFEST, images.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])
FAILS = []


def check(cond, what):
    print("%s - %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        FAILS.append(what)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def http(method, url, headers=None, timeout=60):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def cache_repo(ref):
    """The cache repository of a normalised reference (warm.h)."""
    name = ref.split("@")[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[:name.rfind(":")]
    host, path = name.split("/", 1)
    return host.replace(":", "__") + "/" + path


class Cache:
    """The cache registry plus the walk that checks its invariants."""

    def __init__(self, reg):
        self.reg, self.verified = reg, {}
        self.host = reg.url[len("http://"):]

    def manifest(self, repo, ref):
        return http("GET", "%s/v2/%s/manifests/%s" % (self.reg.url, repo, ref),
                    {"Accept": ACCEPT})

    def has_blob(self, repo, digest):
        return http("HEAD", "%s/v2/%s/blobs/%s" % (self.reg.url, repo, digest))[0] == 200

    def tags(self, repo):
        st, _, body = http("GET", "%s/v2/%s/tags/list" % (self.reg.url, repo))
        return (json.loads(body).get("tags") or []) if st == 200 else []

    def blob_ok(self, repo, digest, bad):
        if not self.has_blob(repo, digest):
            bad.append("%s: blob %s missing" % (repo, digest[:19]))
            return
        if digest not in self.verified:
            st, _, body = http("GET", "%s/v2/%s/blobs/%s" % (self.reg.url, repo, digest))
            self.verified[digest] = st == 200 and sha(body) == digest
        if not self.verified[digest]:
            bad.append("%s: blob %s does not hash to its digest" % (repo, digest[:19]))

    def check_manifest(self, repo, ref, bad, seen, depth=0):
        if (repo, ref) in seen:
            return
        seen.add((repo, ref))
        st, h, body = self.manifest(repo, ref)
        if st != 200:
            bad.append("%s@%s: manifest %d" % (repo, ref[:19], st))
            return
        if ref.startswith("sha256:") and sha(body) != ref:
            bad.append("%s@%s: manifest bytes hash elsewhere" % (repo, ref[:19]))
        m = json.loads(body)
        if "manifests" in m:
            for c in m["manifests"]:
                self.check_manifest(repo, c["digest"], bad, seen, depth + 1)
        else:
            for d in [m["config"]] + m.get("layers", []):
                self.blob_ok(repo, d["digest"], bad)

    def walk(self):
        """Problems found: catalog -> tags and every stored revision (untagged
        manifests too, listed from the storage directory) -> children and
        blobs; and every blob linked in a repository hashes to its digest."""
        bad, seen = [], set()
        st, _, body = http("GET", self.reg.url + "/v2/_catalog?n=1000")
        if st != 200:
            return ["catalog: %d" % st]
        root = os.path.join(self.reg.dir, "storage", "docker", "registry", "v2",
                            "repositories")
        for repo in json.loads(body).get("repositories") or []:
            refs = list(self.tags(repo))
            for kind in ("_manifests/revisions/sha256", "_layers/sha256"):
                d = os.path.join(root, repo, kind)
                names = sorted(os.listdir(d)) if os.path.isdir(d) else []
                if kind.startswith("_layers"):
                    for n in names:
                        self.blob_ok(repo, "sha256:" + n, bad)
                else:
                    refs += ["sha256:" + n for n in names]
            for ref in refs:
                self.check_manifest(repo, ref, bad, seen)
        return bad


class Crafted:
    """An upstream served from this process: manifests and blobs as given,
    so the warm meets documents a real registry would refuse to store."""

    def __init__(self):
        self.manifests, self.blobs = {}, {}
        outer = self

        class H(QuietHandler):

            def do_GET(self):
                p = self.path.split("?")[0]
                if p == "/v2/":
                    return self.send(200, b"{}")
                if "/manifests/" in p:
                    repo, ref = p[4:].split("/manifests/")
                    if (repo, ref) in outer.manifests:
                        ct, body = outer.manifests[(repo, ref)]
                        return self.send(200, body, [("Content-Type", ct)])
                if "/blobs/" in p and p.rsplit("/", 1)[1] in outer.blobs:
                    return self.send(200, outer.blobs[p.rsplit("/", 1)[1]])
                return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

            do_HEAD = do_GET

        self.srv = httpserver.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.host = "127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def blob(self, data):
        self.blobs[sha(data)] = data
        return {"mediaType": images.OCI_LAYER_GZ, "digest": sha(data), "size": len(data)}

    def put(self, repo, doc, ref=None, media=None):
        body = json.dumps(doc, sort_keys=True).encode()
        media = media or doc.get("mediaType", images.OCI_MANIFEST)
        self.manifests[(repo, ref or sha(body))] = (media, body)
        return {"mediaType": media, "digest": sha(body), "size": len(body)}

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def sanitizer_clean(stderr, refs):
    """Under -Db_sanitize the CLI's stderr holds any finding (leaks at exit
    too); a clean run has none."""
    if "Sanitizer" in stderr or "runtime error:" in stderr:
        check(False, "sanitizer report for %s:\n%s" % (refs, stderr[-3000:]))


class Warm:
    def __init__(self, binary, cache, insecure):
        self.bin, self.cache, self.insecure = binary, cache, insecure

    def argv(self, refs, *extra):
        return [self.bin, "--cache", self.cache.host, "--insecure",
                ",".join(self.insecure)] + list(extra) + list(refs)

    def run(self, refs, *extra, timeout=240):
        t = time.monotonic()
        r = subprocess.run(self.argv(refs, *extra), capture_output=True, text=True,
                           timeout=timeout, preexec_fn=die_with_parent)
        self.elapsed = time.monotonic() - t
        out = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
        if r.returncode not in (0, 1) or len(out) != len(refs):
            print("warm_cli rc %d:\n%s%s" % (r.returncode, r.stdout, r.stderr[-2000:]))
        sanitizer_clean(r.stderr, refs)
        return r.returncode, out

    def popen(self, refs, *extra):
        return subprocess.Popen(self.argv(refs, *extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=die_with_parent)


class Ctx:
    pass


def blob_sizes(manifest_get, repo, ref):
    """{digest: size} of every blob under a manifest, children included."""
    st, _, body = manifest_get(repo, ref)
    m, out = json.loads(body), {}
    if "manifests" in m:
        for c in m["manifests"]:
            out.update(blob_sizes(manifest_get, repo, c["digest"]))
    else:
        for d in [m["config"]] + m.get("layers", []):
            out[d["digest"]] = d["size"]
    return out


def skopeo_raw(c, ref):
    r = subprocess.run(["skopeo", "--policy", c.imgs.policy, "inspect", "--raw",
                        "--tls-verify=false", "docker://" + ref],
                       capture_output=True, timeout=120)
    return r.stdout if r.returncode == 0 else None


def walk(c, case):
    bad = c.cache.walk()
    check(not bad, "%s: cache invariants hold%s" % (case, "" if not bad else " " + str(bad[:5])))


def up_get(c):
    return lambda repo, ref: http("GET", "%s/v2/%s/manifests/%s" % (c.upa.url, repo, ref),
                                  {"Accept": ACCEPT})


# ---- cases ----

def case_kinds(c):
    kinds = ["single", "v2s2", "multiarch", "empty_layer", "many", "shared_a",
             "shared_b", "big"]
    refs = [c.ref(c.res[k]) for k in kinds]
    rc, out = c.warm.run(refs)
    check(rc == 0 and len(out) == len(refs), "kinds: %d warms ok (%.1f s)" % (len(refs), c.warm.elapsed))
    for k, r in zip(kinds, out):
        info = c.res[k]
        repo = info["repo"].split("/", 1)[1]
        sizes = blob_sizes(up_get(c), repo, info["digest"])
        up_raw = skopeo_raw(c, c.ref(info))
        cache_raw = skopeo_raw(c, "%s/%s:v1" % (c.cache.host, cache_repo(c.ref(info))))
        check(r["err"] == "OK" and r["digest"] == info["digest"]
              and up_raw is not None and cache_raw == up_raw and sha(cache_raw) == info["digest"],
              "kinds: %s: same bytes and digest in the cache (%s)" % (k, r["message"] or r["digest"][:19]))
        moved = r["bytes_upstream"] + r["bytes_mounted"] + r["bytes_present"]
        total = sum(sizes.values())
        check(r["blobs"] == len(sizes) and moved == total
              and r["progress_done"] == r["progress_total"] == total and r["progress_monotonic"],
              "kinds: %s: %d blobs, %d bytes by source, progress %d/%d"
              % (k, r["blobs"], moved, r["progress_done"], r["progress_total"]))
        kids = len(info["children"])
        check(r["manifests"] == 1 + kids, "kinds: %s: %d manifests PUT" % (k, r["manifests"]))
    b = out[kinds.index("shared_b")]
    check(b["bytes_mounted"] > 0, "kinds: shared-b mounts the layers shared-a brought (%d bytes)"
          % b["bytes_mounted"])
    walk(c, "kinds")


def case_repeat(c):
    c.fp.clear()
    refs = [c.ref(c.res["single"]), c.ref(c.res["multiarch"])]
    rc, out = c.warm.run(refs)
    gets = c.fp.hits("/blobs/sha256:")
    check(rc == 0 and all(r["bytes_upstream"] == 0 and r["bytes_mounted"] == 0
                          and r["bytes_present"] > 0 for r in out) and gets == 0,
          "repeat: nothing copied again, all present (%s), %d upstream blob requests"
          % ([r["bytes_present"] for r in out], gets))
    walk(c, "repeat")


def case_digest_refs(c):
    single, multi = c.res["pinned"], c.res["pinned_multi"]
    by_digest = "%s@%s" % (c.name(single), single["digest"])
    both = "%s:v1@%s" % (c.name(multi), multi["digest"])
    rc, out = c.warm.run([by_digest, both], "--platforms", "linux/arm64")
    crepo = cache_repo(by_digest)
    st, _, body = c.cache.manifest(crepo, single["digest"])
    check(rc == 0 and out[0]["digest"] == single["digest"] and st == 200
          and sha(body) == single["digest"] and c.cache.tags(crepo) == [],
          "digest ref: pushed by digest, no tag in the cache (tags %s)" % c.cache.tags(crepo))
    mrepo = cache_repo(both)
    check(out[1]["err"] == "OK" and out[1]["digest"] == multi["digest"]
          and out[1]["manifests"] == 3 and c.cache.tags(mrepo) == []
          and all(c.cache.manifest(mrepo, k)[0] == 200 for k in multi["children"]),
          "tag@digest ref: by digest only, every child despite --platforms (%d manifests)"
          % out[1]["manifests"])
    walk(c, "digest refs")


def case_platforms(c):
    info = c.res["platform"]
    ref = c.ref(info)
    rc, out = c.warm.run([ref], "--platforms", "linux/arm64")
    r = out[0]
    crepo = cache_repo(ref)
    st, _, body = c.cache.manifest(crepo, "v1")
    idx = json.loads(body) if st == 200 else {}
    arches = [m["platform"]["architecture"] for m in idx.get("manifests", [])]
    amd, arm = info["children"]
    check(rc == 0 and r["manifests"] == 2 and arches == ["arm64"] and sha(body) == r["digest"]
          and r["digest"] != info["digest"],
          "platforms: tag index narrowed to arm64 (%s, digest %s)" % (arches, r["digest"][:19]))
    check(c.cache.manifest(crepo, arm)[0] == 200 and c.cache.manifest(crepo, amd)[0] == 404,
          "platforms: arm64 child copied, amd64 child not")
    rc, out = c.warm.run([c.ref(c.res["platform_none"])], "--platforms", "linux/s390x")
    check(rc == 1 and out[0]["err"] == "THAW_ENOTFOUND" and "platforms" in out[0]["message"]
          and c.cache.tags(cache_repo(c.ref(c.res["platform_none"]))) == [],
          "platforms: no matching child -> %s (%s)" % (out[0]["err"], out[0]["message"]))
    walk(c, "platforms")


def case_token(c):
    pub, priv = c.bres["public"], c.bres["private"]
    rc, out = c.warm.run([pub["ref"], priv["ref"]])
    check(out[0]["err"] == "OK" and out[0]["digest"] == pub["digest"]
          and skopeo_raw(c, "%s/%s:v1" % (c.cache.host, cache_repo(pub["ref"]))) == pub["manifest"],
          "token: public index copied with an anonymous Bearer token")
    check(out[1]["err"] == "THAW_EFORBIDDEN" and out[1]["anonymous_refused"]
          and out[1]["upstream_failed"] and out[1]["digest"] == "",
          "token: private refused anonymously (%s, anonymous_refused)" % out[1]["err"])
    rc, out = c.warm.run([priv["ref"]], "--creds", "alice:secret")
    check(rc == 0 and out[0]["digest"] == priv["digest"] and "secret" not in json.dumps(out),
          "token: private copied with credentials; message holds no password")
    rc, out = c.warm.run([priv["ref"]], "--creds", "alice:wrong")
    check(rc == 1 and out[0]["err"] == "THAW_EFORBIDDEN" and "wrong" not in json.dumps(out),
          "token: wrong password refused (%s)" % out[0]["message"])
    walk(c, "token")


def case_resolve(c):
    single = c.res["single"]
    missing = c.name(single) + ":nope"
    rc, out = c.warm.run([c.ref(single), missing, c.bres["private"]["ref"]], "--resolve")
    check(out[0]["err"] == "OK" and out[0]["digest"] == single["digest"]
          and out[0]["bytes_upstream"] == 0 and out[0]["manifests"] == 0,
          "resolve: upstream digest by HEAD")
    check(out[1]["err"] == "THAW_ENOTFOUND" and out[2]["err"] == "THAW_EFORBIDDEN"
          and out[2]["anonymous_refused"], "resolve: missing tag %s, private %s"
          % (out[1]["err"], out[2]["err"]))


def case_mount_refused(c):
    info = c.res["mount"]
    layer = info["blobs"][0]
    rc, out = c.warm.run([c.ref(info)], "--learn", layer + "=no/such-repo")
    check(rc == 0 and out[0]["bytes_mounted"] == 0 and out[0]["bytes_upstream"] > 0
          and c.cache.has_blob(cache_repo(c.ref(info)), layer),
          "mount: a refused mount falls back to a copy")
    walk(c, "mount refused")


def case_concurrency(c):
    c.fp.clear()
    c.fp.add(match="/blobs/sha256:", method="GET", delay=0.4, times=0)
    rc1, one = c.warm.run([c.ref(c.res["conc1"])], "--blob-concurrency", "1")
    t1 = c.warm.elapsed
    rc4, four = c.warm.run([c.ref(c.res["conc4"])], "--blob-concurrency", "4")
    t4 = c.warm.elapsed
    c.fp.clear()
    check(rc1 == 0 and rc4 == 0 and t1 >= 1.6 and t4 < t1 - 0.6,
          "concurrency: 4 blobs at 0.4 s each: 1 at a time %.1f s, 4 at a time %.1f s" % (t1, t4))
    walk(c, "concurrency")


def fault(c, name, rule, expect, upstream=True, extra=(), absent=True):
    info = c.res["f_" + name]
    ref = c.ref(info)
    layer = info["blobs"][0]  # the 2 MB layer
    c.fp.clear()
    for r in rule if isinstance(rule, list) else [rule]:
        c.fp.add(**r)
    rc, out = c.warm.run([ref], *extra)
    c.fp.clear()
    r = out[0] if out else {}
    ok = (r.get("err") in expect if isinstance(expect, tuple) else r.get("err") == expect)
    check(ok and bool(r.get("upstream_failed")) == upstream and r.get("digest") == ""
          and "v1" not in c.cache.tags(cache_repo(ref)),
          "fault %s: %s, upstream_failed %s, no tag (%s)"
          % (name, r.get("err"), r.get("upstream_failed"), r.get("message")))
    if absent:
        check(not c.cache.has_blob(cache_repo(ref), layer),
              "fault %s: the cache does not hold the blob" % name)
    walk(c, "fault " + name)
    return r


def case_faults(c):
    big = lambda: c.res["f_reset"]["blobs"][0]
    r = fault(c, "500", {"match": "/manifests/", "status": 500}, "THAW_ESERVER")
    r = fault(c, "429", {"match": "/manifests/", "status": 429, "retry_after": 3},
              "THAW_ETOOMANY")
    check(r.get("retry_after") == 3, "fault 429: retry_after %s" % r.get("retry_after"))
    fault(c, "blob500", {"match": "/blobs/" + big(), "method": "GET", "status": 500},
          "THAW_ESERVER")
    fault(c, "reset", {"match": "/blobs/" + big(), "method": "GET", "reset_after": 100000},
          ("THAW_ETRANSPORT", "THAW_EDIGEST"))
    fault(c, "truncate", {"match": "/blobs/" + big(), "method": "GET",
                          "truncate_after": 100000}, ("THAW_ETRANSPORT", "THAW_EDIGEST"))
    fault(c, "corrupt", {"match": "/blobs/" + big(), "method": "GET", "corrupt": True,
                         "offset": 5000}, "THAW_EDIGEST")
    # slow: a delayed manifest and a throttled blob still succeed
    info = c.res["f_slow"]
    c.fp.clear()
    c.fp.add(match="/manifests/", delay=1.0)
    c.fp.add(match="/blobs/" + big(), method="GET", rate=4 << 20)
    rc, out = c.warm.run([c.ref(info)])
    c.fp.clear()
    check(rc == 0 and out[0]["digest"] == info["digest"] and c.warm.elapsed >= 1.4,
          "fault slow: succeeds after %.1f s" % c.warm.elapsed)
    walk(c, "fault slow")


def case_lying(c):
    h = c.lie_host
    rc, out = c.warm.run([h + "/lie:v1", h + "/busy/x:v1", h + "/old:v1"], "--parallel")
    by = {r["image"]: r for r in out}
    check(by[h + "/lie:v1"]["err"] == "THAW_EDIGEST", "lying: manifest bytes not its digest -> %s"
          % by[h + "/lie:v1"]["err"])
    check(by[h + "/busy/x:v1"]["err"] == "THAW_ETOOMANY" and by[h + "/busy/x:v1"]["retry_after"] == 7,
          "lying: 429 Retry-After 7 reported")
    check(by[h + "/old:v1"]["err"] == "THAW_EPARSE", "lying: schema 1 -> THAW_EPARSE")
    walk(c, "lying")


def case_crafted(c):
    cr = c.crafted
    layer = cr.blob(b"crafted layer\n")
    config = cr.blob(b'{"architecture":"amd64","os":"linux"}')
    good = lambda: copy.deepcopy({"schemaVersion": 2, "mediaType": images.OCI_MANIFEST,
                                  "config": dict(config, mediaType=images.OCI_CONFIG),
                                  "layers": [layer]})
    odd = {}
    m = good(); del m["layers"][0]["digest"]; odd["nodigest"] = m
    m = good(); m["layers"] = [dict(layer, digest="sha512:" + "a" * 128)]; odd["sha512"] = m
    m = good(); m["layers"] = [dict(layer, size=-1)]; odd["negsize"] = m
    m = good(); m["layers"] = [layer] * 10001; odd["toomany"] = m
    m = good(); m["config"] = "nope"; odd["badconfig"] = m
    odd["notjson"] = None
    # a nested index: depth 2 is copied, depth 3 refused
    leaf = cr.put("x/nest2", good())
    inner = cr.put("x/nest2", {"schemaVersion": 2, "mediaType": images.OCI_INDEX,
                               "manifests": [dict(leaf, platform={"os": "linux", "architecture": "amd64"})]})
    cr.put("x/nest2", {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": [inner]}, "v1")
    leaf3 = cr.put("x/nest3", good())
    i3 = cr.put("x/nest3", {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": [leaf3]})
    i2 = cr.put("x/nest3", {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": [i3]})
    cr.put("x/nest3", {"schemaVersion": 2, "mediaType": images.OCI_INDEX, "manifests": [i2]}, "v1")
    # two children sharing a layer: the layer is copied and counted once
    cfg2 = cr.blob(b'{"architecture":"arm64","os":"linux"}')
    k1 = cr.put("x/sharedkids", good())
    k2 = cr.put("x/sharedkids", dict(good(), config=dict(cfg2, mediaType=images.OCI_CONFIG)))
    plat = lambda a: {"os": "linux", "architecture": a}
    cr.put("x/sharedkids", {"schemaVersion": 2, "mediaType": images.OCI_INDEX,
                            "manifests": [dict(k1, platform=plat("amd64")),
                                          dict(k2, platform=plat("arm64"))]}, "v1")
    cr.put("x/unknownkid", {"schemaVersion": 2, "mediaType": images.OCI_INDEX,
                            "manifests": [dict(leaf, mediaType="application/x-thing")]}, "v1")
    for name, doc in odd.items():
        if doc is None:
            cr.manifests[("x/" + name, "v1")] = (images.OCI_MANIFEST, b"{not json")
        else:
            cr.put("x/" + name, doc, "v1")
    names = list(odd) + ["nest3", "unknownkid"]
    refs = ["%s/x/%s:v1" % (cr.host, n) for n in names + ["nest2", "sharedkids"]]
    rc, out = c.warm.run(refs, "--parallel")
    by = {r["image"]: r for r in out}
    for n in names:
        r = by.get("%s/x/%s:v1" % (cr.host, n), {})
        check(r.get("err") == "THAW_EPARSE" and r.get("upstream_failed") and r.get("message"),
              "crafted %s: THAW_EPARSE (%s)" % (n, r.get("message")))
    r = by.get("%s/x/sharedkids:v1" % cr.host, {})
    distinct = layer["size"] + config["size"] + cfg2["size"]
    moved = sum(r.get(k, 0) for k in ("bytes_upstream", "bytes_mounted", "bytes_present"))
    check(r.get("err") == "OK" and r.get("blobs") == 3 and moved == distinct
          and r.get("progress_total") == distinct,
          "crafted: a layer shared by two children is copied once (%s blobs, %s bytes)"
          % (r.get("blobs"), moved))
    r = by.get("%s/x/nest2:v1" % cr.host, {})
    check(r.get("err") == "OK" and r.get("manifests") == 3 and r.get("blobs") == 2,
          "crafted: an index of an index is copied whole (%s)" % r.get("message"))
    walk(c, "crafted")


def case_cache_down(c):
    info = c.res["cachedown"]
    big = info["blobs"][-2]  # the 20 MB layer (last layer; config is last)
    c.fp.clear()
    c.fp.add(match="/blobs/" + big, method="GET", rate=4 << 20)
    p = c.warm.popen([c.ref(info)])
    deadline = time.time() + 20
    while c.fp.hits("/blobs/" + big) == 0 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)
    c.cache.reg.stop()
    out, err = p.communicate(timeout=120)
    sanitizer_clean(err, [c.ref(info)])
    c.cache.reg.start()
    c.fp.clear()
    r = json.loads(out.splitlines()[0]) if out.strip() else {}
    check(r.get("err") not in (None, "OK") and not r.get("upstream_failed"),
          "cache down mid-copy: %s, upstream_failed false (%s)" % (r.get("err"), r.get("message")))
    check(not c.cache.has_blob(cache_repo(c.ref(info)), big), "cache down: no partial blob")
    walk(c, "cache down")
    rc, out = c.warm.run([c.ref(info)])
    check(rc == 0 and out[0]["digest"] == info["digest"], "cache down: the next warm completes")
    walk(c, "cache down, rerun")


def case_killed(c):
    info = c.res["killed"]
    big = info["blobs"][-2]
    small = [b for b in info["blobs"] if b != big]
    crepo = cache_repo(c.ref(info))
    c.fp.clear()
    c.fp.add(match="/blobs/" + big, method="GET", rate=4 << 20)
    p = c.warm.popen([c.ref(info)])
    deadline = time.time() + 20
    while time.time() < deadline and not (
            c.fp.hits("/blobs/" + big) and all(c.cache.has_blob(crepo, d) for d in small)):
        time.sleep(0.05)
    time.sleep(0.3)
    p.kill()  # SIGKILL by PID, mid-copy
    p.communicate()
    check(p.returncode == -9 and not c.cache.has_blob(crepo, big)
          and all(c.cache.has_blob(crepo, d) for d in small),
          "killed: small blobs landed, the big one did not (rc %s)" % p.returncode)
    walk(c, "killed")
    c.fp.clear()
    rc, out = c.warm.run([c.ref(info)])
    r = out[0]
    sizes = blob_sizes(up_get(c), info["repo"].split("/", 1)[1], info["digest"])
    again = sum(c.fp.hits("/blobs/" + d) for d in small)
    check(rc == 0 and r["bytes_present"] == sum(sizes[d] for d in small)
          and r["bytes_upstream"] == sizes[big] and again == 0,
          "killed, rerun: %d bytes present, %d from upstream, %d small blobs fetched again"
          % (r["bytes_present"], r["bytes_upstream"], again))
    walk(c, "killed, rerun")


def case_cancel(c):
    a, b = c.res["cancel_a"], c.res["cancel_b"]
    big = a["blobs"][-2]
    c.fp.clear()
    c.fp.add(match="/blobs/" + big, method="GET", rate=4 << 20, times=0)
    # --linger: 6 s more than the 20 MB blob needs at 4 MB/s after the
    # cancel; a transfer left running would put the blob in the cache.
    rc, out = c.warm.run([c.ref(a)], "--cancel-after", "800", "--linger", "6000")
    check(rc == 1 and len(out) == 1 and out[0]["err"] == "THAW_ECANCELED" and out[0]["results"] == 1,
          "cancel: one THAW_ECANCELED result mid-copy (%.1f s)" % c.warm.elapsed)
    check(not c.cache.has_blob(cache_repo(c.ref(a)), big),
          "cancel: its transfers stop with the warm (no blob after lingering)")
    rc, out = c.warm.run([c.ref(a), c.ref(b)], "--parallel", "--free-after", "800")
    check(rc == 1 and len(out) == 2 and all(r["err"] == "THAW_ECANCELED" and r["results"] == 1
                                            for r in out),
          "warmer freed mid-copy: both warms end THAW_ECANCELED once")
    c.fp.clear()
    check(not c.cache.has_blob(cache_repo(c.ref(a)), big), "cancel: no partial blob")
    walk(c, "cancel")


def case_cache_repo(c):
    refs = ["docker.io/library/nginx:latest", "my.reg:5000/a/b:1",
            "localhost:5000/x@sha256:" + "a" * 64, "[::1]:5000/v6/img:t"]
    r = subprocess.run([c.warm.bin, "--cache-repo"] + refs, capture_output=True, text=True)
    got = [json.loads(line)["cache_repo"] for line in r.stdout.splitlines()]
    check(got == ["docker.io/library/nginx", "my.reg__5000/a/b", "localhost__5000/x",
                  "ipv6_x--1x__5000/v6/img"], "cache repo names: %s" % got)


def case_big(c):
    info = c.res["huge"]
    rc, out = c.warm.run([c.ref(info)])
    check(rc == 0 and out[0]["digest"] == info["digest"]
          and out[0]["bytes_upstream"] >= 200 << 20,
          "big: 200 MB layer copied (%.1f s)" % c.warm.elapsed)
    walk(c, "big")


def push_images(c):
    imgs, host = c.imgs, c.upa.url[len("http://"):]
    res = images.push_all(imgs, host, big_size=2 << 20)
    r = lambda name: "%s/%s:v1" % (host, name)
    res["pinned"] = imgs.push(imgs.single(), r("d/pinned"))
    res["pinned_multi"] = imgs.push(imgs.multiarch(), r("d/pinned-multi"))
    res["platform"] = imgs.push(imgs.multiarch(), r("p/multi"))
    res["platform_none"] = imgs.push(imgs.multiarch(), r("p/none"))
    res["mount"] = imgs.push(imgs.single("arm64"), r("m/single"))
    a, _ = imgs.shared()
    res["conc1"] = imgs.push(a, r("c/one"))
    res["conc4"] = imgs.push(a, r("c/four"))
    big = imgs.big(2 << 20)
    for n in ("500", "429", "blob500", "reset", "truncate", "corrupt", "slow"):
        res["f_" + n] = imgs.push(big, r("f/" + n))
    # three small layers and a 20 MB one: a copy long enough to interrupt
    imgs.big(20 << 20, seed=5)
    base = os.path.join(imgs.cache, "big-5-%d" % (20 << 20))
    with open(base + ".json") as f:
        meta = json.load(f)
    lo = imgs._layout("interrupt")
    layers = [lo.layer({"small/%d" % i: b"small layer %d\n" % i * 50}) for i in range(3)]
    layers.append((lo.put_file(base + ".tar.gz", meta["digest"], images.OCI_LAYER_GZ),
                   meta["diff_id"]))
    lo.tag(lo.image(layers, "amd64", "interrupt"))
    for n in ("cachedown", "killed", "cancel_a", "cancel_b"):
        res[n] = imgs.push(lo, r("i/" + n.replace("_", "-")))
    if os.environ.get("THAW_BIG") == "1":
        res["huge"] = imgs.push(imgs.big(200 << 20), r("big/huge"))
    return res


def main():
    warm_bin = os.path.abspath(sys.argv[1])
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        c = Ctx()
        work = tempfile.mkdtemp(prefix="thaw-warm.")
        stack.callback(shutil.rmtree, work, True)
        c.imgs = images.Images(work)
        c.upa = stack.enter_context(Registry())
        c.fp = stack.enter_context(FaultProxy(c.upa.url))
        ts = stack.enter_context(TokenServer(
            users={"alice": "secret"},
            acl=[{"account": "*", "repo": "public/*", "actions": ["pull"]},
                 {"account": "alice", "repo": "*", "actions": ["pull", "push"]}]))
        upb = stack.enter_context(Registry(token=ts.registry_auth()))
        c.cache = Cache(stack.enter_context(Registry()))
        lie_ready = os.path.join(work, "lie.port")
        lie, lie_port = spawn_ready([sys.executable, os.path.join(HERE, "lying_registry.py"),
                                     lie_ready], lie_ready)
        stack.callback(stop_proc, lie)
        c.lie_host = "127.0.0.1:%d" % lie_port
        c.crafted = Crafted()
        stack.callback(c.crafted.close)

        c.res = push_images(c)
        bhost = upb.url[len("http://"):]
        c.bres = {"public": c.imgs.push(c.imgs.multiarch(), bhost + "/public/multi:v1",
                                        creds="alice:secret"),
                  "private": c.imgs.push(c.imgs.single(), bhost + "/private/single:v1",
                                         creds="alice:secret")}
        print("# images pushed in %.1f s" % (time.monotonic() - t0), flush=True)
        # warms go through the fault proxy in front of upstream A
        c.name = lambda info: c.fp.host + "/" + info["repo"].split("/", 1)[1]
        c.ref = lambda info: c.name(info) + ":v1"
        c.warm = Warm(warm_bin, c.cache, [c.fp.host, bhost, c.cache.host, c.lie_host,
                                          c.crafted.host, ts.url[len("http://"):]])
        cases = [case_cache_repo, case_kinds, case_repeat, case_digest_refs, case_platforms,
                 case_token, case_resolve, case_mount_refused, case_concurrency, case_faults,
                 case_lying, case_crafted, case_cache_down, case_killed, case_cancel]
        if os.environ.get("THAW_BIG") == "1":
            cases.append(case_big)
        for case in cases:
            t = time.monotonic()
            try:
                case(c)
            except Exception as e:
                traceback.print_exc()
                check(False, "%s raised %r" % (case.__name__, e))
            print("# %s: %.1f s" % (case.__name__, time.monotonic() - t), flush=True)
    print("%d failure(s) in %.1f s" % (len(FAILS), time.monotonic() - t0))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
