#!/usr/bin/env python3
"""experiment_image.py - the reference experiment's image: the study's
grycap/imagemagick shape (about 33 MB in 4 layers: 19.5 MB, 13.3 MB and two
empty ones, compressed sizes as a registry reports them), but runnable: it
does the OSCAR imagemagick service's work, converting a picture to grayscale
with Debian's ImageMagick 6 `convert`, copied in from this machine.

    info = build(workdir)     # OCI layout under workdir; same bytes every build
                              # (cache=DIR: compressed layers kept by content)
    info["layout"], info["ref_name"], info["tag"], info["digest"]
    info["layers"]            # compressed sizes, manifest order
    info["argv"]              # /usr/bin/convert /in/input.png -colorspace Gray /out/output.png
    info["input"]             # a small PNG (written here, not by ImageMagick)

    python3 bench/experiment_image.py OUTDIR   # prints the dict as JSON

Layers, in manifest order:
  1. base-like: the dynamic loader and the system libraries `ldd` names for
     convert (libc, libstdc++, glib, ICU, libxml2, X11, freetype, ...);
  2. app-like: convert, libMagickCore/Wand and the libraries that serve
     ImageMagick alone (fftw3, lcms2, lqr), the coders and filters whose
     libraries are all on this machine with those libraries (JPEG, TIFF,
     WebP, HEIF, ...), ImageMagick's config directories;
  3. and 4. empty: a gzipped empty tar (what `docker build` made for ENV or
     WORKDIR steps), one blob twice (docker's empty layers share a digest).
The two big layers are padded to their compressed targets with a seeded
random (incompressible) file, /usr/share/thaw-experiment/padding-*.bin.
On Debian 12 (ImageMagick 6.9.11, 118 modules) the content compresses to
18.9 MB and 11.1 MB, so the padding is about 0.6 MB and 2.3 MB; the layers
are 19,500,001 and 13,300,002 bytes compressed, 47.1 MB and 41.7 MB
uncompressed, and the image 32.8 MB with its config and manifest.

Deterministic: files in sorted order (the padding last) with fixed owners
and mtimes, gzip by zlib at level 6 with mtime 0, the config's dates fixed;
test/images.py's Layout writes the layout. The bytes depend only on the
ImageMagick and libraries installed: two builds on one machine give the
same digest.

    push(info, "127.0.0.1:PORT/grycap/imagemagick:latest", workdir)  # skopeo
    run(cd, ref, indir, outdir, name)    # ctr run of argv on a pulled image
    check_gray(input_png, output_png)    # None when the output is the input
                                         # in grayscale, else what is wrong
"""
import glob
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "test"))
import images  # noqa: E402

REF_NAME, TAG = "grycap/imagemagick", "latest"
# The study's image as Docker Hub lists it (decimal MB, compressed).
TARGETS = (19_500_000, 13_300_000)
CONVERT = "/usr/bin/convert-im6.q16"   # ImageMagick 6, Q16, on Debian 12
LOADER = "/lib64/ld-linux-x86-64.so.2"
ARGV = ["/usr/bin/convert", "/in/input.png", "-colorspace", "Gray", "/out/output.png"]
IM_CONFIG_DIRS = ["/etc/ImageMagick-6", "/usr/share/ImageMagick-6"]
# Libraries convert links that serve ImageMagick alone go with it in the app
# layer; the coders' own libraries (JPEG, TIFF, WebP, ...) too.
DELEGATES = ("libMagick", "libfftw3.", "liblcms2.", "liblqr-1.")
PADDING_DIR = "usr/share/thaw-experiment"
INPUT_SIZE = (512, 384)
SEED = 11   # issue 11


def im_libdir():
    """ImageMagick's module directory, e.g. /usr/lib/x86_64-linux-gnu/ImageMagick-6.9.11."""
    found = sorted(glob.glob("/usr/lib/x86_64-linux-gnu/ImageMagick-6.*"))
    if not os.path.exists(CONVERT) or not found:
        raise RuntimeError("ImageMagick 6 not installed (%s): test/deps.sh installs "
                           "imagemagick" % CONVERT)
    return found[-1]


def ldd(paths):
    """{path: {soname: resolved path}} of what ld.so loads for each of paths
    (one ldd run); None for a path whose libraries are not all installed."""
    r = subprocess.run(["ldd"] + list(paths), capture_output=True, text=True)
    out, cur = {}, paths[0] if len(paths) == 1 else None
    for line in r.stdout.splitlines():
        if not line.startswith("\t"):
            cur = line.rstrip(":")   # "PATH:" heads each file's list
            continue
        if cur not in out:
            out[cur] = {}
        f = line.split()
        if "=>" in f and f[2] == "not":
            out[cur] = None
        elif "=>" in f and f[2].startswith("/") and out[cur] is not None:
            out[cur][f[0]] = f[2]
    return out


def host_path(p):
    """Debian 12 has a merged /usr (/lib, /bin are links into it): the image
    stores those files under usr/ and has the same links."""
    merged = ("/lib/", "/lib64/", "/bin/", "/sbin/")
    return "/usr" + p if p.startswith(merged) else p


class Tree:
    """Files of one layer: {path in image: (kind, data or link target, mode)}."""

    def __init__(self):
        self.entries = {}

    def add_file(self, dst, src=None, data=None, mode=None):
        if data is None:
            with open(src, "rb") as f:
                data = f.read()
            mode = mode or (0o755 if os.access(src, os.X_OK) else 0o644)
        self.entries[dst.lstrip("/")] = ("file", data, mode or 0o644)

    def add_link(self, dst, target):
        self.entries[dst.lstrip("/")] = ("link", target, 0o777)

    def add_dir(self, dst, mode=0o755):
        self.entries[dst.lstrip("/")] = ("dir", None, mode)

    def add_tree(self, src):
        for d, dirs, names in os.walk(src):
            dirs.sort()
            for n in sorted(names):
                p = os.path.join(d, n)
                if os.path.islink(p):
                    self.add_link(host_path(p), os.readlink(p))
                elif os.path.isfile(p):
                    self.add_file(host_path(p), p)

    def names(self, last=None):
        """Every entry and its parent directories, sorted; `last` at the end."""
        names = set(self.entries)
        for n in list(names):
            parts = n.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                names.add("/".join(parts[:i]))
        return sorted(names - {last}) + ([last] if last in names else [])

    def member(self, n):
        """One tar entry (header + data padded to 512), owner root, fixed mtime."""
        kind, data, mode = self.entries.get(n, ("dir", None, 0o755))
        ti = tarfile.TarInfo(n)
        ti.mtime, ti.mode, ti.uid, ti.gid = images.MTIME, mode, 0, 0
        ti.uname = ti.gname = "root"
        body = b""
        if kind == "dir":
            ti.type = tarfile.DIRTYPE
        elif kind == "link":
            ti.type, ti.linkname = tarfile.SYMTYPE, data
        else:
            ti.size, body = len(data), data + b"\0" * (-len(data) % 512)
        return ti.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape") + body


def padded(tree, target, name, cache=None):
    """(gzip bytes, diff_id, tar length) of tree plus a seeded random file,
    last in the tar, sized so that the compressed layer is `target` bytes
    give or take 64. The rest is compressed once; each try compresses only
    the padding, from a copy of the compressor's state. With a cache
    directory, a layer of the same content is read from there."""
    path = "%s/padding-%s.bin" % (PADDING_DIR, name)
    tree.add_file(path, data=b"")
    prefix = b"".join(tree.member(n) for n in tree.names(last=path)[:-1])
    key = None
    if cache:
        h = hashlib.sha256(prefix)
        h.update(("%s %s %d" % (SEED, name, target)).encode())
        with open(os.path.abspath(__file__), "rb") as f:
            h.update(f.read())   # a change here is a new layer too
        key = os.path.join(cache, "experiment-%s-%s" % (name, h.hexdigest()[:32]))
        try:
            with open(key + ".json") as f:
                meta = json.load(f)
            with open(key + ".tar.gz", "rb") as f:
                return f.read(), meta["diff_id"], meta["raw"]
        except (OSError, ValueError, KeyError):
            pass
    comp = zlib.compressobj(6, zlib.DEFLATED, 31)   # gzip, mtime 0
    zprefix = comp.compress(prefix)
    size = 0
    for _ in range(8):  # random bytes grow by a fixed ratio: converges in 2-3 tries
        tree.add_file(path, data=random.Random("%s-%s" % (SEED, name)).randbytes(size))
        tail = tree.member(path) + b"\0" * 1024   # and the end-of-archive blocks
        c = comp.copy()
        z = zprefix + c.compress(tail) + c.flush()
        short = target - len(z)
        if size == 0 and short < 0:
            raise RuntimeError("layer %s is %d bytes compressed without padding, over its "
                               "target %d" % (name, len(z), target))
        if abs(short) <= 64:
            break
        size = max(0, size + int(short / 1.0003))
    raw = len(prefix) + len(tail)
    h = hashlib.sha256(prefix)
    h.update(tail)
    diff_id = "sha256:" + h.hexdigest()
    if key:
        os.makedirs(cache, exist_ok=True)
        tmp = "%s.%d" % (key, os.getpid())
        with open(tmp, "wb") as f:
            f.write(z)
        os.rename(tmp, key + ".tar.gz")
        with open(tmp, "w") as f:
            json.dump({"diff_id": diff_id, "raw": raw}, f)
        os.rename(tmp, key + ".json")   # last: a reader sees both or neither
    return z, diff_id, raw


def layers():
    """The two big layers' trees (base, app), from this machine's files."""
    imdir = im_libdir()
    base, app = Tree(), Tree()
    libs = dict(ldd([CONVERT])[CONVERT])
    system = set(n for n in libs if not n.startswith(DELEGATES))
    modules = []
    found = sorted(glob.glob(os.path.join(imdir, "modules-*", "*", "*.so")))
    for so, deps in sorted(ldd(found).items()):
        if deps is None:
            continue   # a coder for a format whose library is not installed
        modules.append(so)
        libs.update(deps)
    for soname, path in sorted(libs.items()):
        if soname not in system:
            app.add_file(host_path(os.path.dirname(path)) + "/" + soname, path)
        else:
            base.add_file(host_path(os.path.dirname(path)) + "/" + soname, path)
    base.add_file(host_path(os.path.realpath(LOADER)), os.path.realpath(LOADER))
    base.add_link("/lib", "usr/lib")
    base.add_link("/lib64", "usr/lib64")
    base.add_link("/bin", "usr/bin")
    base.add_link("/usr/lib64/ld-linux-x86-64.so.2", "../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    base.add_dir("/tmp", 0o1777)
    base.add_dir("/in")
    base.add_dir("/out")
    base.add_file("/etc/os-release", data=b"ID=thaw-experiment\nNAME=\"thaw experiment "
                  b"image (grycap/imagemagick's shape)\"\n")
    app.add_file(CONVERT, CONVERT, mode=0o755)
    app.add_link("/usr/bin/convert", os.path.basename(CONVERT))
    for so in modules:
        app.add_file(so, so)
        la = so[:-3] + ".la"
        if os.path.exists(la):
            app.add_file(la, la)
    for d in glob.glob(os.path.join(imdir, "config-*")) + \
            [d for d in IM_CONFIG_DIRS if os.path.isdir(d)]:
        app.add_tree(d)
    return base, app, len(modules)


def png(width, height, rows, color_type, bpp=3):
    """PNG bytes of 8-bit rows (filter 1, "Sub": a gradient's differences
    are small), zlib level 9: deterministic."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    def sub(r):
        return b"\1" + bytes((r[i] - (r[i - bpp] if i >= bpp else 0)) & 0xff
                             for i in range(len(r)))
    raw = b"".join(sub(r) for r in rows)
    return (b"\x89PNG\r\n\x1a\n" +
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def input_picture():
    """A colour picture of a few hundred KB: gradients plus seeded noise."""
    w, h = INPUT_SIZE
    rng = random.Random(SEED)
    rows = []
    for y in range(h):
        noise = rng.randbytes(w * 3)
        row = bytearray(w * 3)
        for x in range(w):
            i = 3 * x
            row[i] = (x * 255 // w + (noise[i] & 7)) & 0xff
            row[i + 1] = (y * 255 // h + (noise[i + 1] & 7)) & 0xff
            row[i + 2] = ((x + y) * 127 // (w + h) + (noise[i + 2] & 15)) & 0xff
        rows.append(bytes(row))
    return png(w, h, rows, 2)


def read_png(path):
    """(width, height, channels, [row bytes]) of an 8-bit non-interlaced PNG
    (gray, gray+alpha, RGB or RGBA), every filter undone."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    channels = {0: 1, 4: 2, 2: 3, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError("PNG depth %d colour type %d interlace %d: not read here"
                         % (depth, ctype, interlace))
    raw, stride, rows, prev = zlib.decompress(idat), w * channels, [], bytearray(w * channels)
    for y in range(h):
        ft = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = cur[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ft == 1:
                cur[i] = (cur[i] + a) & 0xff
            elif ft == 2:
                cur[i] = (cur[i] + b) & 0xff
            elif ft == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 0xff
            elif ft == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
        rows.append(bytes(cur))
        prev = cur
    return w, h, channels, rows


def check_gray(input_png, output_png):
    """None when output_png is input_png in grayscale: same size, one gray
    value per pixel (a gray PNG, or R=G=B), each within the pixel's input
    channels (any luma weighting, linear or not, lies between min and max),
    and not flat. Else a sentence saying what is wrong."""
    try:
        w, h, ic, irows = read_png(input_png)
        ow, oh, oc, orows = read_png(output_png)
    except (OSError, ValueError, zlib.error) as e:
        return "unreadable: %s" % e
    if (w, h) != (ow, oh):
        return "size %dx%d, input %dx%d" % (ow, oh, w, h)
    values = set()
    for y in range(h):
        for x in range(w):
            px = orows[y][x * oc:x * oc + min(oc, 3)]
            if oc >= 3 and not px[0] == px[1] == px[2]:
                return "pixel (%d,%d) is not gray: %s" % (x, y, tuple(px))
            g = px[0]
            rgb = irows[y][x * ic:x * ic + 3]
            if not min(rgb) - 1 <= g <= max(rgb) + 1:
                return "pixel (%d,%d): gray %d outside the input's %s" % (x, y, g, tuple(rgb))
            values.add(g)
    if len(values) < 16:
        return "only %d gray levels" % len(values)
    return None


def build(workdir, cache=None):
    """Writes the layout and the input picture under workdir; returns the
    dict of bench/experiment_image.py's docstring (plus sizes). cache: a
    directory keeping the compressed layers by content (the demo's
    THAW_IMAGE_CACHE), so a rebuild of the same files takes a second."""
    os.makedirs(workdir, exist_ok=True)
    base, app, nmodules = layers()
    shutil.rmtree(os.path.join(workdir, "layout"), ignore_errors=True)  # no stale blobs
    lo = images.Layout(os.path.join(workdir, "layout"))
    descs, raws = [], []
    for tree, target, name in ((base, TARGETS[0], "base"), (app, TARGETS[1], "app")):
        z, diff_id, raw = padded(tree, target, name, cache)
        descs.append((lo.put(z, images.OCI_LAYER_GZ), diff_id))
        raws.append(raw)
    empty_tar = b"\0" * 1024
    empty = (lo.put(images.gz(empty_tar), images.OCI_LAYER_GZ), images.sha(empty_tar))
    descs += [empty, empty]
    raws += [len(empty_tar)] * 2
    config = {"architecture": "amd64", "os": "linux", "created": images.CREATED,
              "config": {"Cmd": ARGV, "WorkingDir": "/",
                         "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
                         "Labels": {"thaw.experiment": "grycap/imagemagick's shape, issue 11"}},
              "rootfs": {"type": "layers", "diff_ids": [d for _, d in descs]},
              "history": [{"created": images.CREATED, "created_by": "experiment_image.py: " + s}
                          for s in ("base (libraries)", "app (ImageMagick)", "ENV", "WORKDIR")]}
    cdesc = lo.put(json.dumps(config, sort_keys=True).encode(), images.OCI_CONFIG)
    man = {"schemaVersion": 2, "mediaType": images.OCI_MANIFEST, "config": cdesc,
           "layers": [l for l, _ in descs]}
    mdesc = lo.put(json.dumps(man, sort_keys=True).encode(), images.OCI_MANIFEST)
    lo.blobs = list(dict.fromkeys([l["digest"] for l, _ in descs] + [cdesc["digest"]]))
    lo.tag(mdesc, TAG)
    indir = os.path.join(workdir, "in")
    os.makedirs(indir, exist_ok=True)
    inp = os.path.join(indir, "input.png")
    with open(inp, "wb") as f:
        f.write(input_picture())
    return {"layout": lo.path, "ref_name": REF_NAME, "tag": TAG, "digest": mdesc["digest"],
            "layers": [l["size"] for l, _ in descs], "layers_uncompressed": raws,
            "size": sum(l["size"] for l, _ in descs) + cdesc["size"] + mdesc["size"],
            "modules": nmodules, "input": inp, "argv": list(ARGV)}


def push(info, dest, workdir, creds=None):
    """skopeo copy of the built layout to docker://dest (plain HTTP), digests
    kept (test/images.py's Images.push); returns its info dict."""
    lo = images.Layout.__new__(images.Layout)  # adopt the layout build() wrote
    lo.path = info["layout"]
    with open(os.path.join(lo.path, "index.json")) as f:
        lo.refs = json.load(f)["manifests"]
    lo.top, lo.children = lo.refs[-1], []
    with open(lo.blob_path(lo.top["digest"]), "rb") as f:
        man = json.load(f)
    lo.blobs = list(dict.fromkeys([l["digest"] for l in man["layers"]] +
                                  [man["config"]["digest"]]))
    return images.Images(workdir).push(lo, dest, creds)


def run(cd, ref, indir, outdir, name, timeout=120):
    """Runs the job once in a container of ref (pulled into `cd`, a
    test/containerd.Containerd): indir read-only at /in, outdir at /out, no
    network; runc's state and cgroup kept private as test/image_run.py does.
    Returns the CompletedProcess (check=False)."""
    flags = ["run", "--rm", "--snapshotter", cd.snapshotter,
             "--runc-root", os.path.join(cd.dir, "runc"), "--cgroup", "",
             "--mount", "type=bind,src=%s,dst=/in,options=rbind:ro" % os.path.abspath(indir),
             "--mount", "type=bind,src=%s,dst=/out,options=rbind:rw" % os.path.abspath(outdir)]
    return cd.ctr(*(flags + [ref, name] + ARGV), check=False, timeout=timeout)


def main():
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: experiment_image.py OUTDIR")
    json.dump(build(sys.argv[1]), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
