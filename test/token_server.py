#!/usr/bin/env python3
"""token_server.py - a Docker token-auth server for tests (distribution's
Bearer scheme), on a free loopback port, plain HTTP.

    GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]
    Authorization: Basic ... (optional; wrong credentials -> 401)

answers {"token", "access_token", "expires_in", "issued_at"}. The token is an
RS256 JWT signed with `openssl dgst -sha256 -sign KEY` (the stdlib has no
RSA); its header carries the certificate in x5c, which the registry checks
against its auth.token.rootcertbundle. Claims: iss, sub, aud, exp, nbf, iat,
jti, access[{type, name, actions}]. Actions not allowed by the ACL are left
out (not refused), as the specification says, so the registry answers 401
insufficient_scope.

Config (JSON file, --config):
  {"issuer": "thaw-test-issuer", "service": "thaw-test-registry",
   "expires_in": 300,
   "users": {"alice": "secret"},
   "acl": [{"account": "*",     "repo": "public/*",  "actions": ["pull"]},
           {"account": "alice", "repo": "private/*", "actions": ["pull", "push"]}]}
account "*" matches everyone including anonymous, "+" any authenticated
user; repo is an fnmatch pattern.

    token_server.py --config C --dir D --ready-file F

makes (or reuses) D/key.pem and D/cert.pem (self-signed; give cert.pem to
the registry as rootcertbundle), writes the port to F once listening, and
serves until SIGTERM. GET /_stats returns {"requests": [{"account", "scope",
"granted"}...]}. From Python, TokenServer (below) does all this.
"""
import argparse
import base64
import fnmatch
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import registry  # noqa: E402


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_key(dirname):
    """Self-signed RSA key and certificate; the registry trusts the cert."""
    key, cert = os.path.join(dirname, "key.pem"), os.path.join(dirname, "cert.pem")
    if not (os.path.exists(key) and os.path.exists(cert)):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "3",
                        "-subj", "/CN=thaw-test-token-issuer"],
                       check=True, capture_output=True)
    return key, cert


def cert_der_b64(cert):
    der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()  # x5c is plain base64, not url-safe


def sign_jwt(claims, key, x5c):
    header = {"typ": "JWT", "alg": "RS256", "x5c": x5c}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "." +
                     b64url(json.dumps(claims, separators=(",", ":")).encode()))
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                         input=signing_input.encode(), check=True,
                         capture_output=True).stdout
    return signing_input + "." + b64url(sig)


def parse_scope(scope):
    """repository:NAME:pull,push -> (type, name, [actions]). NAME may hold ':'
    (host:port) so split the type off the left and actions off the right."""
    typ, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    return typ, name, [a for a in actions.split(",") if a]


def allowed(acl, account, typ, name):
    out = set()
    for rule in acl:
        who = rule.get("account", "*")
        if who == "*" or (who == "+" and account) or who == account:
            if typ == rule.get("type", "repository") and fnmatch.fnmatchcase(name, rule["repo"]):
                out.update(rule.get("actions", []))
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, obj, headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def account(self):
        """'' for anonymous, the user name, or None for bad credentials."""
        auth = self.headers.get("Authorization", "")
        if not auth:
            return ""
        if not auth.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.server.conf.get("users", {}).get(user) == pw else None

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        srv, conf = self.server, self.server.conf
        if url.path == "/_stats":
            with srv.lock:
                self.reply(200, {"requests": list(srv.log)})
            return
        if url.path != "/token":
            self.reply(404, {"error": "not found"})
            return
        account = self.account()
        if account is None:
            with srv.lock:
                srv.log.append({"account": None, "scope": q.get("scope", []), "granted": []})
            self.reply(401, {"details": "invalid credentials"},
                       [("WWW-Authenticate", 'Basic realm="thaw-test-token"')])
            return
        access = []
        for s in q.get("scope", []):
            for one in s.split(" "):  # some clients join scopes with spaces
                typ, name, want = parse_scope(one)
                if not name:
                    continue
                ok = allowed(conf.get("acl", []), account, typ, name)
                access.append({"type": typ, "name": name,
                               "actions": [a for a in want if a in ok or "*" in ok]})
        now = int(time.time())
        exp = int(conf.get("expires_in", 300))
        claims = {"iss": conf["issuer"], "sub": account,
                  "aud": q.get("service", [conf["service"]])[0],
                  "exp": now + exp, "nbf": now - 5, "iat": now,
                  "jti": b64url(os.urandom(12)), "access": access}
        token = sign_jwt(claims, srv.key, srv.x5c)
        with srv.lock:
            srv.log.append({"account": account, "scope": q.get("scope", []),
                            "granted": access})
        self.reply(200, {"token": token, "access_token": token, "expires_in": exp,
                         "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})


class Server(ThreadingHTTPServer):
    daemon_threads = True


class TokenServer(registry.ChildServer):
    """Runs token_server.py as a child process on a free port; stop by PID.

        ts = TokenServer(users={"alice": "pw"}, acl=[...])
        Registry(token=ts.registry_auth())
        ts.stats(); ts.close()
    """

    def __init__(self, users=None, acl=None, issuer="thaw-test-issuer",
                 service="thaw-test-registry", expires_in=300):
        import tempfile
        self.dir = tempfile.mkdtemp(prefix="thaw-token.")
        self.issuer, self.service = issuer, service
        self.proc = None
        try:
            conf = os.path.join(self.dir, "config.json")
            with open(conf, "w") as f:
                json.dump({"issuer": issuer, "service": service, "expires_in": expires_in,
                           "users": users or {}, "acl": acl or []}, f)
            ready = os.path.join(self.dir, "ready")
            self.proc, self.port = registry.spawn_ready(
                [sys.executable, os.path.abspath(__file__), "--config", conf,
                 "--dir", self.dir, "--ready-file", ready], ready)
        except BaseException:
            self.close()
            raise
        self.url = "http://127.0.0.1:%d" % self.port
        self.realm = self.url + "/token"
        self.cert = os.path.join(self.dir, "cert.pem")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def registry_auth(self):
        """The token= argument of registry.Registry."""
        return {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                "rootcertbundle": self.cert}

    def stats(self):
        import urllib.request
        with urllib.request.urlopen(self.url + "/_stats", timeout=5) as r:
            return json.load(r)



def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--dir", required=True, help="holds key.pem and cert.pem")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file")
    a = ap.parse_args()
    with open(a.config) as f:
        conf = json.load(f)
    srv = Server((a.host, a.port), Handler)
    srv.conf, srv.lock, srv.log = conf, threading.Lock(), []
    srv.key, cert = make_key(a.dir)
    srv.x5c = [cert_der_b64(cert)]
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
