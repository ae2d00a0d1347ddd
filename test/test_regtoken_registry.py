#!/usr/bin/env python3
"""test_regtoken_registry.py REGTOKEN_CLI - tokens signed by
common/oci/regtoken (through test/regtoken_cli.c) against a real
docker-registry (distribution 2.8) whose auth.token trusts the signing
certificates (rootcertbundle = an RSA and an EC P-256 self-signed
certificate, made here with the openssl CLI):

- a push token (RS256, and ES256) uploads blobs and PUTs a manifest; a
  pull token lists tags and reads the manifest (200); "*" grants all;
- a pull-only token cannot push, a token for another repository reads
  nothing, no token at all is refused;
- a wrong issuer, a wrong audience, an expired token (iat an hour ago) and a
  token signed by a key the registry does not trust are refused (401);
- a delete token deletes the manifest.

The registry runs on a free loopback port and is stopped by PID."""

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import unittest77  # noqa: E402
from registry import Registry  # noqa: E402

CLI = None
ISSUER = "thaw-test-regtoken"
SERVICE = "thaw-test-cache"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# Module state, set up once: key dir, registry, the pushed image's digest.
D = None
REG = None


def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, method=method, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def make_pair(name, newkey):
    key, crt = os.path.join(D, name + ".key"), os.path.join(D, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", newkey[0], *newkey[1:],
                    "-nodes", "-keyout", key, "-out", crt, "-days", "3",
                    "-subj", "/CN=thaw-test-" + name], check=True, capture_output=True)
    return key, crt


RSA = EC = OTHER = None


def token(pair, *scopes, issuer=ISSUER, audience=SERVICE, sub="thaw-controller",
          now=None, ttl=None):
    argv = [CLI]
    if now is not None:
        argv += ["--now", str(now)]
    if ttl is not None:
        argv += ["--ttl", str(ttl)]
    argv += [pair[0], pair[1], issuer, audience, sub, *scopes]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def auth(tok):
    return {"Authorization": "Bearer " + tok} if tok else {}


def layer_bytes(text):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        data = text.encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        info.mtime = 0
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def upload_blob(repo, tok, blob):
    """POST + monolithic PUT; returns the status of the first refusal or 201."""
    st, h, body = http("POST", "%s/v2/%s/blobs/uploads/" % (REG.url, repo), b"",
                       auth(tok))
    if st != 202:
        return st
    loc = urllib.parse.urljoin(REG.url, h["Location"])
    loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(sha(blob))
    st, _, body = http("PUT", loc, blob, {**auth(tok),
                                          "Content-Type": "application/octet-stream"})
    return st


def push_image(repo, tag, tok, text):
    """Pushes a one-layer OCI image; returns (status, manifest digest)."""
    layer = layer_bytes(text)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    for blob in (layer, config):
        st = upload_blob(repo, tok, blob)
        if st != 201:
            return st, None
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha(layer), "size": len(layer)}]}).encode()
    st, _, _ = http("PUT", "%s/v2/%s/manifests/%s" % (REG.url, repo, tag), manifest,
                    {**auth(tok), "Content-Type": OCI_MANIFEST})
    return st, sha(manifest)


def tags(repo, tok):
    st, h, body = http("GET", "%s/v2/%s/tags/list" % (REG.url, repo), headers=auth(tok))
    return st, (json.loads(body) if st == 200 else h.get("WWW-Authenticate", ""))


def setUpModule():
    global D, REG, RSA, EC, OTHER
    D = tempfile.mkdtemp(prefix="thaw-regtoken.")
    try:
        RSA = make_pair("rsa", ["rsa:2048"])
        EC = make_pair("ec", ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        OTHER = make_pair("other", ["rsa:2048"])  # not in the bundle
        bundle = os.path.join(D, "bundle.pem")
        with open(bundle, "w") as f:
            for crt in (RSA[1], EC[1]):
                with open(crt) as c:
                    f.write(c.read())
        REG = Registry(token={"realm": "http://127.0.0.1:9/token", "service": SERVICE,
                              "issuer": ISSUER, "rootcertbundle": bundle})
    except BaseException:
        tearDownModule()
        raise


def tearDownModule():
    if REG:
        REG.close()
    if D:
        shutil.rmtree(D, ignore_errors=True)


class RegistryTokens(unittest.TestCase):
    def test_rs256_push_then_pull(self):
        repo = "rs/app"
        push = token(RSA, "repository:%s:pull,push" % repo)
        st, digest = push_image(repo, "v1", push, "rs256")
        self.assertEqual(st, 201, REG.log_tail())
        pull = token(RSA, "repository:%s:pull" % repo, sub="")
        st, body = tags(repo, pull)
        self.assertEqual((st, body), (200, {"name": repo, "tags": ["v1"]}))
        st, h, _ = http("GET", "%s/v2/%s/manifests/v1" % (REG.url, repo),
                        headers={**auth(pull), "Accept": OCI_MANIFEST})
        self.assertEqual(st, 200)
        self.assertEqual(h["Docker-Content-Digest"], digest)

    def test_es256_push_then_pull(self):
        repo = "es/app"
        st, _ = push_image(repo, "v1", token(EC, "repository:%s:push,pull" % repo), "es256")
        self.assertEqual(st, 201, REG.log_tail())
        st, body = tags(repo, token(EC, "repository:%s:pull" % repo))
        self.assertEqual((st, body), (200, {"name": repo, "tags": ["v1"]}))

    def test_star_grants_all(self):
        repo = "star/app"
        st, _ = push_image(repo, "v1", token(EC, "repository:%s:*" % repo), "star")
        self.assertEqual(st, 201, REG.log_tail())
        self.assertEqual(tags(repo, token(RSA, "repository:%s:*" % repo))[0], 200)
        st, _, body = http("GET", REG.url + "/v2/_catalog",
                           headers=auth(token(RSA, "registry:catalog:*")))
        self.assertEqual(st, 200)
        self.assertIn(repo, json.loads(body)["repositories"])

    def test_pull_only_cannot_push(self):
        repo = "ro/app"
        for pair in (RSA, EC):
            st, _ = push_image(repo, "v1", token(pair, "repository:%s:pull" % repo), "ro")
            self.assertIn(st, (401, 403))
        # nothing landed: a pull token finds no such repository
        st, _ = tags(repo, token(RSA, "repository:%s:pull" % repo))
        self.assertEqual(st, 404)

    def test_scope_is_per_repository(self):
        repo = "mine/app"
        st, _ = push_image(repo, "v1", token(RSA, "repository:%s:pull,push" % repo), "m")
        self.assertEqual(st, 201)
        st, challenge = tags(repo, token(RSA, "repository:other/app:pull,push"))
        self.assertEqual(st, 401)
        self.assertIn("insufficient_scope", challenge)
        st, challenge = tags(repo, token(RSA))  # no access at all
        self.assertEqual(st, 401)
        st, challenge = tags(repo, None)  # no token
        self.assertEqual(st, 401)
        self.assertIn('service="%s"' % SERVICE, challenge)

    def test_refused_tokens(self):
        repo = "refused/app"
        scope = "repository:%s:pull,push" % repo
        st, _ = push_image(repo, "v1", token(RSA, scope), "r")
        self.assertEqual(st, 201)
        self.assertEqual(tags(repo, token(RSA, scope))[0], 200)  # the control
        past = int(time.time()) - 3600  # beyond distribution's 60 s leeway
        cases = {
            "wrong issuer": token(RSA, scope, issuer="someone-else"),
            "wrong audience": token(EC, scope, audience="another-registry"),
            "expired": token(RSA, scope, now=past, ttl=300),
            "expired ES256": token(EC, scope, now=past, ttl=300),
            "not yet valid": token(RSA, scope, now=int(time.time()) + 3600),
            "untrusted key": token(OTHER, scope),
        }
        for what, tok in cases.items():
            with self.subTest(what):
                st, challenge = tags(repo, tok)
                self.assertEqual(st, 401, challenge)
                self.assertIn("invalid_token", challenge)
                self.assertIn(push_image(repo, "x", tok, what)[0], (401, 403))

    def test_tampered_token(self):
        """Claims granting push spliced into a signed pull token."""
        repo = "tamper/app"
        head, _, sig = token(EC, "repository:%s:pull" % repo).split(".")
        more = token(EC, "repository:%s:pull,push" % repo).split(".")[1]
        forged = ".".join([head, more, sig])
        self.assertEqual(tags(repo, forged)[0], 401)
        self.assertIn(upload_blob(repo, forged, b"x"), (401, 403))

    def test_delete(self):
        repo = "del/app"
        st, digest = push_image(repo, "v1", token(RSA, "repository:%s:pull,push" % repo), "d")
        self.assertEqual(st, 201)
        url = "%s/v2/%s/manifests/%s" % (REG.url, repo, digest)
        st, _, _ = http("DELETE", url, headers=auth(token(RSA, "repository:%s:pull,push" % repo)))
        self.assertIn(st, (401, 403))
        st, _, _ = http("DELETE", url, headers=auth(token(EC, "repository:%s:delete" % repo)))
        self.assertEqual(st, 202)
        st, _, _ = http("GET", url, headers={**auth(token(RSA, "repository:%s:pull" % repo)),
                                             "Accept": OCI_MANIFEST})
        self.assertEqual(st, 404)


def main():
    global CLI
    if len(sys.argv) < 2:
        sys.exit("usage: test_regtoken_registry.py PATH/regtoken_cli [unittest args]")
    CLI = os.path.abspath(sys.argv.pop(1))
    unittest77.main()


if __name__ == "__main__":
    main()
