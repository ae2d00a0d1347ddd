"""An OCI image archive as images/build.sh writes it (one image, tar of an OCI
layout), read with tarfile only, independently of buildah and containerd.

    a = Archive(path)
    a.ref                  # org.opencontainers.image.ref.name, "thaw/NAME:VERSION"
    a.manifest, a.config   # parsed JSON
    a.entries              # {path: Entry} of the layers applied in order
    a.files()              # {path: size} of the regular files
    a.resolve(path)        # the path a symlink chain ends at inside the image
    a.read(path)           # bytes of a regular file
    a.archive_bytes        # the archive's size (layers gzip-compressed)
    a.layer_bytes          # uncompressed layer tar streams, summed (diff size)
"""

import collections
import gzip
import io
import json
import posixpath
import tarfile

Entry = collections.namedtuple("Entry", "type size mode uid gid mtime linkname")


def _norm(name):
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


class Archive:
    def __init__(self, path):
        self.path = path
        with tarfile.open(path) as t:
            blobs = {m.name: m for m in t.getmembers()}
            self._tar_names = sorted(blobs)

            def blob(digest):
                return t.extractfile(blobs["blobs/sha256/" + digest.split(":", 1)[1]]).read()

            index = json.loads(t.extractfile(blobs["index.json"]).read())
            if len(index["manifests"]) != 1:
                raise ValueError("%s: %d manifests" % (path, len(index["manifests"])))
            top = index["manifests"][0]
            self.ref = (top.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            self.manifest_digest = top["digest"]
            self.manifest = json.loads(blob(top["digest"]))
            self.config = json.loads(blob(self.manifest["config"]["digest"]))
            self.entries, self._data, self.layer_bytes = {}, {}, 0
            for layer in self.manifest["layers"]:
                raw = blob(layer["digest"])
                if layer["mediaType"].endswith("+gzip"):
                    raw = gzip.decompress(raw)
                self.layer_bytes += len(raw)
                self._apply(raw)
        with open(path, "rb") as f:
            f.seek(0, 2)
            self.archive_bytes = f.tell()

    def _apply(self, raw):
        with tarfile.open(fileobj=io.BytesIO(raw)) as t:
            for m in t:
                name = _norm(m.name)
                base = posixpath.basename(name)
                if base.startswith(".wh."):
                    raise ValueError("whiteout %s in a from-scratch image" % name)
                kind = ("file" if m.isfile() else "dir" if m.isdir() else
                        "symlink" if m.issym() else "hardlink" if m.islnk() else "other")
                self.entries[name] = Entry(kind, m.size, m.mode, m.uid, m.gid, m.mtime,
                                           m.linkname)
                if m.isfile():
                    self._data[name] = t.extractfile(m).read()

    def files(self):
        return {p: e.size for p, e in self.entries.items() if e.type == "file"}

    def read(self, path):
        return self._data[self.resolve(path)]

    def resolve(self, path, depth=0):
        """The image path that `path` names once every symlink on the way is
        followed inside the image (absolute targets from the image's root);
        None when a component is missing or the chain loops."""
        if depth > 16:
            return None
        parts = [p for p in _norm(path).split("/") if p]
        cur = ""
        for i, comp in enumerate(parts):
            cur = posixpath.join(cur, comp) if cur else comp
            e = self.entries.get(cur)
            if e is None:
                return None
            if e.type == "symlink":
                target = e.linkname
                base = "" if target.startswith("/") else posixpath.dirname(cur)
                rest = "/".join(parts[i + 1:])
                joined = posixpath.normpath(posixpath.join("/", base, target, rest))
                return self.resolve(joined, depth + 1)
        return cur
