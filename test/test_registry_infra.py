#!/usr/bin/env python3
"""Proves the registry test infrastructure against real skopeo and a real
docker-registry: token_server.py (Bearer), registry.py's htpasswd (Basic),
images.py (every image kind, digests as reported) and fault_proxy.py
(500, 429 + Retry-After, reset, truncate, corrupt, throttle, pass-through).

THAW_BIG=1 adds the 200 MB layer (cached after the first run)."""
import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import images  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from registry import Registry  # noqa: E402
from token_server import TokenServer  # noqa: E402

FAILS = []


def check(cond, what):
    print("%s - %s" % ("ok" if cond else "FAIL", what), flush=True)
    if not cond:
        FAILS.append(what)


class Skopeo:
    def __init__(self, imgs):
        self.imgs = imgs

    def run(self, *args):
        r = subprocess.run(["skopeo", "--policy", self.imgs.policy] + list(args),
                           capture_output=True, timeout=120)
        return r.returncode, r.stdout, r.stderr.decode(errors="replace")

    def raw(self, ref, creds=None):
        return self.run("inspect", "--raw", "--tls-verify=false",
                        *(["--creds", creds] if creds else []), "docker://" + ref)

    def pull(self, ref, dest, creds=None):
        shutil.rmtree(dest, ignore_errors=True)
        return self.run("copy", "--src-tls-verify=false",
                        *(["--src-creds", creds] if creds else []),
                        "docker://" + ref, "dir:" + dest)


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def http(method, url, headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def jwt_part(token, i):
    p = token.split(".")[i]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


def test_token(stack, imgs, sk):
    ts = stack.enter_context(TokenServer(
        users={"alice": "secret"},
        acl=[{"account": "*", "repo": "public/*", "actions": ["pull"]},
             {"account": "alice", "repo": "*", "actions": ["pull", "push"]}]))
    reg = stack.enter_context(Registry(token=ts.registry_auth()))
    host = reg.url[len("http://"):]
    lo = imgs.single()
    pub = imgs.push(lo, host + "/public/single:v1", creds="alice:secret")
    priv = imgs.push(lo, host + "/private/single:v1", creds="alice:secret")
    check(pub["digest"] == priv["digest"] == lo.top["digest"], "token: alice pushed public and private")

    rc, out, _ = sk.raw(host + "/public/single:v1")
    check(rc == 0 and sha(out) == pub["digest"], "token: anonymous pull of public/ works")
    rc, _, err = sk.raw(host + "/private/single:v1")
    check(rc != 0 and ("unauthorized" in err.lower() or "denied" in err.lower()),
          "token: anonymous pull of private/ refused (%s)" % err.strip()[-120:])
    rc, out, _ = sk.raw(host + "/private/single:v1", creds="alice:secret")
    check(rc == 0 and sha(out) == priv["digest"], "token: alice pulls private/")
    rc, _, _ = sk.raw(host + "/private/single:v1", creds="alice:wrong")
    check(rc != 0, "token: wrong password refused")
    try:
        imgs.push(lo, host + "/public/anon:v1")
        pushed = True
    except RuntimeError:
        pushed = False
    check(not pushed, "token: anonymous push refused")

    st, _, body = http("GET", ts.realm + "?service=%s&scope=repository:private/single:pull"
                       "&scope=repository:public/single:pull,push" % ts.service)
    tok = json.loads(body)
    hdr, claims = jwt_part(tok["token"], 0), jwt_part(tok["token"], 1)
    check(st == 200 and tok["token"] == tok["access_token"] and tok["expires_in"] > 0
          and "issued_at" in tok, "token: response fields")
    check(hdr["alg"] == "RS256" and len(hdr["x5c"]) == 1, "token: RS256 with x5c")
    check(claims["iss"] == ts.issuer and claims["aud"] == ts.service and claims["sub"] == ""
          and claims["nbf"] <= claims["iat"] < claims["exp"] and claims["jti"],
          "token: iss aud sub nbf iat exp jti")
    check(claims["access"] == [
        {"type": "repository", "name": "private/single", "actions": []},
        {"type": "repository", "name": "public/single", "actions": ["pull"]}],
        "token: anonymous granted only pull on public/ (%s)" % claims["access"])
    st, _, _ = http("GET", ts.realm + "?service=x&scope=repository:a:pull",
                    {"Authorization": "Basic " + base64.b64encode(b"alice:nope").decode()})
    check(st == 401, "token: bad Basic credentials get 401 from the token server")


def test_htpasswd(stack, imgs, sk):
    reg = stack.enter_context(Registry(htpasswd={"alice": "pw"}))
    host = reg.url[len("http://"):]
    info = imgs.push(imgs.single(), host + "/x/single:v1", creds="alice:pw")
    rc, out, _ = sk.raw(host + "/x/single:v1", creds="alice:pw")
    check(rc == 0 and sha(out) == info["digest"], "htpasswd: alice pushes and pulls")
    rc, _, _ = sk.raw(host + "/x/single:v1")
    check(rc != 0, "htpasswd: anonymous refused")
    st, h, _ = http("GET", reg.url + "/v2/")
    check(st == 401 and "Basic" in (h.get("WWW-Authenticate") or ""), "htpasswd: Basic challenge")


def test_images(stack, imgs, sk):
    reg = stack.enter_context(Registry())
    host = reg.url[len("http://"):]
    big = (200 << 20) if os.environ.get("THAW_BIG") == "1" else (2 << 20)
    res = images.push_all(imgs, host, big_size=big)
    for kind, info in res.items():
        rc, out, _ = sk.raw(info["ref"])
        check(rc == 0 and sha(out) == info["digest"],
              "images: %s manifest digest %s as reported" % (kind, info["digest"][:19]))
        if info["manifest"] is not None:
            check(out == info["manifest"], "images: %s manifest bytes unchanged" % kind)
        rc, out, _ = sk.raw("%s@%s" % (info["repo"], info["digest"]))
        check(rc == 0 and sha(out) == info["digest"], "images: %s by digest" % kind)
        missing = [b for b in info["blobs"]
                   if http("HEAD", "%s/v2/%s/blobs/%s" % (reg.url, info["repo"].split("/", 1)[1], b))[0] != 200]
        check(not missing, "images: %s all %d blobs present" % (kind, len(info["blobs"])))
    man = json.loads(sk.raw(res["v2s2"]["ref"])[1])
    check(man["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
          and man["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip",
          "images: v2s2 has Docker media types")
    kids = res["multiarch"]["children"]
    idx = json.loads(sk.raw(res["multiarch"]["ref"])[1])
    check(idx["mediaType"] == images.OCI_INDEX and [m["digest"] for m in idx["manifests"]] == kids
          and {m["platform"]["architecture"] for m in idx["manifests"]} == {"amd64", "arm64"},
          "images: index lists amd64 and arm64")
    for k in kids:
        rc, out, _ = sk.raw("%s@%s" % (res["multiarch"]["repo"], k))
        check(rc == 0 and sha(out) == k, "images: index child %s present" % k[:19])
    st, h, body = http("GET", "%s/v2/test/empty-layer/blobs/%s" % (reg.url, images.EMPTY_DIGEST))
    check(st == 200 and body == b"" and h.get("Docker-Content-Digest") == images.EMPTY_DIGEST,
          "images: 0-byte blob served")
    check(len(res["many"]["blobs"]) == 31, "images: 30 layers + config")
    a, b = set(res["shared_a"]["blobs"]), set(res["shared_b"]["blobs"])
    check(len(a & b) == 2 and a != b, "images: shared images share two layers")
    again = images.Images(tempfile.mkdtemp(dir=imgs.dir))
    check(again.single().top["digest"] == res["single"]["digest"]
          and again.multiarch().top["digest"] == res["multiarch"]["digest"],
          "images: digests stable across builds")


def test_fault_proxy(stack, imgs, sk):
    reg = stack.enter_context(Registry())
    fp = stack.enter_context(FaultProxy(reg.url))
    info = imgs.push(imgs.big(1 << 20, seed=7), fp.host + "/f/img:v1")
    check(fp.hits("/blobs/uploads/") > 0, "proxy: push through the proxy (Location rewritten)")
    ref, out = fp.host + "/f/img:v1", os.path.join(imgs.dir, "pulled")
    layer = info["blobs"][0]
    rc, _, err = sk.pull(ref, out)
    with open(os.path.join(out, layer.split(":")[1]), "rb") as f:
        check(rc == 0 and sha(f.read()) == layer, "proxy: clean pull passes through")
    st, h, _ = http("GET", "%s/v2/f/img/manifests/v1" % fp.url,
                    {"Accept": images.OCI_MANIFEST})
    check(st == 200 and h.get("Docker-Content-Digest") == info["digest"],
          "proxy: Docker-Content-Digest preserved")

    fp.clear()
    fp.add(match="/manifests/", status=500, times=1)
    rc1, _, err1 = sk.raw(ref)
    rc2, out2, _ = sk.raw(ref)
    faults = fp.stats()["faults"]
    check(len(faults) == 1 and faults[0]["fault"]["status"] == 500 and rc2 == 0
          and sha(out2) == info["digest"] and (rc1 == 0 or "500" in err1),
          "proxy: 500 once, then passes")

    fp.clear()
    fp.add(match="/manifests/", status=429, retry_after=1, times=1)
    st, h, _ = http("GET", "%s/v2/f/img/manifests/v1" % fp.url)
    check(st == 429 and h.get("Retry-After") == "1", "proxy: 429 with Retry-After")
    fp.add(match="/manifests/", status=429, retry_after=1, times=1)
    t = time.monotonic()
    rc, _, err = sk.raw(ref)
    check(fp.hits("/manifests/") >= 3 and (rc != 0 or time.monotonic() - t >= 0.9),
          "proxy: skopeo saw 429 (rc %d, %.1f s)" % (rc, time.monotonic() - t))

    for kind in ("reset_after", "truncate_after"):
        fp.clear()
        fp.add(match="/blobs/" + layer, method="GET", **{kind: 100000})
        rc, _, err = sk.pull(ref, out)
        faults = fp.stats()["faults"]
        check(len(faults) == 1 and (rc != 0 or fp.hits("/blobs/" + layer) >= 2),
              "proxy: %s mid-blob seen (rc %d: %s)" % (kind, rc, err.strip()[-80:]))

    fp.clear()
    fp.add(match="/blobs/" + layer, method="GET", corrupt=True, offset=5000, times=0)
    rc, _, err = sk.pull(ref, out)
    check(rc != 0 and "digest" in err.lower(), "proxy: corrupted blob detected by skopeo")

    fp.clear()
    fp.add(match="/blobs/" + layer, method="GET", rate=512 << 10, delay=0.2)
    t = time.monotonic()
    rc, _, _ = sk.pull(ref, out)
    el = time.monotonic() - t
    check(rc == 0 and el >= 1.5, "proxy: throttled to 512 KiB/s (%.1f s for 1 MiB)" % el)


def main():
    with contextlib.ExitStack() as stack:
        work = tempfile.mkdtemp(prefix="thaw-infra.")
        stack.callback(shutil.rmtree, work, True)
        imgs = images.Images(work)
        sk = Skopeo(imgs)
        for t in (test_token, test_htpasswd, test_images, test_fault_proxy):
            with contextlib.ExitStack() as inner:  # each test's servers stop before the next
                try:
                    t(inner, imgs, sk)
                except Exception as e:
                    traceback.print_exc()
                    check(False, "%s raised %r" % (t.__name__, e))
    print("%d failure(s)" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
