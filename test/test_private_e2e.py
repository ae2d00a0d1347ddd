"""No private-image side door (issue 12; docs/design.md "Private images" and
"Confidentiality and integrity of the cache"), end to end with real parts:
Debian's docker-registry as the upstream (htpasswd), the cache (the config
of manifests/registry with its token auth) and the node-local pull-through
endpoint (manifests/node-local); thaw-node-forward relaying the private
cache host (localhost:7450 here, given to both daemons as
--private-cache-host, so the flag is shown to reach every part) to the
cache and the cache's token realm to thaw-controller; a real containerd
pulling with ctr; thaw-webhook called by the API emulator; thaw-controller
with --allow-private, its token key and --repair-after 2s. A small
"kubelet" here reads each admitted pod, finds its pull credentials as the
kubelet does (imagePullSecrets -> .dockerconfigjson -> the entry of the
image's registry host), pulls with containerd and reports the result in
pods/status.

A private image <up>/team-a/model:1 (upstream user team-a):

  1. warmed for a pod of priv-a (labelled thaw.dev/cache-private=true, with
     the upstream Secret): Ready, status.private, the upstream digest; in
     the cache under private/<cache path> only.
  2. a new pod of priv-a is rewritten to
     localhost:7450/private/<cache path>:1@<digest> with thaw-pull added,
     and containerd pulls it through the forward with thaw-pull's
     credentials: the cache serves the private manifest.
  3. other-b (not opted in) naming the cache paths by hand: the webhook
     gives the pods the original back, and they start from upstream with
     other-b's own Secret; anonymous pulls of either cache path, and the
     private path with forged credentials, fail with no byte served.
  4. the same with the webhook down (failurePolicy Ignore: admitted as
     written): the pulls fail with no byte served, thaw-controller's repair
     gives the pods the original (an ImageRepaired Event), and they start
     from upstream; other-c (no Secret) gets nothing either.
  5. priv-a loses its label: thaw-pull is deleted, its old credentials no
     longer open private/, a new pod is left as submitted (decision
     `private`) and starts from upstream.
  6. no password (upstream's or thaw-pull's) in the daemons' or the
     forwarder's logs, in their metrics, in a CachedImage or in an Event;
     the daemons stop cleanly.

"No byte served" is read from the cache's and node-local's logs: no request
under private/<cache path> or <cache path> for a manifest or a blob got a
2xx (requests carrying thaw-controller's own tokens excepted). Every server
runs on a free loopback port and is stopped by PID.

    test/with-emulator.sh python3 test/test_private_e2e.py BUILD_DIR
    (runs itself under test/with-emulator.sh when THAW_EMU_URL is unset)"""

import base64
import contextlib
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
import urllib.request

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)  # under the API emulator

import containerd  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import token_server  # noqa: E402
import webhook_stub  # noqa: E402
from test_ctr_pull import MANIFESTS, ConfigRegistry, manifest_config  # noqa: E402

BUILD = None
CACHE_HOST = stack.CACHE_HOST           # localhost:7439, node-local
PRIVATE_HOST = "localhost:7450"         # the forward to the cache: not the
                                        # default 7440, so --private-cache-host
                                        # is shown to reach every part
PRIV, OTHER, BARE = "priv-a", "other-b", "other-c"
LABEL = "thaw.dev/cache-private"
UP_USER = "team-a"
ISSUER, SERVICE = "thaw-controller", "thaw-registry"
WARM_S = 120     # a warm on a loaded machine
ADMIT_S = 30     # the webhook's index and informers see a change
SECRET_S = 20    # thaw-pull made or deleted
REPAIR_S = 30    # --repair-after 2s, then the repair
ACCEPT = ", ".join([images.OCI_MANIFEST, images.OCI_INDEX,
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


def b64(data):
    return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode()


def docker_secret(name, host, user, password):
    """A kubernetes.io/dockerconfigjson Secret with one entry, for host."""
    cfg = {"auths": {host: {"username": user, "password": password,
                            "auth": b64("%s:%s" % (user, password))}}}
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": name}, "data": {".dockerconfigjson": b64(json.dumps(cfg))}}


def log_fields(line):
    """The key=value fields of one of distribution's text log lines."""
    return {k: v.strip('"') for k, v in re.findall(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S+)', line)}


class Forwarder:
    """thaw-node-forward (the node-local DaemonSet's second container) on
    the given loopback ports, logging to a file; stopped by PID."""

    def __init__(self, binary, forwards, log_path):
        self.log_path = log_path
        args = [binary, "--log-level", "debug"]
        for port, target in forwards:
            args += ["--forward", "127.0.0.1:%d=%s" % (port, target)]
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=registry.die_with_parent)
        if not registry.wait_listening(self.proc, [port for port, _ in forwards]):
            self.stop()
            raise AssertionError("thaw-node-forward does not listen on %s: %s"
                                 % ([port for port, _ in forwards], self.log_tail()))

    def stop(self):
        """SIGTERM by PID; the exit status."""
        if self.proc is not None:
            registry.stop_proc(self.proc, grace=10)
            self.rc, self.proc = self.proc.returncode, None
            self._log.close()
        return self.rc

    def log_tail(self, n=20):
        with open(self.log_path, "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")


class Private(unittest.TestCase):
    """One stack; the tests run in order and build on each other."""

    @classmethod
    def setUpClass(cls):
        for tool in ("docker-registry", "skopeo", "containerd", "ctr", "openssl", "htpasswd"):
            if not shutil.which(tool):
                raise AssertionError("%s not installed: test/deps.sh installs it" % tool)
        cls.work = tempfile.mkdtemp(prefix="thaw-private.")
        cls.env = stack.Closers()
        cls.env.closers.append(lambda: shutil.rmtree(cls.work, ignore_errors=True))
        try:
            cls.setup_stack()
        except BaseException:
            cls.env.close()
            raise

    @classmethod
    def setup_stack(cls):
        env, api = cls.env, stack.Api()
        cls.api = api
        # The upstream and its private image.
        cls.up_pw = os.urandom(12).hex()
        cls.upstream = env.own(registry.Registry(htpasswd={UP_USER: cls.up_pw}))
        cls.up = cls.upstream.url.split("://", 1)[1]
        cls.imgs = images.Images(os.path.join(cls.work, "images"))
        lo = cls.imgs._layout("private-model")
        layer = lo.layer({"model": b"team-a's weights\n", "etc/os-release": b"ID=thaw-test\n"})
        cls.layout = lo.tag(lo.image([layer], "amd64", "private-model"))
        cls.orig = "%s/team-a/model:1" % cls.up
        cls.digest = cls.imgs.push(cls.layout, cls.orig,
                                   creds="%s:%s" % (UP_USER, cls.up_pw))["digest"]
        cls.repo = containerd.cache_repo(cls.orig)[0]           # 127.0.0.1__PORT/team-a/model
        cls.pub_path = "%s/%s:1" % (CACHE_HOST, cls.repo)
        cls.priv_path = "%s/private/%s:1" % (PRIVATE_HOST, cls.repo)
        cls.priv_ref = cls.priv_path + "@" + cls.digest         # what the webhook writes

        # Namespaces and their upstream Secrets (other-c has none).
        for ns, labels in ((PRIV, {LABEL: "true"}), (OTHER, {}), (BARE, {}),
                           (stack.SYSTEM_NS, {})):
            api.ok("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": ns, "labels": labels}},
                   want=(201, 409))
        for ns, name in ((PRIV, "upstream-a"), (OTHER, "upstream-b")):
            api.ok("POST", "/api/v1/namespaces/%s/secrets" % ns,
                   docker_secret(name, cls.up, UP_USER, cls.up_pw))

        # The cache, whose token realm is the forward P2 -> the controller's
        # token endpoint; the forward P1 -> the cache (PRIVATE_HOST).
        cls.token_port = registry.free_port()
        p1, p2 = registry.free_port(), registry.free_port()
        cls.key, cls.cert = token_server.make_key(cls.work)
        cls.cache = env.own(ConfigRegistry(
            manifest_config(os.path.join(MANIFESTS, "registry", "configmap.yaml"),
                            "thaw-registry"), "cache",
            token={"realm": "http://127.0.0.1:%d/token" % p2, "rootcertbundle": cls.cert}))
        cls.fwd = Forwarder(os.path.join(BUILD, "controller", "thaw-node-forward"),
                            [(p1, "127.0.0.1:%d" % cls.cache.port),
                             (p2, "127.0.0.1:%d" % cls.token_port)],
                            os.path.join(cls.work, "thaw-node-forward.log"))
        env.closers.append(cls.fwd.stop)
        cls.node_local = env.own(ConfigRegistry(
            manifest_config(os.path.join(MANIFESTS, "node-local", "configmap.yaml"),
                            "thaw-node-local"), "node-local", remoteurl=cls.cache.url))

        # containerd, with the node's view of the three registries.
        cls.cd = env.own(containerd.Containerd())
        cls.hosts = os.path.join(cls.work, "hosts.d")
        for host, server in ((CACHE_HOST, cls.node_local.url),
                             (PRIVATE_HOST, "http://127.0.0.1:%d" % p1),
                             (cls.up, cls.upstream.url)):
            os.makedirs(os.path.join(cls.hosts, host))
            with open(os.path.join(cls.hosts, host, "hosts.toml"), "w") as f:
                f.write('server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
                        % (server, server))

        # The daemons.
        certs = webhook_stub.make_certs(cls.work)
        cls.hook = stack.Webhook(os.path.join(BUILD, "webhook", "thaw-webhook"), certs,
                                 cls.cache.url, cls.work,
                                 extra=["--private-cache-host", PRIVATE_HOST])
        env.closers.append(cls.hook.stop)
        cls.hook.start()
        api.ok("POST", stack.MWC_PATH,
               stack.webhook_configuration(cls.hook.url, certs["ca_bundle"]), want=(201, 409))
        cls.ctl = stack.Controller(
            os.path.join(BUILD, "controller", "thaw-controller"), cls.cache.url, cls.work,
            extra=["--allow-private", "--insecure-registries", cls.up, "--leader-elect=false",
                   "--private-cache-host", PRIVATE_HOST,
                   "--repair-after", "2s",
                   "--token-key-file", cls.key, "--token-cert-file", cls.cert,
                   "--token-bind-address", "127.0.0.1:%d" % cls.token_port,
                   "--log-level", "debug"])
        env.closers.append(cls.ctl.stop)
        cls.ctl.start()
        cls.thaw_pull = None   # (user, password) of priv-a's thaw-pull, from test 2

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    # --- the API -----------------------------------------------------------

    def wait(self, what, cond, timeout, poll=0.2):
        """cond()'s first true value within timeout seconds, else a failure."""
        got = stack.poll(cond, timeout, poll)
        if not got:
            self.fail("%s: not within %d s\ncontroller log:\n%s\nwebhook log:\n%s"
                      % (what, timeout, self.ctl.log_tail(), self.hook.log_tail()))
        return got

    def create_pod(self, ns, name, image, secrets=(), dry_run=False):
        """POSTs a one-container pod (app); returns (pod as admitted, the
        admission warnings)."""
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
               "spec": {"containers": [{"name": "app", "image": image}],
                        "imagePullSecrets": [{"name": s} for s in secrets]}}
        path = "/api/v1/namespaces/%s/pods" % ns + ("?dryRun=All" if dry_run else "")
        st, doc, hdrs = self.api.request("POST", path, pod)
        self.assertIn(st, (200, 201), doc)
        warnings = re.findall(r'299 - "((?:[^"\\]|\\.)*)"', hdrs.getheader("Warning") or "")
        return doc, [re.sub(r"\\(.)", r"\1", w) for w in warnings]

    def admitted_image(self, ns, image, secrets, until, what):
        """Dry runs until the webhook admits image as until(admitted image)
        wants it (its index, informers and health gate caught up)."""
        return self.wait(what, lambda: until(self.create_pod(
            ns, "probe", image, secrets, dry_run=True)[0]["spec"]["containers"][0]["image"]),
            ADMIT_S)

    def pod(self, ns, name):
        return self.api.ok("GET", "/api/v1/namespaces/%s/pods/%s" % (ns, name))

    def image_of(self, ns, name):
        return self.pod(ns, name)["spec"]["containers"][0]["image"]

    def secret(self, ns, name):
        st, doc, _ = self.api.request("GET", "/api/v1/namespaces/%s/secrets/%s" % (ns, name))
        return doc if st == 200 else None

    def events(self, ns, reason):
        doc = self.api.ok("GET", "/api/v1/namespaces/%s/events" % ns)
        return [e for e in doc["items"] if e["reason"] == reason]

    def ci(self):
        st, doc, _ = self.api.request("GET", stack.CI_PATH + "/" + stack.ci_name(self.orig))
        return doc if st == 200 else None

    def assertOriginal(self, image, msg=""):
        """The original, or the original pinned to the upstream digest (the
        inverse of a pinned cache path)."""
        self.assertIn(image, (self.orig, self.orig + "@" + self.digest), msg)

    # --- the kubelet ---------------------------------------------------------

    def credentials(self, ns, secrets, image):
        """USER:PASS for image's registry host from the pod's pull secrets,
        as the kubelet finds them; None for an anonymous pull."""
        host = image.split("/", 1)[0]
        for name in secrets:
            doc = self.secret(ns, name)
            if not doc or doc.get("type") != "kubernetes.io/dockerconfigjson":
                continue
            auths = json.loads(base64.b64decode(doc["data"][".dockerconfigjson"]))["auths"]
            entry = auths.get(host)
            if entry:
                return "%s:%s" % (entry["username"], entry["password"])
        return None

    def ctr_pull(self, image, user=None):
        """containerd pulls image as a node would: its digest, or the error
        (a RuntimeError's text). The image is removed again, so the next
        pull fetches everything."""
        try:
            got = self.cd.pull(image, plain_http=True, hosts_dir=self.hosts, user=user)
        except RuntimeError as e:
            return None, str(e)
        self.cd.remove(image)
        return got["digest"], None

    def kubelet(self, ns, name):
        """Starts pod ns/name's containers: pulls each image with the pod's
        credentials and writes pods/status (running, or waiting ErrImagePull).
        Returns {container: (digest or None, error or None)}."""
        pod = self.pod(ns, name)
        secrets = [s["name"] for s in pod["spec"].get("imagePullSecrets") or []]
        out, statuses = {}, []
        for c in pod["spec"]["containers"]:
            digest, err = out[c["name"]] = self.ctr_pull(
                c["image"], self.credentials(ns, secrets, c["image"]))
            state = {"running": {"startedAt": "2026-01-01T00:00:00Z"}} if digest else \
                {"waiting": {"reason": "ErrImagePull", "message": err[-300:]}}
            statuses.append({"name": c["name"], "image": c["image"], "imageID": "",
                             "ready": bool(digest), "started": bool(digest),
                             "restartCount": 0, "state": state})
        self.api.ok("PATCH", "/api/v1/namespaces/%s/pods/%s/status" % (ns, name),
                    {"status": {"phase": "Running" if all(d for d, _ in out.values())
                                else "Pending", "containerStatuses": statuses}},
                    ctype="application/merge-patch+json")
        return out

    def assertStarted(self, ns, name):
        digest, err = self.kubelet(ns, name)["app"]
        self.assertEqual(digest, self.digest, "%s/%s (%s) did not start: %s\n%s"
                         % (ns, name, self.image_of(ns, name), err, self.logs()))

    # --- what the registries served -------------------------------------------

    def log_marks(self):
        """Where the cache's and node-local's logs end now."""
        return {name: (r.log_path, os.path.getsize(r.log_path))
                for name, r in (("cache", self.cache), ("node-local", self.node_local))}

    def served(self, marks):
        """Requests since marks for a manifest or blob of the image's
        repositories (private/ or public) that got a 2xx, thaw-controller's
        own excepted: ["log: METHOD uri -> status"]."""
        under = re.compile(r"^/v2/(private/)?%s/(manifests|blobs)/" % re.escape(self.repo))
        out = []
        for name, (path, offset) in marks.items():
            with open(path, errors="replace") as f:
                f.seek(offset)
                for line in f:
                    kv = log_fields(line)
                    status = kv.get("http.response.status", "")
                    if status.startswith("2") and under.match(kv.get("http.request.uri", "")) \
                            and kv.get("auth.user.name") != ISSUER:
                        out.append("%s: %s %s -> %s" % (
                            name, kv.get("http.request.method"), kv["http.request.uri"],
                            status))
        return out

    @contextlib.contextmanager
    def no_bytes_served(self, what):
        """The block's requests got no manifest or blob of the image."""
        marks = self.log_marks()
        yield
        self.assertEqual(self.served(marks), [], "%s: bytes served\n%s" % (what, self.logs()))

    def refused(self, image, user=None, what=None):
        """A ctr pull of image fails, and nothing of the image was served."""
        with self.no_bytes_served(what or image):
            digest, err = self.ctr_pull(image, user)
        self.assertIsNone(digest, "%s: pulled" % (what or image))
        return err

    def logs(self):
        return "cache log:\n%s\nnode-local log:\n%s\nforward log:\n%s\ncontainerd log:\n%s" % (
            self.cache.log_tail(), self.node_local.log_tail(), self.fwd.log_tail(),
            self.cd.log_tail())

    def stolen_token(self, *repos):
        """A token with pull on repos, as only the signing key can mint."""
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": "test-probe", "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 5, "iat": now, "jti": token_server.b64url(os.urandom(12)),
                  "access": [{"type": "repository", "name": r, "actions": ["pull"]}
                             for r in repos]}
        return token_server.sign_jwt(claims, self.key, [token_server.cert_der_b64(self.cert)])

    def cache_manifest(self, repo, token):
        """(status, Docker-Content-Digest) of GET repo's manifest :1."""
        req = urllib.request.Request("%s/v2/%s/manifests/1" % (self.cache.url, repo),
                                     headers={"Authorization": "Bearer " + token,
                                              "Accept": ACCEPT})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError as e:
            return e.code, None

    # --- the tests -------------------------------------------------------------

    def test_1_warmed_under_private_only(self):
        pod, _ = self.create_pod(PRIV, "warm", self.orig, ["upstream-a"])
        self.assertEqual(pod["spec"]["containers"][0]["image"], self.orig)  # cold
        ci = stack.wait_ci_ready(self.api, self.orig, WARM_S)
        self.assertIsNotNone(ci, "not Ready: %s\ncontroller log:\n%s"
                             % (json.dumps(self.ci()), self.ctl.log_tail()))
        self.assertIs(ci["status"].get("private"), True, ci["status"])
        self.assertEqual(ci["status"]["digest"], self.digest)
        token = self.stolen_token("private/" + self.repo, self.repo)
        self.assertEqual(self.cache_manifest("private/" + self.repo, token), (200, self.digest))
        self.assertEqual(self.cache_manifest(self.repo, token)[0], 404,
                         "a private image under the public path")

    def test_2_opted_in_namespace_pulls_through_the_forward(self):
        self.wait("thaw-pull in %s" % PRIV, lambda: self.secret(PRIV, "thaw-pull"), SECRET_S)
        self.admitted_image(PRIV, self.orig, ["upstream-a"], lambda i: i != self.orig,
                            "the webhook rewrites the Ready private image")
        pod, _ = self.create_pod(PRIV, "reader", self.orig, ["upstream-a"])
        self.assertEqual(pod["spec"]["containers"][0]["image"], self.priv_ref,
                         "webhook log:\n" + self.hook.log_tail())
        self.assertEqual([s["name"] for s in pod["spec"]["imagePullSecrets"]],
                         ["upstream-a", "thaw-pull"])
        user, pw = self.credentials(PRIV, ["thaw-pull"], self.priv_ref).split(":", 1)
        self.assertEqual(user, PRIV)
        Private.thaw_pull = (user, pw)

        marks = self.log_marks()
        self.assertStarted(PRIV, "reader")
        got = self.served(marks)
        self.assertTrue([s for s in got
                         if s.startswith("cache: GET /v2/private/%s/manifests/" % self.repo)],
                        "the cache did not serve the private manifest: %s\n%s"
                        % (got, self.logs()))

    def test_3_other_namespace_naming_the_cache_path(self):
        warnings = {}
        by_hand = {"b-pub": self.pub_path, "b-pub-pinned": self.pub_path + "@" + self.digest,
                   "b-priv": self.priv_path, "b-priv-pinned": self.priv_ref}
        for name, image in by_hand.items():
            pod, warnings[name] = self.create_pod(OTHER, name, image, ["upstream-b"])
            self.assertOriginal(pod["spec"]["containers"][0]["image"],
                                "%s admitted as written; webhook log:\n%s"
                                % (image, self.hook.log_tail()))
        Private.warnings = warnings
        for name in by_hand:
            self.assertStarted(OTHER, name)
        # Straight to the cache paths: nothing without the right credentials.
        for image in (self.pub_path, self.pub_path + "@" + self.digest):
            self.refused(image, what="anonymous pull of " + image)
        for image in (self.priv_path, self.priv_ref):
            self.refused(image, what="anonymous pull of " + image)
            self.refused(image, "%s:%s" % (OTHER, os.urandom(16).hex()),
                         "pull of %s with forged credentials" % image)

    def test_3b_turned_back_with_a_warning(self):
        """Optional in the design's words ("with a warning"): each pod that
        test 3 got back as the original came with an admission warning."""
        warned = getattr(Private, "warnings", None)
        self.assertIsNotNone(warned, "test 3 did not get its pods admitted")
        self.assertEqual([n for n, w in warned.items() if not w], [], warned)

    def test_4_webhook_down_repair_then_upstream(self):
        stack.stop_clean(self.hook)
        try:
            pods = {(OTHER, "down-pub"): self.pub_path,
                    (OTHER, "down-priv"): self.priv_ref,
                    (BARE, "down-bare"): self.priv_path}
            for (ns, name), image in pods.items():
                pod, _ = self.create_pod(ns, name, image,
                                         ["upstream-b"] if ns == OTHER else [])
                self.assertEqual(pod["spec"]["containers"][0]["image"], image,
                                 "changed with the webhook down")
            for (ns, name), image in pods.items():
                with self.no_bytes_served("%s/%s pulling %s" % (ns, name, image)):
                    digest, _ = self.kubelet(ns, name)["app"]
                self.assertIsNone(digest, "%s/%s pulled %s" % (ns, name, image))
            for (ns, name), image in pods.items():
                self.wait("%s/%s repaired" % (ns, name),
                          lambda: self.image_of(ns, name) != image, REPAIR_S)
                self.assertOriginal(self.image_of(ns, name))
                self.assertEqual([e["involvedObject"]["name"]
                                  for e in self.events(ns, "ImageRepaired")
                                  if e["involvedObject"]["name"] == name], [name])
            for name in ("down-pub", "down-priv"):
                self.assertStarted(OTHER, name)
            # other-c has no credentials upstream either: still refused there.
            with self.no_bytes_served("%s/down-bare from upstream" % BARE):
                digest, err = self.kubelet(BARE, "down-bare")["app"]
            self.assertIsNone(digest)
            self.assertRegex(err, r"(?i)unauthorized|authoriz")
        finally:
            self.hook.start()

    def test_5_label_removed(self):
        self.assertIsNotNone(self.thaw_pull, "test 2 did not capture thaw-pull's credentials")
        self.api.ok("PATCH", "/api/v1/namespaces/" + PRIV, {"metadata": {"labels": {LABEL: None}}},
                    ctype="application/merge-patch+json")
        self.wait("thaw-pull deleted from " + PRIV,
                  lambda: self.secret(PRIV, "thaw-pull") is None, SECRET_S)
        self.refused(self.priv_ref, "%s:%s" % self.thaw_pull,
                     "pull with %s's old thaw-pull credentials" % PRIV)

        self.admitted_image(PRIV, self.orig, ["upstream-a"], lambda i: i == self.orig,
                            "the webhook leaves the image to a namespace without the label")
        before = stack.metric(self.hook.metrics(), "thaw_webhook_images_total",
                              {"decision": "private"}) or 0
        pod, _ = self.create_pod(PRIV, "after", self.orig, ["upstream-a"])
        self.assertEqual(pod["spec"]["containers"][0]["image"], self.orig)
        self.assertEqual([s["name"] for s in pod["spec"]["imagePullSecrets"]], ["upstream-a"])
        self.assertGreater(stack.metric(self.hook.metrics(), "thaw_webhook_images_total",
                                        {"decision": "private"}), before)
        self.assertStarted(PRIV, "after")

    def test_6_no_credential_anywhere(self):
        """Runs last: reads the daemons' metrics, stops them (exit 0, no
        sanitizer report) and looks for every password, and its base64
        forms, in what thaw wrote."""
        secrets = [self.up_pw, b64("%s:%s" % (UP_USER, self.up_pw))]
        if self.thaw_pull:
            secrets += [self.thaw_pull[1], b64("%s:%s" % self.thaw_pull)]
        places = {}
        for d in (self.ctl, self.hook):  # metrics too, while they run
            places["%s /metrics" % d.log_path] = d.metrics()
        for d in (self.ctl, self.hook):
            places[d.log_path] = stack.stop_clean(d)
        self.assertEqual(self.fwd.stop(), 0, self.fwd.log_tail())
        with open(self.fwd.log_path, errors="replace") as f:
            places[self.fwd.log_path] = f.read()
        for ci in self.api.ok("GET", stack.CI_PATH)["items"]:
            places["CachedImage " + ci["metadata"]["name"]] = json.dumps(ci)
        for ev in self.api.ok("GET", "/api/v1/events")["items"]:
            places["Event %s/%s" % (ev["metadata"]["namespace"], ev["metadata"]["name"])] = \
                json.dumps(ev)
        self.assertTrue(any(k.startswith("Event") for k in places), "no Event to look at")
        leaks = ["%s: secret #%d" % (where, i) for where, text in places.items()
                 for i, s in enumerate(secrets) if s in text]
        self.assertEqual(leaks, [])


def main():
    global BUILD
    args = sys.argv[1:]
    if not args:
        sys.exit("usage: test_private_e2e.py BUILD_DIR")
    BUILD = os.path.abspath(args.pop(0))
    unittest77.main(argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
