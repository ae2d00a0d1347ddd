"""A private, real containerd (Debian's containerd + ctr) for pull tests, and
the copier that fills the cache registry (skopeo stand-in or thaw-controller).

    with Containerd() as cd:          # temp dir, own config and socket, started
        cd.snapshotter                # "overlayfs", or "native" when overlay fails
        img = cd.pull("127.0.0.1:PORT/x/y:v1")   # {"name", "digest", "media_type"}
        files = cd.rootfs("127.0.0.1:PORT/x/y:v1") # {path: sha256 hex} of regular files
        cd.remove(ref)                # ctr image rm --sync (a cold re-pull)

Containerd(netns="NAME") runs containerd and every ctr command inside that
network namespace (`nsenter --net`, not `ip netns exec`, which remounts /sys
and so hides the cgroup mounts runc needs): ctr fetches images itself, so
its pulls go out through the namespace's network (bench/experiment_net.py).

containerd runs as a child of the test: root, state, the grpc and ttrpc
sockets, the opt plugin's path and config.toml all live in the temp dir; the
CRI plugin (and the snapshotters that cannot work here) are disabled, so it
starts in well under a second. It is stopped by PID (SIGTERM, SIGKILL after
10 s); the PR_SET_PDEATHSIG of registry.die_with_parent stops it if the test
dies. Mounts made by rootfs() are undone before it returns.

The snapshotter: overlayfs when containerd's own probe of it (`ctr plugins
ls`) says ok, else native; THAW_CTR_SNAPSHOTTER forces one.

    layer_files(layout, manifest_digest)   # what the image's layers hold,
                                           # read from the OCI layout as built

Copiers (one interface, switchable by name, see make_copier):

    cp = make_copier("skopeo", cache_url=..., workdir=...)
    cp = make_copier("thaw", cache_url=..., workdir=..., binary=BIN,
                     insecure=["127.0.0.1:5000"])   # needs with-emulator.sh
    cp.start(); digest = cp.warm("127.0.0.1:5000/test/single:v1"); cp.close()

Both put a normalised reference host/path:tag into the cache registry under
the cache repository "<host with : as __>/<path>" (controller/warm.h), so
that localhost:7439/<that>:tag is the rewritten reference.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

import registry

CONTAINERD = os.environ.get("THAW_CONTAINERD_BIN", "containerd")
CTR = os.environ.get("THAW_CTR_BIN", "ctr")
NAMESPACE = "thaw"

# Snapshotters that never work here or need setup we do not do.
_DISABLED = ["io.containerd.grpc.v1.cri",
             "io.containerd.snapshotter.v1.devmapper",
             "io.containerd.snapshotter.v1.btrfs",
             "io.containerd.snapshotter.v1.zfs",
             "io.containerd.snapshotter.v1.aufs"]


class Containerd:
    """A private containerd; see the module docstring."""

    def __init__(self, snapshotter=None, namespace=NAMESPACE, timeout=20, netns=None):
        self.dir = tempfile.mkdtemp(prefix="thaw-ctrd.")
        self.namespace = namespace
        self.wrap = ["nsenter", "--net=/run/netns/" + netns] if netns else []
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.config = os.path.join(self.dir, "config.toml")
        self.log_path = os.path.join(self.dir, "containerd.log")
        self.proc = None
        self._log = None
        self.snapshotter = None
        disabled = ", ".join('"%s"' % p for p in _DISABLED)
        with open(self.config, "w") as f:
            f.write('version = 2\n'
                    'root = "%(d)s/root"\n'
                    'state = "%(d)s/state"\n'
                    'disabled_plugins = [%(dis)s]\n'
                    '[grpc]\n  address = "%(d)s/containerd.sock"\n'
                    '[ttrpc]\n  address = "%(d)s/containerd.sock.ttrpc"\n'
                    '[debug]\n  address = ""\n  level = "info"\n'
                    '[metrics]\n  address = ""\n'
                    '[plugins."io.containerd.internal.v1.opt"]\n'
                    '  path = "%(d)s/opt"\n'
                    % {"d": self.dir, "dis": disabled})
        try:
            self.start(timeout)
            self.snapshotter = (snapshotter or os.environ.get("THAW_CTR_SNAPSHOTTER")
                                or self._pick_snapshotter())
        except BaseException:
            self.close()
            raise

    def start(self, timeout=20):
        assert self.proc is None, "containerd already running"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.wrap + [CONTAINERD, "--config", self.config],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=registry.die_with_parent)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("containerd exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if os.path.exists(self.sock) and \
                    self.ctr("version", check=False, timeout=5).returncode == 0:
                return
            if time.time() > deadline:
                raise RuntimeError("containerd not answering on %s after %d s; log:\n%s"
                                   % (self.sock, timeout, self.log_tail()))
            time.sleep(0.05)

    def _pick_snapshotter(self):
        """overlayfs when containerd's plugin loaded (it test-mounts an
        overlay at init), else native."""
        out = self.ctr("plugins", "ls").stdout
        status = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 4 and f[0] == "io.containerd.snapshotter.v1":
                status[f[1]] = f[-1]
        if status.get("overlayfs") == "ok":
            return "overlayfs"
        if status.get("native") == "ok":
            return "native"
        raise RuntimeError("no usable snapshotter: %s" % status)

    def ctr(self, *args, check=True, timeout=300):
        """Runs `ctr -a SOCK -n NS ARGS`; returns the CompletedProcess (text).
        With check, a non-zero exit raises with ctr's stderr."""
        cmd = self.wrap + [CTR, "-a", self.sock, "-n", self.namespace] + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd[len(self.wrap) + 5:][:3]),
                                                    r.returncode,
                                                    (r.stderr or r.stdout).strip()))
        return r

    def pull(self, ref, plain_http=True, platform=None, hosts_dir=None, user=None):
        """Pulls and unpacks ref (the host's platform unless `platform`).
        user: "USER:PASS" for the registry (`ctr --user`; never in errors).
        Returns {"name", "digest", "media_type"} as containerd recorded them:
        digest is the top-level manifest's (the index for a multi-arch image)."""
        args = ["images", "pull", "--snapshotter", self.snapshotter]
        if plain_http:
            args.append("--plain-http")
        if platform:
            args += ["--platform", platform]
        if hosts_dir:
            args += ["--hosts-dir", hosts_dir]
        if user:
            args += ["--user", user]
        self.ctr(*(args + [ref]))
        return self.image(ref)

    def image(self, ref):
        """{"name", "digest", "media_type"} of an image containerd holds, or None."""
        out = self.ctr("images", "ls").stdout.splitlines()
        for line in out[1:]:
            f = line.split()
            if f and f[0] == ref:
                return {"name": f[0], "media_type": f[1], "digest": f[2]}
        return None

    def rootfs(self, ref, platform=None):
        """{path: sha256 hex} of every regular file in ref's unpacked rootfs,
        as containerd's snapshotter built it (`ctr images mount`, read-only,
        unmounted and its snapshot removed before returning). Paths are
        relative, "/"-separated, without a leading "./"."""
        target = tempfile.mkdtemp(prefix="mnt.", dir=self.dir)
        args = ["images", "mount", "--snapshotter", self.snapshotter]
        if platform:
            args += ["--platform", platform]
        self.ctr(*(args + [ref, target]))
        try:
            return tree_files(target)
        finally:
            self.ctr("images", "unmount", "--rm", target, check=False)
            # A mount left behind (ctr killed) must not pin the temp dir.
            if os.path.ismount(target):
                subprocess.run(["umount", "-l", target], check=False)
            try:
                os.rmdir(target)
            except OSError:
                pass

    def remove(self, *refs):
        """ctr image rm --sync: a later pull fetches every blob again."""
        if refs:
            self.ctr("images", "rm", "--sync", *refs)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def stop(self):
        """SIGTERM by PID, SIGKILL after 10 s."""
        if self.proc is not None:
            registry.stop_proc(self.proc, grace=10)
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def close(self):
        self.stop()
        # Anything still mounted under the dir (a crash mid-rootfs) first.
        with open("/proc/self/mounts") as f:
            mounts = [l.split()[1] for l in f]
        for m in sorted(mounts, key=len, reverse=True):
            if m.startswith(self.dir + "/"):
                subprocess.run(["umount", "-l", m], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_files(root):
    """{relative path: sha256 hex} of regular files under root (symlinks and
    special files are not followed or listed)."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, root)] = _sha_file(p)
    return out


def _norm(name):
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def apply_layer(files, fileobj):
    """Applies one layer tar (any compression tarfile reads) to `files`
    ({path: sha256 hex}), with OCI whiteouts (.wh.NAME, .wh..wh..opq)."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as t:
        for m in t:
            name = _norm(m.name)
            d, base = os.path.split(name)
            if base == ".wh..wh..opq":
                pre = d + "/" if d else ""
                for k in [k for k in files if k.startswith(pre)]:
                    del files[k]
                continue
            if base.startswith(".wh."):
                gone = os.path.join(d, base[4:])
                for k in [k for k in files if k == gone or k.startswith(gone + "/")]:
                    del files[k]
                continue
            if m.isfile():
                h = hashlib.sha256()
                src = t.extractfile(m)
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                files[name] = h.hexdigest()
            else:
                files.pop(name, None)  # a directory, link or device replaces a file
    return files


def layer_files(layout_path, manifest_digest, arch="amd64"):
    """{path: sha256 hex} of the regular files an image's layers hold, read
    from the OCI layout it was built in (images.Layout.path), independently
    of containerd. manifest_digest may be an index: the `arch` child is used."""
    def blob(d):
        return os.path.join(layout_path, "blobs", "sha256", d.split(":", 1)[1])

    with open(blob(manifest_digest), "rb") as f:
        man = json.load(f)
    if "manifests" in man:  # an index
        kids = [m for m in man["manifests"]
                if (m.get("platform") or {}).get("architecture") == arch]
        if len(kids) != 1:
            raise ValueError("index %s has %d %s children" % (manifest_digest, len(kids), arch))
        return layer_files(layout_path, kids[0]["digest"], arch)
    files = {}
    for l in man["layers"]:
        if l["size"] == 0:
            continue  # the empty blob is not a tar (images.empty_layer)
        with open(blob(l["digest"]), "rb") as f:
            apply_layer(files, f)
    return files


# ---- copiers: fill the cache registry -------------------------------------

def cache_repo(ref):
    """Cache repository and tag-or-digest suffix of a normalised reference
    host/path[:tag][@digest] (host lower-cased, ":" -> "__").
    Returns (repo, suffix) where suffix is ":tag" or "@digest" (a digest
    wins, as the controller pushes digest references by digest only)."""
    name, digest = (ref.split("@", 1) + [None])[:2]
    tag = None
    slash = name.find("/")
    if name.rfind(":") > slash:
        name, tag = name.rsplit(":", 1)
    host, path = name[:slash], name[slash + 1:]
    repo = host.lower().replace(":", "__") + "/" + path
    return repo, ("@" + digest) if digest else (":" + (tag or "latest"))


def rewritten(ref, cache_host="localhost:7439"):
    """docs/design.md's rewritten form (tag and digest both kept when both given)."""
    name, digest = (ref.split("@", 1) + [None])[:2]
    slash = name.find("/")
    host, rest = name[:slash], name[slash + 1:]
    out = "%s/%s/%s" % (cache_host, host.lower().replace(":", "__"), rest)
    return out + ("@" + digest if digest else "")


def skopeo_cold(args, policy, timeout=900):
    """Runs `skopeo --policy P ARGS` with an empty blob-info cache of its own:
    a private mount namespace with a tmpfs on /var/lib/containers/cache, so
    no earlier copy (ours or anyone's) makes this one look warm, and the
    shared cache file is never touched. Returns the CompletedProcess."""
    cache = "/var/lib/containers/cache"
    os.makedirs(cache, mode=0o700, exist_ok=True)
    script = 'mount -t tmpfs thaw-skopeo-cache "$1" && shift && exec "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
           cache, "skopeo", "--policy", policy] + list(args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class SkopeoCopier:
    """The stand-in: `skopeo copy --all --preserve-digests` from upstream
    (plain HTTP) into the cache repository, cold each time."""

    kind = "skopeo"

    def __init__(self, cache_url, workdir, **_):
        self.cache_host = cache_url.split("://", 1)[1].rstrip("/")
        self.policy = os.path.join(workdir, "skopeo-policy.json")
        with open(self.policy, "w") as f:
            f.write('{"default":[{"type":"insecureAcceptAnything"}]}')
        self.digestfile = os.path.join(workdir, "skopeo.digest")
        self.peak_rss_kib = None

    def start(self):
        pass

    def warm(self, ref, timeout=900):
        """Copies ref into the cache; returns the top-level manifest digest."""
        repo, suffix = cache_repo(ref)
        r = skopeo_cold(["copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                         "--dest-tls-verify=false", "--digestfile", self.digestfile,
                         "docker://" + ref,
                         "docker://%s/%s%s" % (self.cache_host, repo, suffix)],
                        self.policy, timeout)
        if r.returncode != 0:
            raise RuntimeError("skopeo copy %s failed: %s" % (ref, r.stderr.strip()))
        with open(self.digestfile) as f:
            return f.read().strip()

    def forget(self):
        pass

    def close(self):
        pass


class ThawCopier:
    """thaw-controller as a child (stopped by PID): warm(ref) creates the
    CachedImage of ref in the emulator (test/with-emulator.sh must be the
    parent: KUBECONFIG, THAW_EMU_URL) and waits until status.phase is Ready.
    peak_rss_kib is the controller's VmHWM, read just before it is stopped."""

    kind = "thaw"

    def __init__(self, cache_url, workdir, binary, insecure=(), cache_host="localhost:7439",
                 concurrency=4, blob_concurrency=4, namespace="thaw-system", extra=()):
        import stack  # only here: it needs the emulator's client modules
        self.stack = stack
        self.binary = binary
        self.cache_url = cache_url
        self.insecure = list(insecure)
        self.cache_host = cache_host
        self.concurrency, self.blob_concurrency = concurrency, blob_concurrency
        self.namespace = namespace
        self.extra = list(extra)
        self.log_path = os.path.join(workdir, "thaw-controller.log")
        self.proc = None
        self._log = None
        self.api = None
        self.names = []
        self.peak_rss_kib = None
        self.last_seconds = None

    def start(self, timeout=30):
        assert self.proc is None
        self.api = self.api or self.stack.Api()
        port = registry.free_port()
        self.metrics_url = "http://127.0.0.1:%d" % port
        self._log = open(self.log_path, "ab")
        argv = [self.binary, "--kubeconfig", os.environ["KUBECONFIG"],
                "--namespace", self.namespace, "--registry-url", self.cache_url,
                "--cache-host", self.cache_host,
                "--metrics-bind-address", "127.0.0.1:%d" % port,
                "--concurrency", str(self.concurrency),
                "--blob-concurrency", str(self.blob_concurrency),
                "--leader-elect=false"] + self.extra
        if self.insecure:
            argv += ["--insecure-registries", ",".join(self.insecure)]
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=registry.die_with_parent)
        deadline = time.time() + timeout
        while registry.http_status(self.metrics_url + "/readyz", 0.5) != 200:
            if self.proc.poll() is not None:
                raise RuntimeError("thaw-controller exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.time() > deadline:
                raise RuntimeError("thaw-controller not ready after %d s; log:\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.02)

    def warm(self, ref, timeout=900):
        """Creates the CachedImage of ref and waits for Ready; returns
        status.digest. self.last_seconds: create -> Ready seen (polled every
        10 ms). Failed is not final (the controller retries) until timeout."""
        name = self.stack.ci_name(ref)
        path = self.stack.CI_PATH + "/" + name
        body = {"apiVersion": "thaw.dev/v1alpha1", "kind": "CachedImage",
                "metadata": {"name": name}, "spec": {"image": ref}}
        t0 = time.monotonic()
        self.api.ok("POST", self.stack.CI_PATH, body)
        self.names.append(name)
        deadline = t0 + timeout
        last = None
        conn = self.api.conn()
        while True:
            try:
                st, doc, _ = self.api.request("GET", path, conn=conn)
            except OSError:  # the emulator closed the kept-alive connection
                conn.close()
                conn = self.api.conn()
                continue
            status = (doc or {}).get("status") or {} if st == 200 else {}
            if status.get("phase") == "Ready":
                self.last_seconds = time.monotonic() - t0
                conn.close()
                return status.get("digest")
            last = status
            if self.proc.poll() is not None:
                raise RuntimeError("thaw-controller exited with %s during the warm of %s;"
                                   " log:\n%s" % (self.proc.returncode, ref, self.log_tail()))
            if time.monotonic() > deadline:
                raise RuntimeError("%s not Ready after %d s (status %s); log:\n%s"
                                   % (ref, timeout, json.dumps(last), self.log_tail()))
            time.sleep(0.01)

    def forget(self, timeout=15):
        """Deletes the CachedImages this copier created (so a later controller
        does not act on them), finalizers removed if they hold one back."""
        for name in self.names:
            self.api.request("DELETE", self.stack.CI_PATH + "/" + name)
        deadline = time.time() + timeout
        for name in self.names:
            path = self.stack.CI_PATH + "/" + name
            while self.api.request("GET", path)[0] == 200:
                if time.time() > deadline:
                    self.api.request("PATCH", path, {"metadata": {"finalizers": None}},
                                     ctype="application/merge-patch+json")
                    break
                time.sleep(0.05)
        self.names = []

    def rss_kib(self):
        """(VmRSS, VmHWM) of the running controller in KiB."""
        out = {}
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
        return out.get("VmRSS"), out.get("VmHWM")

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.peak_rss_kib = self.rss_kib()[1]
                except OSError:
                    pass
            registry.stop_proc(self.proc, grace=10)
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def close(self):
        if self.proc is not None and self.names:
            try:
                self.forget()
            except Exception:  # cleanup must go on
                pass
        self.stop()

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""


def make_copier(kind, cache_url, workdir, binary=None, insecure=(), **kw):
    """The one switch: "skopeo" (stand-in) or "thaw" (binary required)."""
    if kind == "skopeo":
        return SkopeoCopier(cache_url, workdir)
    if kind == "thaw":
        if not binary:
            raise ValueError("the thaw copier needs the thaw-controller binary")
        return ThawCopier(cache_url, workdir, binary, insecure, **kw)
    raise ValueError("unknown copier %r" % kind)
