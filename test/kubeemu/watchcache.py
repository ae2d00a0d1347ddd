"""The apiserver's watch cache, per resource type: a bounded window of the
most recent events that watches are served from, separate from etcd's
history (store.Table.compacted), so an etcd compaction does not expire a
watch whose resourceVersion the cache still holds
(fixtures watch-compacted-rv-served-from-watchcache.json).

Sizing follows k8s v1.26 watch_cache.go: the capacity starts at the lower
bound (100) and, when the cache is full and the event about to be evicted
is younger than eventFreshDuration (75 s), doubles up to the upper bound
(100 * 1024); when the newest quarter of the window is older than that, it
halves back. A watch from an rv older than the window gets
"too old resource version: RV (OLDEST-1)", the number being the rv just
before the oldest held event, or the rv the cache was (re)started at when
nothing has been evicted since (watch-410-*-watchcache.json).

The events live in the table's history list; the cache only counts how
many of the newest ones it holds."""

import time

LOWER = 100
UPPER = 100 * 1024
FRESH = 75.0


class Config:
    """Shared by every resource's cache; the emulator's flags and the
    /_emulator/watch-cache control set it."""

    def __init__(self, capacity=LOWER, maximum=UPPER, fresh=FRESH):
        self.capacity, self.max, self.fresh = capacity, max(maximum, capacity), fresh

    def update(self, capacity=None, maximum=None, fresh=None):
        if capacity is not None:
            self.capacity = max(1, int(capacity))
        if maximum is not None:
            self.max = max(1, int(maximum))
        if fresh is not None:
            self.fresh = float(fresh)
        self.max = max(self.max, self.capacity)

    def doc(self):
        return {"capacity": self.capacity, "max": self.max, "freshSeconds": self.fresh}


class WatchCache:
    def __init__(self, cfg, list_rv):
        self.cfg = cfg
        # watches answered 410 (stats), by why the window had moved past them:
        # the cache (re)started after their rv, or events evicted since
        self.expired = {"evicted": 0, "restarted": 0}
        self.resizes = 0
        self.restart(list_rv)

    def restart(self, list_rv):
        """As at apiserver start: empty, serving watches from list_rv on."""
        self.capacity = self.cfg.capacity
        self.size = 0
        self.floor = list_rv    # watches from rv >= floor are served
        self.started = list_rv

    def too_old(self, rv):
        """Counts and returns the 410 Status for a watch from rv, or None."""
        if rv >= self.floor:
            return None
        self.expired["restarted" if rv < self.started else "evicted"] += 1
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "too old resource version: %d (%d)" % (rv, self.floor),
                "reason": "Expired", "code": 410}

    def add(self, history, now=None):
        """history[-1] is the new event; the cache held history[-1-size:-1]."""
        now = time.monotonic() if now is None else now
        cfg = self.cfg
        if self.size >= self.capacity:
            oldest = history[-1 - self.size]
            quarter = history[-1 - max(self.capacity // 4, 1)]
            if now - oldest.t < cfg.fresh:
                if self.capacity < cfg.max:
                    self.capacity = min(self.capacity * 2, cfg.max)
                    self.resizes += 1
            elif now - quarter.t > cfg.fresh and self.capacity > cfg.capacity:
                self.capacity = max(self.capacity // 2, cfg.capacity)
                self.size = self.capacity
                self.resizes += 1
        evicted = self.size >= self.capacity
        if evicted:
            self.size = self.capacity - 1
        self.size += 1
        if evicted:
            self.floor = history[-self.size].rv - 1

    def reconfigure(self, history):
        """Apply a changed Config at once (tests shrink the window)."""
        cap = min(max(self.capacity, self.cfg.capacity), self.cfg.max)
        self.capacity = cap
        if self.size > cap:
            self.size = cap
            self.floor = history[-cap].rv - 1

    def doc(self):
        return {"capacity": self.capacity, "size": self.size, "oldest": self.floor,
                "expired": self.expired, "resizes": self.resizes}
