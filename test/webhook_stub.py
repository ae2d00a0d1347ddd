"""A tiny HTTPS admission webhook for tests: stdlib http.server + ssl on a free
loopback port, with certificates made by the openssl CLI.

    certs = make_certs(tmpdir)                  # CA + server cert for 127.0.0.1
    with WebhookStub(certs, reply) as hook:     # reply(review) -> see below
        hook.url, hook.calls                    # calls: requestline, headers, body

reply(review) returns a dict (sent as JSON with 200), or a tuple
(status, body, delay_seconds) where body is a dict or bytes.
Run as a script it serves allow-all and prints "PORT <n>" until killed.
"""

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_certs(dirpath, sans=("IP:127.0.0.1", "DNS:localhost"), prefix=""):
    """A fresh CA and a server cert signed by it; paths plus the base64 caBundle."""
    p = {k: os.path.join(dirpath, prefix + k) for k in
         ("ca.key", "ca.pem", "tls.key", "tls.csr", "tls.pem", "ext.cnf")}

    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=stub-ca",
        "-keyout", p["ca.key"], "-out", p["ca.pem"])
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=stub-webhook",
        "-keyout", p["tls.key"], "-out", p["tls.csr"])
    with open(p["ext.cnf"], "w") as f:
        f.write("subjectAltName=" + ",".join(sans) + "\n")
    run("x509", "-req", "-in", p["tls.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
        "-CAcreateserial", "-days", "2", "-extfile", p["ext.cnf"], "-out", p["tls.pem"])
    with open(p["ca.pem"], "rb") as f:
        ca_b64 = base64.b64encode(f.read()).decode()
    return {"ca": p["ca.pem"], "cert": p["tls.pem"], "key": p["tls.key"], "ca_bundle": ca_b64}


def allow(review, patch=None, **extra):
    """An allowed:true v1 reply to review, with an optional JSONPatch list."""
    resp = {"uid": review["request"]["uid"], "allowed": True}
    if patch is not None:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    resp.update(extra)
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        stub = self.server.stub
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        review = json.loads(body)
        stub.calls.append({"requestline": self.requestline, "headers": list(self.headers.items()),
                           "body": review})
        out = stub.reply(review)
        status, payload, delay = out if isinstance(out, tuple) else (200, out, 0)
        if delay:
            time.sleep(delay)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout tests)


class WebhookStub:
    """HTTPS server on 127.0.0.1:<free port>; stop() (or the with-block) ends it."""

    def __init__(self, certs, reply=allow):
        self.reply = reply
        self.calls = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.stub = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs["cert"], certs["key"])
        self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.url = "https://127.0.0.1:%d/mutate" % self.port
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        c = make_certs(d)
        with WebhookStub(c) as hook:
            print("PORT %d" % hook.port, flush=True)
            print("CABUNDLE %s" % c["ca_bundle"], flush=True)
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                sys.exit(0)
