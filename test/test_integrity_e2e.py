"""Cache poisoning does not change what a new pod runs (docs/design.md,
"Image references", content-addressed rewrites; issue 12).

With real registries and a real containerd: an image is pushed upstream and
warmed by thaw-controller into the cache registry (the config of
manifests/registry); an attacker who reaches the cache pushes a DIFFERENT
manifest under the cached tag (skopeo copy, as anyone with network access
could). A new pod admitted through thaw-webhook (the emulator calls it) is
rewritten to <cache path>:<tag>@<status.digest>, and containerd pulling
that through the node-local pull-through endpoint (manifests/node-local)
gets the original image's digest and files, while the bare tag would now
give the attacker's.

    test/with-emulator.sh python3 test/test_integrity_e2e.py BUILD_DIR
    (runs itself under test/with-emulator.sh when THAW_EMU_URL is unset)"""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "kubeemu")]

import containerd  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import webhook_stub  # noqa: E402
from test_ctr_pull import MANIFESTS, ConfigRegistry, manifest_config  # noqa: E402

BUILD = None
NS = "integrity-apps"
CACHE_HOST = stack.CACHE_HOST
WARM_S = 120     # a warm on a loaded machine
ADMIT_S = 30     # the webhook sees the Ready image (index, health gate)


class Poisoning(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("docker-registry", "skopeo", "containerd", "ctr"):
            if not shutil.which(tool):
                raise AssertionError("%s not installed: test/deps.sh installs it" % tool)
        cls.servers = []
        cls.work = tempfile.mkdtemp(prefix="thaw-integrity.")
        try:
            cls.api = stack.Api()
            cls.upstream = cls.keep(registry.Registry())
            cls.up = cls.upstream.url.split("://", 1)[1]
            cls.cache = cls.keep(ConfigRegistry(
                manifest_config(os.path.join(MANIFESTS, "registry", "configmap.yaml"),
                                "thaw-registry"), "cache"))
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
                extra=["--insecure-registries", cls.up, "--leader-elect=false"]))
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

    def test_poisoned_tag_does_not_change_what_a_new_pod_runs(self):
        good = self.imgs.single(name="integrity-good")
        ref = "%s/integrity/app:v1" % self.up
        info = self.imgs.push(good, ref)
        # warmed and Ready
        self.api.ok("POST", stack.CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": stack.ci_name(ref)}, "spec": {"image": ref}})
        ci = stack.wait_ci_ready(self.api, ref, WARM_S)
        self.assertIsNotNone(ci, "not warmed; log:\n" + self.ctl.log_tail())
        self.assertEqual(ci["status"]["digest"], info["digest"])

        # The attacker: a different image, pushed straight into the cache
        # registry under the cached tag.
        evil = self.imgs._layout("integrity-evil")
        layer = evil.layer({"hello": b"poisoned\n", "etc/os-release": b"ID=evil\n"})
        evil = evil.tag(evil.image([layer], "amd64", "evil"))
        repo, suffix = containerd.cache_repo(ref)
        self.assertEqual(suffix, ":v1")
        bad = self.imgs.push(evil, "%s/%s%s" % (self.cache.url.split("://", 1)[1], repo,
                                                 suffix))
        self.assertNotEqual(bad["digest"], info["digest"])
        tag = containerd.rewritten(ref, CACHE_HOST)
        self.assertEqual(self.pull(tag)["digest"], bad["digest"],
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

        # What containerd pulls for it, through the node-local endpoint: the
        # original, verified against the digest; never the attacker's.
        got = self.pull(want)
        self.assertEqual(got["digest"], info["digest"])
        self.assertEqual(self.cd.rootfs(want), containerd.layer_files(good.path, info["digest"]))
        self.cd.remove(want)

        # The pod counts for the tag's CachedImage (use tracking maps the
        # pinned rewrite back to it), and the sweep recorded nothing else.
        deadline = time.time() + 20
        while True:
            st = (self.api.ok("GET", stack.CI_PATH + "/" + stack.ci_name(ref))
                  .get("status") or {})
            if (st.get("usedBy") or {}).get("count") == 1 or time.time() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(st["usedBy"]["pods"], [NS + "/app"])
        images_now = [o["spec"]["image"] for o in self.api.ok("GET", stack.CI_PATH)["items"]]
        self.assertEqual(images_now, [ref])


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
