"""A real CNCF distribution registry (Debian's docker-registry) for tests.

    reg = Registry()            # temp dir, free loopback port, started
    reg.url                     # http://127.0.0.1:PORT
    reg.stop(); reg.start()     # same port, same storage (stopped by PID)
    reg.close()                 # stop and remove the temp dir

Its own config: filesystem storage in the temp dir, deletes enabled, no auth,
logs to registry.log in the temp dir. Optional auth:

    Registry(htpasswd={"alice": "pw"})        # Basic, bcrypt file via htpasswd -B
    Registry(token={"realm": URL, "service": S, "issuer": I,
                    "rootcertbundle": PEM_PATH})   # Bearer (test/token_server.py)

With auth on, /v2/ answers 401; readiness accepts that. Run as a script, it serves until
killed and prints "URL http://127.0.0.1:PORT".
"""

import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BINARY = os.environ.get("THAW_REGISTRY_BIN", "docker-registry")


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the test process dies, even
    on SIGKILL, so no server outlives a test (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def free_port():
    """A loopback port nobody listens on right now."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def http_status(url, timeout=1.0):
    """HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def spawn_ready(argv, ready_file, timeout=15, log=None):
    """Start a server that writes its port to ready_file once listening
    (token_server.py, fault_proxy.py, fault_http.py). Returns (proc, port);
    the caller stops proc by PID (stop_proc)."""
    proc = subprocess.Popen(argv, stdout=log or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if log else None,
                            preexec_fn=die_with_parent)
    deadline = time.time() + timeout
    while not os.path.exists(ready_file):
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (argv[1:2], proc.returncode))
        if time.time() > deadline:
            stop_proc(proc)
            raise RuntimeError("%s not ready after %d s" % (argv[1:2], timeout))
        time.sleep(0.02)
    with open(ready_file) as f:
        return proc, int(f.read().strip())


def wait_listening(proc, ports, timeout=10):
    """True once every loopback port in ports accepts a connection; False
    when proc exits first or timeout seconds pass."""
    deadline = time.time() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    return False
                time.sleep(0.05)
    return True


def stop_proc(proc, grace=5):
    """SIGTERM by PID, SIGKILL after grace seconds."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """The base of the small HTTP servers in test/: HTTP/1.1, no access log,
    and send(), a whole reply with Content-Length (headers only on HEAD)."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class ChildServer:
    """A test server run as a child process with a temp dir: close() stops it
    by PID and removes the dir; usable as a context manager."""

    proc = None
    dir = None

    def close(self):
        stop_proc(self.proc)
        self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def auth_config(dirname, htpasswd=None, token=None):
    """The auth: section of a registry config (empty string for none)."""
    if htpasswd:
        path = os.path.join(dirname, "htpasswd")
        with open(path, "wb") as f:
            for user, pw in sorted(htpasswd.items()):
                # -B bcrypt: the only hash distribution's htpasswd accepts
                f.write(subprocess.run(["htpasswd", "-Bbn", user, pw], check=True,
                                       capture_output=True).stdout.strip() + b"\n")
        return "auth:\n  htpasswd:\n    realm: thaw-test\n    path: %s\n" % path
    if token:
        return ("auth:\n  token:\n    realm: %(realm)s\n    service: %(service)s\n"
                "    issuer: %(issuer)s\n    rootcertbundle: %(rootcertbundle)s\n"
                % token)
    return ""


class Registry:
    def __init__(self, port=None, htpasswd=None, token=None):
        self.dir = tempfile.mkdtemp(prefix="thaw-registry.")
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.config = os.path.join(self.dir, "config.yml")
        self.log_path = os.path.join(self.dir, "registry.log")
        os.makedirs(os.path.join(self.dir, "storage"))
        with open(self.config, "w") as f:
            f.write("version: 0.1\n"
                    "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
                    "storage:\n"
                    "  filesystem:\n    rootdirectory: %s\n"
                    "  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:%d\n"
                    % (os.path.join(self.dir, "storage"), self.port))
        try:  # htpasswd may be missing: do not leave the temp dir behind
            auth = auth_config(self.dir, htpasswd, token)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        with open(self.config, "a") as f:
            f.write(auth)
        self.proc = None
        self._log = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, timeout=15):
        assert self.proc is None, "registry already running"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BINARY, "serve", self.config],
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        deadline = time.time() + timeout
        while http_status(self.url + "/v2/", 0.5) not in (200, 401):
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited with %s; log:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            if time.time() > deadline:
                raise RuntimeError("docker-registry not answering %s/v2/ after %d s; log:\n%s"
                                   % (self.url, timeout, self.log_tail()))
            time.sleep(0.05)

    def stop(self):
        """SIGTERM by PID, SIGKILL after 5 s; waits until the port is closed."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def close(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    reg = Registry()
    try:
        print("URL %s" % reg.url, flush=True)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
        reg.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        reg.close()
