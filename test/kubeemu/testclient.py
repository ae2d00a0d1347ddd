"""Helpers shared by test/conformance.py and test/test_emulator.py: start a private
kubeemu on a free port (stopped by PID), and a small HTTPS client."""

import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")


class Emulator:
    def __init__(self, token=True, bookmark_interval=60, client_ca=False):
        self.dir = tempfile.mkdtemp(prefix="kubeemu-test.")
        self.proc = None
        try:
            self._start(token, bookmark_interval, client_ca)
        except BaseException:
            self.stop()
            raise

    def _ssl(self, *args):
        subprocess.run(["openssl"] + list(args), check=True, cwd=self.dir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _start(self, token, bookmark_interval, client_ca):
        d = self.dir
        self._ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                  "-subj", "/CN=emu-ca", "-keyout", "ca.key", "-out", "ca.pem")
        self._ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                  "-keyout", "server.key", "-out", "server.csr")
        with open(os.path.join(d, "ext.cnf"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        self._ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "server.pem")
        self.ca = os.path.join(d, "ca.pem")
        self.token = "tok-" + os.urandom(8).hex() if token else None
        self.tokens_file = os.path.join(d, "tokens")
        args = [sys.executable, SERVER, "--listen", "127.0.0.1:0",
                "--tls-cert", os.path.join(d, "server.pem"),
                "--tls-key", os.path.join(d, "server.key"),
                "--ready-file", os.path.join(d, "ready"),
                "--bookmark-interval", str(bookmark_interval),
                "--log-file", os.path.join(d, "log")]
        if token:
            with open(self.tokens_file, "w") as f:
                f.write(self.token + "\n")
            args += ["--tokens-file", self.tokens_file]
        if client_ca:
            args += ["--client-ca", self.ca]
        self.proc = subprocess.Popen(args)
        ready = os.path.join(d, "ready")
        deadline = time.time() + 20
        while not os.path.exists(ready):   # written atomically (rename)
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.05)
        with open(ready) as f:
            self.port = int(f.read())
        self.ctx = ssl.create_default_context(cafile=self.ca)

    def conn(self, timeout=30, ctx=None):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx or self.ctx,
                                           timeout=timeout)

    def request(self, method, path, body=None, ctype="application/json", token=None,
                conn=None, headers=None):
        """(status, parsed-or-raw body, headers)."""
        c = conn or self.conn()
        h = {"Accept": "application/json"}
        if token is None:
            token = self.token
        if token:
            h["Authorization"] = "Bearer " + token
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            h["Content-Type"] = ctype
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        try:
            doc = json.loads(data)
        except ValueError:
            doc = data
        return r.status, doc, r

    def control(self, name, body=None, method="POST"):
        st, doc, _ = self.request(method, "/_emulator/" + name,
                                  None if method == "GET" else (body or {}), token="")
        assert st == 200, (name, st, doc)
        return doc

    def watch(self, path, timeout=30):
        """Opens a watch; returns (response, connection)."""
        c = self.conn(timeout=timeout)
        h = {"Accept": "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        c.request("GET", path, headers=h)
        return c.getresponse(), c

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def read_events(resp, limit=None):
    """Events of a watch until the stream ends (or `limit` events)."""
    out = []
    while limit is None or len(out) < limit:
        line = resp.readline()
        if not line:
            break
        out.append(json.loads(line))
    return out
