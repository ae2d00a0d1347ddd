"""thaw-node-forward (controller/forward.c): loopback TCP forwards to a
real docker-registry, as containerd reaches the cache registry through the
node-local DaemonSet.

    python3 test/test_forward.py BUILD/controller/thaw-node-forward

Byte-exact relaying both ways (an 8 MiB blob pushed and read back), a
half-closed request, 40 connections at once, back-pressure on a slow reader
(the forwarder's memory stays bounded), a target that is down or does not
resolve (the client is closed promptly, the forwarder lives on), the
connection cap, bad flags, and SIGTERM (exit 0)."""

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse
import urllib.request

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import registry  # noqa: E402

BINARY = None
REPO = "docker.io/library/fwd"


def http(method, url, body=None, headers=None, timeout=20):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


class Forwarder:
    """thaw-node-forward on free ports; stopped by PID."""

    def __init__(self, *targets, extra=()):
        self.ports = [registry.free_port() for _ in targets]
        args = [BINARY]
        for port, target in zip(self.ports, targets):
            args += ["--forward", "127.0.0.1:%d=%s" % (port, target)]
        self.proc = subprocess.Popen(args + list(extra), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=registry.die_with_parent)
        if not registry.wait_listening(self.proc, self.ports):
            raise AssertionError("forwarder did not listen: %s" % self.stop())

    def url(self, i=0):
        return "http://127.0.0.1:%d" % self.ports[i]

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        """SIGTERM; returns (exit status, output)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return self.proc.returncode, out.decode(errors="replace")


class Forward(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.reg = registry.Registry()
        cls.reg_port = int(cls.reg.url.rsplit(":", 1)[1])
        cls.blob = os.urandom(8 << 20)
        cls.digest = "sha256:" + hashlib.sha256(cls.blob).hexdigest()

    @classmethod
    def tearDownClass(cls):
        cls.reg.close()

    def setUp(self):
        self.fwd = Forwarder("localhost:%d" % self.reg_port)  # a name, resolved per connection

    def tearDown(self):
        rc, out = self.fwd.stop()
        self.assertEqual(rc, 0, out)
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            self.assertNotIn(bad, out)

    def push(self, base):
        st, hdrs, body = http("POST", "%s/v2/%s/blobs/uploads/" % (base, REPO))
        self.assertEqual(st, 202, body)
        loc = urllib.parse.urljoin(base + "/", hdrs["Location"])
        loc += ("&" if "?" in loc else "?") + "digest=" + urllib.parse.quote(self.digest)
        st, _, body = http("PUT", loc, self.blob, {"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, body)

    def test_bytes_both_ways(self):
        self.push(self.fwd.url())
        st, _, body = http("GET", "%s/v2/%s/blobs/%s" % (self.fwd.url(), REPO, self.digest))
        self.assertEqual(st, 200)
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.digest[7:])
        # the registry itself holds what went through
        st, _, body = http("GET", "%s/v2/%s/blobs/%s" % (self.reg.url, REPO, self.digest))
        self.assertEqual((st, len(body)), (200, len(self.blob)))

    def test_half_closed_request(self):
        s = socket.create_connection(("127.0.0.1", self.fwd.ports[0]), timeout=10)
        s.sendall(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)  # the request ends here; the answer must still come
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.0 200") or data.startswith(b"HTTP/1.1 200"),
                        data[:100])

    def test_many_at_once(self):
        results = []

        def one():
            results.append(http("GET", self.fwd.url() + "/v2/")[0])
        threads = [threading.Thread(target=one) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(results, [200] * 40)

    def test_slow_reader_bounded_memory(self):
        self.push(self.reg.url)
        s = socket.create_connection(("127.0.0.1", self.fwd.ports[0]), timeout=20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        s.sendall(("GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                   % (REPO, self.digest)).encode())
        data = s.recv(65536)
        time.sleep(1.5)  # the registry could send all 8 MiB meanwhile
        rss = self.fwd.rss_kib()
        self.assertLess(rss, 24 << 10, "the forwarder buffered what the client did not read")
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        s.close()
        body = data.split(b"\r\n\r\n", 1)[1]
        self.assertEqual(hashlib.sha256(body).hexdigest(), self.digest[7:])

    def assert_closed_promptly(self, fwd, i=0):
        s = socket.create_connection(("127.0.0.1", fwd.ports[i]), timeout=10)
        t0 = time.time()
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            self.assertEqual(s.recv(100), b"")
        except ConnectionResetError:
            pass
        s.close()
        self.assertLess(time.time() - t0, 8)

    def test_target_down_or_unknown(self):
        down = registry.free_port()
        fwd = Forwarder("127.0.0.1:%d" % down, "nonexistent.invalid:5000",
                        extra=["--connect-timeout", "3s"])
        try:
            self.assert_closed_promptly(fwd, 0)
            self.assert_closed_promptly(fwd, 1)
            self.assertIsNone(fwd.proc.poll())
        finally:
            rc, out = fwd.stop()
        self.assertEqual(rc, 0, out)
        self.assertIn("target", out)

    def test_connection_cap(self):
        idle = socket.socket()
        idle.bind(("127.0.0.1", 0))
        idle.listen(16)

        def serve():  # answers nothing; closes once the client has ended
            while True:
                try:
                    c, _ = idle.accept()
                except OSError:
                    return
                threading.Thread(target=lambda c=c: (c.recv(10), c.close()),
                                 daemon=True).start()
        threading.Thread(target=serve, daemon=True).start()
        fwd = Forwarder("127.0.0.1:%d" % idle.getsockname()[1],
                        extra=["--max-connections", "2"])
        try:
            time.sleep(0.5)  # the readiness probe's connection has ended
            held = [socket.create_connection(("127.0.0.1", fwd.ports[0]), timeout=5)
                    for _ in range(2)]
            time.sleep(0.5)
            for h in held:  # both relayed: open, nothing answered
                h.settimeout(0.3)
                with self.assertRaises(socket.timeout):
                    h.recv(10)
            third = socket.create_connection(("127.0.0.1", fwd.ports[0]), timeout=5)
            self.assertEqual(third.recv(10), b"")  # closed at once
            third.close()
            for h in held:
                h.close()
            time.sleep(0.5)
            again = socket.create_connection(("127.0.0.1", fwd.ports[0]), timeout=5)
            again.settimeout(1)
            with self.assertRaises(socket.timeout):  # held open now: under the cap
                again.recv(10)
            again.close()
        finally:
            rc, out = fwd.stop()
            idle.close()
        self.assertEqual(rc, 0, out)


class Flags(unittest.TestCase):
    def run_bad(self, *args):
        r = subprocess.run([BINARY] + list(args), capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        return r.stderr

    def test_bad_flags(self):
        self.assertIn("--forward is required", self.run_bad())
        for spec in ("127.0.0.1:1", "localhost:7440=a:1", "127.0.0.1:7440=a", "::1:80=a:1",
                     "127.0.0.1:99999=a:1", "127.0.0.1:1=a b:1", "127.0.0.1:1=[::1:5"):
            self.assertIn("--forward", self.run_bad("--forward", spec), spec)
        self.assertIn("--max-connections", self.run_bad("--forward", "127.0.0.1:1=a:1",
                                                        "--max-connections", "0"))
        r = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertIn("--forward LISTEN=HOST:PORT", r.stdout)

    def test_listen_taken(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        r = subprocess.run([BINARY, "--forward", "127.0.0.1:%d=a:1" % s.getsockname()[1]],
                           capture_output=True, text=True, timeout=10)
        s.close()
        self.assertEqual(r.returncode, 1)
        self.assertIn("address already in use", r.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_forward.py THAW_NODE_FORWARD")
    BINARY = os.path.abspath(sys.argv.pop(1))
    unittest77.main()
