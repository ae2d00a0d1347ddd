"""The audit log (audit.py) plus, per user, every write request with the
server's time, for benchmarks that count a daemon's writes per object and
per second (GET /_emulator/writes). The audit log keeps the last 100,000
requests of everyone, so a load generator's own requests push a daemon's out
of it, and its entries carry no time; this log keeps only writes (create,
update, patch, delete, deletecollection), of every user, up to LIMIT."""

import threading
import time

import audit

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
LIMIT = 2000000


class WriteLog(audit.AuditLog):
    def __init__(self, limit=audit.LIMIT):
        super().__init__(limit)
        self.wlock = threading.Lock()
        self.writes = []      # the audit entries themselves: their code comes later
        self.dropped = 0

    def record(self, user, method, path, query, uri):
        e = super().record(user, method, path, query, uri)
        if e["verb"] in WRITE_VERBS:
            e["ts"] = time.time()
            with self.wlock:
                if len(self.writes) < LIMIT:
                    self.writes.append(e)
                else:
                    self.dropped += 1
        return e

    def rows(self, user=None):
        """{"items": [[ts, verb, resource, subresource, namespace, name,
        code], ...] oldest first, "dropped": n}; code is null while a
        request is unanswered."""
        with self.wlock:
            es = [e for e in self.writes if user is None or e["user"] == user]
            dropped = self.dropped
        return {"items": [[round(e["ts"], 4), e["verb"], e["resource"], e["subresource"],
                           e["namespace"], e["name"], e["code"]] for e in es],
                "dropped": dropped}

    def clear_writes(self):
        with self.wlock:
            n = len(self.writes)
            self.writes, self.dropped = [], 0
            return n
