"""Watch streams: chunked HTTP, one JSON event per line, served from the
per-resource watch cache (watchcache.py)."""

import bisect
import time

import selector
from errors import ApiError
from rest import parse_rv
from store import Event, dumps

DEFAULT_TIMEOUT = 1800


class Watcher:
    """One open stream. The store appends events to `queue` under the lock;
    the connection's thread drains it and writes outside the lock."""

    def __init__(self, res):
        self.res = res
        self.queue = []
        self.closed = None    # None, "drop" (abrupt), "gone" (clean end)

    def close(self, why):
        self.closed = why


class Stream:
    """The body of one watch response. The connection's handler frames it:
    chunked transfer coding on HTTP/1.1, DATA frames on HTTP/2."""

    def __init__(self, handler):
        self.h = handler

    def chunk(self, data):
        self.h.write_chunk(data.encode() if isinstance(data, str) else data)

    def end(self):
        self.h.end_chunks()

    def drop(self):
        """End without the terminating chunk, like a broken connection."""
        self.h.abort_stream()


def serve(handler, api, req, res, ns, bookmark_interval):
    store = api.store
    lsel = selector.parse_labels(req.q("labelSelector"))
    fsel = selector.parse_fields(req.q("fieldSelector"), res.fields)
    rv = req.q("resourceVersion")
    try:
        timeout = int(req.q("timeoutSeconds") or DEFAULT_TIMEOUT)
    except ValueError:
        raise ApiError(400, "BadRequest", "timeoutSeconds: Invalid value")
    bookmarks = req.q("allowWatchBookmarks") in ("true", "1")
    prefix = ns + "/" if res.namespaced and ns else ""
    w = Watcher(res)
    error = None
    with store.cond:
        t = store.table(res)
        if rv not in ("", "0"):
            rvn = parse_rv(rv)
            error = t.wc.too_old(rvn)    # older than the watch cache's window
            if error:
                initial = []
            else:
                i = max(bisect.bisect_right(t.hist_rvs, rvn), len(t.history) - t.wc.size)
                initial = [ev for ev in t.history[i:] if ev.key.startswith(prefix)]
        else:
            rvn = store.rv
            lo, hi = t.range(prefix)
            initial = [Event("ADDED", t.objs[k], None, rvn, k) for k in t.keys[lo:hi]]
        if error is None:
            store.add_watcher(res, w)
    s = Stream(handler)
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Cache-Control", "no-cache, private")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    if error:
        s.chunk(dumps({"type": "ERROR", "object": error}) + "\n")
        s.end()
        return
    sort = not res.builtin
    last_rv = rvn
    start = time.monotonic()
    deadline = start + timeout

    def next_bookmark(now):
        if not bookmarks:
            return None
        nb = min(now + bookmark_interval, deadline - 2)
        return nb if nb > now else None

    bm = next_bookmark(start)
    try:
        pending = initial
        while True:
            out = []
            for item in pending:
                if isinstance(item, tuple):     # injected raw bytes
                    if out:
                        s.chunk("".join(out))
                        out = []
                    s.chunk(item[0])
                    if item[1]:
                        s.drop()
                        return
                    continue
                if not item.key.startswith(prefix):
                    continue
                last_rv = max(last_rv, item.rv)
                line = render(item, lsel, fsel, sort)
                if line:
                    out.append(line)
            for line in out:      # one chunk per event, flushed
                s.chunk(line)
            with store.cond:
                while not w.queue and not w.closed:
                    now = time.monotonic()
                    wake = min(deadline, bm) if bm else deadline
                    if now >= wake:
                        break
                    store.cond.wait(wake - now)
                pending, w.queue = w.queue, []
                closed = w.closed
            if closed == "drop" and not pending:
                s.drop()
                return
            now = time.monotonic()
            if bm and now >= bm and not pending:
                s.chunk(dumps({"type": "BOOKMARK", "object": {
                    "kind": res.kind, "apiVersion": res.api_version,
                    "metadata": {"resourceVersion": str(last_rv)}}}, sort) + "\n")
                bm = next_bookmark(now)
            if (now >= deadline or closed == "gone") and not pending:
                s.end()
                return
    except (BrokenPipeError, ConnectionError, OSError):
        handler.close_connection = True
    finally:
        with store.cond:
            store.remove_watcher(res, w)


def render(ev, lsel, fsel, sort):
    """The line for one event, or None; an object that stops matching the
    selectors is sent as DELETED and one that starts as ADDED."""
    if not lsel and not fsel:
        return '{"type":"%s","object":%s}\n' % (ev.type, ev.rec.js)

    def match(o):
        return selector.match_labels(lsel, o.get("metadata", {}).get("labels")) and \
            selector.match_fields(fsel, o)
    now = match(ev.rec.obj)
    if ev.type == "MODIFIED":
        was = ev.prev is not None and match(ev.prev.obj)
        if now and was:
            typ = "MODIFIED"
        elif now:
            typ = "ADDED"
        elif was:
            o = dict(ev.prev.obj)
            o["metadata"] = dict(o["metadata"], resourceVersion=str(ev.rv))
            return '{"type":"DELETED","object":%s}\n' % dumps(o, sort)
        else:
            return None
        return '{"type":"%s","object":%s}\n' % (typ, ev.rec.js)
    if now:
        return '{"type":"%s","object":%s}\n' % (ev.type, ev.rec.js)
    return None
