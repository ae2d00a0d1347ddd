"""The emulator's TCP connections, for tests: which protocol each speaks
(ALPN: "h2" or "http/1.1"), how many requests it carried, how many are in
flight and how many of those are watches. control.py serves the table at
GET /_emulator/connections and acts on the HTTP/2 ones (GOAWAY, RST_STREAM)
through it."""

import contextlib
import itertools
import threading
import time


class ConnInfo:
    def __init__(self, cid, protocol, peer):
        self.id, self.protocol, self.peer = cid, protocol, peer
        self.open = True
        self.requests = self.active = self.watches = self.refused = 0
        self.user_agent = ""
        self.goaway = False
        self.h2 = None            # the h2conn.Conn serving it, on HTTP/2
        self.opened = time.time()

    def doc(self):
        # On HTTP/2 a reset watch's thread lives on until its next write:
        # count only the streams still open.
        watches = self.watches if self.h2 is None else self.h2.live_watches()
        return {"id": self.id, "protocol": self.protocol, "peer": self.peer,
                "open": self.open, "requests": self.requests, "active": self.active,
                "watches": watches, "refused": self.refused,
                "userAgent": self.user_agent, "goaway": self.goaway}


class Connections:
    KEEP_CLOSED = 1000    # closed connections kept in the table

    def __init__(self, max_streams=100):
        self.max_streams = max_streams    # for HTTP/2 connections accepted next
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.items = []
        self.accepted = 0
        self.current = threading.local()  # the connection this thread serves

    def add(self, protocol, peer):
        with self.lock:
            self.accepted += 1
            info = ConnInfo(next(self.ids), protocol, "%s:%d" % peer[:2])
            self.items.append(info)
            closed = [i for i in self.items if not i.open]
            if len(closed) > self.KEEP_CLOSED:
                drop = set(map(id, closed[:len(closed) - self.KEEP_CLOSED]))
                self.items = [i for i in self.items if id(i) not in drop]
            return info

    def closed(self, info):
        with self.lock:
            info.open = False

    @contextlib.contextmanager
    def request(self, handler):
        """Counts one request of handler's connection while it runs."""
        info = getattr(handler.connection, "conn_info", None)
        self.current.info = info
        if info is None:
            yield None
            return
        with self.lock:
            info.requests += 1
            info.active += 1
            info.user_agent = handler.headers.get("User-Agent") or info.user_agent
        try:
            yield info
        finally:
            with self.lock:
                info.active -= 1
            self.current.info = None

    @contextlib.contextmanager
    def watch(self, handler, res):
        """Marks handler's request as a watch of res while it streams (the
        HTTP/2 stream is then found by reset_watches)."""
        info = getattr(handler.connection, "conn_info", None)
        handler.watch_resource = res.plural
        if info is not None:
            with self.lock:
                info.watches += 1
        try:
            yield
        finally:
            handler.watch_resource = None
            if info is not None:
                with self.lock:
                    info.watches -= 1

    def snapshot(self):
        with self.lock:     # doc() takes a connection's lock: not under ours
            items, accepted = list(self.items), self.accepted
        return {"accepted": accepted, "items": [i.doc() for i in items]}

    def h2_open(self):
        with self.lock:
            return [i.h2 for i in self.items if i.open and i.h2 is not None]

    def goaway(self, immediate=False, deadline=1.0):
        """GOAWAY (NO_ERROR, last-stream-id = the highest stream seen) on
        every open HTTP/2 connection; each closes once its streams are done
        or after deadline seconds, or at once with immediate (except the
        connection of the asking request, which must carry the answer)."""
        mine = getattr(self.current, "info", None)
        n = 0
        for c in self.h2_open():
            c.goaway(deadline=0 if immediate and c.info is not mine else deadline)
            n += 1
        return n

    def wait_closed(self, timeout):
        end = time.monotonic() + timeout
        while self.h2_open() and time.monotonic() < end:
            time.sleep(0.02)

    def reset_watches(self, code, resource=None):
        """RST_STREAM with code on every HTTP/2 watch stream (of resource)."""
        return sum(c.reset_watches(code, resource) for c in self.h2_open())
