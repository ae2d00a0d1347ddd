"""What a node pulls is what upstream holds: images pushed to an upstream
docker-registry (test/images.py), copied into the cache registry by the
copier (thaw-controller, or skopeo as its stand-in), and pulled by a real
containerd (test/containerd.py) under the rewritten reference
localhost:7439/<host__port>/<path>:tag through the node-local endpoint. The
cache and the node-local endpoint run the configs of manifests/registry and
manifests/node-local (addresses and paths replaced), as in test_manifests.py.

localhost:7439 is mapped onto the node-local endpoint's free port with a
containerd hosts.toml (--hosts-dir), so nothing binds the real port.

    python3 test/test_ctr_pull.py                      # skopeo stand-in
    python3 test/test_ctr_pull.py --thaw BUILD/controller/thaw-controller
    (or THAW_CONTROLLER=BIN; runs itself under test/with-emulator.sh)

Checks, per image: the manifest digest containerd records equals
upstream's (the index for the multi-arch image); the files of the rootfs
that containerd's snapshotter unpacked equal the files of the image's
layers as built (read from the OCI layout, whiteouts applied) and the
contents images.py wrote; for the multi-arch image both platforms."""

import copy
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [HERE, os.path.join(HERE, "kubeemu")]

import containerd  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402

MANIFESTS = os.path.join(REPO, "manifests")
CACHE_HOST = "localhost:7439"
WARM_TIMEOUT = 120  # seconds per copy; the meson timeout is 600 for all

# Set by main() from the command line.
COPIER = {"kind": "skopeo", "binary": None}


def sha_hex(b):
    return hashlib.sha256(b).hexdigest()


def manifest_config(path, name):
    """The parsed config.yml of ConfigMap `name` in the YAML file `path`."""
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            if doc and doc.get("kind") == "ConfigMap" and doc["metadata"]["name"] == name:
                return yaml.safe_load(doc["data"]["config.yml"])
    raise LookupError("ConfigMap %s not in %s" % (name, path))


class ConfigRegistry(registry.ChildServer):
    """docker-registry run with a config from manifests/, only its address,
    storage path and proxy remote replaced (and the debug listener dropped).

    token: None drops the config's auth section (anyone may push, as these
    tests' skopeo stand-in does); {"realm": URL, "rootcertbundle": PATH}
    keeps auth.token with those two keys replaced (thaw-controller's token
    endpoint and its certificate), so /v2/ answers 401 without a token."""

    def __init__(self, cfg, name, remoteurl=None, timeout=20, token=None):
        self.dir = tempfile.mkdtemp(prefix="thaw-%s." % name)
        try:
            self.port = registry.free_port()
            self.url = "http://127.0.0.1:%d" % self.port
            cfg = copy.deepcopy(cfg)
            if token is None:
                cfg.pop("auth", None)
            elif "token" not in (cfg.get("auth") or {}):
                raise ValueError("token given but the %s config has no auth.token" % name)
            else:
                cfg["auth"]["token"].update(realm=token["realm"],
                                            rootcertbundle=token["rootcertbundle"])
            cfg["http"] = dict(cfg["http"], addr="127.0.0.1:%d" % self.port)
            cfg["http"].pop("debug", None)
            cfg["storage"] = dict(cfg["storage"])
            cfg["storage"]["filesystem"] = {"rootdirectory": os.path.join(self.dir, "storage")}
            if remoteurl:
                cfg["proxy"] = dict(cfg["proxy"], remoteurl=remoteurl)
            path = os.path.join(self.dir, "config.yml")
            with open(path, "w") as f:
                yaml.safe_dump(cfg, f)
            self.log_path = os.path.join(self.dir, "registry.log")
            env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([registry.BINARY, "serve", path], stdout=log,
                                             stderr=subprocess.STDOUT, env=env,
                                             preexec_fn=registry.die_with_parent)
            deadline = time.time() + timeout
            while registry.http_status(self.url + "/v2/", 0.5) not in (200, 401):  # 401: auth
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("%s registry did not come up (rc %s): %s"
                                       % (name, self.proc.poll(), self.log_tail()))
                time.sleep(0.05)
        except BaseException:
            self.close()
            raise

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


class CtrPull(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        for tool in ("docker-registry", "skopeo", "containerd", "ctr"):
            if not shutil.which(tool):
                raise AssertionError("%s not installed: test/deps.sh installs it" % tool)
        cls.stack = []
        cls.work = tempfile.mkdtemp(prefix="thaw-ctr-pull.")
        try:
            cls.upstream = cls.keep(registry.Registry())
            cls.cache = cls.keep(ConfigRegistry(
                manifest_config(os.path.join(MANIFESTS, "registry", "configmap.yaml"),
                                "thaw-registry"), "cache"))
            cls.proxy = cls.keep(ConfigRegistry(
                manifest_config(os.path.join(MANIFESTS, "node-local", "configmap.yaml"),
                                "thaw-node-local"), "node-local", remoteurl=cls.cache.url))
            cls.cd = cls.keep(containerd.Containerd())
            cls.hosts = os.path.join(cls.work, "hosts.d")
            os.makedirs(os.path.join(cls.hosts, CACHE_HOST))
            with open(os.path.join(cls.hosts, CACHE_HOST, "hosts.toml"), "w") as f:
                f.write('server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
                        % (cls.proxy.url, cls.proxy.url))
            cls.imgs = images.Images(os.path.join(cls.work, "images"))
            cls.copier = containerd.make_copier(
                COPIER["kind"], cls.cache.url, cls.work, binary=COPIER["binary"],
                insecure=[cls.upstream.url.split("://")[1]], cache_host=CACHE_HOST) \
                if COPIER["kind"] == "thaw" else \
                containerd.make_copier("skopeo", cls.cache.url, cls.work)
            cls.copier.start()
        except BaseException:
            cls.tearDownClass()
            raise
        print("\ncopier %s, snapshotter %s" % (cls.copier.kind, cls.cd.snapshotter),
              file=sys.stderr)

    @classmethod
    def keep(cls, server):
        cls.stack.append(server)
        return server

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "copier", None):
            cls.copier.close()
        for s in reversed(cls.stack):
            s.close()
        shutil.rmtree(cls.work, ignore_errors=True)

    def upstream_ref(self, name):
        return "%s/test/%s:v1" % (self.upstream.url.split("://")[1], name)

    def push_and_warm(self, layout, name, fmt=None, check_cold=False):
        """Pushes upstream, copies into the cache; returns (upstream info,
        rewritten reference). check_cold: first show that the rewritten
        reference does not pull before the copy (nothing else serves it)."""
        ref = self.upstream_ref(name)
        info = self.imgs.push(layout, ref, fmt=fmt)
        if check_cold:
            with self.assertRaises(RuntimeError):
                self.cd.pull(containerd.rewritten(ref, CACHE_HOST), hosts_dir=self.hosts)
        digest = self.copier.warm(ref, timeout=WARM_TIMEOUT)
        self.assertEqual(digest, info["digest"], "cache digest != upstream digest")
        return info, containerd.rewritten(ref, CACHE_HOST)

    def pull(self, ref, platform=None):
        try:
            return self.cd.pull(ref, plain_http=True, platform=platform, hosts_dir=self.hosts)
        except RuntimeError as e:
            raise AssertionError("%s\nnode-local log:\n%s\ncache log:\n%s\ncontainerd log:\n%s"
                                 % (e, self.proxy.log_tail(), self.cache.log_tail(),
                                    self.cd.log_tail()))

    def assert_served_by_node_local(self, blobs):
        """The node-local endpoint stored what it passed on (pull-through)."""
        root = os.path.join(self.proxy.dir, "storage", "docker", "registry", "v2", "blobs",
                            "sha256")
        # It commits a blob after the client has its last byte: allow a moment.
        deadline = time.time() + 10
        for d in blobs:
            hexd = d.split(":", 1)[1]
            path = os.path.join(root, hexd[:2], hexd, "data")
            while not os.path.exists(path) and time.time() < deadline:
                time.sleep(0.05)
            self.assertTrue(os.path.exists(path),
                            "%s not fetched through the node-local endpoint" % d)

    def check_rootfs(self, ref, layout, digest, arch, known):
        got = self.cd.rootfs(ref, platform="linux/" + arch)
        self.assertEqual(got, containerd.layer_files(layout.path, digest, arch))
        self.assertEqual(got, {k: sha_hex(v) for k, v in known.items()})

    def test_single_arch(self):
        lo = self.imgs.single()
        info, ref = self.push_and_warm(lo, "single", check_cold=True)
        self.assertTrue(ref.startswith(CACHE_HOST + "/127.0.0.1__"), ref)
        got = self.pull(ref)
        self.assert_served_by_node_local(info["blobs"])
        self.assertEqual(got["digest"], info["digest"])
        self.assertEqual(got["media_type"], images.OCI_MANIFEST)
        self.check_rootfs(ref, lo, info["digest"], "amd64",
                          {"hello": b"hello from amd64\n", "etc/os-release": b"ID=thaw-test\n"})
        # Cold again, by digest: every blob comes through the endpoint again.
        self.cd.remove(ref)
        by_digest = ref.rsplit(":", 1)[0] + "@" + info["digest"]
        got = self.pull(by_digest)
        self.assertEqual(got["digest"], info["digest"])
        self.assertEqual(self.cd.rootfs(by_digest),
                         containerd.layer_files(lo.path, info["digest"]))
        self.cd.remove(by_digest)

    def test_digest_reference(self):
        """A reference with a digest is pushed by digest only (docs/design.md,
        "Digests and tags"), and pulls by digest through the endpoint."""
        lo = self.imgs.single(arch="amd64", name="pinned")
        tagged = self.upstream_ref("pinned")
        info = self.imgs.push(lo, tagged)
        pinned = tagged.rsplit(":", 1)[0] + "@" + info["digest"]
        self.assertEqual(self.copier.warm(pinned, timeout=WARM_TIMEOUT), info["digest"])
        ref = containerd.rewritten(pinned, CACHE_HOST)
        got = self.pull(ref)
        self.assertEqual(got["digest"], info["digest"])
        self.assertEqual(self.cd.rootfs(ref), containerd.layer_files(lo.path, info["digest"]))
        self.cd.remove(ref)
        with self.assertRaises(RuntimeError):  # no tag in the cache
            self.cd.pull(containerd.rewritten(tagged, CACHE_HOST), hosts_dir=self.hosts)

    def test_multi_arch(self):
        lo = self.imgs.multiarch()
        info, ref = self.push_and_warm(lo, "multiarch")
        self.assertEqual(len(info["children"]), 2)
        for arch in ("amd64", "arm64"):
            got = self.pull(ref, platform="linux/" + arch)
            self.assertEqual(got["digest"], info["digest"])  # the index
            self.assertEqual(got["media_type"], images.OCI_INDEX)
            self.check_rootfs(ref, lo, info["digest"], arch,
                              {"arch": arch.encode() + b"\n",
                               "bin/hello": hashlib.sha256(arch.encode()).digest() * 64})
            self.cd.remove(ref)
        self.assert_served_by_node_local(info["children"] + info["blobs"])

    def test_docker_media_types(self):
        lo = self.imgs.single(name="single-v2s2")
        info, ref = self.push_and_warm(lo, "single-v2s2", fmt="v2s2")
        got = self.pull(ref)
        self.assertEqual(got["digest"], info["digest"])
        self.assertEqual(got["media_type"],
                         "application/vnd.docker.distribution.manifest.v2+json")
        self.assertEqual(self.cd.rootfs(ref), {"hello": sha_hex(b"hello from amd64\n"),
                                               "etc/os-release": sha_hex(b"ID=thaw-test\n")})
        self.cd.remove(ref)

    def test_many_layers(self):
        lo = self.imgs.many(30)
        info, ref = self.push_and_warm(lo, "many")
        got = self.pull(ref)
        self.assertEqual(got["digest"], info["digest"])
        self.check_rootfs(ref, lo, info["digest"], "amd64",
                          {"layer/%02d" % i: ("layer %d\n" % i).encode() * (i + 1)
                           for i in range(30)})
        self.cd.remove(ref)


def main():
    args = sys.argv[1:]
    binary = os.environ.get("THAW_CONTROLLER")
    if "--thaw" in args:
        i = args.index("--thaw")
        binary = args[i + 1]
        del args[i:i + 2]
    if binary:
        if not os.environ.get("THAW_EMU_URL"):  # the controller needs the API emulator
            os.execv(os.path.join(HERE, "with-emulator.sh"),
                     [os.path.join(HERE, "with-emulator.sh"), sys.executable,
                      os.path.abspath(__file__), "--thaw", os.path.abspath(binary)] + args)
        COPIER.update(kind="thaw", binary=os.path.abspath(binary))
    unittest77.main(argv=[sys.argv[0]] + args)


if __name__ == "__main__":
    main()
