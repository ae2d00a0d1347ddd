#!/usr/bin/env python3
"""images.py - synthetic, byte-deterministic test images pushed with skopeo.

Layouts are written by this file (tarfile + gzip with fixed mtimes, owners
and seeds), not by umoci: umoci stamps the current time into the config and
history, so digests would change on every run. The result is a standard OCI
image layout (`umoci stat`/`skopeo inspect oci:DIR:TAG` read it), pushed with
`skopeo copy oci:DIR:TAG docker://...`.

    imgs = Images(workdir)                 # layouts under workdir
    info = imgs.push(imgs.single(), "127.0.0.1:5000/test/single:v1")
    info["digest"], info["blobs"], info["children"], info["manifest"]

Kinds (each a builder method returning a Layout):
  single(arch)        one layer, linux/amd64 by default
  multiarch()         OCI index, linux/amd64 + linux/arm64, distinct layers;
                      push copies every child (skopeo --all)
  single() with fmt="v2s2" in push(): Docker v2 schema 2 media types
                      (skopeo converts; digest from --digestfile)
  empty_layer()       a layer blob of 0 bytes, sha256:e3b0c442..., in a
                      hand-written manifest with media type
                      application/vnd.oci.image.layer.v1.tar (an empty byte
                      string, not an empty tar archive)
  big(size)           one layer of `size` random incompressible bytes from a
                      fixed seed, gzip level 1, cached in THAW_IMAGE_CACHE
                      (default $TMPDIR/thaw-image-cache) keyed by seed+size
  many(n=30)          n small layers
  shared()            two layouts (A, B) whose first two layers are the same
  umoci(name, files)  an image built by umoci itself (its digest changes
                      from run to run: umoci stamps the time)

Run as a script: images.py HOST[:PORT] [--prefix test] [--big-size N]
[--creds user:pw] pushes every kind and prints a JSON map kind -> info.
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
MTIME = 1700000000  # fixed file times: same bytes on every run
CREATED = "2024-01-01T00:00:00Z"


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_bytes(files):
    """Uncompressed tar of {path: bytes}, fixed owner/mode/mtime."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for path in sorted(files):
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = len(files[path]), MTIME, 0o644
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            t.addfile(ti, io.BytesIO(files[path]))
    return buf.getvalue()


def gz(data, level=6):
    return gzip.compress(data, compresslevel=level, mtime=0)


class RandomReader:
    """A file-like stream of `size` seeded random bytes (fixed 1 MiB steps,
    so the same seed and size always give the same bytes)."""

    def __init__(self, seed, size):
        self.rng, self.left, self.buf = random.Random(seed), size, b""

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        while len(self.buf) < n:
            self.buf += self.rng.randbytes(1 << 20)
        out, self.buf = self.buf[:n], self.buf[n:]
        self.left -= n
        return out


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            f.write('{"imageLayoutVersion":"1.0.0"}')
        self.refs = []
        self.blobs = []  # every blob digest, manifests excluded, in push order
        self.children = []  # child manifest digests of an index

    def blob_path(self, digest):
        return os.path.join(self.path, "blobs", "sha256", digest.split(":", 1)[1])

    def put(self, data, media_type):
        d = sha(data)
        with open(self.blob_path(d), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": d, "size": len(data)}

    def put_file(self, src, digest, media_type):
        dst = self.blob_path(digest)
        if not os.path.exists(dst):
            try:
                os.link(src, dst)  # the cached big layer: no copy
            except OSError:
                shutil.copyfile(src, dst)
        return {"mediaType": media_type, "digest": digest, "size": os.path.getsize(src)}

    def image(self, layers, arch="amd64", note=""):
        """layers: [(descriptor, diff_id)]. Writes config + manifest."""
        config = {"architecture": arch, "os": "linux", "created": CREATED,
                  "config": {"Cmd": ["/hello"], "Labels": {"thaw.test": note}},
                  "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
                  "history": [{"created": CREATED, "created_by": "images.py"}
                              for _ in layers]}
        cdesc = self.put(json.dumps(config, sort_keys=True).encode(), OCI_CONFIG)
        man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cdesc,
               "layers": [l for l, _ in layers]}
        mdesc = self.put(json.dumps(man, sort_keys=True).encode(), OCI_MANIFEST)
        for l, _ in layers:
            if l["digest"] not in self.blobs:
                self.blobs.append(l["digest"])
        self.blobs.append(cdesc["digest"])
        mdesc["platform"] = {"architecture": arch, "os": "linux"}
        return mdesc

    def layer(self, files):
        t = tar_bytes(files)
        return self.put(gz(t), OCI_LAYER_GZ), sha(t)

    def tag(self, desc, tag="latest"):
        d = dict(desc)
        d.pop("platform", None)
        d["annotations"] = {"org.opencontainers.image.ref.name": tag}
        self.refs.append(d)
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.refs}, f, sort_keys=True)
        self.top = desc
        return self


class Images:
    def __init__(self, workdir, cache=None):
        self.dir = workdir
        self.cache = cache or os.environ.get("THAW_IMAGE_CACHE") or \
            os.path.join(tempfile.gettempdir(), "thaw-image-cache")
        self.policy = os.path.join(workdir, "policy.json")
        os.makedirs(workdir, exist_ok=True)
        with open(self.policy, "w") as f:  # own policy: no dependence on /etc/containers
            f.write('{"default":[{"type":"insecureAcceptAnything"}]}')

    def _layout(self, name):
        p = os.path.join(self.dir, name)
        shutil.rmtree(p, ignore_errors=True)
        return Layout(p)

    def umoci(self, name, files):
        """An image built by umoci (init, new, unpack, add files, repack):
        real umoci output, but with the current time in its config, so its
        digest changes from run to run. files: {path: bytes}."""
        path = os.path.join(self.dir, name)
        bundle = path + ".bundle"
        for p in (path, bundle):
            shutil.rmtree(p, ignore_errors=True)
        run = lambda *a: subprocess.run(["umoci"] + list(a), check=True,
                                        capture_output=True)
        run("init", "--layout", path)
        run("new", "--image", path + ":latest")
        run("unpack", "--rootless", "--image", path + ":latest", bundle)
        for rel, data in files.items():
            dst = os.path.join(bundle, "rootfs", rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
        run("repack", "--image", path + ":latest", bundle)
        shutil.rmtree(bundle, ignore_errors=True)
        lo = Layout.__new__(Layout)  # adopt umoci's layout as it is
        lo.path = path
        with open(os.path.join(path, "index.json")) as f:
            lo.refs = json.load(f)["manifests"]
        lo.top = lo.refs[-1]
        with open(lo.blob_path(lo.top["digest"]), "rb") as f:
            man = json.load(f)
        lo.blobs = [l["digest"] for l in man["layers"]] + [man["config"]["digest"]]
        lo.children = []
        return lo

    def single(self, arch="amd64", name=None):
        lo = self._layout(name or "single-" + arch)
        l = lo.layer({"hello": ("hello from %s\n" % arch).encode(),
                      "etc/os-release": b"ID=thaw-test\n"})
        return lo.tag(lo.image([l], arch, "single-" + arch))

    def multiarch(self):
        lo = self._layout("multiarch")
        kids = []
        for arch in ("amd64", "arm64"):
            l = lo.layer({"arch": arch.encode() + b"\n",
                          "bin/hello": hashlib.sha256(arch.encode()).digest() * 64})
            kids.append(lo.image([l], arch, "multiarch-" + arch))
        lo.children = [k["digest"] for k in kids]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": kids}
        return lo.tag(lo.put(json.dumps(index, sort_keys=True).encode(), OCI_INDEX))

    def empty_layer(self):
        lo = self._layout("empty-layer")
        zero = lo.put(b"", OCI_LAYER_TAR)
        assert zero["digest"] == EMPTY_DIGEST
        l = lo.layer({"hello": b"next to a 0-byte layer\n"})
        return lo.tag(lo.image([(zero, EMPTY_DIGEST), l], "amd64", "empty-layer"))

    def big(self, size=200 << 20, seed=42):
        os.makedirs(self.cache, exist_ok=True)
        base = os.path.join(self.cache, "big-%d-%d" % (seed, size))
        if not os.path.exists(base + ".json"):
            tmp = base + ".%d.tmp" % os.getpid()
            raw = hashlib.sha256()

            class Tee:  # diff_id: sha256 of the uncompressed tar while writing it
                def __init__(self, f):
                    self.f = f

                def write(self, b):
                    raw.update(b)
                    return self.f.write(b)

                def tell(self):
                    return self.f.tell()

            with open(tmp, "wb") as out, \
                    gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as g:
                with tarfile.open(fileobj=Tee(g), mode="w|", format=tarfile.USTAR_FORMAT) as t:
                    ti = tarfile.TarInfo("big.bin")
                    ti.size, ti.mtime, ti.mode, ti.uname, ti.gname = size, MTIME, 0o644, "root", "root"
                    t.addfile(ti, RandomReader(seed, size))
            h = hashlib.sha256()
            with open(tmp, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            os.rename(tmp, base + ".tar.gz")
            with open(base + ".json.tmp", "w") as f:
                json.dump({"digest": "sha256:" + h.hexdigest(),
                           "diff_id": "sha256:" + raw.hexdigest()}, f)
            os.rename(base + ".json.tmp", base + ".json")
        with open(base + ".json") as f:
            meta = json.load(f)
        lo = self._layout("big-%d" % size)
        l = lo.put_file(base + ".tar.gz", meta["digest"], OCI_LAYER_GZ)
        return lo.tag(lo.image([(l, meta["diff_id"])], "amd64", "big"))

    def many(self, n=30):
        lo = self._layout("many-%d" % n)
        layers = [lo.layer({"layer/%02d" % i: ("layer %d\n" % i).encode() * (i + 1)})
                  for i in range(n)]
        return lo.tag(lo.image(layers, "amd64", "many"))

    def shared(self):
        """Two images; both start with the same two layers."""
        out = []
        for who in ("a", "b"):
            lo = self._layout("shared-" + who)
            common = [lo.layer({"base/lib": b"shared base layer\n" * 100}),
                      lo.layer({"base/etc": b"shared config layer\n"})]
            own = lo.layer({"app": ("app %s\n" % who).encode()})
            out.append(lo.tag(lo.image(common + [own], "amd64", "shared-" + who)))
        return out

    def push(self, lo, dest, creds=None, fmt=None, tls_verify=False, retry=0):
        """skopeo copy the layout to docker://dest. Returns {"ref", "digest",
        "manifest" (bytes written by us, or None when skopeo converted),
        "blobs", "children"}. fmt "v2s2" converts to Docker media types."""
        digestfile = os.path.join(self.dir, "digest.%d" % os.getpid())
        cmd = ["skopeo", "--policy", self.policy, "copy", "--all",
               "--digestfile", digestfile,
               "--dest-tls-verify=%s" % ("true" if tls_verify else "false")]
        if retry:
            cmd += ["--retry-times", str(retry)]
        if creds:
            cmd += ["--dest-creds", creds]
        if fmt:
            cmd += ["--format", fmt]
        else:  # else skopeo gzips uncompressed layers (the 0-byte one)
            cmd += ["--preserve-digests"]
        cmd += ["oci:%s:%s" % (lo.path, lo.refs[-1]["annotations"]
                               ["org.opencontainers.image.ref.name"]), "docker://" + dest]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("skopeo copy to %s failed: %s" % (dest, r.stderr.strip()))
        with open(digestfile) as f:
            digest = f.read().strip()
        os.unlink(digestfile)
        with open(lo.blob_path(lo.top["digest"]), "rb") as f:
            manifest = f.read()
        if not fmt:
            assert digest == lo.top["digest"], (digest, lo.top["digest"])
        repo = dest.rsplit("@", 1)[0]
        if repo.rfind(":") > repo.rfind("/"):
            repo = repo[:repo.rfind(":")]
        return {"ref": dest, "repo": repo, "digest": digest,
                "manifest": None if fmt else manifest,
                "blobs": list(lo.blobs), "children": list(lo.children)}


def push_all(imgs, host, prefix="test", creds=None, big_size=0):
    """Every kind pushed under HOST/PREFIX/...; returns kind -> info."""
    out = {}
    r = lambda name: "%s/%s/%s:v1" % (host, prefix, name)
    out["single"] = imgs.push(imgs.single(), r("single"), creds)
    out["v2s2"] = imgs.push(imgs.single(), r("single-v2s2"), creds, fmt="v2s2")
    out["multiarch"] = imgs.push(imgs.multiarch(), r("multiarch"), creds)
    out["empty_layer"] = imgs.push(imgs.empty_layer(), r("empty-layer"), creds)
    out["many"] = imgs.push(imgs.many(30), r("many"), creds)
    a, b = imgs.shared()
    out["shared_a"] = imgs.push(a, r("shared-a"), creds)
    out["shared_b"] = imgs.push(b, r("shared-b"), creds)
    if big_size:
        out["big"] = imgs.push(imgs.big(big_size), r("big"), creds)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("host", help="registry host:port (plain HTTP)")
    ap.add_argument("--prefix", default="test")
    ap.add_argument("--creds")
    ap.add_argument("--big-size", type=int, default=0, help="bytes; 0 skips the big image")
    ap.add_argument("--workdir")
    a = ap.parse_args()
    work = a.workdir or tempfile.mkdtemp(prefix="thaw-images.")
    try:
        res = push_all(Images(work), a.host, a.prefix, a.creds, a.big_size)
        for v in res.values():
            v.pop("manifest", None)
        json.dump(res, sys.stdout, indent=1)
        print()
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
