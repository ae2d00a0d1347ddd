#!/usr/bin/env python3
"""Behaviour of kubeemu that the captured fixtures do not cover: auth,
generateName, pod defaults and deletion, selectors on watches, consistent
pagination under concurrent writes, dropped/injected watch streams, the
fail/latency/seed/compact control endpoints."""

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "kubeemu"))
from testclient import Emulator, read_events  # noqa: E402

POD = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def pod(name=None, labels=None, image="busybox", **spec):
    p = json.loads(json.dumps(POD))
    if name:
        p["metadata"]["name"] = name
    if labels:
        p["metadata"]["labels"] = labels
    p["spec"]["containers"][0]["image"] = image
    p["spec"].update(spec)
    return p


class EmulatorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = Emulator(bookmark_interval=60, client_ca=True)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()

    def setUp(self):
        self.emu.control("fail", {"count": 0})
        self.emu.control("latency", {"ms": 0})

    def req(self, *a, **kw):
        return self.emu.request(*a, **kw)

    def ns(self, name):
        st, doc, _ = self.req("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        self.assertEqual(st, 201, doc)
        return name

    def rv(self):
        return self.emu.control("stats", method="GET")["resourceVersion"]

    # ---- auth

    def test_auth_token_required_and_rotated(self):
        st, doc, _ = self.req("GET", "/api/v1/pods", token="")
        self.assertEqual((st, doc["reason"], doc["code"]), (401, "Unauthorized", 401))
        st, _, _ = self.req("GET", "/api/v1/pods", token="wrong")
        self.assertEqual(st, 401)
        with open(self.emu.tokens_file, "w") as f:
            f.write("rotated\n")
        try:
            self.assertEqual(self.req("GET", "/api/v1/pods", token="rotated")[0], 200)
            self.assertEqual(self.req("GET", "/api/v1/pods")[0], 401)
        finally:
            with open(self.emu.tokens_file, "w") as f:
                f.write(self.emu.token + "\n")
        self.assertEqual(self.req("GET", "/api/v1/pods")[0], 200)

    def test_client_certificate_accepted(self):
        d = self.emu.dir
        run = lambda *a: subprocess.run(["openssl"] + list(a), cwd=d, check=True,  # noqa: E731
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=tester",
            "-keyout", "client.key", "-out", "client.csr")
        run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", "client.pem")
        ctx = ssl.create_default_context(cafile=self.emu.ca)
        ctx.load_cert_chain(os.path.join(d, "client.pem"), os.path.join(d, "client.key"))
        c = self.emu.conn(ctx=ctx)
        st, _, _ = self.req("GET", "/api/v1/namespaces", token="", conn=c)
        self.assertEqual(st, 200)

    # ---- create semantics

    def test_generate_name_and_defaults(self):
        ns = self.ns("gen")
        p = pod(image="grycap/imagemagick:1.2")
        del p["metadata"]["name"]
        p["metadata"]["generateName"] = "job-"
        names = set()
        for _ in range(2):
            st, doc, _ = self.req("POST", "/api/v1/namespaces/%s/pods" % ns, p)
            self.assertEqual(st, 201, doc)
            self.assertRegex(doc["metadata"]["name"], r"^job-[bcdfghjklmnpqrstvwxz2456789]{5}$")
            names.add(doc["metadata"]["name"])
            self.assertEqual(doc["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent")
            self.assertEqual(doc["status"]["phase"], "Pending")
            self.assertEqual(doc["spec"]["restartPolicy"], "Always")
            self.assertNotIn("generation", doc["metadata"])
        self.assertEqual(len(names), 2)
        st, doc, _ = self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("latest"))
        self.assertEqual(doc["spec"]["containers"][0]["imagePullPolicy"], "Always")

    def test_missing_namespace_404(self):
        st, doc, _ = self.req("POST", "/api/v1/namespaces/nope/pods", pod("x"))
        self.assertEqual(st, 404)
        self.assertEqual(doc["message"], 'namespaces "nope" not found')

    def test_dry_run_not_persisted(self):
        ns = self.ns("dry")
        st, doc, _ = self.req("POST", "/api/v1/namespaces/%s/pods?dryRun=All" % ns, pod("d"))
        self.assertEqual(st, 201)
        self.assertEqual(self.req("GET", "/api/v1/namespaces/%s/pods/d" % ns)[0], 404)

    def test_dockerconfigjson_requires_key(self):
        st, doc, _ = self.req("POST", "/api/v1/namespaces/default/secrets", {
            "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {"other": "e30="}})
        self.assertEqual(st, 422)
        self.assertEqual(doc["details"]["causes"][0]["field"], "data[.dockerconfigjson]")

    def test_ephemeral_containers_subresource(self):
        ns = self.ns("eph")
        self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("e", labels={"a": "1"}))
        st, doc, _ = self.req(
            "PATCH", "/api/v1/namespaces/%s/pods/e/ephemeralcontainers" % ns,
            {"metadata": {"labels": {"a": "2"}}, "spec": {"ephemeralContainers": [
                {"name": "dbg", "image": "busybox:1.36"}]}},
            ctype="application/strategic-merge-patch+json")
        self.assertEqual(st, 200, doc)
        self.assertEqual(doc["spec"]["ephemeralContainers"][0]["imagePullPolicy"], "IfNotPresent")
        self.assertEqual(doc["metadata"]["labels"], {"a": "1"})   # only ephemerals change

    # ---- delete semantics

    def test_pod_delete_graceful_and_immediate(self):
        ns = self.ns("del")
        self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("unbound"))
        st, doc, _ = self.req("DELETE", "/api/v1/namespaces/%s/pods/unbound" % ns)
        self.assertEqual((st, doc["kind"]), (200, "Pod"))
        self.assertEqual(self.req("GET", "/api/v1/namespaces/%s/pods/unbound" % ns)[0], 404)
        self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("bound", nodeName="n1"))
        st, doc, _ = self.req("DELETE", "/api/v1/namespaces/%s/pods/bound" % ns)
        self.assertEqual(st, 200)
        self.assertIn("deletionTimestamp", doc["metadata"])
        self.assertEqual(doc["metadata"]["deletionGracePeriodSeconds"], 30)
        self.assertEqual(self.req("GET", "/api/v1/namespaces/%s/pods/bound" % ns)[0], 200)
        st, doc, _ = self.req("DELETE", "/api/v1/namespaces/%s/pods/bound" % ns,
                              {"kind": "DeleteOptions", "apiVersion": "v1",
                               "gracePeriodSeconds": 0})
        self.assertEqual(st, 200)
        self.assertEqual(self.req("GET", "/api/v1/namespaces/%s/pods/bound" % ns)[0], 404)

    def test_namespace_delete_cascades(self):
        ns = self.ns("casc")
        for i in range(3):
            self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("p%d" % i))
        resp, conn = self.emu.watch("/api/v1/namespaces/%s/pods?watch=1&resourceVersion=%d"
                                    "&timeoutSeconds=2" % (ns, self.rv()))
        st, doc, _ = self.req("DELETE", "/api/v1/namespaces/" + ns)
        self.assertEqual((st, doc["kind"]), (200, "Namespace"))
        events = read_events(resp)
        conn.close()
        self.assertEqual([e["type"] for e in events], ["DELETED"] * 3)
        self.assertEqual(self.req("GET", "/api/v1/namespaces/%s/pods" % ns)[1]["items"], [])
        self.assertEqual(self.req("GET", "/api/v1/namespaces/" + ns)[0], 404)

    def test_crd_delete_removes_objects_and_endpoints(self):
        crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
               "metadata": {"name": "gizmos.test.io"},
               "spec": {"group": "test.io", "scope": "Namespaced",
                        "names": {"plural": "gizmos", "singular": "gizmo", "kind": "Gizmo"},
                        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                            "openAPIV3Schema": {"type": "object",
                                                "x-kubernetes-preserve-unknown-fields": True}}}]}}
        st, doc, _ = self.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        self.assertEqual(st, 201, doc)
        st, doc, _ = self.req("POST", "/apis/test.io/v1/namespaces/default/gizmos",
                              {"metadata": {"name": "g"}, "spec": {"x": 1}})
        self.assertEqual(st, 201, doc)
        self.assertEqual(self.req("GET", "/apis/test.io/v1")[0], 200)
        self.req("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.test.io")
        self.assertEqual(self.req("GET", "/apis/test.io/v1")[0], 404)
        self.assertEqual(self.req("GET", "/apis/test.io/v1/namespaces/default/gizmos")[0], 404)
        groups = [g["name"] for g in self.req("GET", "/apis")[1]["groups"]]
        self.assertNotIn("test.io", groups)

    # ---- watch

    def test_watch_selector_transitions(self):
        ns = self.ns("wsel")
        base = "/api/v1/namespaces/%s/pods" % ns
        resp, conn = self.emu.watch(base + "?watch=true&labelSelector=app%%3Da&resourceVersion=%d"
                                    "&timeoutSeconds=3" % self.rv())
        self.req("POST", base, pod("w", labels={"app": "a"}))
        self.req("POST", base, pod("other", labels={"app": "z"}))
        mp = "application/merge-patch+json"
        self.req("PATCH", base + "/w", {"metadata": {"labels": {"app": "b"}}}, ctype=mp)
        self.req("PATCH", base + "/w", {"metadata": {"labels": {"app": "a"}}}, ctype=mp)
        self.req("DELETE", base + "/w")
        events = read_events(resp)
        conn.close()
        self.assertEqual([e["type"] for e in events], ["ADDED", "DELETED", "ADDED", "DELETED"])
        self.assertTrue(all(e["object"]["metadata"]["name"] == "w" for e in events))
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        self.assertEqual(rvs, sorted(rvs))
        self.assertEqual(events[1]["object"]["metadata"]["labels"], {"app": "a"})

    def test_watch_from_zero_lists_then_streams(self):
        ns = self.ns("wzero")
        self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("a"))
        resp, conn = self.emu.watch("/api/v1/namespaces/%s/pods?watch=1&timeoutSeconds=1" % ns)
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        events = read_events(resp)
        conn.close()
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in events],
                         [("ADDED", "a")])

    def test_bookmark_before_deadline(self):
        resp, conn = self.emu.watch("/api/v1/pods?watch=1&resourceVersion=%d"
                                    "&allowWatchBookmarks=true&timeoutSeconds=3" % self.rv())
        t0 = time.time()
        events = read_events(resp)
        conn.close()
        self.assertEqual([e["type"] for e in events], ["BOOKMARK"])
        self.assertEqual(set(events[0]["object"]), {"kind", "apiVersion", "metadata"})
        self.assertEqual(set(events[0]["object"]["metadata"]), {"resourceVersion"})
        self.assertGreaterEqual(time.time() - t0, 2.5)

    def raw_watch(self, path):
        """The raw bytes of a watch response until the server closes."""
        sock = self.emu.ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.emu.port)),
                                        server_hostname="127.0.0.1")
        sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Connection: close\r\n\r\n" % (path, self.emu.token)).encode())
        return sock

    def read_all(self, sock):
        data = b""
        try:
            while True:
                b = sock.recv(65536)
                if not b:
                    break
                data += b
        except (ConnectionError, ssl.SSLError):
            pass
        sock.close()
        return data

    def test_dropped_watch_ends_without_final_chunk(self):
        sock = self.raw_watch("/api/v1/pods?watch=1&resourceVersion=%d" % self.rv())
        time.sleep(0.3)
        self.assertGreaterEqual(self.emu.control("drop-watches")["dropped"], 1)
        data = self.read_all(sock)
        self.assertIn(b"Transfer-Encoding: chunked", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"), data[-40:])
        # a normal end (timeout) does send the terminating chunk
        sock = self.raw_watch("/api/v1/pods?watch=1&resourceVersion=%d&timeoutSeconds=1" % self.rv())
        self.assertTrue(self.read_all(sock).endswith(b"0\r\n\r\n"))

    def test_watch_inject_raw(self):
        resp, conn = self.emu.watch("/api/v1/pods?watch=1&resourceVersion=%d" % self.rv())
        time.sleep(0.2)
        n = self.emu.control("watch-inject", {"raw": "{garbage\n", "resource": "pods",
                                              "close": True})["streams"]
        self.assertGreaterEqual(n, 1)
        self.assertEqual(resp.readline(), b"{garbage\n")
        conn.close()

    def watch_events(self, path):
        resp, conn = self.emu.watch(path)
        self.assertEqual(resp.status, 200)
        events = read_events(resp)
        conn.close()
        return events

    def watch_cache(self, **cfg):
        return self.emu.control("watch-cache", cfg)

    def restore_watch_cache(self):
        self.watch_cache(capacity=100, max=100 * 1024, freshSeconds=75)

    def test_compacted_rv_still_served_from_watch_cache(self):
        old = self.rv()
        name = self.ns("compact-%d" % old)
        self.emu.control("compact")
        events = self.watch_events("/api/v1/namespaces?watch=1&resourceVersion=%d"
                                   "&timeoutSeconds=1" % old)
        self.assertEqual([(e["type"], e["object"]["metadata"]["name"]) for e in events],
                         [("ADDED", name)])
        # etcd has forgotten it: an Exact list of that rv is 410
        st, doc, _ = self.req("GET", "/api/v1/namespaces?resourceVersion=%d"
                                     "&resourceVersionMatch=Exact" % old)
        self.assertEqual((st, doc["reason"]), (410, "Expired"))

    def test_restart_watch_cache_then_old_watch_gets_410(self):
        old = self.rv()
        self.ns("restart-%d" % old)
        self.emu.control("compact", {"restartWatchCache": True})
        now = self.rv()
        events = self.watch_events("/api/v1/namespaces?watch=1&resourceVersion=%d" % old)
        self.assertEqual(len(events), 1)
        self.assertEqual((events[0]["type"], events[0]["object"]["code"]), ("ERROR", 410))
        self.assertEqual(events[0]["object"]["message"],
                         "too old resource version: %d (%d)" % (old, now))
        # from the restart's rv on it is served again
        self.assertEqual(self.watch_events("/api/v1/namespaces?watch=1&resourceVersion=%d"
                                           "&timeoutSeconds=1" % now), [])

    def test_watch_410_once_outside_the_window(self):
        self.addCleanup(self.restore_watch_cache)
        self.watch_cache(capacity=5, max=5)
        base = "/api/v1/namespaces/default/configmaps"
        old = self.rv()
        for i in range(8):
            st, doc, _ = self.req("POST", base, {"metadata": {"name": "win-%d" % i}})
            self.assertEqual(st, 201, doc)
        wc = self.watch_cache()["resources"]["configmaps"]
        self.assertEqual((wc["capacity"], wc["size"]), (5, 5))
        # the oldest held event is win-3; the window starts just before it
        st, cm3, _ = self.req("GET", base + "/win-3")
        oldest = int(cm3["metadata"]["resourceVersion"]) - 1
        self.assertEqual(wc["oldest"], oldest)
        events = self.watch_events(base + "?watch=1&resourceVersion=%d" % old)
        self.assertEqual([e["type"] for e in events], ["ERROR"])
        self.assertEqual((events[0]["object"]["code"], events[0]["object"]["message"]),
                         (410, "too old resource version: %d (%d)" % (old, oldest)))
        events = self.watch_events(base + "?watch=1&timeoutSeconds=1&resourceVersion=%d"
                                   % oldest)
        self.assertEqual([e["object"]["metadata"]["name"] for e in events],
                         ["win-%d" % i for i in range(3, 8)])
        # the window is per resource: namespaces still serve `old`
        self.assertEqual(self.watch_events("/api/v1/namespaces?watch=1&timeoutSeconds=1"
                                           "&resourceVersion=%d" % old), [])

    def test_watch_cache_grows_under_load_and_shrinks_when_idle(self):
        self.addCleanup(self.restore_watch_cache)
        self.watch_cache(capacity=4, max=32, restart=True)   # start at 4
        base = "/api/v1/namespaces/default/secrets"
        old = self.rv()
        for i in range(40):
            self.assertEqual(self.req("POST", base, {"metadata": {"name": "grow-%d" % i}})[0],
                             201)
        wc = self.watch_cache()["resources"]["secrets"]
        self.assertEqual(wc["capacity"], 32)     # 4 → 8 → 16 → 32, capped
        self.assertGreaterEqual(wc["resizes"], 3)
        events = self.watch_events(base + "?watch=1&resourceVersion=%d" % old)
        self.assertEqual(events[0]["object"]["code"], 410)
        # events older than freshSeconds: the window halves back to the minimum
        self.watch_cache(freshSeconds=0)
        for i in range(8):
            self.req("DELETE", base + "/grow-%d" % i)
        self.assertEqual(self.watch_cache()["resources"]["secrets"]["capacity"], 4)

    # ---- lists

    def test_pagination_is_a_snapshot_under_concurrent_writes(self):
        out = self.emu.control("seed", {"resource": "pods", "namespace": "page", "count": 1000,
                                        "namePrefix": "s-"})
        self.assertEqual(out["created"], 1000)
        base = "/api/v1/namespaces/page/pods"
        st, first, _ = self.req("GET", base + "?limit=100")
        self.assertEqual(first["metadata"]["remainingItemCount"], 900)
        stop = threading.Event()

        def writer():
            i = 0
            while not stop.is_set():
                self.req("POST", base, pod("new-%d" % i))
                self.req("DELETE", base + "/s-%06d" % (999 - i))
                i += 1
        t = threading.Thread(target=writer)
        t.start()
        try:
            names = [p["metadata"]["name"] for p in first["items"]]
            cont = first["metadata"]["continue"]
            while cont:
                st, page, _ = self.req("GET", base + "?limit=100&continue=" + cont)
                self.assertEqual(st, 200, page)
                self.assertEqual(page["metadata"]["resourceVersion"],
                                 first["metadata"]["resourceVersion"])
                names += [p["metadata"]["name"] for p in page["items"]]
                cont = page["metadata"].get("continue")
        finally:
            stop.set()
            t.join()
        self.assertEqual(names, ["s-%06d" % i for i in range(1000)])
        st, now, _ = self.req("GET", base)
        self.assertNotEqual(len(now["items"]), 0)
        self.assertTrue(any(p["metadata"]["name"].startswith("new-") for p in now["items"]))

    def test_label_and_field_selectors(self):
        self.emu.control("seed", {"resource": "pods", "namespace": "sel", "count": 3,
                                  "namePrefix": "x-",
                                  "template": {"metadata": {"labels": {"tier": "gold"}}}})
        base = "/api/v1/namespaces/sel/pods"
        for q, n in (("labelSelector=tier%3Dgold", 3), ("labelSelector=tier+in+(silver)", 0),
                     ("labelSelector=!tier", 0), ("labelSelector=tier", 3),
                     ("fieldSelector=metadata.name%3Dx-000001", 1),
                     ("fieldSelector=status.phase%21%3DPending", 0)):
            st, doc, _ = self.req("GET", base + "?" + q)
            self.assertEqual((q, st, len(doc["items"])), (q, 200, n))
        st, doc, _ = self.req("GET", base + "?fieldSelector=spec.image%3Dx")
        self.assertEqual((st, doc["message"]), (400, "field label not supported: spec.image"))

    # ---- control

    def test_fail_injection(self):
        self.emu.control("fail", {"count": 2, "code": 429, "retryAfter": 3,
                                  "pathPrefix": "/api/v1/pods", "methods": ["GET"]})
        self.assertEqual(self.req("GET", "/api/v1/namespaces")[0], 200)   # not matching
        for _ in range(2):
            st, doc, r = self.req("GET", "/api/v1/pods")
            self.assertEqual((st, doc["reason"], doc["details"]["retryAfterSeconds"]),
                             (429, "TooManyRequests", 3))
            self.assertEqual(r.getheader("Retry-After"), "3")
        self.assertEqual(self.req("GET", "/api/v1/pods")[0], 200)
        self.emu.control("fail", {"count": 1, "code": 503})
        self.emu.control("stats", method="GET")        # control is never failed
        st, doc, _ = self.req("GET", "/api/v1/pods")
        self.assertEqual((st, doc["reason"]), (503, "ServiceUnavailable"))

    def test_latency(self):
        self.emu.control("latency", {"ms": 300})
        t0 = time.time()
        self.req("GET", "/api/v1/namespaces")
        self.assertGreaterEqual(time.time() - t0, 0.3)
        t0 = time.time()
        self.emu.control("stats", method="GET")
        self.assertLess(time.time() - t0, 0.3)
        self.emu.control("latency", {"ms": 0})
        t0 = time.time()
        self.req("GET", "/api/v1/namespaces")
        self.assertLess(time.time() - t0, 0.3)

    def test_stats_counts(self):
        self.emu.control("seed", {"resource": "pods", "namespace": "stats", "count": 5,
                                  "namePrefix": "s-"})
        st = self.emu.control("stats", method="GET")
        self.assertGreaterEqual(st["objects"]["pods"], 5)
        self.assertGreater(st["requests"], 0)
        self.assertIsInstance(st["resourceVersion"], int)

    def test_stale_update_conflict_and_noop_keeps_rv(self):
        ns = self.ns("upd")
        st, p, _ = self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("u"))
        st, same, _ = self.req("PUT", "/api/v1/namespaces/%s/pods/u" % ns, p)
        self.assertEqual((st, same["metadata"]["resourceVersion"]),
                         (200, p["metadata"]["resourceVersion"]))
        p2 = json.loads(json.dumps(p))
        p2["metadata"]["labels"] = {"x": "y"}
        st, upd, _ = self.req("PUT", "/api/v1/namespaces/%s/pods/u" % ns, p2)
        self.assertEqual(st, 200)
        self.assertNotEqual(upd["metadata"]["resourceVersion"], p["metadata"]["resourceVersion"])
        st, doc, _ = self.req("PUT", "/api/v1/namespaces/%s/pods/u" % ns, p2)
        self.assertEqual((st, doc["reason"]), (409, "Conflict"))
        self.assertTrue(re.match(r'^Operation cannot be fulfilled on pods "u"', doc["message"]))


    # ---- managedFields (managedfields.py)

    def fields(self, obj, manager, sub=None):
        for e in obj["metadata"].get("managedFields") or []:
            if e["manager"] == manager and e.get("subresource") == sub:
                self.assertEqual((e["operation"], e["fieldsType"]), ("Update", "FieldsV1"))
                self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
                return e["fieldsV1"]
        return None

    def test_managed_fields_of_a_pod(self):
        ns = self.ns("mf")
        base = "/api/v1/namespaces/%s/pods" % ns
        p = pod("m", labels={"app": "a"})
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
        p["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
        st, doc, _ = self.req("POST", base, p, headers={"User-Agent": "kubectl-create/v1.26.1"})
        self.assertEqual(st, 201, doc)
        f = self.fields(doc, "kubectl-create")
        self.assertEqual(f["f:metadata"], {"f:labels": {".": {}, "f:app": {}}})
        c = f["f:spec"]["f:containers"]['k:{"name":"c"}']
        self.assertEqual(set(c), {".", "f:image", "f:imagePullPolicy", "f:name", "f:ports",
                                  "f:env", "f:resources", "f:terminationMessagePath",
                                  "f:terminationMessagePolicy"})
        self.assertEqual(c["f:ports"], {".": {}, 'k:{"containerPort":80,"protocol":"TCP"}': {
            ".": {}, "f:containerPort": {}, "f:protocol": {}}})
        self.assertNotIn(".", f["f:spec"])          # the zero pod has a spec
        self.assertNotIn("f:volumes", f["f:spec"])  # added by admission, not owned
        self.assertNotIn("f:status", f)
        # another manager takes the label it changes; no User-Agent: "unknown"
        st, doc, _ = self.req("PATCH", base + "/m", {"metadata": {"labels": {"app": "b"}}},
                              ctype="application/merge-patch+json")
        self.assertEqual(st, 200, doc)
        self.assertEqual(self.fields(doc, "unknown"),
                         {"f:metadata": {"f:labels": {"f:app": {}}}})
        # the creator keeps the labels map itself, now without children
        self.assertEqual(self.fields(doc, "kubectl-create")["f:metadata"], {"f:labels": {}})
        # fieldManager wins over User-Agent; a status write gets its own entry
        st, doc, _ = self.req("PATCH", base + "/m/status?fieldManager=kubelet",
                              {"status": {"phase": "Running"}},
                              ctype="application/merge-patch+json",
                              headers={"User-Agent": "other/1"})
        self.assertEqual(st, 200, doc)
        self.assertEqual(self.fields(doc, "kubelet", "status"),
                         {"f:status": {"f:phase": {}}})
        # lists and watches carry them: they are part of the stored object
        st, lst, _ = self.req("GET", base)
        self.assertEqual(lst["items"][0]["metadata"]["managedFields"],
                         doc["metadata"]["managedFields"])
        # a no-op write changes nothing, not even the times
        st, same, _ = self.req("PATCH", base + "/m", {"metadata": {"labels": {"app": "b"}}},
                               ctype="application/merge-patch+json")
        self.assertEqual(same["metadata"]["resourceVersion"], doc["metadata"]["resourceVersion"])

    def test_managed_fields_sent_by_clients(self):
        base = "/api/v1/namespaces/default/configmaps"
        st, cm, _ = self.req("POST", base, {"metadata": {"name": "mfc"}, "data": {"a": "1"}})
        self.assertEqual(self.fields(cm, "unknown"), {"f:data": {".": {}, "f:a": {}}})
        # valid ones replace the stored set; an empty list resets it
        mine = [{"manager": "tool", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:data": {".": {}, "f:a": {}}}}]
        st, doc, _ = self.req("PATCH", base + "/mfc", {"metadata": {"managedFields": mine}},
                              ctype="application/merge-patch+json")
        self.assertEqual((st, doc["metadata"]["managedFields"]), (200, mine))
        st, doc, _ = self.req("PATCH", base + "/mfc", {"metadata": {"managedFields": []},
                                                       "data": {"b": "2"}},
                              ctype="application/merge-patch+json")
        self.assertEqual([e["manager"] for e in doc["metadata"]["managedFields"]], ["unknown"])
        self.assertEqual(self.fields(doc, "unknown"), {"f:data": {"f:b": {}}})
        # invalid ones are ignored: the stored ones stay
        st, doc2, _ = self.req("PATCH", base + "/mfc", {"metadata": {"managedFields": [
            {"manager": "x", "fieldsType": "FieldsV2"}]}}, ctype="application/merge-patch+json")
        self.assertEqual(doc2["metadata"]["managedFields"], doc["metadata"]["managedFields"])

    # ---- generateName collision, conditional updates, validation after patches

    def test_generate_name_collision_is_409_with_retry_after(self):
        ns = self.ns("collide")
        p = pod()
        del p["metadata"]["name"]
        p["metadata"]["generateName"] = "job-"
        self.emu.control("generate-name", {"suffixes": ["bcdfg", "bcdfg"]})
        self.assertEqual(self.req("POST", "/api/v1/namespaces/%s/pods" % ns, p)[0], 201)
        st, doc, r = self.req("POST", "/api/v1/namespaces/%s/pods" % ns, p)
        self.assertEqual((st, doc["reason"], r.getheader("Retry-After")),
                         (409, "AlreadyExists", "1"))
        self.assertEqual(doc["message"], 'pods "job-bcdfg" already exists, the server was not '
                         'able to generate a unique name for the object')
        self.assertEqual(doc["details"], {"name": "job-bcdfg", "kind": "pods",
                                          "retryAfterSeconds": 1})

    def gizmo_crd(self):
        crd = {"metadata": {"name": "gadgets.test.io"},
               "spec": {"group": "test.io", "scope": "Namespaced",
                        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
                        "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                            "openAPIV3Schema": {"type": "object", "properties": {
                                "spec": {"type": "object", "properties": {
                                    "size": {"type": "integer"}}}}}}}]}}
        st, doc, _ = self.req("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                              crd)
        self.assertIn(st, (201, 409), doc)
        return "/apis/test.io/v1/namespaces/default/gadgets"

    def test_update_without_resource_version(self):
        base = self.gizmo_crd()
        st, g, _ = self.req("POST", base, {"metadata": {"name": "g1"}, "spec": {"size": 1}})
        self.assertEqual(st, 201, g)
        del g["metadata"]["resourceVersion"]
        st, doc, _ = self.req("PUT", base + "/g1", g)
        self.assertEqual((st, doc["reason"]), (422, "Invalid"))
        self.assertEqual(doc["message"], 'Gadget.test.io "g1" is invalid: metadata.'
                         'resourceVersion: Invalid value: 0x0: must be specified for an update')
        self.assertEqual(doc["details"]["causes"], [{
            "reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
            "message": "Invalid value: 0x0: must be specified for an update"}])
        # pods allow unconditional updates
        ns = self.ns("uncond")
        st, p, _ = self.req("POST", "/api/v1/namespaces/%s/pods" % ns, pod("u"))
        del p["metadata"]["resourceVersion"]
        p["metadata"]["labels"] = {"x": "y"}
        self.assertEqual(self.req("PUT", "/api/v1/namespaces/%s/pods/u" % ns, p)[0], 200)

    def test_patched_objects_are_validated_and_pruned(self):
        ns = self.ns("pval")
        base = "/api/v1/namespaces/%s/pods" % ns
        self.req("POST", base, pod("v"))
        mp, jp = "application/merge-patch+json", "application/json-patch+json"
        st, doc, _ = self.req("PATCH", base + "/v", {"metadata": {"labels": {"bad key!": "x"}}},
                              ctype=mp)
        self.assertEqual((st, doc["reason"]), (422, "Invalid"))
        self.assertEqual(doc["details"]["causes"][0]["field"], "metadata.labels")
        st, doc, _ = self.req("PATCH", base + "/v", [
            {"op": "replace", "path": "/spec/containers/0/name", "value": "renamed"}], ctype=jp)
        self.assertEqual((st, doc["details"]["causes"][0]["field"]), (422, "spec"))
        st, doc, _ = self.req("PATCH", base + "/v", [
            {"op": "remove", "path": "/spec/containers/0/image"}], ctype=jp)
        self.assertEqual(st, 422)
        self.assertIn("spec.containers[0].image",
                      [c["field"] for c in doc["details"]["causes"]])
        st, doc, _ = self.req("PATCH", base + "/v", {"metadata": {"name": "other"}}, ctype=mp)
        self.assertEqual((st, doc["message"]), (400, "the name of the object (other) does not "
                                                     "match the name on the URL (v)"))
        st, doc, _ = self.req("PATCH", base + "/v", {"spec": {"containers": [
            {"name": "c", "image": "busybox:2"}]}},
            ctype="application/strategic-merge-patch+json")
        self.assertEqual((st, doc["spec"]["containers"][0]["image"]), (200, "busybox:2"))
        # custom resources: unknown fields pruned, wrong types rejected
        cr = self.gizmo_crd()
        self.req("POST", cr, {"metadata": {"name": "g2"}, "spec": {"size": 1}})
        st, doc, _ = self.req("PATCH", cr + "/g2", {"spec": {"size": 2, "junk": 1}}, ctype=mp)
        self.assertEqual((st, doc["spec"]), (200, {"size": 2}))
        st, doc, _ = self.req("PATCH", cr + "/g2", {"spec": {"size": "big"}}, ctype=mp)
        self.assertEqual((st, doc["reason"], doc["details"]["causes"][0]["field"]),
                         (422, "Invalid", "spec.size"))

    # ---- scheduling gates and pods/binding (v1.27+, PodSchedulingReadiness on)

    def gated(self, ns, name, gates=("example.com/a",), **spec):
        p = pod(name, schedulingGates=[{"name": g} for g in gates], **spec)
        return self.req("POST", "/api/v1/namespaces/%s/pods" % ns, p)

    def test_scheduling_gates_on_create(self):
        ns = self.ns("gates")
        st, doc, _ = self.gated(ns, "g", ("example.com/a", "b"))
        self.assertEqual(st, 201, doc)
        self.assertEqual(doc["spec"]["schedulingGates"], [{"name": "example.com/a"}, {"name": "b"}])
        cond = doc["status"]["conditions"]
        self.assertEqual([{k: c[k] for k in ("type", "status", "reason", "message",
                                             "lastProbeTime")} for c in cond],
                         [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
                           "message": "Scheduling is blocked due to non-empty scheduling gates",
                           "lastProbeTime": None}])
        self.assertRegex(cond[0]["lastTransitionTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertEqual(list(doc["status"]), ["phase", "conditions", "qosClass"])
        # an empty list is not stored (omitempty), and no condition comes
        st, doc, _ = self.gated(ns, "none", ())
        self.assertEqual(st, 201, doc)
        self.assertNotIn("schedulingGates", doc["spec"])
        self.assertNotIn("conditions", doc["status"])
        # names: qualified, unique
        st, doc, _ = self.gated(ns, "bad", ("ok", "bad name", "ok"))
        self.assertEqual((st, doc["reason"]), (422, "Invalid"))
        self.assertEqual(doc["details"]["causes"], [
            {"reason": "FieldValueInvalid", "field": "spec.schedulingGates[1]",
             "message": 'Invalid value: "bad name": name part must consist of alphanumeric '
                        "characters, '-', '_' or '.', and must start and end with an "
                        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
                        "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?"
                        "[A-Za-z0-9]')"},
            {"reason": "FieldValueDuplicate", "field": "spec.schedulingGates[2]",
             "message": 'Duplicate value: "ok"'}])
        # a gated pod cannot name its node
        st, doc, _ = self.gated(ns, "bound", nodeName="n1")
        self.assertEqual((st, doc["message"]), (422, 'Pod "bound" is invalid: spec.nodeName: '
                                                     "Forbidden: cannot be set until all "
                                                     "schedulingGates have been cleared"))
        self.assertEqual(self.req("GET", "/api/v1/namespaces/%s/pods/bound" % ns)[0], 404)

    def test_scheduling_gates_may_only_be_removed(self):
        ns = self.ns("ungate")
        base = "/api/v1/namespaces/%s/pods/" % ns
        st, p, _ = self.gated(ns, "u", ("a", "b"))
        jp, mp = "application/json-patch+json", "application/merge-patch+json"
        sp = "application/strategic-merge-patch+json"
        add = 'spec.schedulingGates[%d].name: Forbidden: only deletion is allowed, but found ' \
              "new scheduling gate '%s'"
        for body, ctype, want in (
                ([{"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": "c"}}],
                 jp, add % (2, "c")),
                ({"spec": {"schedulingGates": [{"name": "a"}, {"name": "z"}]}}, mp,
                 add % (1, "z")),
                ({"spec": {"schedulingGates": [{"name": "c"}]}}, sp, add % (2, "c"))):
            st, doc, _ = self.req("PATCH", base + "u", body, ctype=ctype)
            self.assertEqual((st, doc["message"]), (422, 'Pod "u" is invalid: ' + want), ctype)
            self.assertEqual(doc["details"]["causes"][0]["reason"], "FieldValueForbidden")
        # images stay mutable beside the gates; order may change; removal is allowed
        st, doc, _ = self.req("PATCH", base + "u", [
            {"op": "test", "path": "/metadata/uid", "value": p["metadata"]["uid"]},
            {"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:2"},
            {"op": "test", "path": "/spec/schedulingGates/1/name", "value": "b"},
            {"op": "remove", "path": "/spec/schedulingGates/1"}], ctype=jp)
        self.assertEqual(st, 200, doc)
        self.assertEqual((doc["spec"]["schedulingGates"], doc["spec"]["containers"][0]["image"]),
                         ([{"name": "a"}], "busybox:2"))
        st, doc, _ = self.req("PATCH", base + "u", {"spec": {"schedulingGates": [
            {"name": "a", "$patch": "delete"}]}}, ctype=sp)
        self.assertEqual(st, 200, doc)
        self.assertNotIn("schedulingGates", doc["spec"])    # [] is not stored
        # the condition stays until a scheduler writes it; other spec fields stay immutable
        self.assertEqual(doc["status"]["conditions"][0]["reason"], "SchedulingGated")
        st, doc, _ = self.req("PATCH", base + "u", {"spec": {"nodeName": "n1"}}, ctype=mp)
        self.assertEqual((st, doc["details"]["causes"][0]["field"]), (422, "spec"))
        # a pod created without gates cannot get one
        self.req("POST", base[:-1], pod("free"))
        st, doc, _ = self.req("PATCH", base + "free", {"spec": {"schedulingGates": [
            {"name": "a"}]}}, ctype=mp)
        self.assertEqual((st, doc["details"]["causes"][0]["field"]),
                         (422, "spec.schedulingGates[0].name"))

    def binding(self, name, node="n1", **md):
        return {"apiVersion": "v1", "kind": "Binding", "metadata": dict(md, name=name),
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}

    def test_binding(self):
        ns = self.ns("bind")
        base = "/api/v1/namespaces/%s/pods" % ns
        st, p, _ = self.gated(ns, "b")
        resp, conn = self.emu.watch(base + "?watch=1&resourceVersion=%s&timeoutSeconds=2"
                                    % p["metadata"]["resourceVersion"])
        # gated: 409 with the storage's words
        st, doc, _ = self.req("POST", base + "/b/binding", self.binding("b"))
        self.assertEqual((st, doc["reason"], doc["message"], doc["details"]), (
            409, "Conflict", 'Operation cannot be fulfilled on pods/binding "b": pod b has '
            "non-empty .spec.schedulingGates", {"name": "b", "kind": "pods/binding"}))
        st, ungated, _ = self.req("PATCH", base + "/b", [
            {"op": "remove", "path": "/spec/schedulingGates"}], ctype="application/json-patch+json")
        self.assertEqual(st, 200, ungated)
        # another pod's uid is a failed precondition
        st, doc, _ = self.req("POST", base + "/b/binding", self.binding("b", uid="0000"))
        self.assertEqual((st, doc["message"]), (
            409, 'Operation cannot be fulfilled on pods "b": StorageError: invalid object, '
            "Code: 4, Key: /registry/pods/%s/b, ResourceVersion: 0, AdditionalErrorMsg: "
            "Precondition failed: UID in precondition: 0000, UID in object meta: %s"
            % (ns, p["metadata"]["uid"])))
        # bound: 201 Success; nodeName and PodScheduled=True in one MODIFIED
        st, doc, _ = self.req("POST", base + "/b/binding",
                              self.binding("b", uid=p["metadata"]["uid"]))
        self.assertEqual((st, doc), (201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                           "status": "Success", "code": 201}))
        st, got, _ = self.req("GET", base + "/b")
        self.assertEqual(got["spec"]["nodeName"], "n1")
        cond = got["status"]["conditions"]
        self.assertEqual([(c["type"], c["status"], c["lastProbeTime"]) for c in cond],
                         [("PodScheduled", "True", None)])
        self.assertNotIn("reason", cond[0])
        self.assertEqual(got["metadata"]["managedFields"], ungated["metadata"]["managedFields"])
        events = read_events(resp)
        conn.close()
        self.assertEqual([e["type"] for e in events], ["MODIFIED", "MODIFIED"])
        self.assertEqual(events[1]["object"], got)
        # bound already: 409; missing: 404; other verbs: 405; bad target: 500
        st, doc, _ = self.req("POST", base + "/b/binding", self.binding("b", "n2"))
        self.assertEqual((st, doc["message"]), (409, 'Operation cannot be fulfilled on '
                                                     'pods/binding "b": pod b is already '
                                                     'assigned to node "n1"'))
        st, doc, _ = self.req("POST", base + "/gone/binding", self.binding("gone"))
        self.assertEqual((st, doc["message"], doc["details"]),
                         (404, 'pods "gone" not found', {"name": "gone", "kind": "pods"}))
        st, doc, _ = self.req("POST", base + "/b/binding", self.binding("c"))
        self.assertEqual((st, doc["message"]),
                         (400, "name in URL does not match name in Binding object"))
        self.assertEqual(self.req("GET", base + "/b/binding")[0], 405)
        self.assertEqual(self.req("PUT", base + "/b/binding", self.binding("b"))[0], 405)
        self.req("POST", base, pod("t"))
        st, doc, _ = self.req("POST", base + "/t/binding", self.binding("t", ""))
        self.assertEqual((st, doc["message"]), (500, "target.name: Required value"))
        self.assertNotIn("reason", doc)
        # dry run: answered, not written
        st, doc, _ = self.req("POST", base + "/t/binding?dryRun=All", self.binding("t"))
        self.assertEqual(st, 201)
        self.assertNotIn("nodeName", self.req("GET", base + "/t")[1]["spec"])
        # discovery lists it as the real server does
        res = {r["name"]: r for r in self.req("GET", "/api/v1")[1]["resources"]}
        self.assertEqual(res["pods/binding"], {"name": "pods/binding", "singularName": "",
                                               "namespaced": True, "kind": "Binding",
                                               "verbs": ["create"]})

    def test_binding_rbac_is_pods_binding_create(self):
        ns = self.ns("bindrbac")
        base = "/api/v1/namespaces/%s/pods" % ns
        self.req("POST", base, pod("r"))
        tok = "sched-" + os.urandom(6).hex()
        with open(self.emu.tokens_file, "a") as f:
            f.write("%s scheduler-x\n" % tok)
        rb = "/apis/rbac.authorization.k8s.io/v1/namespaces/%s/" % ns

        def grant(name, resources, verbs):
            for kind, body in (("roles", {"rules": [{"apiGroups": [""], "resources": resources,
                                                     "verbs": verbs}]}),
                               ("rolebindings", {"roleRef": {
                                   "apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                   "name": name}, "subjects": [{"kind": "User",
                                                                "name": "scheduler-x"}]})):
                st, doc, _ = self.req("POST", rb + kind, dict(body, metadata={"name": name}))
                self.assertEqual(st, 201, doc)
        grant("pods-all", ["pods"], ["create", "update", "patch"])   # not the subresource
        st, doc, _ = self.req("POST", base + "/r/binding", self.binding("r"), token=tok)
        self.assertEqual((st, doc["message"]), (403, 'pods "r" is forbidden: User "scheduler-x" '
                                                     'cannot create resource "pods/binding" in '
                                                     'API group "" in the namespace "%s"' % ns))
        grant("binder", ["pods/binding"], ["create"])
        st, doc, _ = self.req("POST", base + "/r/binding", self.binding("r"), token=tok)
        self.assertEqual(st, 201, doc)


if __name__ == "__main__":
    unittest77.main()
