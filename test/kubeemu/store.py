"""The object store: one global lock and revision counter (like etcd), a
sorted key list per resource for cheap pagination, and per resource the
event history that serves both etcd's history (snapshot lists and continue
tokens, back to the compacted revision) and the watch cache's window
(watchcache.py; a watch needs no etcd history).

Stored objects are immutable by convention: writers build new dicts, so
readers (watch threads) may use them after releasing the lock."""

import bisect
import json
import threading
import time

import watchcache

# etcd history kept per resource before the oldest tenth is compacted away
# (a real apiserver compacts every 5 minutes).
HISTORY_LIMIT = 400000


def dumps(obj, sort=False):
    return json.dumps(obj, separators=(",", ":"), sort_keys=sort,
                      ensure_ascii=False)


class Rec:
    """A stored object and its serialisation, made once per write."""
    __slots__ = ("obj", "js", "_item")

    def __init__(self, obj, sort):
        self.obj = obj
        self.js = dumps(obj, sort)
        self._item = None if not sort else self.js

    def item_js(self):
        """Built-in list items carry no kind/apiVersion; custom ones do."""
        if self._item is None:
            o = self.obj
            prefix = '{"kind":%s,"apiVersion":%s,' % (dumps(o.get("kind")),
                                                     dumps(o.get("apiVersion")))
            if self.js.startswith(prefix):
                self._item = "{" + self.js[len(prefix):]
            else:
                self._item = dumps({k: v for k, v in o.items()
                                    if k not in ("kind", "apiVersion")})
        return self._item


class Event:
    __slots__ = ("type", "rec", "prev", "rv", "key", "t")

    def __init__(self, type_, rec, prev, rv, key):
        self.type, self.rec, self.prev, self.rv, self.key = type_, rec, prev, rv, key
        self.t = time.monotonic()


class Table:
    def __init__(self, res, rv, compacted, wc_cfg):
        self.res = res
        self.objs = {}
        self.keys = []
        self.history = []
        self.hist_rvs = []
        self.compacted = compacted  # etcd: snapshots at rv >= compacted exist
        self.wc = watchcache.WatchCache(wc_cfg, rv)
        self.watchers = set()

    def trim(self):
        """Forget events that neither etcd nor the watch cache still holds."""
        etcd = len(self.hist_rvs) - bisect.bisect_right(self.hist_rvs, self.compacted)
        drop = len(self.history) - max(etcd, self.wc.size)
        if drop > 0 and (drop >= 4096 or drop * 2 >= len(self.history)):
            del self.history[:drop]
            del self.hist_rvs[:drop]

    def range(self, prefix):
        """Index bounds of keys starting with prefix."""
        lo = bisect.bisect_left(self.keys, prefix)
        hi = bisect.bisect_left(self.keys, prefix + "\uffff") if prefix else len(self.keys)
        return lo, hi


class Store:
    def __init__(self, start_rv=100, wc_cfg=None):
        self.cond = threading.Condition(threading.RLock())
        self.rv = start_rv
        self.tables = {}
        self.requests = 0
        self.compacted = 0
        self.wc_cfg = wc_cfg or watchcache.Config()

    def table(self, res):
        t = self.tables.get(res.id)
        if t is None:
            t = Table(res, self.rv, self.compacted, self.wc_cfg)
            self.tables[res.id] = t
        return t

    def get(self, res, key):
        t = self.tables.get(res.id)
        return t.objs.get(key) if t else None

    def _record(self, t, ev):
        t.history.append(ev)
        t.hist_rvs.append(ev.rv)
        t.wc.add(t.history, ev.t)
        first = bisect.bisect_right(t.hist_rvs, t.compacted)
        if len(t.hist_rvs) - first > HISTORY_LIMIT:
            t.compacted = t.hist_rvs[first + HISTORY_LIMIT // 10 - 1]
        t.trim()
        for w in t.watchers:
            w.queue.append(ev)
        if t.watchers:
            self.cond.notify_all()

    def put(self, res, key, obj, sort, type_=None):
        """Store obj under key with the next revision; returns the Rec.
        The caller holds the lock and passes a fresh dict."""
        t = self.table(res)
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        rec = Rec(obj, sort)
        prev = t.objs.get(key)
        t.objs[key] = rec
        if prev is None:
            i = bisect.bisect_left(t.keys, key)
            t.keys.insert(i, key)
        self._record(t, Event(type_ or ("ADDED" if prev is None else "MODIFIED"),
                              rec, prev, self.rv, key))
        return rec

    def bulk_add(self, res, items, sort):
        """Seed many new (key, obj) pairs at once: one sort instead of N
        inserts."""
        t = self.table(res)
        recs = []
        for key, obj in items:
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            rec = Rec(obj, sort)
            t.objs[key] = rec
            t.keys.append(key)
            self._record(t, Event("ADDED", rec, None, self.rv, key))
            recs.append(rec)
        t.keys.sort()
        return recs

    def remove(self, res, key, obj, sort):
        """Delete key; obj is the final state, stamped with the deletion
        revision (a DELETED event carries it)."""
        t = self.table(res)
        prev = t.objs.pop(key)
        i = bisect.bisect_left(t.keys, key)
        del t.keys[i]
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        rec = Rec(obj, sort)
        self._record(t, Event("DELETED", rec, prev, self.rv, key))
        return rec

    def compact(self):
        """etcd compaction at the current revision: Exact lists and continue
        tokens from an older one get 410 Expired; watches are still served
        from the watch caches' windows."""
        self.compacted = self.rv
        for t in self.tables.values():
            t.compacted = self.rv
            t.trim()

    def restart_watch_caches(self):
        """What an apiserver restart does to the watch caches: each starts
        empty at the current revision, so any watch from an older one gets
        410 (watch-410-after-apiserver-restart-watchcache.json)."""
        for t in self.tables.values():
            t.wc.restart(self.rv)
            t.trim()

    def configure_watch_caches(self, **kw):
        self.wc_cfg.update(**kw)
        for t in self.tables.values():
            t.wc.reconfigure(t.history)
            t.trim()

    def drop_table(self, res):
        t = self.tables.pop(res.id, None)
        if t:
            for w in list(t.watchers):
                w.close("gone")
            self.cond.notify_all()

    def add_watcher(self, res, w):
        self.table(res).watchers.add(w)

    def remove_watcher(self, res, w):
        t = self.tables.get(res.id)
        if t:
            t.watchers.discard(w)

    def all_watchers(self):
        for t in self.tables.values():
            yield from t.watchers

    def state_at(self, t, rv):
        """Overlay {key: Rec|None} that turns the current objects into the
        state at revision rv, from the events after it."""
        i = bisect.bisect_right(t.hist_rvs, rv)
        overlay = {}
        for ev in reversed(t.history[i:]):
            overlay[ev.key] = ev.prev
        return overlay

    def wait_for_rv(self, rv, timeout):
        """Block (lock held) until the store reaches rv; False on timeout."""
        return self.cond.wait_for(lambda: self.rv >= rv, timeout)
