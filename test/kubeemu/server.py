#!/usr/bin/env python3
"""kubeemu: a Kubernetes API server emulator for thaw's tests (stdlib only).

python3 server.py --listen 127.0.0.1:0 --tls-cert C --tls-key K --ready-file F
    [--tokens-file T] [--client-ca CA] [--bookmark-interval S] [--log-file L]
    [--http1-only] [--max-concurrent-streams N]

HTTPS, one thread per connection. Like kube-apiserver, ALPN offers h2 and
http/1.1: HTTP/2 (h2conn.py; needs python3-h2) with
SETTINGS_MAX_CONCURRENT_STREAMS N (default 100), or HTTP/1.1 keep-alive;
--http1-only offers http/1.1 alone. Both protocols share ApiHandler, so
requests are authenticated, audited, logged and answered alike. SIGTERM
sends GOAWAY on every HTTP/2 connection. See control.py for the
/_emulator/ test endpoints, connections.py for the connection table.

The tokens file (re-read on every request) holds one token a line: a bare
TOKEN is the all-powerful test user "thaw-test"; "TOKEN USERNAME" is that
user (a name system:serviceaccount:NS:SA gets the service-account groups).
Every authenticated API request is recorded in the audit log
(GET /_emulator/audit, see audit.py) and authorized by RBAC (rbac.py)."""

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import connections  # noqa: E402
import control    # noqa: E402
import discovery  # noqa: E402
import h2conn     # noqa: E402
import rest       # noqa: E402
import watch      # noqa: E402
import watchcache  # noqa: E402
from errors import ApiError  # noqa: E402
from resources import Registry  # noqa: E402
from store import Store, dumps  # noqa: E402

TOKEN_USER = {"username": "thaw-test", "uid": "thaw-test-uid",
              "groups": ["system:masters", "system:authenticated"]}
ANONYMOUS = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
CREATE_ONLY_SUBRESOURCES = ("binding",)


def named_user(name):
    """The user of a "TOKEN USERNAME" line, with the groups the apiserver
    gives that kind of name."""
    groups = ["system:authenticated"]
    parts = name.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        groups = ["system:serviceaccounts", "system:serviceaccounts:" + parts[2]] + groups
    return {"username": name, "uid": name + "-uid", "groups": groups}


def read_tokens(path):
    """{token: user} from a tokens file; {} when unreadable."""
    out = {}
    try:
        with open(path) as f:
            for ln in f:
                fields = ln.split()
                if not fields or fields[0] in out:
                    continue
                out[fields[0]] = named_user(fields[1]) if len(fields) > 1 else dict(TOKEN_USER)
    except OSError:
        pass
    return out


def route(registry, path):
    """(resource, namespace, name, subresource, watch) for an API path,
    None if it is not a resource path; ApiError 404 for unknown ones."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest_ = "", "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest_ = parts[1], parts[2], parts[3:]
    else:
        return None
    if not rest_:
        return None
    is_watch = False
    if rest_[0] == "watch":      # deprecated /watch/ paths
        is_watch, rest_ = True, rest_[1:]
    ns = None
    if len(rest_) >= 3 and rest_[0] == "namespaces":
        r = registry.lookup(group, version, rest_[2])
        if r is not None and r.namespaced:
            ns, rest_ = rest_[1], rest_[2:]
    res = registry.lookup(group, version, rest_[0]) if rest_ else None
    if res is None or len(rest_) > 3 or (res.namespaced and ns is None and len(rest_) > 1):
        raise discovery.NOT_FOUND
    name = rest_[1] if len(rest_) > 1 else None
    sub = rest_[2] if len(rest_) > 2 else ""
    if sub and sub not in res.subresources:
        raise discovery.NOT_FOUND
    return res, ns or "", name, sub, is_watch


class ApiHandler:
    """The request logic both protocols share: authentication, audit,
    control hooks, routing, Status bodies, the log line. The framing class
    it is mixed with (Handler on HTTP/1.1, h2conn.Stream on HTTP/2) gives
    server, connection, path, headers, read_body, send_response,
    send_header, end_headers, write_body and the watch body's write_chunk,
    end_chunks and abort_stream."""

    def send_body(self, code, body, headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            if isinstance(v, list):
                for x in v:
                    self.send_header(k, x)
            else:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.write_body(data)

    def authenticate(self):
        srv = self.server
        if not srv.tokens_file and not srv.client_ca:
            return dict(ANONYMOUS)
        if srv.client_ca:
            cert = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
            if cert:
                subj = dict(x[0] for x in cert.get("subject", ()))
                groups = [v for rdn in cert.get("subject", ()) for k, v in rdn
                          if k == "organizationName"]
                return {"username": subj.get("commonName", ""),
                        "groups": groups + ["system:authenticated"]}
        auth = self.headers.get("Authorization") or ""
        if srv.tokens_file and auth.startswith("Bearer "):
            token = auth[7:].strip()
            user = read_tokens(srv.tokens_file).get(token) if token else None
            if user is not None:
                return dict(user)
        return None

    def dispatch(self, method):
        t0 = time.monotonic()
        srv = self.server
        url = urlsplit(self.path)
        path = url.path
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        code = 500
        entry = None
        try:
            with srv.conns.request(self):
                code, entry = self.dispatch_in(method, path, query)
        finally:
            if entry is not None:
                entry["code"] = code
            srv.log("%s %s %s %.1fms" % (method, self.path, code, (time.monotonic() - t0) * 1000))

    def dispatch_in(self, method, path, query):
        """Answers one request; (status, audit entry or None)."""
        srv = self.server
        code = 500
        entry = None
        try:
            body = self.read_body()
            if path.startswith("/_emulator/"):
                try:
                    doc = json.loads(body) if body.strip() else {}
                except ValueError:
                    raise ApiError(400, "BadRequest", "control body is not JSON")
                out = srv.control.handle(method, path[len("/_emulator/"):], doc, query)
                code = 200
                self.send_body(200, dumps(out))
                return code, entry
            with srv.store.cond:
                srv.store.requests += 1
            user = self.authenticate()
            if user is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            entry = srv.control.audit.record(user, method, path, query, self.path)
            srv.control.authorize(user, entry)   # rbac.py: 403 when denied
            srv.control.before_request(method, path)
            code = self.serve_api(method, path, query, body, user)
        except ApiError as e:
            code = e.code
            headers = dict(e.headers)
            if getattr(e, "warnings", None):
                headers["Warning"] = ['299 - "%s"' % w.replace('"', '\\"') for w in e.warnings]
            self.send_body(e.code, dumps(e.status()), headers)
        except (BrokenPipeError, ConnectionError):
            self.close_connection = True
        except Exception as e:   # a bug in the emulator: still answer a Status
            srv.log("internal error on %s %s: %r" % (method, self.path, e))
            import traceback
            srv.log(traceback.format_exc())
            try:
                self.send_body(500, dumps(ApiError(500, "InternalError",
                                                   "Internal error occurred: %s" % e).status()))
            except OSError:
                self.close_connection = True
        return code, entry

    def serve_api(self, method, path, query, body, user):
        srv = self.server
        if path in ("/healthz", "/readyz", "/livez"):
            self.send_body(200, "ok", {"Content-Type": "text/plain"})
            return 200
        api = srv.api
        doc = None
        if method == "GET":
            doc = discovery.handle(srv.registry, path, srv.address)
        if doc is not None:
            self.send_body(200, dumps(doc))
            return 200
        r = route(srv.registry, path)
        if r is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        res, ns, name, sub, is_watch = r
        req = rest.Request(method, query, self.headers, body, user)
        if method == "GET" and name is None and (is_watch or query.get("watch") in ("1", "true")):
            with srv.conns.watch(self, res):
                watch.serve(self, api, req, res, ns, srv.bookmark_interval)
            return 200
        if sub in CREATE_ONLY_SUBRESOURCES and method != "POST":
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource", {})
        if method == "POST" and sub == "binding":
            code, out = api.bind(req, res, ns, name)
        elif method == "GET":
            if name is None:
                code, out = api.list(req, res, ns)
            else:
                code, out = api.get(req, res, ns, name)
        elif method == "POST" and name is None:
            code, out = api.create(req, res, ns)
        elif method == "PUT" and name is not None:
            code, out = api.update(req, res, ns, name, sub)
        elif method == "PATCH" and name is not None:
            code, out = api.patch(req, res, ns, name, sub)
        elif method == "DELETE" and name is not None and not sub:
            code, out = api.delete(req, res, ns, name)
        elif method == "DELETE" and name is None:
            code, out = api.delete_collection(req, res, ns)
        else:
            raise ApiError(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource", {})
        headers = {}
        if req.warnings:
            headers["Warning"] = ['299 - "%s"' % w.replace('"', '\\"') for w in req.warnings]
        self.send_body(code, out, headers)
        return code


class Handler(ApiHandler, BaseHTTPRequestHandler):
    """HTTP/1.1 framing (chunked watch bodies)."""
    protocol_version = "HTTP/1.1"
    server_version = "kubeemu"
    sys_version = ""
    timeout = 900

    def log_message(self, fmt, *args):
        self.server.log(fmt % args)

    def log_request(self, code="-", size="-"):
        pass    # dispatch() logs every request once, with its duration

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def read_body(self):
        n = self.headers.get("Content-Length")
        if n:
            return self.rfile.read(int(n))
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        return b""

    def write_body(self, data):
        self.wfile.write(data)

    # ---- the streamed body of a watch (watch.Stream): chunked on HTTP/1.1

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self):
        self.wfile.write(b"0\r\n\r\n")

    def abort_stream(self):
        """Cut the connection without the last chunk."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class H2Handler(h2conn.Stream, ApiHandler):
    """HTTP/2 framing (DATA frames, RST_STREAM) for the same logic."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        # TLS handshake here, in the connection's own thread, so a slow
        # client cannot stall accept().
        request.settimeout(30)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.log("tls handshake from %s failed: %s" % (client_address, e))
            return
        conn.settimeout(None)
        proto = conn.selected_alpn_protocol() or "http/1.1"
        conn.conn_info = info = self.conns.add(proto, client_address)
        try:
            if proto == "h2":
                h2conn.serve(self, conn, info, self.conns.max_streams, H2Handler)
            else:
                self.RequestHandlerClass(conn, client_address, self)
        finally:
            self.conns.closed(info)

    def handle_error(self, request, client_address):
        self.log("connection error from %s: %r" % (client_address, sys.exc_info()[1]))

    def log(self, line):
        if self.log_fp:
            with self.log_lock:
                self.log_fp.write("%s %s\n" % (time.strftime("%H:%M:%S"), line))
                self.log_fp.flush()


def bootstrap(api):
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        req = rest.Request("POST", {}, {}, json.dumps({"metadata": {"name": ns}}).encode(),
                           dict(TOKEN_USER))
        api.create(req, api.registry.lookup("", "v1", "namespaces"), "")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--tls-cert", required=True)
    p.add_argument("--tls-key", required=True)
    p.add_argument("--ready-file", required=True)
    p.add_argument("--tokens-file")
    p.add_argument("--client-ca")
    p.add_argument("--bookmark-interval", type=float, default=60.0)
    p.add_argument("--watch-cache-capacity", type=int, default=watchcache.LOWER)
    p.add_argument("--watch-cache-max", type=int, default=watchcache.UPPER)
    p.add_argument("--watch-cache-fresh", type=float, default=watchcache.FRESH)
    p.add_argument("--log-file")
    p.add_argument("--http1-only", action="store_true", help="ALPN offers http/1.1 only")
    p.add_argument("--max-concurrent-streams", type=int, default=100)
    a = p.parse_args(argv)

    host, _, port = a.listen.rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.tls_cert, a.tls_key)
    ctx.set_alpn_protocols(["http/1.1"] if a.http1_only else ["h2", "http/1.1"])
    if a.client_ca:
        ctx.load_verify_locations(a.client_ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL

    store = Store(wc_cfg=watchcache.Config(a.watch_cache_capacity, a.watch_cache_max,
                                           a.watch_cache_fresh))
    registry = Registry()
    api = rest.Api(store, registry)
    bootstrap(api)

    srv = Server((host or "127.0.0.1", int(port)), Handler)
    srv.ssl_ctx = ctx
    srv.store, srv.registry, srv.api = store, registry, api
    srv.control = control.Control(api)
    srv.conns = srv.control.conns = connections.Connections(a.max_concurrent_streams)
    srv.tokens_file, srv.client_ca = a.tokens_file, a.client_ca
    srv.bookmark_interval = a.bookmark_interval
    srv.log_fp = open(a.log_file, "a") if a.log_file else None
    srv.log_lock = threading.Lock()
    bound = srv.server_address[1]
    srv.address = "%s:%d" % (host or "127.0.0.1", bound)

    tmp = a.ready_file + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % bound)
    os.rename(tmp, a.ready_file)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:    # like a real server going away: GOAWAY, then close
        srv.conns.goaway(immediate=True)
        srv.conns.wait_closed(1.0)


if __name__ == "__main__":
    main()
