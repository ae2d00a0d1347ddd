#!/usr/bin/env python3
"""kubeemu's RBAC authorizer (test/kubeemu/rbac.py) over HTTP: Roles,
ClusterRoles and their bindings are ordinary stored objects, and every
request of a non-master user is allowed or denied as the apiserver's RBAC
authorizer would, with its exact 403 Status. Starts its own emulator on a
free port (stopped by PID)."""

import os
import sys
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "kubeemu"))
from testclient import Emulator  # noqa: E402

RBAC = "/apis/rbac.authorization.k8s.io/v1"
SA = "system:serviceaccount:apps:robot"
CI = "/apis/thaw.dev/v1alpha1/cachedimages"
CRD = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
       "metadata": {"name": "cachedimages.thaw.dev"},
       "spec": {"group": "thaw.dev", "scope": "Cluster",
                "names": {"plural": "cachedimages", "singular": "cachedimage",
                          "kind": "CachedImage", "listKind": "CachedImageList"},
                "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                              "subresources": {"status": {}},
                              "schema": {"openAPIV3Schema": {
                                  "type": "object",
                                  "x-kubernetes-preserve-unknown-fields": True}}}]}}


def role(kind, name, rules, ns=None):
    md = {"name": name}
    if ns:
        md["namespace"] = ns
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md,
            "rules": rules}


def binding(kind, name, ref_kind, ref, subjects, ns=None):
    md = {"name": name}
    if ns:
        md["namespace"] = ns
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": md,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": ref_kind,
                        "name": ref}, "subjects": subjects}


SA_SUBJECT = [{"kind": "ServiceAccount", "name": "robot", "namespace": "apps"}]


class RbacEmulator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator()
        cls.addClassCleanup(cls.emu.stop)
        cls.tok = {}
        with open(cls.emu.tokens_file, "a") as f:
            for who in (SA, "alice", "bob", "system:serviceaccount:other:robot"):
                cls.tok[who] = "t-" + os.urandom(8).hex()
                f.write("%s %s\n" % (cls.tok[who], who))
        for ns in ("apps", "other", "thaw-system"):
            cls.admin("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
        cls.admin("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
        for _ in range(50):
            if cls.emu.request("GET", CI)[0] == 200:
                break
            __import__("time").sleep(0.1)
        # pods read + pods/status update in apps (a Role); leases by name
        cls.admin("POST", RBAC + "/namespaces/apps/roles", role("Role", "pods", [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "resourceNames": ["mine"], "verbs": ["get", "update", "list", "watch",
                                                  "create"]}], "apps"))
        cls.admin("POST", RBAC + "/namespaces/apps/rolebindings",
                  binding("RoleBinding", "pods", "Role", "pods", SA_SUBJECT, "apps"))
        # a ClusterRole bound in one namespace only (RoleBinding) ...
        cls.admin("POST", RBAC + "/clusterroles", role("ClusterRole", "secret-reader", [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]))
        cls.admin("POST", RBAC + "/namespaces/other/rolebindings", binding(
            "RoleBinding", "secrets", "ClusterRole", "secret-reader",
            [{"kind": "User", "name": "alice"}], "other"))
        # ... and one bound cluster-wide to a group, with */status
        cls.admin("POST", RBAC + "/clusterroles", role("ClusterRole", "ci-status", [
            {"apiGroups": ["thaw.dev"], "resources": ["*/status"], "verbs": ["patch"]},
            {"apiGroups": ["*"], "resources": ["namespaces"], "verbs": ["list"]},
            {"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]))
        cls.admin("POST", RBAC + "/clusterrolebindings", binding(
            "ClusterRoleBinding", "ci-status", "ClusterRole", "ci-status",
            [{"kind": "Group", "name": "system:serviceaccounts:apps"}]))
        # a binding to a role that does not exist grants nothing
        cls.admin("POST", RBAC + "/clusterrolebindings", binding(
            "ClusterRoleBinding", "ghost", "ClusterRole", "ghost",
            [{"kind": "User", "name": "bob"}]))

    @classmethod
    def admin(cls, method, path, body=None):
        st, doc, _ = cls.emu.request(method, path, body)
        assert st in (200, 201), (method, path, st, doc)
        return doc

    def as_(self, who, method, path, body=None):
        return self.emu.request(method, path, body, token=self.tok[who])

    def allowed(self, who, method, path, body=None):
        st, doc, _ = self.as_(who, method, path, body)
        self.assertNotEqual(st, 403, (who, method, path, doc))
        return st, doc

    def denied(self, who, method, path, body=None):
        st, doc, _ = self.as_(who, method, path, body)
        self.assertEqual(st, 403, (who, method, path, doc))
        return doc

    def test_kinds_are_stored_resources(self):
        items = self.admin("GET", RBAC + "/clusterroles")["items"]
        self.assertIn("secret-reader", [o["metadata"]["name"] for o in items])
        got = self.admin("GET", RBAC + "/namespaces/apps/rolebindings/pods")
        self.assertEqual(got["roleRef"]["name"], "pods")
        st, doc, _ = self.emu.request("GET", "/apis/rbac.authorization.k8s.io/v1")
        self.assertEqual(st, 200)
        self.assertEqual({r["name"] for r in doc["resources"]},
                         {"roles", "clusterroles", "rolebindings", "clusterrolebindings"})
        # validation: no verbs; a roleRef cannot change
        st, doc, _ = self.emu.request("POST", RBAC + "/clusterroles", role(
            "ClusterRole", "bad", [{"apiGroups": [""], "resources": ["pods"]}]))
        self.assertEqual(st, 422, doc)
        b = self.admin("GET", RBAC + "/namespaces/apps/rolebindings/pods")
        b["roleRef"]["name"] = "other"
        st, doc, _ = self.emu.request("PUT", RBAC + "/namespaces/apps/rolebindings/pods", b)
        self.assertEqual(st, 422, doc)

    def test_namespaced_role(self):
        self.allowed(SA, "GET", "/api/v1/namespaces/apps/pods")
        self.allowed(SA, "GET", "/api/v1/namespaces/apps/pods?watch=1&timeoutSeconds=1")
        self.allowed(SA, "GET", "/api/v1/namespaces/apps/pods/nope")          # 404, not 403
        self.denied(SA, "GET", "/api/v1/namespaces/other/pods")
        self.denied(SA, "GET", "/api/v1/pods")                                # all namespaces
        self.denied(SA, "DELETE", "/api/v1/namespaces/apps/pods/p")
        # the same name in another namespace is another ServiceAccount
        self.denied("system:serviceaccount:other:robot", "GET", "/api/v1/namespaces/apps/pods")

    def test_subresources(self):
        self.allowed(SA, "PUT", "/api/v1/namespaces/apps/pods/p/status", {})
        self.denied(SA, "PATCH", "/api/v1/namespaces/apps/pods/p/status", {})
        self.denied(SA, "PUT", "/api/v1/namespaces/apps/pods/p", {})
        # */status through the group binding; the main resource is not granted
        self.allowed(SA, "PATCH", CI + "/x/status", {})
        self.denied(SA, "PATCH", CI + "/x", {})

    def test_resource_names(self):
        lease = "/apis/coordination.k8s.io/v1/namespaces/apps/leases"
        self.allowed(SA, "GET", lease + "/mine")
        self.denied(SA, "GET", lease + "/theirs")
        # create, list and watch carry no name: resourceNames never match ...
        self.denied(SA, "POST", lease, {"metadata": {"name": "mine"}})
        self.denied(SA, "GET", lease)
        self.denied(SA, "GET", lease + "?watch=true")
        # ... unless a fieldSelector metadata.name names it
        self.allowed(SA, "GET", lease + "?fieldSelector=metadata.name%3Dmine")
        self.allowed(SA, "GET", lease + "?watch=1&timeoutSeconds=1"
                     "&fieldSelector=metadata.name%3Dmine")
        self.denied(SA, "GET", lease + "?fieldSelector=metadata.name%3Dtheirs")

    def test_cluster_role_in_a_rolebinding_is_namespaced(self):
        self.allowed("alice", "GET", "/api/v1/namespaces/other/secrets/s")
        self.denied("alice", "GET", "/api/v1/namespaces/apps/secrets/s")
        self.denied("alice", "GET", "/api/v1/namespaces/other/secrets")

    def test_groups_and_wildcards(self):
        self.allowed(SA, "GET", "/api/v1/namespaces")                 # apiGroups "*"
        self.denied(SA, "GET", "/api/v1/namespaces/apps")            # get not granted
        self.denied("alice", "GET", "/api/v1/namespaces")

    def test_non_resource_urls(self):
        for who in (SA, "alice"):
            for path in ("/api", "/api/v1", "/apis", "/apis/thaw.dev/v1alpha1", "/version",
                         "/healthz", "/readyz", "/livez"):
                self.allowed(who, "GET", path)
        self.allowed(SA, "GET", "/metrics")
        self.allowed(SA, "GET", "/debug/pprof")
        doc = self.denied("alice", "GET", "/metrics")
        self.assertEqual(doc, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "reason": "Forbidden", "details": {},
                               "message": 'forbidden: User "alice" cannot get path "/metrics"',
                               "code": 403})
        self.allowed("alice", "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                     {})

    def test_masters_may_do_anything(self):
        self.assertEqual(self.emu.request("GET", "/api/v1/namespaces/other/secrets")[0], 200)

    def test_forbidden_bodies(self):
        """The apiserver's words, byte for byte (responsewriters.Forbidden)."""
        doc = self.denied(SA, "GET", "/api/v1/namespaces/other/pods")
        self.assertEqual(doc, {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": 'pods is forbidden: User "%s" cannot list resource "pods" in API group '
                       '"" in the namespace "other"' % SA,
            "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
        doc = self.denied(SA, "PATCH", "/api/v1/namespaces/apps/pods/p/status", {})
        self.assertEqual(doc["message"],
                         'pods "p" is forbidden: User "%s" cannot patch resource "pods/status" '
                         'in API group "" in the namespace "apps"' % SA)
        self.assertEqual(doc["details"], {"name": "p", "kind": "pods"})
        doc = self.denied(SA, "POST", CI, {"metadata": {"name": "x"}})
        self.assertEqual(doc["message"],
                         'cachedimages.thaw.dev is forbidden: User "%s" cannot create resource '
                         '"cachedimages" in API group "thaw.dev" at the cluster scope' % SA)
        self.assertEqual(doc["details"], {"group": "thaw.dev", "kind": "cachedimages"})
        doc = self.denied("bob", "GET", CI + "/x")
        self.assertEqual(doc["message"],
                         'cachedimages.thaw.dev "x" is forbidden: User "bob" cannot get resource '
                         '"cachedimages" in API group "thaw.dev" at the cluster scope: RBAC: '
                         'clusterrole.rbac.authorization.k8s.io "ghost" not found')
        self.assertEqual(doc["details"], {"name": "x", "group": "thaw.dev",
                                          "kind": "cachedimages"})

    def test_audit_records_the_decision(self):
        self.emu.control("audit", method="DELETE")
        self.denied("alice", "GET", "/api/v1/namespaces/apps/pods")
        self.allowed("alice", "GET", "/api/v1/namespaces/other/secrets/s")
        items = self.emu.control("audit?user=alice", method="GET")["items"]
        self.assertEqual([(e["verb"], e["decision"], e["code"]) for e in items],
                         [("list", "forbid", 403), ("get", "allow", 404)])

    def test_grant_takes_effect_at_once(self):
        path = "/api/v1/namespaces/apps/configmaps"
        self.denied("bob", "GET", path)
        self.admin("POST", RBAC + "/namespaces/apps/roles", role("Role", "cm", [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}], "apps"))
        self.admin("POST", RBAC + "/namespaces/apps/rolebindings", binding(
            "RoleBinding", "cm", "Role", "cm", [{"kind": "User", "name": "bob"}], "apps"))
        self.allowed("bob", "GET", path)
        self.admin("DELETE", RBAC + "/namespaces/apps/rolebindings/cm")
        self.denied("bob", "GET", path)


if __name__ == "__main__":
    unittest77.main()
