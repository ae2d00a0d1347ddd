"""thaw's container images (images/build.sh), built and then run as the
manifests run them.

    test/with-emulator.sh python3 test/test_images.py images/build.sh BUILD VERSION LICENSES

(re-runs itself under test/with-emulator.sh when THAW_EMU_URL is unset).
It runs images/build.sh BUILD (which keeps archives whose inputs are
unchanged), reads each archive with tarfile (test/image_archive.py), starts
a private containerd (test/containerd.py), imports the three archives with
`ctr images import` and runs each daemon with `ctr run` on the host's
network, with the args, env, volume mounts and securityContext of its
container in `kubectl kustomize manifests` (test/image_run.py); only the
listening addresses and the registries' URLs are replaced by loopback ones.

Contents: User 65532:65532, the ENTRYPOINT, the OCI labels (version and
licenses are meson's, revision is git's), the rendered manifests name the
archive's reference; the regular files are exactly the daemon, the
libraries `ldd` names on this host (byte for byte), the CA bundle and
passwd/group/nsswitch.conf: no shell; every soname and the dynamic loader
resolve inside the image; every file time is the image's creation time
(reproducible); sizes are printed and bounded.
Run: `--version` prints meson's version; each daemon's process runs as
65532 with no capability, NoNewPrivs and seccomp on; /metrics has
thaw_build_info{version}. thaw-webhook (in-cluster service account against
the emulator, its TLS secret mounted 0440 group 65532) is ready, answers a
real AdmissionReview over TLS (cold: allowed, no patch, a CachedImage
recorded; Ready: the image rewritten). thaw-controller warms an image from
an upstream registry over TLS, trusted through the image's CA bundle path
(a test CA mounted over it), into a cache registry: phase Ready, digest
equal upstream's, and the manifest in the cache. thaw-registry-gc, with the
registry's ConfigMap and a storage directory written by a registry beside
it, runs `registry garbage-collect` from its image on POST /gc: the
deleted image's blobs are gone, the kept image still served.
thaw-node-forward, from the controller image, runs as the node-local
DaemonSet's `forward` container (its command, env and securityContext;
the listen ports made free ones, the targets loopback stand-ins on free
ports, by a name the image resolves): a private pull with credentials
runs the whole token flow through it, a registry whose realm is the
token forward (as the manifests' realm is) and a token server standing in
for thaw-token; `--version` and `--help` run from the image.
Containers, containerd and registries are stopped by PID on every path.
"""

import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import emu_reexec  # noqa: E402
HERE = emu_reexec.setup(__file__, __name__)
REPO = os.path.dirname(HERE)

import yaml  # noqa: E402

import containerd  # noqa: E402
import image_run  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import token_server  # noqa: E402
import webhook_stub  # noqa: E402
from image_archive import Archive  # noqa: E402
from test_ctr_pull import ConfigRegistry  # noqa: E402
from test_manifests import forwards, node_forward, realm_of  # noqa: E402

SCRIPT = BUILD = VERSION = LICENSES = None     # argv
NAMES = ("thaw-webhook", "thaw-controller", "thaw-registry-gc")
BINARIES = {"thaw-webhook": "webhook/thaw-webhook",
            "thaw-controller": "controller/thaw-controller",
            "thaw-registry-gc": "controller/thaw-registry-gc"}
# Programs an image holds beside its daemon (stripped as it is): image
# path -> build dir path.
TOOLS_IN = {"thaw-controller": {"usr/bin/thaw-node-forward": "controller/thaw-node-forward"}}
# Where the manifests run each image: (Deployment, container).
PODS = {"thaw-webhook": ("thaw-webhook", "webhook"),
        "thaw-controller": ("thaw-controller", "controller"),
        "thaw-registry-gc": ("thaw-registry", "registry-gc")}
REGISTRY_BIN = os.environ.get("THAW_REGISTRY_BIN", "/usr/bin/docker-registry")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
NONROOT = 65532
MIB = 1 << 20
# Uncompressed bounds (the layer's tar stream). 16 MiB was the goal; Debian's
# libcurl alone pulls in ~7.5 MiB of optional protocol libraries (gnutls via
# librtmp, kerberos, ldap, ssh2: images/README.md), so the bound guards
# against growth, not the goal.
MAX_UNCOMPRESSED = {"thaw-webhook": 20 * MIB, "thaw-controller": 20 * MIB,
                    "thaw-registry-gc": 24 * MIB}
READY_S = 30
TOOLS = ("buildah", "containerd", "ctr", "docker-registry", "skopeo", "kubectl", "openssl")

ENV = {}  # what setUpModule made: archives, cd, objs, api, work


def http(method, url, body=None, ctx=None, timeout=10, headers=None):
    """(status, body bytes) of one request; HTTP errors included."""
    req = urllib.request.Request(url, method=method, data=body, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_status(url, want, timeout, container, what):
    deadline = time.time() + timeout
    while registry.http_status(url, 0.5) != want:
        if not container.running() or time.time() > deadline:
            raise AssertionError("%s: %s not %d (running: %s); log:\n%s"
                                 % (what, url, want, container.running(), container.log()))
        time.sleep(0.1)


def private_dir(*parts, mode=0o755):
    d = os.path.join(ENV["work"], *parts)
    os.makedirs(d)
    os.chmod(d, mode)
    return d


def service_account():
    """The in-cluster service account directory, as the kubelet mounts it."""
    d = private_dir("sa-%d" % len(os.listdir(ENV["work"])))
    with open(os.environ["THAW_EMU_CA"], "rb") as f:
        ca = f.read()
    for name, data in (("token", os.environ["THAW_EMU_TOKEN"].encode()), ("ca.crt", ca),
                       ("namespace", image_run.SYSTEM_NS.encode())):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(d, name), 0o644)
    return d


def in_cluster_env():
    port = os.environ["THAW_EMU_URL"].rsplit(":", 1)[1]
    return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}


def ldd(path):
    """The paths ldd names for path (the loader included)."""
    out = subprocess.run(["ldd", path], check=True, capture_output=True, text=True).stdout
    paths = []
    for line in out.splitlines():
        f = line.split()
        if "=>" in f and len(f) > 2 and f[2].startswith("/"):
            paths.append(f[2])
        elif f and f[0].startswith("/"):
            paths.append(f[0])
    return paths


def head():
    """git's HEAD of the tree, as build.sh labels it."""
    r = subprocess.run(["git", "-C", REPO, "rev-parse", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def setUpModule():
    if os.geteuid() != 0:   # as test_ctr_pull: a failure, not a skip
        raise AssertionError("needs root: buildah (vfs driver) and containerd")
    for tool in TOOLS:
        if not shutil.which(tool):
            raise AssertionError("%s not installed: test/deps.sh installs it" % tool)
    # HEAD before and after the build: the label is one of them (others
    # may commit to this working tree meanwhile).
    ENV["revisions"] = {head()}
    t0 = time.time()
    r = subprocess.run([SCRIPT, BUILD], capture_output=True, text=True, timeout=600)
    ENV["revisions"].add(head())
    if r.returncode != 0:
        raise AssertionError("images/build.sh failed (%d):\n%s%s"
                             % (r.returncode, r.stdout, r.stderr))
    print("\n%s(%.1f s)" % (r.stdout, time.time() - t0), file=sys.stderr)
    ENV["archives"] = {n: Archive(os.path.join(BUILD, "images", "%s-%s.oci.tar" % (n, VERSION)))
                       for n in NAMES}
    ENV["objs"] = image_run.rendered()
    ENV["work"] = tempfile.mkdtemp(prefix="thaw-images.")
    os.chmod(ENV["work"], 0o755)
    unittest.addModuleCleanup(shutil.rmtree, ENV["work"], ignore_errors=True)
    ENV["cd"] = containerd.Containerd(namespace="thaw-images")
    unittest.addModuleCleanup(ENV["cd"].close)
    for n in NAMES:
        ENV["cd"].ctr("images", "import", "--snapshotter", ENV["cd"].snapshotter,
                      ENV["archives"][n].path)
    ENV["api"] = stack.Api()
    for ns in (image_run.SYSTEM_NS, "oscar-svc"):
        ENV["api"].ok("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            want=(201, 409))


class Contents(unittest.TestCase):
    """What each archive holds, read from its bytes."""

    def test_config(self):
        for n in NAMES:
            with self.subTest(image=n):
                a = ENV["archives"][n]
                self.assertEqual(a.ref, "thaw/%s:%s" % (n, VERSION))
                c = a.config["config"]
                self.assertEqual(c["User"], "%d:%d" % (NONROOT, NONROOT))
                self.assertEqual(c["Entrypoint"], ["/usr/bin/" + n])
                self.assertFalse(c.get("Cmd"))
                self.assertIn("PATH=/usr/bin", c["Env"])
                self.assertEqual((a.config["os"], a.config["architecture"]),
                                 ("linux", {"x86_64": "amd64", "aarch64": "arm64"}.get(
                                     os.uname().machine, os.uname().machine)))
                labels = c["Labels"]
                p = "org.opencontainers.image."
                self.assertEqual(labels.pop(p + "version"), VERSION)
                self.assertIn(labels.pop(p + "revision"), ENV["revisions"])
                self.assertEqual(labels.pop(p + "title"), n)
                self.assertEqual(labels.pop(p + "licenses"), LICENSES)
                self.assertTrue(labels.pop(p + "source"))
                self.assertIn("thaw", labels.pop(p + "description"))
                self.assertEqual(labels, {}, "labels beyond the OCI ones")

    def test_manifests_name_these_images(self):
        for n in NAMES:
            with self.subTest(image=n):
                _, c = image_run.container(ENV["objs"], *PODS[n])
                self.assertEqual(c["image"], ENV["archives"][n].ref)
        # The node-local DaemonSet's forward runs the controller's image.
        self.assertEqual(node_forward(ENV["objs"])[1]["image"],
                         ENV["archives"]["thaw-controller"].ref)
        # Every install's thaw containers run one of these references.
        refs = {a.ref for a in ENV["archives"].values()}
        overlays = os.path.join(image_run.MANIFESTS, "overlays")
        installs = [d for d in sorted(os.listdir(overlays))
                    if os.path.exists(os.path.join(overlays, d, "kustomization.yaml"))]
        self.assertTrue(installs)
        for install in installs:
            with self.subTest(install=install):
                got = set()
                for o in image_run.rendered(os.path.join(overlays, install)):
                    spec = (o.get("spec") or {}).get("template", {}).get("spec", {})
                    for c in spec.get("containers", []) + spec.get("initContainers", []):
                        if c["image"].startswith("thaw/"):
                            got.add(c["image"])
                self.assertTrue(got)
                self.assertLessEqual(got, refs)

    def expected(self, n):
        """{image path: host file} of the regular files the image must hold,
        and the names (sonames, the loader) that must resolve to them."""
        hosts = [os.path.join(BUILD, BINARIES[n])]
        files = {"usr/bin/" + n: None, "etc/passwd": None, "etc/group": None,
                 "etc/nsswitch.conf": None, CA_BUNDLE.lstrip("/"): CA_BUNDLE}
        for path, built in TOOLS_IN.get(n, {}).items():
            hosts.append(os.path.join(BUILD, built))
            files[path] = None   # stripped: not the build's bytes
        if n == "thaw-registry-gc":
            hosts.append(REGISTRY_BIN)
            files["usr/bin/registry"] = REGISTRY_BIN
        names = {}
        for h in hosts:
            for lib in ldd(h):
                real = os.path.realpath(lib)
                files[real.lstrip("/")] = real
                names[lib] = real.lstrip("/")
        return files, names

    def test_files(self):
        for n in NAMES:
            with self.subTest(image=n):
                a = ENV["archives"][n]
                files, names = self.expected(n)
                self.assertEqual(sorted(a.files()), sorted(files))
                for path, host in files.items():
                    if host:
                        with open(host, "rb") as f:
                            self.assertEqual(a.read(path), f.read(), path)
                for name, path in names.items():
                    self.assertEqual(a.resolve(name), path, name)
                for path, e in a.entries.items():
                    self.assertEqual((e.uid, e.gid), (0, 0), path)
                    self.assertIn(e.type, ("file", "dir", "symlink"), path)
                    if e.type == "symlink":
                        self.assertIsNotNone(a.resolve(path), "dangling " + path)
                    else:  # no set-id bit, nothing writable but by root
                        self.assertFalse(e.mode & 0o7022, "%s mode %o" % (path, e.mode))
                self.assertIsNone(a.resolve("bin/sh"))
                self.assertIsNone(a.resolve("usr/bin/sh"))
                self.assertIn(b"nonroot:x:%d:%d:" % (NONROOT, NONROOT), a.read("etc/passwd"))
                self.assertIn(b"nonroot:x:%d:" % NONROOT, a.read("etc/group"))
                # The daemon (and any tool beside it) is the build's binary
                # without debug info.
                progs = dict(TOOLS_IN.get(n, {}), **{"usr/bin/" + n: BINARIES[n]})
                for path, built in progs.items():
                    self.assertEqual(a.entries[path].mode & 0o777, 0o755, path)
                    self.assertLess(a.files()[path],
                                    os.path.getsize(os.path.join(BUILD, built)) + 1, path)

    def test_reproducible_times(self):
        """Every file time is the image's creation time (SOURCE_DATE_EPOCH),
        so the same inputs give the same bytes."""
        for n in NAMES:
            with self.subTest(image=n):
                a = ENV["archives"][n]
                created = datetime.datetime.strptime(
                    a.config["created"], "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                self.assertEqual({e.mtime for e in a.entries.values()}, {created})
                for h in a.config.get("history", []):
                    self.assertEqual(h["created"], a.config["created"])

    def test_sizes(self):
        for n in NAMES:
            a = ENV["archives"][n]
            print("SIZE %-17s uncompressed %6.2f MiB (files %6.2f MiB), archive %6.2f MiB"
                  % (n, a.layer_bytes / MIB, sum(a.files().values()) / MIB,
                     a.archive_bytes / MIB), file=sys.stderr)
            with self.subTest(image=n):
                self.assertLessEqual(a.layer_bytes, MAX_UNCOMPRESSED[n])
                self.assertLess(a.archive_bytes, a.layer_bytes)  # layers gzip-compressed


class Version(unittest.TestCase):
    def test_version(self):
        for n in NAMES:
            with self.subTest(image=n):
                a = ENV["archives"][n]
                rc, out, err = image_run.run_once(
                    ENV["cd"], a.ref, n + "-version", a.config["config"]["Entrypoint"] +
                    ["--version"])
                self.assertEqual(rc, 0, err)
                self.assertIn(VERSION, out)

    def test_tools(self):
        """Each tool an image holds runs from it: --version and --help."""
        for n, tools in TOOLS_IN.items():
            for path in tools:
                for flag in ("--version", "--help"):
                    with self.subTest(image=n, tool=path, flag=flag):
                        rc, out, err = image_run.run_once(
                            ENV["cd"], ENV["archives"][n].ref,
                            os.path.basename(path) + flag[1:], ["/" + path, flag])
                        self.assertEqual(rc, 0, err)
                        self.assertIn(VERSION if flag == "--version" else "usage:", out)


class Confined:
    """A mixin for a TestCase whose class has started its container as
    cls.c."""

    def test_confined(self):
        """The process runs as the image's USER with nothing to escalate."""
        st = self.c.status()
        self.assertEqual(st["Uid"].split(), [str(NONROOT)] * 4)
        self.assertEqual(st["Gid"].split(), [str(NONROOT)] * 4)
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(int(st[cap], 16), 0, cap)
        self.assertEqual(st["NoNewPrivs"], "1")
        self.assertEqual(st["Seccomp"], "2")


class Daemon(Confined):
    """Tests of a daemon's container (a mixin: each daemon's TestCase starts
    its container once, by start(), in setUpClass)."""

    name = None

    @classmethod
    def start(cls, volumes, overrides, env=None, extra_mounts=(), metrics_url=None,
              ready_path="/readyz"):
        a = ENV["archives"][cls.name]
        cls.c = image_run.Container(
            ENV["cd"], a.ref, a.config, image_run.container(ENV["objs"], *PODS[cls.name]),
            cls.name, volumes=volumes, service_account=cls.sa if hasattr(cls, "sa") else None,
            overrides=overrides, env=env, extra_mounts=extra_mounts)
        cls.addClassCleanup(cls.c.close)
        cls.c.start()
        cls.metrics_url = metrics_url
        wait_status(metrics_url + ready_path, 200, READY_S, cls.c, cls.name)

    def test_build_info(self):
        st, body = http("GET", self.metrics_url + "/metrics")
        self.assertEqual(st, 200)
        self.assertEqual(stack.metric(body.decode(), "thaw_build_info", {"version": VERSION}),
                         1.0, body.decode()[-2000:])


class Webhook(Daemon, unittest.TestCase):
    name = "thaw-webhook"
    IMAGE = "grycap/thaw-images-test:1"
    NORMALISED = "docker.io/grycap/thaw-images-test:1"

    @classmethod
    def setUpClass(cls):
        cls.sa = service_account()
        tls = private_dir("webhook-tls")
        certs = webhook_stub.make_certs(private_dir("webhook-ca", mode=0o700))
        for src, dst in ((certs["cert"], "tls.crt"), (certs["key"], "tls.key"),
                         (certs["ca"], "ca.crt")):
            shutil.copy(src, os.path.join(tls, dst))
            os.chown(os.path.join(tls, dst), 0, NONROOT)   # fsGroup 65532, defaultMode 0440
            os.chmod(os.path.join(tls, dst), 0o440)
        cls.ctx = ssl.create_default_context(cafile=certs["ca"])
        cls.cache = registry.Registry()
        cls.addClassCleanup(cls.cache.close)
        port, mport = registry.free_port(), registry.free_port()
        cls.url = "https://127.0.0.1:%d/mutate" % port
        cls.start({"tls": tls},
                  {"--bind-address": "127.0.0.1:%d" % port,
                   "--metrics-bind-address": "127.0.0.1:%d" % mport,
                   "--registry-url": cls.cache.url},
                  env=in_cluster_env(), metrics_url="http://127.0.0.1:%d" % mport)

    def review(self):
        with open(os.path.join(HERE, "fixtures", "admission", "oscar-job-pod.json")) as f:
            doc = json.load(f)
        doc["request"]["uid"] = "thaw-images-%d" % time.monotonic_ns()
        doc["request"]["object"]["spec"]["containers"][0]["image"] = self.IMAGE
        st, body = http("POST", self.url, json.dumps(doc).encode(), ctx=self.ctx,
                        headers={"Content-Type": "application/json"})
        self.assertEqual(st, 200, body)
        resp = json.loads(body)["response"]
        self.assertEqual(resp["uid"], doc["request"]["uid"])
        self.assertTrue(resp["allowed"])
        return json.loads(base64.b64decode(resp["patch"])) if resp.get("patch") else []

    def test_mutate(self):
        """Cold: allowed, unchanged, and a CachedImage recorded through the
        API; once it is Ready: the image rewritten to the cache."""
        path = stack.CI_PATH + "/" + stack.ci_name(self.NORMALISED)
        self.assertFalse([op for op in self.review() if op["path"].endswith("/image")])
        deadline = time.time() + 10
        while ENV["api"].request("GET", path)[0] != 200:
            self.assertLess(time.time(), deadline, "no CachedImage recorded; log:\n"
                            + self.c.log())
            time.sleep(0.1)
        digest = "sha256:" + hashlib.sha256(self.NORMALISED.encode()).hexdigest()
        ENV["api"].ok("PATCH", path + "/status", {"status": {
            "phase": "Ready", "digest": digest, "upstreamDigest": digest, "sizeBytes": 1}},
            ctype="application/merge-patch+json")
        want = {"op": "replace", "path": "/spec/containers/0/image",
                "value": containerd.rewritten(self.NORMALISED) + "@" + digest}  # pinned
        deadline = time.time() + 15   # the informer sees it; the health gate's first probe
        while want not in self.review():
            self.assertLess(time.time(), deadline, "not rewritten; log:\n" + self.c.log())
            time.sleep(0.2)


class TlsRegistry(registry.ChildServer):
    """docker-registry serving HTTPS on a free loopback port with the given
    certificate (the test's own CA)."""

    def __init__(self, certs):
        self.dir = tempfile.mkdtemp(prefix="thaw-tls-registry.")
        self.port = registry.free_port()
        self.host = "127.0.0.1:%d" % self.port
        cfg = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
               "storage": {"filesystem": {"rootdirectory": os.path.join(self.dir, "storage")}},
               "http": {"addr": self.host,
                        "tls": {"certificate": certs["cert"], "key": certs["key"]}}}
        path = os.path.join(self.dir, "config.yml")
        with open(path, "w") as f:
            yaml.safe_dump(cfg, f)
        self.log_path = os.path.join(self.dir, "registry.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([registry.BINARY, "serve", path], stdout=log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=registry.die_with_parent)
        ctx = ssl.create_default_context(cafile=certs["ca"])
        deadline = time.time() + 15
        while True:
            try:
                if http("GET", "https://%s/v2/" % self.host, ctx=ctx, timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                self.close()
                raise RuntimeError("TLS registry did not come up")
            time.sleep(0.05)


class Controller(Daemon, unittest.TestCase):
    name = "thaw-controller"

    @classmethod
    def setUpClass(cls):
        cls.sa = service_account()
        certs = webhook_stub.make_certs(private_dir("upstream-ca", mode=0o700))
        bundle = os.path.join(private_dir("ca-bundle"), "ca-certificates.crt")
        shutil.copy(certs["ca"], bundle)
        os.chmod(bundle, 0o644)
        cls.upstream = TlsRegistry(certs)
        cls.addClassCleanup(cls.upstream.close)
        # The cache takes only the controller's tokens (Secret thaw-token-key,
        # mounted as the Deployment says: fsGroup 65532, mode 0440).
        token = private_dir("token")
        key, cert = token_server.make_key(private_dir("token-src", mode=0o700))
        for src, dst in ((cert, "tls.crt"), (key, "tls.key")):
            shutil.copy(src, os.path.join(token, dst))
            os.chown(os.path.join(token, dst), 0, NONROOT)
            os.chmod(os.path.join(token, dst), 0o440)
        tport = registry.free_port()
        cls.cache = registry.Registry(token={
            "realm": "http://127.0.0.1:%d/token" % tport, "service": "thaw-registry",
            "issuer": "thaw-controller", "rootcertbundle": cert})
        cls.addClassCleanup(cls.cache.close)
        cls.imgs = images.Images(private_dir("layouts"))
        cls.ref = "%s/test/single:v1" % cls.upstream.host
        cls.pushed = cls.imgs.push(cls.imgs.single(), cls.ref)
        mport = registry.free_port()
        # The upstream is HTTPS with the test's CA, mounted where the
        # image's CA bundle is: the controller trusts it through that path.
        cls.start({"token": token},
                  {"--registry-url": cls.cache.url,
                   "--metrics-bind-address": "127.0.0.1:%d" % mport,
                   "--token-bind-address": "127.0.0.1:%d" % tport,
                   "--gc-url": "http://127.0.0.1:%d" % registry.free_port()},
                  env=in_cluster_env(), extra_mounts=[(bundle, CA_BUNDLE, True)],
                  metrics_url="http://127.0.0.1:%d" % mport)

    def test_warm(self):
        name = stack.ci_name(self.ref)
        ENV["api"].ok("POST", stack.CI_PATH, {
            "apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
            "metadata": {"name": name}, "spec": {"image": self.ref}})
        deadline, status = time.time() + 60, {}
        while status.get("phase") != "Ready":
            self.assertLess(time.time(), deadline, "not Ready: %s; log:\n%s"
                            % (status, self.c.log()))
            time.sleep(0.2)
            status = ENV["api"].ok("GET", stack.CI_PATH + "/" + name).get("status") or {}
        self.assertEqual(status["digest"], self.pushed["digest"])
        repo, suffix = containerd.cache_repo(self.ref)
        # skopeo reads anonymously: a pull token from the image's endpoint
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            "docker://%s/%s%s" % (self.cache.url.split("//")[1], repo, suffix)],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual("sha256:" + hashlib.sha256(r.stdout).hexdigest(),
                         self.pushed["digest"])


class RegistryGC(Daemon, unittest.TestCase):
    name = "thaw-registry-gc"

    @classmethod
    def setUpClass(cls):
        text = image_run.find(ENV["objs"], "ConfigMap", "thaw-registry")["data"]["config.yml"]
        cls.reg = ConfigRegistry(yaml.safe_load(text), "gc-storage")
        cls.addClassCleanup(cls.reg.close)
        cls.storage = os.path.join(cls.reg.dir, "storage")
        host = cls.reg.url.split("//")[1]
        imgs = images.Images(private_dir("gc-layouts"))
        cls.kept = imgs.push(imgs.single(name="kept"), host + "/keep/single:v1")
        lo = imgs._layout("gone")
        gone = lo.tag(lo.image([lo.layer({"gone": os.urandom(64 << 10)})], "amd64", "gone"))
        cls.gone = imgs.push(gone, host + "/gone/single:v1")
        st, body = http("DELETE", "%s/v2/gone/single/manifests/%s"
                        % (cls.reg.url, cls.gone["digest"]))
        assert st == 202, (st, body)
        cls.gone_only = set(cls.gone["blobs"]) - set(cls.kept["blobs"])
        assert cls.gone_only, "the images share every blob"
        # The pod's fsGroup makes the volume writable by 65532.
        for d, _, fs in os.walk(cls.storage):
            for p in [d] + [os.path.join(d, f) for f in fs]:
                os.chown(p, NONROOT, NONROOT)
        config = private_dir("gc-config")
        with open(os.path.join(config, "config.yml"), "w") as f:
            f.write(text)
        port, mport = registry.free_port(), registry.free_port()
        cls.url = "http://127.0.0.1:%d" % port
        cls.start({"config": config, "data": cls.storage,
                   "tmp": private_dir("gc-tmp", mode=0o1777)},
                  {"--bind-address": "127.0.0.1:%d" % port,
                   "--metrics-bind-address": "127.0.0.1:%d" % mport},
                  metrics_url="http://127.0.0.1:%d" % mport, ready_path="/readyz")

    def blob_path(self, digest):
        h = digest.split(":", 1)[1]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256",
                            h[:2], h, "data")

    def test_collect(self):
        """POST /gc runs the image's registry binary on the mounted storage."""
        for d in self.gone_only | set(self.kept["blobs"]):
            self.assertTrue(os.path.exists(self.blob_path(d)), d)
        st, body = http("POST", self.url + "/gc", b"")
        self.assertEqual(st, 202, body)
        deadline = time.time() + 60
        while True:
            st, body = http("GET", self.url + "/gc")
            self.assertEqual(st, 200, body)
            doc = json.loads(body)
            if not doc["running"]:
                break
            self.assertLess(time.time(), deadline, "still running; log:\n" + self.c.log())
            time.sleep(0.1)
        last = doc["last"]
        self.assertEqual(last["result"], "success", "%s\nlog:\n%s" % (last, self.c.log()))
        self.assertGreaterEqual(last["blobsDeleted"], len(self.gone_only))
        self.assertLess(last["bytesAfter"], last["bytesBefore"])
        for d in self.gone_only:
            self.assertFalse(os.path.exists(self.blob_path(d)), d)
        for d in self.kept["blobs"]:
            self.assertTrue(os.path.exists(self.blob_path(d)), d)
        st, _ = http("GET", "%s/v2/keep/single/manifests/v1" % self.reg.url,
                     headers={"Accept": images.OCI_MANIFEST})
        self.assertEqual(st, 200)


def loopback_name():
    """A name the host's /etc/hosts gives 127.0.0.1 and no other address
    ("localhost" where it can), else the address itself."""
    addrs = {}
    with open("/etc/hosts") as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            for n in fields[1:]:
                addrs.setdefault(n, set()).add(fields[0])
    names = sorted(n for n, a in addrs.items() if a == {"127.0.0.1"})
    return "localhost" if "localhost" in names else (names or ["127.0.0.1"])[0]


class NodeForward(Confined, unittest.TestCase):
    """thaw-node-forward from thaw-controller's image, as the node-local
    DaemonSet's `forward` container runs it (image_run: its command, env
    and securityContext, the host's network). Only its listen ports are
    made free ones, and its targets' $(VAR)s name loopback stand-ins on
    free ports, by a name the image resolves itself (nss files; `ctr run
    --net-host` mounts the host's /etc/hosts, as the kubelet mounts the
    pod's): a docker-registry with token auth for the cache, whose realm
    is the token forward as the manifests' realm is, and
    test/token_server.py for thaw-token. A private pull (credentials, as a
    pod's pull secret gives containerd) then runs the whole token flow
    through the two forwards."""

    USER, PASSWORD = "tenant", "pull-secret-pw"

    @classmethod
    def setUpClass(cls):
        a = ENV["archives"]["thaw-controller"]
        pod, c = node_forward(ENV["objs"])
        routes = forwards(c)   # {listen: "NAME:PORT"}, the manifest's
        realm = urllib.parse.urlsplit(realm_of(ENV["objs"]))
        cls.tokens = token_server.TokenServer(
            users={cls.USER: cls.PASSWORD}, issuer="thaw-controller", service="thaw-registry",
            acl=[{"account": "+", "repo": "private/*", "actions": ["pull", "push"]}])
        cls.addClassCleanup(cls.tokens.close)
        cls.listen = {listen: "127.0.0.1:%d" % registry.free_port() for listen in routes}
        cls.token_listen = cls.listen[realm.netloc]
        cls.cache_listen = cls.listen["127.0.0.1:7440"]
        cls.cache = registry.Registry(token={
            "realm": realm._replace(netloc=cls.token_listen).geturl(),
            "service": "thaw-registry", "issuer": "thaw-controller",
            "rootcertbundle": cls.tokens.cert})
        cls.addClassCleanup(cls.cache.close)
        port_of = {realm.netloc: cls.tokens.port, "127.0.0.1:7440": cls.cache.port}
        # The args with free listen ports; each $(VAR) target names a
        # stand-in.
        name = loopback_name()
        args, env = [], {}
        for arg in c["args"]:
            if arg.startswith("--forward="):
                listen, target = arg[len("--forward="):].split("=", 1)
                var = re.fullmatch(r"\$\((\w+)\)", target).group(1)
                env[var] = "%s:%d" % (name, port_of[listen])
                arg = "--forward=%s=%s" % (cls.listen[listen], target)
            args.append(arg)
        cls.c = image_run.Container(ENV["cd"], a.ref, a.config, (pod, dict(c, args=args)),
                                    "node-forward", env=env)
        # `command` replaces the image's Entrypoint, as the kubelet does
        # (image_run.Container runs Entrypoint + args).
        cls.c.argv = list(c["command"]) + cls.c.args
        cls.addClassCleanup(cls.c.close)
        cls.c.start()
        deadline = time.time() + READY_S
        while not all(cls.accepts(listen) for listen in cls.listen.values()):
            if not cls.c.running() or time.time() > deadline:
                raise AssertionError("not listening on %s; log:\n%s"
                                     % (sorted(cls.listen.values()), cls.c.log()))
            time.sleep(0.1)

    @staticmethod
    def accepts(hostport):
        host, port = hostport.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return True
        except OSError:
            return False

    def test_runs_its_command_from_the_image(self):
        with open("/proc/%d/cmdline" % self.c.pid, "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
        self.assertEqual(argv[0], b"/usr/bin/thaw-node-forward")
        self.assertIn(b"--max-connections=64", argv)

    def test_private_pull_through_the_forwards(self):
        """As containerd pulls localhost:7440/private/...: the cache's 401
        names the realm on the token forward; the token, asked with the
        pull secret's credentials, comes through it from thaw-token; the
        blobs through the cache forward. Without credentials: no token
        scope, 401, no bytes."""
        try:
            st, body = http("GET", "http://%s/v2/" % self.cache_listen)
        except OSError as e:
            self.fail("GET /v2/ through the forward: %s; log:\n%s" % (e, self.c.log()))
        self.assertEqual(st, 401, body)
        creds = "%s:%s" % (self.USER, self.PASSWORD)
        imgs = images.Images(private_dir("forward-layouts"))
        ref = "%s/private/single:v1" % self.cache_listen
        pushed = imgs.push(imgs.single(name="forward"), ref, creds=creds)
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            "--creds", creds, "docker://" + ref],
                           capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual("sha256:" + hashlib.sha256(r.stdout).hexdigest(), pushed["digest"])
        r = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            "--no-creds", "docker://" + ref],
                           capture_output=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        # The token server saw the pull secret's account: only through the
        # token forward, the one realm the cache names.
        accounts = {q.get("account") for q in self.tokens.stats()["requests"]}
        self.assertIn(self.USER, accounts)
        with open(self.cache.config) as f:
            self.assertIn("realm: http://%s/token" % self.token_listen, f.read())
        # What passes is never logged.
        log = self.c.log(400)
        self.assertNotIn(self.PASSWORD, log)
        self.assertNotIn(base64.b64encode(creds.encode()).decode(), log)


def _interrupt(signum, frame):
    for c in image_run.LIVE:   # the daemons at once; their containers below
        c.kill_now()
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    global SCRIPT, BUILD, VERSION, LICENSES
    args = sys.argv[1:]
    if len(args) < 4:
        sys.exit("usage: test_images.py BUILD_SCRIPT BUILDDIR VERSION LICENSES [unittest args]")
    SCRIPT, BUILD, VERSION, LICENSES = (os.path.abspath(args[0]), os.path.abspath(args[1]),
                                        args[2], args[3])
    # SIGTERM (meson's timeout) unwinds like ^C, so the finally below runs:
    # containers outlive containerd unless they are deleted first.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        unittest77.main(argv=[sys.argv[0]] + args[4:])
    finally:
        cd = ENV.get("cd")
        if cd and image_run.LIVE:   # interrupted: containerd got the signal too
            cd.stop()
            cd.start()
            image_run.close_all()
        if cd:
            cd.close()
        if ENV.get("work"):
            shutil.rmtree(ENV["work"], ignore_errors=True)


if __name__ == "__main__":
    main()
