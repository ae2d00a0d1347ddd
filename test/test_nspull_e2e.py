"""Per-namespace pull credentials (controller/nspull.c, controller/token.c;
docs/design.md "Confidentiality and integrity of the cache"), against the
API emulator with thaw-controller run with --allow-private and its token
key:

- a namespace labelled thaw.dev/cache-private=true gets a Secret
  thaw-pull (kubernetes.io/dockerconfigjson for localhost:7440, labelled,
  owned by the CachedImage CRD) whose credentials the token endpoint takes
  and which open private/ to that namespace only;
- a namespace without the label gets none; labelling it adds one;
  removing the label deletes it, and the same credentials no longer open
  private/ (the label is checked at each token request);
- an opted-out namespace gets none even when labelled;
- a Secret thaw-pull that thaw did not make is never touched;
- the password is in no log line.

    test/with-emulator.sh python3 test/test_nspull_e2e.py THAW_CONTROLLER"""

import base64
import json
import os
import shutil
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "kubeemu")]

import registry  # noqa: E402
import stack  # noqa: E402
import token_server  # noqa: E402

BINARY = None
WAIT_S = 20
HOST = "localhost:7440"
PRIV_SCOPE = "repository:private/docker.io/team/model:pull"
PUB_SCOPE = "repository:docker.io/library/nginx:pull"


def claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


class NsPull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="thaw-nspull.")
        cls.api = stack.Api()
        cls.cache = registry.Registry()
        for ns, labels in (("nsp-a", {"thaw.dev/cache-private": "true"}),
                           ("nsp-b", {}),
                           ("nsp-out", {"thaw.dev/cache-private": "true",
                                        "thaw.dev/caching": "disabled"}),
                           ("nsp-foreign", {"thaw.dev/cache-private": "true"}),
                           (stack.SYSTEM_NS, {})):
            cls.api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": labels}}, want=(201, 409))
        # someone else's Secret of that name: never touched
        cls.foreign = cls.api.ok("POST", "/api/v1/namespaces/nsp-foreign/secrets", {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "thaw-pull"}, "data": {"x": "eQ=="}})
        key, cert = token_server.make_key(cls.work)
        cls.tport = registry.free_port()
        cls.ctl = stack.Controller(BINARY, cls.cache.url, cls.work, extra=[
            "--leader-elect=false", "--allow-private",
            "--token-key-file", key, "--token-cert-file", cert,
            "--token-bind-address", "127.0.0.1:%d" % cls.tport])
        cls.ctl.start()

    @classmethod
    def tearDownClass(cls):
        log = stack.stop_clean(cls.ctl)
        cls.cache.close()
        shutil.rmtree(cls.work, ignore_errors=True)
        for p in getattr(cls, "passwords", []):
            assert p not in log, "a thaw-pull password is in the controller's log"

    def secret(self, ns):
        st, doc, _ = self.api.request("GET", "/api/v1/namespaces/%s/secrets/thaw-pull" % ns)
        return doc if st == 200 else None

    def wait(self, pred, what):
        deadline = time.time() + WAIT_S
        while not pred():
            self.assertLess(time.time(), deadline, "%s; log:\n%s" % (what, self.ctl.log_tail()))
            time.sleep(0.2)

    def creds(self, ns):
        doc = self.secret(ns)
        cfg = json.loads(base64.b64decode(doc["data"][".dockerconfigjson"]))
        entry = cfg["auths"][HOST]
        self.assertEqual(base64.b64decode(entry["auth"]).decode(),
                         "%s:%s" % (entry["username"], entry["password"]))
        NsPull.passwords = getattr(NsPull, "passwords", []) + [entry["password"]]
        return entry["username"], entry["password"]

    def token(self, scope, user=None, password=None):
        url = "http://127.0.0.1:%d/token?service=thaw-registry&scope=%s" % (self.tport, scope)
        req = urllib.request.Request(url)
        if user is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(
                ("%s:%s" % (user, password)).encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, claims(json.loads(r.read())["token"])
        except urllib.error.HTTPError as e:
            return e.code, None

    def test_1_labelled_namespace_gets_working_credentials(self):
        self.wait(lambda: self.secret("nsp-a") is not None, "no thaw-pull in nsp-a")
        doc = self.secret("nsp-a")
        self.assertEqual(doc["type"], "kubernetes.io/dockerconfigjson")
        self.assertEqual(doc["metadata"]["labels"]["app.kubernetes.io/managed-by"], "thaw")
        crd = self.api.ok("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                 "cachedimages.thaw.dev")
        self.assertEqual([(r["kind"], r["name"], r["uid"])
                          for r in doc["metadata"]["ownerReferences"]],
                         [("CustomResourceDefinition", "cachedimages.thaw.dev",
                           crd["metadata"]["uid"])])
        user, pw = self.creds("nsp-a")
        self.assertEqual(user, "nsp-a")
        st, c = self.token(PRIV_SCOPE, user, pw)
        self.assertEqual(st, 200)
        self.assertEqual(c["sub"], "nsp-a")
        self.assertEqual(c["access"], [{"type": "repository",
                                        "name": "private/docker.io/team/model",
                                        "actions": ["pull"]}])
        # anonymous, and a wrong password: never private/
        self.assertEqual(self.token(PRIV_SCOPE)[1]["access"], [])
        wrong = pw[:-1] + ("A" if pw[-1] != "A" else "B")
        self.assertEqual(self.token(PRIV_SCOPE, user, wrong)[0], 401)
        self.assertEqual(self.token(PRIV_SCOPE, "nsp-b", pw)[0], 401)  # nsp-a's password

    def test_2_others_get_none(self):
        self.wait(lambda: self.secret("nsp-a") is not None, "no thaw-pull in nsp-a")
        time.sleep(2)  # the leader has looked at every namespace by now
        self.assertIsNone(self.secret("nsp-b"))
        self.assertIsNone(self.secret("nsp-out"))
        self.assertIsNone(self.secret(stack.SYSTEM_NS))
        doc = self.secret("nsp-foreign")
        self.assertEqual(doc["metadata"]["resourceVersion"],
                         self.foreign["metadata"]["resourceVersion"])
        self.assertEqual(doc["data"], {"x": "eQ=="})
        self.assertIn("left alone", self.ctl.log_tail(200))

    def test_3_label_added_then_removed(self):
        self.api.ok("PATCH", "/api/v1/namespaces/nsp-b",
                    {"metadata": {"labels": {"thaw.dev/cache-private": "true"}}},
                    ctype="application/merge-patch+json")
        self.wait(lambda: self.secret("nsp-b") is not None, "no thaw-pull after labelling")
        user, pw = self.creds("nsp-b")
        self.assertEqual(self.token(PRIV_SCOPE, user, pw)[1]["access"][0]["actions"], ["pull"])
        self.api.ok("PATCH", "/api/v1/namespaces/nsp-b",
                    {"metadata": {"labels": {"thaw.dev/cache-private": None}}},
                    ctype="application/merge-patch+json")
        self.wait(lambda: self.secret("nsp-b") is None, "thaw-pull kept after the label went")
        # the same credentials, still valid as nsp-b's, no longer open private/
        st, c = self.token(PRIV_SCOPE, user, pw)
        self.assertEqual((st, c["access"]), (200, []))
        self.assertEqual(self.token(PUB_SCOPE, user, pw)[1]["access"][0]["actions"], ["pull"])

    def test_4_metrics_show_the_endpoint(self):
        text = self.ctl.metrics()
        self.assertGreater(stack.metric(text, "thaw_token_requests_total", {"code": "200"}), 0)


def main():
    global BINARY
    if len(sys.argv) < 2:
        sys.exit("usage: test_nspull_e2e.py THAW_CONTROLLER")
    BINARY = os.path.abspath(sys.argv.pop(1))
    if not os.environ.get("THAW_EMU_URL"):
        os.execv(os.path.join(HERE, "with-emulator.sh"),
                 [os.path.join(HERE, "with-emulator.sh"), sys.executable,
                  os.path.abspath(__file__), BINARY] + sys.argv[1:])
    unittest77.main()


if __name__ == "__main__":
    main()
