"""AdmissionChain against real TLS webhooks (test/webhook_stub.py), checked
against what kube-apiserver v1.26 recorded in test/fixtures/admission."""

import copy
import json
import os
import socket
import sys
import tempfile
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "kubeemu"), HERE]

import admission  # noqa: E402
import webhook_stub  # noqa: E402
from errors import ApiError  # noqa: E402

FIX = os.path.join(HERE, "fixtures")
ADM = os.path.join(FIX, "admission")
HOOK = "pod-image-rewriter.example.com"


def load(name):
    with open(os.path.join(ADM, name)) as f:
        return json.load(f)


def test_pod():
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "resp", "namespace": "oscar-svc", "labels": {"app": "resp"}},
            "spec": {"containers": [{"name": "oscar-container", "image": "grycap/imagemagick"}]}}


def attrs_for(obj, op="CREATE", old=None, dry_run=False, namespace="oscar-svc",
              resource="pods", kind="Pod", subresource=""):
    return {"operation": op, "group": "", "version": "v1", "resource": resource,
            "subresource": subresource, "kind": {"group": "", "version": "v1", "kind": kind},
            "namespace": namespace, "name": (obj or old or {}).get("metadata", {}).get("name", ""),
            "object": obj, "old_object": old, "dry_run": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
            "user_info": {"username": "lab-admin", "uid": "lab-admin-uid",
                          "groups": ["system:masters", "system:authenticated"]}}


def config(name, url, ca, **hook):
    wh = {"name": hook.pop("hook_name", HOOK), "admissionReviewVersions": ["v1"],
          "sideEffects": "NoneOnDryRun", "clientConfig": {"url": url, "caBundle": ca},
          "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                     "resources": ["pods", "pods/ephemeralcontainers"], "scope": "Namespaced"}]}
    wh.update(hook)
    return {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration", "metadata": {"name": name}, "webhooks": [wh]}


NAMESPACES = {"oscar-svc": {"metadata": {"name": "oscar-svc", "labels": {"team": "oscar"}}},
              "opted-out": {"metadata": {"name": "opted-out",
                                         "labels": {"thaw.dev/caching": "disabled"}}}}


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.tmp.cleanup)
        cls.certs = webhook_stub.make_certs(cls.tmp.name)
        cls.other = webhook_stub.make_certs(cls.tmp.name, prefix="other-")
        cls.stub = webhook_stub.WebhookStub(cls.certs)
        cls.addClassCleanup(cls.stub.stop)

    def setUp(self):
        self.stub.calls.clear()
        self.stub.reply = webhook_stub.allow

    def chain(self, *cfgs):
        return admission.AdmissionChain(lambda: list(cfgs), NAMESPACES.get)


class ResponsesFixture(Base):
    """Every case of responses.json, under the policy it was recorded with."""

    def run_case(self, case):
        timeout = case["timeoutSeconds"]
        calls = case["webhook_calls"]
        url, ca = self.stub.url, self.certs["ca_bundle"]
        if not calls:  # case j: a port where nothing listens
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            url = "https://127.0.0.1:%d/mutate" % s.getsockname()[1]
            s.close()
        else:
            sent, status = calls[0]["reply_body_sent"], calls[0]["reply_http_status"]
            recorded_uid = (sent.get("response") or {}).get("uid")

            def reply(review):
                body = copy.deepcopy(sent)
                if case["case"] != "b" and "response" in body:
                    body["response"]["uid"] = review["request"]["uid"]
                return status, body, (timeout + 1.5 if case["case"] == "h" else 0)
            self.stub.reply = reply
        cfg = config("pod-image-rewriter", url, ca, failurePolicy=case["failurePolicy"],
                     timeoutSeconds=timeout)
        want = case["apiserver_response"]
        try:
            obj, warnings = self.chain(cfg).admit(attrs_for(test_pod()))
        except ApiError as e:
            self.assertNotEqual(want["status"], 201, "unexpected error: %s" % e.message)
            self.assertEqual(e.code, want["status"])
            body = json.dumps(want["body"])
            if calls:
                self.assertEqual(len(self.stub.calls), 1)
                self.assertEqual(self.stub.calls[0]["requestline"], calls[0]["requestline"])
                body = body.replace("127.0.0.1:9444", "127.0.0.1:%d" % self.stub.port)
                # the apiserver's own request uid appears in case b's message
                expected_uid = self.stub.calls[0]["body"]["request"]["uid"]
                for m in json.loads(body).get("message", "").split('"'):
                    if len(m) == 36 and m.count("-") == 4 and m != recorded_uid:
                        body = body.replace(m, expected_uid)
            else:
                body = body.replace("127.0.0.1:9445", url.split("/")[2])
            self.assertEqual(e.status(), json.loads(body))
            return
        self.assertEqual(want["status"], 201, "admitted, but the apiserver refused")
        pod = want["created_pod"]
        self.assertEqual(obj["spec"]["containers"][0]["image"], pod["image"])
        self.assertEqual(obj["metadata"].get("annotations"), pod["annotations"])
        self.assertEqual(warnings, [])

    def test_all_cases(self):
        cases = load("responses.json")["cases"]
        self.assertEqual(len(cases), 28)  # 14 cases x 2 policies
        for case in cases:
            with self.subTest(case=case["case"], policy=case["failurePolicy"]):
                self.stub.calls.clear()
                self.run_case(case)


class RequestShape(Base):
    """The AdmissionReview request and headers are those the apiserver sent."""

    def check_fixture(self, name, **kw):
        rec = load(name)["request"]
        a = attrs_for(rec["object"], op=rec["operation"], old=rec["oldObject"],
                      dry_run=rec["dryRun"], namespace=rec.get("namespace", ""),
                      subresource=rec.get("subResource", ""))
        a["name"] = rec.get("name", "")
        a["options"], a["user_info"] = rec["options"], rec["userInfo"]
        self.chain(config("c", self.stub.url, self.certs["ca_bundle"])).admit(a)
        self.assertEqual(len(self.stub.calls), 1)
        got = self.stub.calls[0]["body"]
        self.assertEqual(got["request"].pop("uid").count("-"), 4)
        want = load(name)
        want["request"].pop("uid")
        self.assertEqual(json.dumps(got), json.dumps(want))  # key order too
        return self.stub.calls[0]

    def test_fixtures(self):
        for name in ("oscar-job-pod.json", "oscar-job-pod-generatename.json",
                     "dryrun-create.json", "ephemeral-update.json", "pod-update-label.json"):
            with self.subTest(name):
                self.stub.calls.clear()
                call = self.check_fixture(name)
        want = load("request-line-and-headers.json")["requests"][0]
        self.assertEqual(call["requestline"], want["requestLine"])
        got = [(k, v) for k, v in call["headers"]]
        self.assertEqual([k for k, _ in got], list(want["headers"]))
        for k in ("User-Agent", "Accept", "Content-Type", "Accept-Encoding"):
            self.assertEqual(dict(got)[k], want["headers"][k])
        self.assertEqual(dict(got)["Host"], "127.0.0.1:%d" % self.stub.port)

    def test_generatename_has_no_name(self):
        call = self.check_fixture("oscar-job-pod-generatename.json")
        self.assertNotIn("name", call["body"]["request"])

    def test_default_config_matches_stored(self):
        stored = load("mutatingwebhookconfiguration.json")
        applied = json.loads(stored["metadata"]["annotations"][
            "kubectl.kubernetes.io/last-applied-configuration"])
        out = admission.default_config(applied)
        self.assertIs(out, applied)
        self.assertEqual(json.dumps(out["webhooks"]), json.dumps(stored["webhooks"]))
        bare = {"webhooks": [{"name": "x", "rules": [{"operations": ["*"]}],
                              "clientConfig": {"service": {"namespace": "n", "name": "s"}}}]}
        wh = admission.default_config(bare)["webhooks"][0]
        self.assertEqual(wh["rules"][0]["scope"], "*")
        self.assertEqual(wh["clientConfig"]["service"]["port"], 443)
        self.assertEqual((wh["failurePolicy"], wh["timeoutSeconds"]), ("Fail", 10))


class Matching(Base):
    def calls_for(self, cfg, a):
        self.stub.calls.clear()
        self.chain(cfg).admit(a)
        return len(self.stub.calls)

    def test_rules(self):
        cfg = config("c", self.stub.url, self.certs["ca_bundle"])
        self.assertEqual(self.calls_for(cfg, attrs_for(test_pod())), 1)
        self.assertEqual(self.calls_for(cfg, attrs_for(None, op="DELETE", old=test_pod())), 0)
        eph = attrs_for(test_pod(), op="UPDATE", old=test_pod(), subresource="ephemeralcontainers")
        self.assertEqual(self.calls_for(cfg, eph), 1)
        status = attrs_for(test_pod(), op="UPDATE", old=test_pod(), subresource="status")
        self.assertEqual(self.calls_for(cfg, status), 0)
        cfg["webhooks"][0]["rules"][0]["resources"] = ["*/*"]
        self.assertEqual(self.calls_for(cfg, status), 1)
        cfg["webhooks"][0]["rules"][0]["resources"] = ["*"]
        self.assertEqual(self.calls_for(cfg, status), 0)

    def test_rule_scope(self):
        ns_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
        a = attrs_for(ns_obj, resource="namespaces", kind="Namespace", namespace="")
        rule = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"],
                "resources": ["namespaces"]}
        for scope, want in (("Namespaced", False), ("Cluster", True), ("*", True)):
            self.assertEqual(admission.rule_matches(dict(rule, scope=scope), a), want, scope)
        pod_rule = dict(rule, resources=["pods"])
        for scope, want in (("Namespaced", True), ("Cluster", False)):
            self.assertEqual(admission.rule_matches(dict(pod_rule, scope=scope),
                                                    attrs_for(test_pod())), want, scope)

    def test_namespace_selector(self):
        sel = {"matchExpressions": [{"key": "thaw.dev/caching", "operator": "NotIn",
                                     "values": ["disabled"]}]}
        cfg = config("c", self.stub.url, self.certs["ca_bundle"], namespaceSelector=sel)
        self.assertEqual(self.calls_for(cfg, attrs_for(test_pod())), 1)
        self.assertEqual(self.calls_for(cfg, attrs_for(test_pod(), namespace="opted-out")), 0)
        cfg["webhooks"][0]["namespaceSelector"] = {"matchLabels": {"team": "oscar"}}
        self.assertEqual(self.calls_for(cfg, attrs_for(test_pod())), 1)
        with self.assertRaises(ApiError) as cm:
            self.chain(cfg).admit(attrs_for(test_pod(), namespace="missing"))
        self.assertEqual((cm.exception.code, cm.exception.reason), (404, "NotFound"))
        self.assertEqual(cm.exception.message, 'namespaces "missing" not found')

    def test_namespace_selector_on_namespace_object(self):
        sel = {"matchExpressions": [{"key": "thaw.dev/caching", "operator": "DoesNotExist"}]}
        cfg = config("c", self.stub.url, self.certs["ca_bundle"], namespaceSelector=sel)
        cfg["webhooks"][0]["rules"][0].update(resources=["namespaces"], scope="*")
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "new"}}
        a = attrs_for(ns, resource="namespaces", kind="Namespace", namespace="")
        self.assertEqual(self.calls_for(cfg, a), 1)  # labels from the object itself
        ns["metadata"]["labels"] = {"thaw.dev/caching": "disabled"}
        self.assertEqual(self.calls_for(cfg, a), 0)

    def test_object_selector(self):
        sel = {"matchLabels": {"app": "resp"},
               "matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
        cfg = config("c", self.stub.url, self.certs["ca_bundle"], objectSelector=sel)
        self.assertEqual(self.calls_for(cfg, attrs_for(test_pod())), 1)
        other = test_pod()
        other["metadata"]["labels"] = {"app": "other"}
        self.assertEqual(self.calls_for(cfg, attrs_for(other)), 0)
        # UPDATE: a match on oldObject is enough
        self.assertEqual(self.calls_for(cfg, attrs_for(other, op="UPDATE", old=test_pod())), 1)
        skip = test_pod()
        skip["metadata"]["labels"]["skip"] = "1"
        self.assertEqual(self.calls_for(cfg, attrs_for(skip)), 0)

    def test_selector_semantics(self):
        m = admission.selector_matches
        self.assertTrue(m({}, {}))
        self.assertTrue(m({"matchExpressions": [{"key": "a", "operator": "NotIn",
                                                 "values": ["x"]}]}, {}))
        self.assertFalse(m({"matchExpressions": [{"key": "a", "operator": "In",
                                                  "values": ["x"]}]}, {}))
        self.assertTrue(m({"matchExpressions": [{"key": "a", "operator": "In",
                                                 "values": ["x", "y"]}]}, {"a": "y"}))
        self.assertTrue(m({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}))
        with self.assertRaises(ValueError):
            m({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, {})


class Policies(Base):
    def test_dry_run_side_effects(self):
        for se in ("None", "NoneOnDryRun"):
            self.stub.calls.clear()
            cfg = config("c", self.stub.url, self.certs["ca_bundle"], sideEffects=se)
            self.chain(cfg).admit(attrs_for(test_pod(), dry_run=True))
            self.assertEqual(len(self.stub.calls), 1)
            self.assertIs(self.stub.calls[0]["body"]["request"]["dryRun"], True)
        for se in ("Some", "Unknown"):
            for policy in ("Fail", "Ignore"):
                self.stub.calls.clear()
                cfg = config("c", self.stub.url, self.certs["ca_bundle"], sideEffects=se,
                             failurePolicy=policy)
                with self.assertRaises(ApiError) as cm:
                    self.chain(cfg).admit(attrs_for(test_pod(), dry_run=True))
                self.assertEqual(cm.exception.status(), {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'admission webhook "%s" does not support dry run' % HOOK,
                    "reason": "BadRequest", "code": 400})
                self.assertEqual(self.stub.calls, [])
        # not a dry run: Some is called normally
        cfg = config("c", self.stub.url, self.certs["ca_bundle"], sideEffects="Some")
        self.chain(cfg).admit(attrs_for(test_pod()))
        self.assertEqual(len(self.stub.calls), 1)

    def test_wrong_ca(self):
        self.stub.reply = lambda rv: webhook_stub.allow(
            rv, [{"op": "replace", "path": "/spec/containers/0/image", "value": "changed"}])
        cfg = config("c", self.stub.url, self.other["ca_bundle"])
        with self.assertRaises(ApiError) as cm:
            self.chain(cfg).admit(attrs_for(test_pod()))
        self.assertEqual((cm.exception.code, cm.exception.reason), (500, "InternalError"))
        self.assertEqual(cm.exception.message,
                         'Internal error occurred: failed calling webhook "%s": failed to call '
                         'webhook: Post "%s?timeout=10s": x509: certificate signed by unknown '
                         'authority' % (HOOK, self.stub.url))
        cfg["webhooks"][0]["failurePolicy"] = "Ignore"
        obj, _ = self.chain(cfg).admit(attrs_for(test_pod()))
        self.assertEqual(obj, test_pod())
        cfg["webhooks"][0]["clientConfig"]["caBundle"] = self.certs["ca_bundle"]
        obj, _ = self.chain(cfg).admit(attrs_for(test_pod()))
        self.assertEqual(obj["spec"]["containers"][0]["image"], "changed")
        self.assertEqual(len(self.stub.calls), 1)  # the wrong-CA handshakes never got through

    def test_warnings_and_denial(self):
        self.stub.reply = lambda rv: webhook_stub.allow(rv, warnings=["w1", "w2"])
        cfg = config("c", self.stub.url, self.certs["ca_bundle"])
        self.assertEqual(self.chain(cfg).admit(attrs_for(test_pod()))[1], ["w1", "w2"])
        self.stub.reply = lambda rv: webhook_stub.allow(
            rv, allowed=False, warnings=["careful"], status={"reason": "NoReason"})
        with self.assertRaises(ApiError) as cm:
            self.chain(cfg).admit(attrs_for(test_pod()))
        self.assertEqual(cm.exception.message,
                         'admission webhook "%s" denied the request: NoReason' % HOOK)
        self.assertEqual(cm.exception.warnings, ["careful"])
        self.assertEqual(cm.exception.headers["Warning"], '299 - "careful"')

    def test_service_reference(self):
        certs = webhook_stub.make_certs(self.tmp.name, sans=("DNS:hook.thaw-system.svc",),
                                        prefix="svc-")
        with webhook_stub.WebhookStub(certs) as hook:
            cfg = config("c", None, certs["ca_bundle"])
            cfg["webhooks"][0]["clientConfig"] = {
                "caBundle": certs["ca_bundle"],
                "service": {"namespace": "thaw-system", "name": "hook", "path": "/mutate"}}
            key = ("thaw-system", "hook", 443)
            admission.SERVICE_ADDRESSES[key] = "127.0.0.1:%d" % hook.port
            try:
                self.chain(cfg).admit(attrs_for(test_pod()))
            finally:
                del admission.SERVICE_ADDRESSES[key]
            self.assertEqual(dict(hook.calls[0]["headers"])["Host"], "hook.thaw-system.svc:443")
            with self.assertRaises(ApiError) as cm:
                self.chain(cfg).admit(attrs_for(test_pod()))
            self.assertIn('Post "https://hook.thaw-system.svc:443/mutate?timeout=10s": '
                          'service "hook" not found', cm.exception.message)


class Reinvocation(Base):
    """IfNeeded webhooks run again once when a later webhook changed the object."""

    def hook(self, cfg_name, mutate, policy):
        stub = webhook_stub.WebhookStub(self.certs, mutate)
        self.addCleanup(stub.stop)
        return stub, config(cfg_name, stub.url, self.certs["ca_bundle"],
                            reinvocationPolicy=policy, hook_name=cfg_name + ".example.com")

    @staticmethod
    def counter(field):
        """A webhook that increments annotation `field` (always a change)."""
        def mutate(review):
            ann = review["request"]["object"]["metadata"].get("annotations") or {}
            n = int(ann.get(field, "0")) + 1
            return webhook_stub.allow(review, [{"op": "add", "path": "/metadata/annotations",
                                                "value": dict(ann, **{field: str(n)})}])
        return mutate

    def test_earlier_ifneeded_runs_again_once(self):
        a, cfg_a = self.hook("a-first", self.counter("a"), "IfNeeded")
        b, cfg_b = self.hook("b-second", self.counter("b"), "Never")
        obj, _ = self.chain(cfg_b, cfg_a).admit(attrs_for(test_pod()))  # sorted by name
        self.assertEqual((len(a.calls), len(b.calls)), (2, 1))
        self.assertEqual(obj["metadata"]["annotations"], {"a": "2", "b": "1"})
        # the reinvocation sees b's change
        self.assertEqual(a.calls[1]["body"]["request"]["object"]["metadata"]["annotations"],
                         {"a": "1", "b": "1"})

    def test_no_reinvocation_without_later_change(self):
        a, cfg_a = self.hook("a-first", self.counter("a"), "IfNeeded")
        b, cfg_b = self.hook("b-second", webhook_stub.allow, "IfNeeded")
        self.chain(cfg_a, cfg_b).admit(attrs_for(test_pod()))
        self.assertEqual((len(a.calls), len(b.calls)), (1, 1))

    def test_never_policy_not_reinvoked(self):
        a, cfg_a = self.hook("a-first", self.counter("a"), "Never")
        b, cfg_b = self.hook("b-second", self.counter("b"), "Never")
        self.chain(cfg_a, cfg_b).admit(attrs_for(test_pod()))
        self.assertEqual((len(a.calls), len(b.calls)), (1, 1))


if __name__ == "__main__":
    unittest77.main()
