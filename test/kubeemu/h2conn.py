"""HTTP/2 for kubeemu (h2, sans-IO: Debian's python3-h2), chosen by ALPN.

One I/O thread per connection owns the TLS socket (non-blocking; OpenSSL
objects must not be used from two threads at once): it reads frames, feeds
h2 and writes what h2 queued. Each complete request stream is dispatched in
its own thread (watches block for long) through a Stream, the framing half
of a handler whose other half (server.ApiHandler: authentication, audit,
routing, Status bodies) both protocols share. It offers what server.Handler
offers on HTTP/1.1: headers, path, connection, read_body, write_body,
send_response/send_header/end_headers, and the watch body's write_chunk
(DATA), end_chunks (END_STREAM) and abort_stream (RST_STREAM
INTERNAL_ERROR, what Go's server sends for an aborted handler). Stream
threads change h2's state under the connection's lock and wait there for
flow-control window.

SETTINGS_MAX_CONCURRENT_STREAMS is advertised (kube-apiserver: 100) and a
stream over it is refused with RST_STREAM REFUSED_STREAM (RFC 9113 5.1.2),
which clients retry; h2 itself would end the whole connection. GOAWAY is
written here rather than by h2, whose connection refuses to send anything
after it: in-flight streams must go on until they end or a deadline."""

import email.utils
import http.client
import select
import socket
import ssl
import sys
import threading
import time

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
    from hyperframe.frame import GoAwayFrame
except ImportError:     # pyenv's python3 does not see Debian's dist-packages
    sys.path.append("/usr/lib/python3/dist-packages")
    import h2.config          # noqa: E402  (no h2 is an error, never HTTP/1.1)
    import h2.connection      # noqa: E402
    import h2.errors          # noqa: E402
    import h2.events          # noqa: E402
    import h2.exceptions      # noqa: E402
    import h2.settings        # noqa: E402
    from hyperframe.frame import GoAwayFrame  # noqa: E402

ERRORS = {"NO_ERROR": h2.errors.ErrorCodes.NO_ERROR,
          "INTERNAL_ERROR": h2.errors.ErrorCodes.INTERNAL_ERROR,
          "CANCEL": h2.errors.ErrorCodes.CANCEL,
          "REFUSED_STREAM": h2.errors.ErrorCodes.REFUSED_STREAM,
          "PROTOCOL_ERROR": h2.errors.ErrorCodes.PROTOCOL_ERROR}
MCS = h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")   # server.Handler's do_*
HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "upgrade",
              "proxy-connection")


class Stream:
    """One request stream: framing only; mixed with server.ApiHandler."""

    def __init__(self, conn, sid, headers):
        self.c, self.sid = conn, sid
        self.server = conn.server
        self.connection = conn.sock           # getpeercert, conn_info
        self.close_connection = False         # HTTP/1.1's; ignored here
        self.watch_resource = None
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        self.command = pseudo.get(":method", "GET")
        self.path = pseudo.get(":path", "/")
        self.headers = http.client.HTTPMessage()
        if ":authority" in pseudo:
            self.headers["Host"] = pseudo[":authority"]
        for k, v in headers:
            if not k.startswith(":"):
                self.headers[k] = v
        self.body = bytearray()
        self.reset = None         # the error code once reset, either side
        self.status, self.out_headers = None, []

    def run(self):
        try:
            if self.command in METHODS:
                self.dispatch(self.command)
            else:       # as server.Handler (BaseHTTPRequestHandler) answers
                self.server.log("code 501, message Unsupported method (%r)" % self.command)
                self.send_response(501)
                self.send_header("Content-Length", "0")
                self.end_headers()
                self.write_body(b"")
        except ConnectionError:
            pass
        finally:
            self.c.stream_done(self)

    def read_body(self):
        return bytes(self.body)

    def send_response(self, code, message=None):
        self.status = code
        self.out_headers = [("server", "kubeemu"),
                            ("date", email.utils.formatdate(usegmt=True))]

    def send_header(self, k, v):
        if k.lower() not in HOP_BY_HOP:   # forbidden in HTTP/2
            self.out_headers.append((k.lower(), str(v)))

    def end_headers(self):
        hdrs = [(":status", str(self.status))] + self.out_headers
        self.c.send(self, lambda h2c: h2c.send_headers(self.sid, hdrs))

    def write_body(self, data):
        self.c.send_data(self, data, True)

    def write_chunk(self, data):
        if data:
            self.c.send_data(self, data, False)

    def end_chunks(self):
        self.c.send_data(self, b"", True)

    def abort_stream(self):
        self.c.reset(self, h2.errors.ErrorCodes.INTERNAL_ERROR)


class Conn:
    """One HTTP/2 connection (after the TLS handshake chose h2)."""

    def __init__(self, server, sock, info, max_streams, stream_class):
        self.server, self.sock, self.info = server, sock, info
        self.max_streams, self.stream_class = max_streams, stream_class
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.lock = threading.Condition()
        self.streams = {}        # sid -> Stream, from request headers to done
        self.out = bytearray()
        self.last_sid = None     # set by GOAWAY: streams above it are refused
        self.close_at = None     # monotonic deadline once closing
        self.dead = False
        self.wake_r, self.wake_w = socket.socketpair()
        # never block a writer holding the lock: one pending byte wakes it
        self.wake_w.setblocking(False)
        self.wake_r.setblocking(False)
        info.h2 = self

    # ---- called from stream threads and control.py

    def _flush(self):
        """Queues what h2 wrote and wakes the I/O thread (lock held)."""
        self.out += self.h2.data_to_send()
        try:
            self.wake_w.send(b"x")
        except OSError:
            pass

    def send(self, st, fn):
        with self.lock:
            if st.reset is not None or self.dead:
                raise ConnectionResetError("stream %d reset" % st.sid)
            try:
                fn(self.h2)
            except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as e:
                raise ConnectionResetError("stream %d: %r" % (st.sid, e))
            self._flush()

    def send_data(self, st, data, end):
        """DATA in frames that fit the peer's window (waits for it)."""
        view = memoryview(data)
        while True:
            with self.lock:
                while True:
                    if st.reset is not None or self.dead:
                        raise ConnectionResetError("stream %d reset" % st.sid)
                    try:
                        win = self.h2.local_flow_control_window(st.sid)
                    except h2.exceptions.StreamClosedError:
                        raise ConnectionResetError("stream %d closed" % st.sid)
                    if win > 0 or not view:
                        break
                    self.lock.wait(1.0)
                n = min(len(view), win, self.h2.max_outbound_frame_size)
                last = end and n == len(view)
                try:
                    if n or last:
                        self.h2.send_data(st.sid, view[:n].tobytes(), end_stream=last)
                except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError) as e:
                    raise ConnectionResetError("stream %d: %r" % (st.sid, e))
                self._flush()
                view = view[n:]
                if not view:
                    return

    def reset(self, st, code):
        with self.lock:
            if st.reset is not None or self.dead:
                return False
            st.reset = code
            try:
                self.h2.reset_stream(st.sid, code)
            except (h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
                return False      # it had ended already
            self._flush()
            self.lock.notify_all()
            return True

    def live_watches(self):
        with self.lock:
            return 0 if self.dead else sum(
                1 for s in self.streams.values() if s.watch_resource and s.reset is None)

    def reset_watches(self, code, resource=None):
        with self.lock:
            sts = [s for s in self.streams.values() if s.watch_resource and
                   (resource is None or s.watch_resource == resource)]
        return sum(1 for s in sts if self.reset(s, code))

    def goaway(self, deadline):
        with self.lock:
            if self.dead:
                return
            if self.last_sid is None:
                self.last_sid = self.h2.highest_inbound_stream_id or 0
                f = GoAwayFrame(0)
                f.last_stream_id = self.last_sid
                f.error_code = h2.errors.ErrorCodes.NO_ERROR
                self.out += self.h2.data_to_send()   # keep the frame order
                self.out += f.serialize()
                self.info.goaway = True
            at = time.monotonic() + (deadline if self.streams else 0)
            self.close_at = at if self.close_at is None else min(self.close_at, at)
            self._flush()

    def stream_done(self, st):
        with self.lock:
            self.streams.pop(st.sid, None)
            if self.last_sid is not None and not self.streams:
                self.close_at = time.monotonic()    # graceful: all done
            self._flush()

    # ---- the I/O thread

    def serve(self):
        try:
            self.sock.setblocking(False)
            with self.lock:
                self.h2.initiate_connection()     # SETTINGS with our limit
                self.out += self.h2.data_to_send()
                # Enforce the limit ourselves (REFUSED_STREAM, see above).
                loose = dict(self.h2.local_settings)
                loose[MCS] = 2 ** 31 - 1
                self.h2.local_settings = h2.settings.Settings(client=False,
                                                              initial_values=loose)
            self._loop()
        except (OSError, ssl.SSLError) as e:
            self.server.log("h2 connection %d: %r" % (self.info.id, e))
        finally:
            with self.lock:
                self.dead = True
                for st in self.streams.values():
                    if st.reset is None:
                        st.reset = h2.errors.ErrorCodes.CANCEL
                self.lock.notify_all()
            self.server.conns.closed(self.info)
            self._linger()
            for s in (self.sock, self.wake_r, self.wake_w):
                try:
                    s.close()
                except OSError:
                    pass

    def _linger(self):
        """FIN, then read until the peer closes (1 s at most): closing with
        unread input would send RST, and the peer might lose the last
        frames (events, GOAWAY) still in its receive buffer."""
        try:
            self.sock.shutdown(socket.SHUT_WR)   # also drops the TLS layer
            end = time.monotonic() + 1.0
            while time.monotonic() < end:
                r, _, _ = select.select([self.sock], [], [], end - time.monotonic())
                if r and not self.sock.recv(65536):
                    return
        except OSError:
            pass

    def _loop(self):
        poll = select.poll()
        poll.register(self.wake_r, select.POLLIN)
        while True:
            with self.lock:
                now = time.monotonic()
                if self.close_at is not None and now >= self.close_at and \
                        (not self.out or now >= self.close_at + 2):
                    return
                want = select.POLLIN | (select.POLLOUT if self.out else 0)
                wait = None if self.close_at is None else \
                    max(0, self.close_at - time.monotonic()) * 1000
            poll.register(self.sock, want)     # (re-registering replaces the mask)
            ready = dict(poll.poll(wait))
            if ready.get(self.wake_r.fileno()):
                try:
                    self.wake_r.recv(65536)
                except BlockingIOError:
                    pass
            ev = ready.get(self.sock.fileno(), 0)
            if ev & (select.POLLIN | select.POLLERR | select.POLLHUP):
                if not self._read():
                    return
            with self.lock:
                while self.out:
                    try:
                        n = self.sock.send(self.out)
                    except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                        break
                    del self.out[:n]

    def _read(self):
        """Feeds h2 everything readable; False at EOF or a protocol error."""
        while True:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                return True
            except (ssl.SSLEOFError, ConnectionError):
                return False
            if not data:
                return False
            with self.lock:
                try:
                    events = self.h2.receive_data(data)
                except h2.exceptions.ProtocolError as e:
                    self.server.log("h2 connection %d: protocol error %r" % (self.info.id, e))
                    self.out += self.h2.data_to_send()    # h2's GOAWAY
                    self.close_at = time.monotonic()
                    return True
                for e in events:
                    self._event(e)
                self.out += self.h2.data_to_send()
                self.lock.notify_all()    # window updates, resets

    def _event(self, e):
        """Handles one h2 event (lock held)."""
        if isinstance(e, h2.events.RequestReceived):
            # open_inbound_streams counts this one: streams h2 still sees open
            if self.last_sid is not None and e.stream_id > self.last_sid or \
                    self.h2.open_inbound_streams > self.max_streams:
                self.h2.reset_stream(e.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                with self.server.conns.lock:
                    self.info.refused += 1
                return
            self.streams[e.stream_id] = self.stream_class(self, e.stream_id, e.headers)
        elif isinstance(e, h2.events.DataReceived):
            st = self.streams.get(e.stream_id)
            if st is not None:
                st.body += e.data
            self.h2.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        elif isinstance(e, h2.events.StreamEnded):
            st = self.streams.get(e.stream_id)
            if st is not None:
                self._start(st)
        elif isinstance(e, h2.events.StreamReset):
            st = self.streams.get(e.stream_id)
            if st is not None and st.reset is None:
                st.reset = e.error_code
            if st is not None and not getattr(st, "started", False):
                self.streams.pop(e.stream_id)     # no thread will end it
        elif isinstance(e, h2.events.ConnectionTerminated):
            self.close_at = time.monotonic()

    def _start(self, st):
        if getattr(st, "started", False):
            return
        st.started = True
        threading.Thread(target=st.run, daemon=True).start()


def serve(server, sock, info, max_streams, stream_class):
    """Serves one HTTP/2 connection until it closes (in the caller's
    thread); stream_class is Stream mixed with the request logic."""
    Conn(server, sock, info, max_streams, stream_class).serve()
