#!/usr/bin/env python3
"""lying_registry.py - a tiny fake registry for test_registry.sh's faults.
Writes its port to the file given as argv[1] once listening; serves until
SIGTERM. Endpoints (anything else: 404):
  /v2/                          200
  /v2/lie/blobs/<d>             bytes that do not hash to <d> (HEAD too)
  /v2/busy/...                  429 Retry-After: 7
  /v2/lie/manifests/<ref>       an OCI manifest whose bytes do not match
                                Docker-Content-Digest (and not <ref>)
  /v2/old/manifests/<ref>       a schema 1 manifest
  /v2/auth/blobs/<d>            401 Basic without Authorization; with it,
                                307 to http://localhost:PORT/data/<d>
  /data/<d>                     b"hello redirect\\n"; 400 if Authorization
                                came along (it must be dropped)
"""
import hashlib
import http.server
import signal
import sys

import registry  # test/registry.py: the script's own directory

REDIR = b"hello redirect\n"
LIE = b"these bytes are not what the digest says\n"
MANI = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'


class H(registry.QuietHandler):
    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        p = self.path.split("?")[0]
        port = self.server.server_address[1]
        if p == "/v2/":
            return self.send(200, b"{}")
        if p.startswith("/v2/lie/blobs/"):
            return self.send(200, LIE)
        if p.startswith("/v2/busy/"):
            return self.send(429, b"{}", [("Retry-After", "7")])
        if p.startswith("/v2/lie/manifests/"):
            return self.send(200, MANI, [
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                ("Docker-Content-Digest", "sha256:" + "0" * 64)])
        if p.startswith("/v2/old/manifests/"):
            return self.send(200, b'{"schemaVersion":1}', [
                ("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")])
        if p.startswith("/v2/auth/blobs/"):
            if not self.headers.get("Authorization"):
                return self.send(401, b"{}", [("WWW-Authenticate", 'Basic realm="lie"')])
            d = p.rsplit("/", 1)[1]
            return self.send(307, b"", [("Location", "http://localhost:%d/data/%s" % (port, d))])
        if p.startswith("/data/"):
            if self.headers.get("Authorization"):
                return self.send(400, b"leaked")
            return self.send(200, REDIR)
        return self.send(404, b"{}")

    def do_POST(self):
        self.send(404, b"{}")


if __name__ == "__main__":
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    srv.serve_forever()
