"""Only thaw-controller writes the cache registry, and a manifest pushed into
it anyway does not change what a new pod runs (docs/design.md,
"Confidentiality and integrity of the cache" and "Image references"; issue 12).

With real registries, a real containerd and the real daemons: the cache
registry runs the config of manifests/registry WITH its auth.token section
(realm: thaw-controller's token endpoint on a free port; rootcertbundle: a
certificate made here). thaw-controller runs with --token-key-file,
--token-cert-file and --token-bind-address: it signs its own push, pull and
delete tokens in process and gives everyone else anonymous pull-only tokens.
The node-local pull-through endpoint (manifests/node-local) runs that
anonymous token flow against the controller; thaw-webhook's health gate
counts the cache's 401 as up.

  - poisoning: an image is warmed. An attacker's push into the cache under
    the cached tag fails without credentials (the tag still resolves to the
    original). With a stolen push right (a token the test signs with the
    same key: the auth layer bypassed) it moves the tag, yet a new pod
    admitted through thaw-webhook (the emulator calls it) is rewritten to
    <cache path>:<tag>@<status.digest>, and containerd pulling that through
    the node-local endpoint gets the original image's digest and files.
  - anonymous callers cannot write: the registry's challenge names the
    controller's realm; the endpoint grants only pull (nothing under
    private/, 401 for credentials, 400 for another service); an upload or a
    manifest DELETE with that token is refused and the manifest stays; the
    node-local endpoint gets its tokens there (thaw_token_requests_total).
  - the controller still refreshes (a new upstream digest reaches the cache
    and the old one is deleted) and expires (the manifest is deleted, then
    the CachedImage) under auth, with its own tokens.
  - no token or credential in the daemons' logs (controller at debug
    level), which stop cleanly (exit 0, no sanitizer report).

    test/with-emulator.sh python3 test/test_integrity_e2e.py BUILD_DIR
    (runs itself under test/with-emulator.sh when THAW_EMU_URL is unset)"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "kubeemu")]

import containerd  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import token_server  # noqa: E402
import webhook_stub  # noqa: E402
from test_ctr_pull import MANIFESTS, ConfigRegistry, manifest_config  # noqa: E402

BUILD = None
NS = "integrity-apps"
CACHE_HOST = stack.CACHE_HOST
ISSUER, SERVICE = "thaw-controller", "thaw-registry"
WARM_S = 120     # a warm on a loaded machine
ADMIT_S = 30     # the webhook sees the Ready image (index, health gate)
REFRESH_S = 30   # --refresh-interval 2s, then a warm
GRACE_S = 2      # --expire-grace
ACCEPT = ", ".join([images.OCI_MANIFEST, images.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def http(method, url, headers=None, data=None, timeout=10):
    """(status, headers, body) of one request; HTTP errors are answers."""
    if data is None and method in ("POST", "PUT"):
        data = b""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def jwt_claims(token):
    """The claims of a JWS compact token (no signature check)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(token):
    return {"Authorization": "Bearer " + token}


class Integrity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("docker-registry", "skopeo", "containerd", "ctr", "openssl"):
            if not shutil.which(tool):
                raise AssertionError("%s not installed: test/deps.sh installs it" % tool)
        cls.servers = []
        cls.work = tempfile.mkdtemp(prefix="thaw-integrity.")
        try:
            cls.api = stack.Api()
            cls.upstream = cls.keep(registry.Registry())
            cls.up = cls.upstream.url.split("://", 1)[1]
            # The controller's token endpoint: its port and key come first,
            # the cache registry's config names both.
            cls.token_port = registry.free_port()
            cls.realm = "http://127.0.0.1:%d/token" % cls.token_port
            cls.key, cls.cert = token_server.make_key(cls.work)
            cls.cache = cls.keep(ConfigRegistry(
                manifest_config(os.path.join(MANIFESTS, "registry", "configmap.yaml"),
                                "thaw-registry"), "cache",
                token={"realm": cls.realm, "rootcertbundle": cls.cert}))
            cls.cache_host = cls.cache.url.split("://", 1)[1]
            cls.node_local = cls.keep(ConfigRegistry(
                manifest_config(os.path.join(MANIFESTS, "node-local", "configmap.yaml"),
                                "thaw-node-local"), "node-local", remoteurl=cls.cache.url))
            cls.cd = cls.keep(containerd.Containerd())
            cls.hosts = os.path.join(cls.work, "hosts.d")
            os.makedirs(os.path.join(cls.hosts, CACHE_HOST))
            with open(os.path.join(cls.hosts, CACHE_HOST, "hosts.toml"), "w") as f:
                f.write('server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
                        % (cls.node_local.url, cls.node_local.url))
            cls.imgs = images.Images(os.path.join(cls.work, "images"))
            for ns in (NS, stack.SYSTEM_NS):
                cls.api.ok("POST", "/api/v1/namespaces", {
                    "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                    want=(201, 409))
            certs = webhook_stub.make_certs(cls.work)
            cls.hook = cls.keep(stack.Webhook(os.path.join(BUILD, "webhook", "thaw-webhook"),
                                              certs, cls.cache.url, cls.work))
            cls.hook.start()
            cls.api.ok("POST", stack.MWC_PATH,
                       stack.webhook_configuration(cls.hook.url, certs["ca_bundle"]),
                       want=(201, 409))
            cls.ctl = cls.keep(stack.Controller(
                os.path.join(BUILD, "controller", "thaw-controller"), cls.cache.url, cls.work,
                extra=["--insecure-registries", cls.up, "--leader-elect=false",
                       "--refresh-interval", "2s", "--expire-grace", "%ds" % GRACE_S,
                       "--token-key-file", cls.key, "--token-cert-file", cls.cert,
                       "--token-bind-address", "127.0.0.1:%d" % cls.token_port,
                       "--log-level", "debug"]))
            cls.ctl.start()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def keep(cls, server):
        cls.servers.append(server)
        return server

    @classmethod
    def tearDownClass(cls):
        for s in reversed(cls.servers):
            for stop in ("close", "stop"):
                if hasattr(s, stop):
                    getattr(s, stop)()
                    break
        shutil.rmtree(cls.work, ignore_errors=True)

    # --- helpers ---------------------------------------------------------

    def image(self, name, text):
        """A one-layer image of its own content (its own digest)."""
        lo = self.imgs._layout(name)
        layer = lo.layer({"hello": text.encode(), "etc/os-release": b"ID=thaw-test\n"})
        return lo.tag(lo.image([layer], "amd64", name))

    def warm(self, ref, spec=None):
        """Creates the CachedImage of ref; returns it once Ready."""
        self.api.ok("POST", stack.CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": stack.ci_name(ref)}, "spec": dict(spec or {}, image=ref)})
        ci = stack.wait_ci_ready(self.api, ref, WARM_S)
        self.assertIsNotNone(ci, "%s not warmed; log:\n%s" % (ref, self.ctl.log_tail()))
        return ci

    def ci(self, ref):
        """The CachedImage of ref, or None when it is gone."""
        st, doc, _ = self.api.request("GET", stack.CI_PATH + "/" + stack.ci_name(ref))
        if st == 404:
            return None
        self.assertEqual(st, 200, doc)
        return doc

    def wait(self, what, cond, timeout, poll=0.2):
        """cond()'s first true value within timeout seconds, else a failure."""
        got = stack.poll(cond, timeout, poll)
        if not got:
            self.fail("%s: not within %d s; controller log:\n%s"
                      % (what, timeout, self.ctl.log_tail()))
        return got

    def ask_realm(self, params, headers=None):
        """(status, body) of GET on the controller's token endpoint."""
        st, _, body = http("GET", self.realm + "?" + urllib.parse.urlencode(params),
                           headers=headers)
        return st, body

    def pull_token(self, repo):
        """An anonymous token for repository repo (pull, as anyone gets)."""
        st, body = self.ask_realm([("service", SERVICE), ("scope", "repository:%s:pull" % repo)])
        self.assertEqual(st, 200, body)
        return json.loads(body)["token"]

    def cache_manifest(self, repo, ref, token=None):
        """(status, Docker-Content-Digest) of GET repo's manifest ref from the
        cache registry, with an anonymous pull token unless token is given."""
        st, hdrs, _ = http("GET", "%s/v2/%s/manifests/%s" % (self.cache.url, repo, ref),
                           dict(bearer(token or self.pull_token(repo)), Accept=ACCEPT))
        return st, hdrs.get("Docker-Content-Digest")

    def stolen_token(self, repo):
        """What someone holding the signing key could mint: push on repo."""
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "attacker", "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 5, "iat": now, "jti": token_server.b64url(os.urandom(12)),
                  "access": [{"type": "repository", "name": repo, "actions": ["pull", "push"]}]}
        return token_server.sign_jwt(claims, self.key, [token_server.cert_der_b64(self.cert)])

    def push_with_token(self, lo, dest, token):
        """skopeo copy of layout lo to docker://dest with a Bearer token;
        returns the manifest digest."""
        digestfile = os.path.join(self.work, "pushed.digest")
        r = subprocess.run(
            ["skopeo", "--policy", self.imgs.policy, "copy", "--preserve-digests",
             "--digestfile", digestfile, "--dest-tls-verify=false",
             "--dest-registry-token", token,
             "oci:%s:%s" % (lo.path, lo.refs[-1]["annotations"]
                            ["org.opencontainers.image.ref.name"]), "docker://" + dest],
            capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, "skopeo push with a token: " + r.stderr)
        with open(digestfile) as f:
            return f.read().strip()

    def create_pod(self, name, image, dry_run=False):
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": NS},
               "spec": {"containers": [{"name": "app", "image": image}]}}
        path = "/api/v1/namespaces/%s/pods" % NS + ("?dryRun=All" if dry_run else "")
        return self.api.ok("POST", path, pod)

    def pull(self, ref):
        try:
            return self.cd.pull(ref, plain_http=True, hosts_dir=self.hosts)
        except RuntimeError as e:
            raise AssertionError("%s\nnode-local log:\n%s\ncache log:\n%s\ncontainerd log:\n%s"
                                 % (e, self.node_local.log_tail(), self.cache.log_tail(),
                                    self.cd.log_tail()))

    def token_metric(self, code):
        return stack.metric(self.ctl.metrics(), "thaw_token_requests_total",
                            {"code": str(code)}) or 0

    # --- tests -------------------------------------------------------------

    def test_1_poisoned_tag_does_not_change_what_a_new_pod_runs(self):
        good = self.imgs.single(name="integrity-good")
        ref = "%s/integrity/app:v1" % self.up
        info = self.imgs.push(good, ref)
        ci = self.warm(ref)  # the controller pushed with its own tokens
        self.assertEqual(ci["status"]["digest"], info["digest"])
        repo, suffix = containerd.cache_repo(ref)
        self.assertEqual(suffix, ":v1")
        dest = "%s/%s%s" % (self.cache_host, repo, suffix)

        # The attacker: a different image, pushed straight into the cache
        # registry under the cached tag. Without credentials the token
        # endpoint grants pull only, so the push fails and the tag stays.
        evil = self.imgs._layout("integrity-evil")
        layer = evil.layer({"hello": b"poisoned\n", "etc/os-release": b"ID=evil\n"})
        evil = evil.tag(evil.image([layer], "amd64", "evil"))
        with self.assertRaises(RuntimeError) as refused:
            self.imgs.push(evil, dest)
        self.assertRegex(str(refused.exception), r"(?i)unauthorized|authentication required")
        self.assertEqual(self.cache_manifest(repo, "v1"), (200, info["digest"]))

        # A stolen push right (the auth layer bypassed): the tag moves.
        bad = self.push_with_token(evil, dest, self.stolen_token(repo))
        self.assertNotEqual(bad, info["digest"])
        self.assertEqual(self.cache_manifest(repo, "v1"), (200, bad))
        tag = containerd.rewritten(ref, CACHE_HOST)
        self.assertEqual(self.pull(tag)["digest"], bad,
                         "the push did not move the cache's tag")
        self.cd.remove(tag)

        # A new pod is rewritten to the original digest (dry runs until the
        # webhook's index and health gate have seen the image Ready).
        want = tag + "@" + info["digest"]
        deadline = time.time() + ADMIT_S
        while True:
            got = self.create_pod("probe", ref, dry_run=True)
            if got["spec"]["containers"][0]["image"] != ref or time.time() > deadline:
                break
            time.sleep(0.2)
        pod = self.create_pod("app", ref)
        self.assertEqual(pod["spec"]["containers"][0]["image"], want,
                         "webhook log:\n" + self.hook.log_tail())
        self.assertEqual(json.loads(pod["metadata"]["annotations"]["thaw.dev/original-images"]),
                         {"container/app": ref})

        # What containerd pulls for it, through the node-local endpoint (its
        # anonymous token flow): the original, verified against the
        # digest; never the attacker's.
        got = self.pull(want)
        self.assertEqual(got["digest"], info["digest"])
        self.assertEqual(self.cd.rootfs(want), containerd.layer_files(good.path, info["digest"]))
        self.cd.remove(want)

        # The pod counts for the tag's CachedImage (use tracking maps the
        # pinned rewrite back to it), and the sweep recorded nothing else
        # for this repository.
        def counted():
            st = self.ci(ref).get("status") or {}
            return (st.get("usedBy") or {}).get("count") == 1 and st
        st = self.wait("the pod counted", counted, 20)
        self.assertEqual(st["usedBy"]["pods"], [NS + "/app"])
        images_now = [o["spec"]["image"] for o in self.api.ok("GET", stack.CI_PATH)["items"]
                      if "/integrity/app" in o["spec"]["image"]]
        self.assertEqual(images_now, [ref])

    def test_2_anonymous_cannot_write(self):
        lo = self.image("integrity-anon", "anonymous readers\n")
        ref = "%s/integrity/anon:v1" % self.up
        info = self.imgs.push(lo, ref)
        self.assertEqual(self.warm(ref)["status"]["digest"], info["digest"])
        repo = containerd.cache_repo(ref)[0]
        ok0, unauth0, bad0 = (self.token_metric(c) for c in (200, 401, 400))

        # The registry's challenge sends writers to the controller.
        st, hdrs, _ = http("POST", "%s/v2/%s/blobs/uploads/" % (self.cache.url, repo))
        self.assertEqual(st, 401)
        challenge = hdrs.get("WWW-Authenticate", "")
        self.assertTrue(challenge.startswith("Bearer "), challenge)
        self.assertIn('realm="%s"' % self.realm, challenge)
        self.assertIn('service="%s"' % SERVICE, challenge)

        # Which grants an anonymous caller pull, and nothing more.
        st, body = self.ask_realm([("service", SERVICE),
                               ("scope", "repository:%s:pull,push,delete" % repo)])
        self.assertEqual(st, 200, body)
        doc = json.loads(body)
        tok = doc["token"]
        self.assertEqual(doc["access_token"], tok)
        self.assertGreater(doc["expires_in"], 0)
        claims = jwt_claims(tok)
        self.assertEqual(claims["access"],
                         [{"type": "repository", "name": repo, "actions": ["pull"]}])
        self.assertEqual((claims["iss"], claims["aud"]), (ISSUER, SERVICE))
        self.assertLessEqual(claims["nbf"], time.time() + 1)
        self.assertGreater(claims["exp"], time.time())

        # With that token the registry takes no upload and no delete ...
        st, _, body = http("POST", "%s/v2/%s/blobs/uploads/" % (self.cache.url, repo),
                           bearer(tok))
        self.assertIn(st, (401, 403), body)
        st, _, body = http("DELETE", "%s/v2/%s/manifests/%s" % (self.cache.url, repo,
                                                                 info["digest"]), bearer(tok))
        self.assertIn(st, (401, 403), body)
        # ... and the manifest is still there, readable with it.
        self.assertEqual(self.cache_manifest(repo, info["digest"], tok), (200, info["digest"]))

        # Nothing under private/; credentials are refused (no accounts), as
        # is another service.
        st, body = self.ask_realm([("service", SERVICE), ("scope", "repository:private/x:pull")])
        self.assertEqual(st, 200, body)
        self.assertEqual(jwt_claims(json.loads(body)["token"])["access"], [])
        basic = base64.b64encode(b"controller:guess").decode()
        st, _ = self.ask_realm([("service", SERVICE), ("scope", "repository:%s:pull" % repo)],
                           {"Authorization": "Basic " + basic})
        self.assertEqual(st, 401)
        st, _ = self.ask_realm([("service", "other"), ("scope", "repository:%s:pull" % repo)])
        self.assertEqual(st, 400)

        # The node-local endpoint reads this repository with a token of its
        # own from the same endpoint.
        st, hdrs, body = http("GET", "%s/v2/%s/manifests/%s" % (self.node_local.url, repo,
                                                                 info["digest"]),
                              {"Accept": ACCEPT})
        self.assertEqual(st, 200, "%s\nnode-local log:\n%s" % (body, self.node_local.log_tail()))
        self.assertEqual(hdrs["Docker-Content-Digest"], info["digest"])
        # The test's two 200s (the private/ one too) and at least one of
        # the node-local endpoint's; the 401 and the 400 counted by code.
        self.assertGreaterEqual(self.token_metric(200), ok0 + 3)
        self.assertGreaterEqual(self.token_metric(401), unauth0 + 1)
        self.assertGreaterEqual(self.token_metric(400), bad0 + 1)

    def test_3_refresh_under_auth(self):
        """A tag moved upstream is warmed again (pushed with the controller's
        own tokens), and the digest it moved away from, which no pod names,
        is deleted from the cache (with them too)."""
        ref = "%s/integrity/refresh:v1" % self.up
        old = self.imgs.push(self.image("integrity-refresh-1", "first\n"), ref)
        self.assertEqual(self.warm(ref)["status"]["digest"], old["digest"])
        repo = containerd.cache_repo(ref)[0]
        new = self.imgs.push(self.image("integrity-refresh-2", "second\n"), ref)
        self.assertNotEqual(new["digest"], old["digest"])
        self.wait("status.digest moved to the new digest",
                  lambda: (self.ci(ref)["status"].get("digest") == new["digest"]), REFRESH_S)
        self.assertEqual(self.cache_manifest(repo, "v1"), (200, new["digest"]))
        self.assertEqual(self.cache_manifest(repo, new["digest"])[0], 200)
        self.wait("the old digest deleted from the cache",
                  lambda: self.cache_manifest(repo, old["digest"])[0] == 404, GRACE_S + 15)
        self.assertEqual(self.cache_manifest(repo, "v1"), (200, new["digest"]))

    def test_4_expiry_under_auth(self):
        """An unused image expires: its manifest is deleted from the cache
        (the controller's delete token), then its CachedImage."""
        ref = "%s/integrity/expire:v1" % self.up
        info = self.imgs.push(self.image("integrity-expire", "short-lived\n"), ref)
        expired0 = stack.metric(self.ctl.metrics(), "thaw_expired_total",
                                {"reason": "unused"}) or 0
        self.assertEqual(self.warm(ref, {"expireAfter": "3s"})["status"]["digest"],
                         info["digest"])
        repo = containerd.cache_repo(ref)[0]
        self.assertEqual(self.cache_manifest(repo, info["digest"]), (200, info["digest"]))
        self.wait("the CachedImage gone", lambda: self.ci(ref) is None, 3 + GRACE_S + 20)
        self.assertEqual(self.cache_manifest(repo, info["digest"])[0], 404,
                         "manifest left in the cache; cache log:\n" + self.cache.log_tail())
        self.assertEqual(self.cache_manifest(repo, "v1")[0], 404)
        self.assertGreaterEqual(stack.metric(self.ctl.metrics(), "thaw_expired_total",
                                             {"reason": "unused"}), expired0 + 1)

    def test_9_no_token_in_logs(self):
        """Runs last: the tests above minted, served and used tokens. Both
        daemons stop cleanly (exit 0, no sanitizer report), and their whole
        logs hold no token and no credential."""
        self.assertGreater(self.token_metric(200), 0)
        for d in (self.ctl, self.hook):
            rc = d.stop_timed()[0]
            with open(d.log_path, errors="replace") as f:
                log = f.read()
            self.assertEqual((rc, [s for s in stack.SANITIZER if s in log]), (0, []),
                             "%s:\n%s" % (d.log_path, "\n".join(log.splitlines()[-40:])))
            self.assertTrue(log.strip(), d.log_path)
            self.assertNotIn("eyJ", log, "a JWT in %s" % d.log_path)
            m = re.search(r"(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{8,}", log)
            self.assertIsNone(m, "a credential in %s: %s" % (d.log_path, m and m.group(0)))


def main():
    global BUILD
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: test_integrity_e2e.py BUILD_DIR")
    BUILD = os.path.abspath(args.pop(0))
    if not os.environ.get("THAW_EMU_URL"):  # the daemons need the API emulator
        os.execv(os.path.join(HERE, "with-emulator.sh"),
                 [os.path.join(HERE, "with-emulator.sh"), sys.executable,
                  os.path.abspath(__file__), BUILD] + args)
    unittest77.main(argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
