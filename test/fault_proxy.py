#!/usr/bin/env python3
"""fault_proxy.py - a streaming HTTP reverse proxy in front of a registry
that injects faults into requests whose path matches a regex.

    fault_proxy.py --upstream http://127.0.0.1:5000 --ready-file F

listens on a free loopback port (written to F) and forwards everything it
does not fault unchanged, chunk by chunk (blobs are never held in memory):
all end-to-end headers incl. Docker-Content-Digest and WWW-Authenticate, the
client's Host (so the registry builds upload Locations for the proxy), and
absolute Location headers naming the upstream rewritten to the proxy.

Control endpoint (never counted, never faulted):
  POST   /_fault    a rule or a list of rules (JSON), appended
  GET    /_fault    {"rules": left, "paths": {path: n}, "requests": n,
                     "faults": [{"method", "path", "fault"}],
                     "methods": {"METHOD path": n}, "bytes": response body
                     bytes relayed to clients, "answers": {"METHOD path
                     STATUS": n} of the upstream's answers relayed}
  DELETE /_fault    drop rules and counters (?counters: counters only)
--listen ADDR binds another address than 127.0.0.1 (e.g. a bridge's, for
clients in other network namespaces).
A rule; the first live one matching a request applies:
  {"match": "/blobs/sha256:", "method": "GET", "times": 1,   # times<=0: forever
   one of:
   "status": 500 | 429, "retry_after": "1"   answer it here, upstream untouched
   "reset_after": K      forward, send headers + K body bytes, then TCP RST
   "truncate_after": K   same but a clean close (body short of Content-Length)
   "corrupt": true       flip one body byte at "offset" (default 0): wrong digest
   and, combinable with the above or alone:
   "delay": S            seconds before forwarding
   "rate": B             throttle the response body to B bytes/s}
From Python, FaultProxy (below) runs it as a child and stops it by PID.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import registry  # noqa: E402
HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
       "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
CHUNK = 64 << 10


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.clear()

    def clear(self, rules=True):
        if rules:
            self.rules = []
        self.paths, self.faults, self.requests = {}, [], 0
        self.methods, self.bytes, self.answers = {}, 0, {}

    def answered(self, method, path, status):
        with self.lock:
            key = "%s %s %d" % (method, path, status)
            self.answers[key] = self.answers.get(key, 0) + 1

    def sent(self, n):
        with self.lock:
            self.bytes += n

    def take(self, method, path):
        """Count the request; return the rule to apply (a copy) or None."""
        with self.lock:
            self.requests += 1
            self.paths[path] = self.paths.get(path, 0) + 1
            key = method + " " + path
            self.methods[key] = self.methods.get(key, 0) + 1
            for r in self.rules:
                if r.get("method", method) == method and re.search(r["match"], path):
                    if r["times"] > 0:
                        r["times"] -= 1
                        if r["times"] == 0:
                            self.rules.remove(r)
                    self.faults.append({"method": method, "path": path,
                                        "fault": {k: v for k, v in r.items() if k != "times"}})
                    return dict(r)
        return None


def check_rule(r):
    if not isinstance(r, dict) or not isinstance(r.get("match"), str):
        raise ValueError("a rule is an object with a 'match' regex")
    re.compile(r["match"])
    r = dict(r)
    r["times"] = int(r.get("times", 1))
    return r


class Handler(registry.QuietHandler):
    server_version = "fault_proxy"

    def control(self):
        st = self.server.state
        if self.command == "GET":
            with st.lock:
                out = {"rules": st.rules, "paths": st.paths, "faults": st.faults,
                       "requests": st.requests, "methods": st.methods, "bytes": st.bytes,
                       "answers": st.answers}
                body = json.dumps(out).encode()
            self.send(200, body, [("Content-Type", "application/json")])
        elif self.command == "POST":
            try:
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                rules = [check_rule(r) for r in (data if isinstance(data, list) else [data])]
            except (ValueError, re.error) as e:
                self.send(400, str(e).encode())
                return
            with st.lock:
                st.rules.extend(rules)
            self.send(204)
        elif self.command == "DELETE":
            with st.lock:
                st.clear(rules="counters" not in urllib.parse.urlsplit(self.path).query)
            self.send(204)
        else:
            self.send(405)

    def body_chunks(self):
        """The request body as it arrives (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                n = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                left = n
                while left:
                    b = self.rfile.read(min(left, CHUNK))
                    if not b:
                        raise ConnectionError("client body cut")
                    left -= len(b)
                    yield b
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                b = self.rfile.read(min(left, CHUNK))
                if not b:
                    raise ConnectionError("client body cut")
                left -= len(b)
                yield b

    def rst(self):
        # SO_LINGER 0: close() sends RST, the client sees "connection reset"
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def handle_any(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/_fault":
            self.control()
            return
        rule = self.server.state.take(self.command, path) or {}
        if rule.get("delay"):
            time.sleep(float(rule["delay"]))
        if rule.get("status"):
            for _ in self.body_chunks():
                pass
            hdrs = [("Content-Type", "application/json")]
            if rule.get("retry_after") is not None:
                hdrs.append(("Retry-After", str(rule["retry_after"])))
            body = json.dumps({"errors": [{"code": "FAULT", "message":
                                           "injected %d" % rule["status"]}]}).encode()
            self.send(int(rule["status"]), body, hdrs)
            return
        self.forward(rule)

    def forward(self, rule):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=120)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            for k, v in self.headers.items():
                if k.lower() not in HOP:
                    conn.putheader(k, v)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            for b in self.body_chunks():
                conn.send(b"%x\r\n%s\r\n" % (len(b), b) if chunked else b)
            if chunked:
                conn.send(b"0\r\n\r\n")
            resp = conn.getresponse()
            self.relay(resp, rule)
        except (ConnectionError, socket.timeout, http.client.HTTPException) as e:
            if not getattr(self, "_headers_sent", False):
                try:
                    self.send(502, ("fault_proxy: upstream: %s" % e).encode())
                except OSError:
                    pass
            self.close_connection = True
        finally:
            conn.close()

    def relay(self, resp, rule):
        self.server.state.answered(self.command, self.path, resp.status)
        self.send_response_only(resp.status, resp.reason)
        length = resp.getheader("Content-Length")
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        for k, v in resp.getheaders():
            kl = k.lower()
            if kl in HOP or kl == "content-length":
                continue
            if kl == "location":
                v = v.replace(self.server.upstream_base, self.server.base)
            self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", length)
        elif not no_body:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._headers_sent = True
        if no_body:
            return
        chunked = length is None
        cut = rule.get("reset_after", rule.get("truncate_after"))
        flip = int(rule.get("offset", 0)) if rule.get("corrupt") else None
        rate = float(rule.get("rate") or 0)
        sent, start = 0, time.monotonic()
        step = max(1024, min(CHUNK, int(rate / 20))) if rate else CHUNK
        while True:
            b = resp.read(step)
            if not b:
                break
            if flip is not None and sent <= flip < sent + len(b):
                i = flip - sent
                b = b[:i] + bytes([b[i] ^ 0xFF]) + b[i + 1:]
            if cut is not None and sent + len(b) >= cut:
                b = b[:max(0, cut - sent)]
                self.write_body(b, chunked)
                self.wfile.flush()
                if "reset_after" in rule:
                    self.rst()
                self.close_connection = True
                return
            self.write_body(b, chunked)
            sent += len(b)
            if rate:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def write_body(self, b, chunked):
        if not b:
            return
        self.server.state.sent(len(b))
        if chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(b), b))
        else:
            self.wfile.write(b)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FaultProxy(registry.ChildServer):
    """fault_proxy.py as a child process in front of `upstream`; stop by PID.

        fp = FaultProxy(reg.url); fp.host   # "127.0.0.1:PORT" for skopeo
        fp.add(match="/manifests/", status=500, times=1)
        fp.stats()["faults"]; fp.hits("/blobs/"); fp.clear(); fp.close()
    """

    def __init__(self, upstream):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="thaw-fault-proxy.")
        ready = os.path.join(self.dir, "ready")
        self.proc = None
        try:
            self.proc, self.port = registry.spawn_ready(
                [sys.executable, os.path.abspath(__file__), "--upstream", upstream,
                 "--ready-file", ready], ready)
        except BaseException:
            self.close()
            raise
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def _call(self, method, body=None):
        import urllib.request
        req = urllib.request.Request(self.url + "/_fault", method=method,
                                     data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read() or b"null")

    def add(self, **rule):
        self._call("POST", rule)

    def stats(self):
        return self._call("GET")

    def clear(self):
        self._call("DELETE")

    def clear_counters(self):
        """Counters only: the rules stay."""
        import urllib.request
        req = urllib.request.Request(self.url + "/_fault?counters", method="DELETE")
        urllib.request.urlopen(req, timeout=10).read()

    def hits(self, regex):
        """Requests seen on paths matching regex."""
        return sum(n for p, n in self.stats()["paths"].items() if re.search(regex, p))



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--upstream", required=True, help="http://host:port")
    ap.add_argument("--listen", default="127.0.0.1", help="address to bind")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--rules", default="[]", help="initial rules (JSON list)")
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    srv = Server((a.listen, a.port), Handler)
    srv.state = State()
    srv.state.rules = [check_rule(r) for r in json.loads(a.rules)]
    srv.upstream = urllib.parse.urlsplit(a.upstream)
    srv.upstream_base = "%s://%s" % (srv.upstream.scheme, srv.upstream.netloc)
    srv.base = "http://%s:%d" % (a.listen, srv.server_address[1])
    signal.signal(signal.SIGTERM,
                  lambda *_: threading.Thread(target=srv.shutdown, daemon=True).start())
    if a.ready_file:
        with open(a.ready_file + ".tmp", "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(a.ready_file + ".tmp", a.ready_file)
    srv.serve_forever()
    srv.server_close()


if __name__ == "__main__":
    main()
