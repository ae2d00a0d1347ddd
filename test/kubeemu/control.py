"""Test-only control endpoints under /_emulator/ (no auth, never affected
by injected failures or latency)."""

import copy
import threading
import time
import uuid

import bulk
import kinds
import managedfields
import rbac
import rest
import writelog
from errors import ApiError

FAIL_STATUS = {
    400: ("BadRequest", "injected bad request"),
    401: ("Unauthorized", "Unauthorized"),
    403: ("Forbidden", "forbidden: injected"),
    404: ("NotFound", "the server could not find the requested resource"),
    409: ("Conflict", "Operation cannot be fulfilled: injected conflict"),
    410: ("Expired", "The resourceVersion for the provided list is too old."),
    429: ("TooManyRequests", "Too many requests, please try again later."),
    500: ("InternalError", "Internal error occurred: injected failure"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted, "
                     "but may still be processing the request"),
}


class Control:
    def __init__(self, api):
        self.api = api
        self.store = api.store
        self.lock = threading.Lock()
        self.fails = []         # [{count, code, retryAfter, pathPrefix, methods}]
        self.latency_ms = 0
        self.audit = writelog.WriteLog()    # audit.py's log, plus writes with times
        self.conns = None       # connections.Connections, set by the server

    # ---- hooks for the HTTP layer

    def authorize(self, user, entry):
        """RBAC (rbac.py) on an authenticated request: raises its 403. No
        authenticator (the anonymous user) means AlwaysAllow."""
        if user.get("username") == "system:anonymous":
            entry["decision"] = "allow"
            return
        rbac.check(self.store, user, entry)

    def before_request(self, method, path):
        """Sleep for the configured latency, then raise the next injected
        failure that matches, if any."""
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        with self.lock:
            for f in self.fails:
                if f["count"] <= 0:
                    continue
                if f.get("pathPrefix") and not path.startswith(f["pathPrefix"]):
                    continue
                if f.get("methods") and method not in f["methods"]:
                    continue
                f["count"] -= 1
                code = int(f.get("code", 500))
                reason, msg = FAIL_STATUS.get(code, ("InternalError", "injected failure"))
                details, headers = None, {}
                if f.get("retryAfter") is not None:
                    headers["Retry-After"] = str(f["retryAfter"])
                    if code == 429 or code >= 500:
                        details = {"retryAfterSeconds": int(f["retryAfter"])}
                elif code == 429:
                    details = {"retryAfterSeconds": 1}
                    headers["Retry-After"] = "1"
                if code == 500:
                    details = dict(details or {}, causes=[{"message": "injected failure"}])
                raise ApiError(code, reason, msg, details, headers=headers)
            self.fails = [f for f in self.fails if f["count"] > 0]

    # ---- endpoints

    # endpoints that are not POST: name -> allowed methods (the handler
    # then gets the method and the query too)
    METHODS = {"stats": ("GET",), "audit": ("GET", "DELETE"), "connections": ("GET",),
               "writes": ("GET", "DELETE")}

    def handle(self, method, name, body, query=None):
        fn = getattr(self, "do_" + name.replace("-", "_"), None)
        if fn is None:
            raise ApiError(404, "NotFound", "no such control endpoint: %s" % name)
        allowed = self.METHODS.get(name, ("POST",))
        if method not in allowed:
            raise ApiError(405, "MethodNotAllowed", "use " + " or ".join(allowed))
        if name in ("audit", "writes"):
            return fn(method, query or {})
        return fn(body or {})

    def do_audit(self, method, query):
        """GET: {"items": [entry...], "total": n} (entries as audit.py
        records them, oldest first; ?user=NAME keeps that user's; total
        counts every request ever recorded, so total > len(items) without a
        filter means the oldest were dropped). DELETE: clears the log."""
        if method == "DELETE":
            return {"cleared": self.audit.clear()}
        items, total = self.audit.items(query.get("user"))
        return {"items": items, "total": total}

    def do_writes(self, method, query):
        """GET: every write request (writelog.py) of ?user=NAME, or of all,
        with the server's time; DELETE: forgets them."""
        if method == "DELETE":
            return {"cleared": self.audit.clear_writes()}
        return self.audit.rows(query.get("user"))

    def do_seed_many(self, body):
        """Many seeds, each with its own template, at once (bulk.py)."""
        return bulk.seed_many(self, body)

    def do_stats(self, body):
        with self.store.cond:
            objects = {}
            for t in self.store.tables.values():
                r = t.res
                objects[r.qualified] = len(t.objs)
            watches = sum(1 for _ in self.store.all_watchers())
            return {"objects": objects, "resourceVersion": self.store.rv,
                    "watches": watches, "requests": self.store.requests}

    def do_drop_watches(self, body):
        """Cuts every watch: the connection on HTTP/1.1, the stream only
        (RST_STREAM INTERNAL_ERROR) on HTTP/2."""
        with self.store.cond:
            n = 0
            for w in self.store.all_watchers():
                w.close("drop")
                n += 1
            self.store.cond.notify_all()
        return {"dropped": n}

    # ---- connections (connections.py, h2conn.py)

    def do_connections(self, body):
        """{"accepted": n, "items": [{id, protocol ("h2" or "http/1.1"),
        peer, open, requests, active, watches, refused, userAgent, goaway}]}."""
        return self.conns.snapshot()

    def do_goaway(self, body):
        """GOAWAY (NO_ERROR, last-stream-id) on every open HTTP/2
        connection; each closes when its streams end, or after
        {"deadlineSeconds": 1}, or at once with {"immediate": true}."""
        return {"connections": self.conns.goaway(bool(body.get("immediate")),
                                                 float(body.get("deadlineSeconds", 1.0)))}

    def do_reset_watches(self, body):
        """RST_STREAM {"code": "INTERNAL_ERROR"|"CANCEL"|...} on every HTTP/2
        watch stream, or those of {"resource": plural}; HTTP/1.1 watches are
        untouched (drop-watches cuts those)."""
        import h2conn
        code = h2conn.ERRORS.get(body.get("code", "INTERNAL_ERROR"))
        if code is None:
            raise ApiError(400, "BadRequest", "code: one of " + ", ".join(h2conn.ERRORS))
        return {"reset": self.conns.reset_watches(code, body.get("resource"))}

    def do_http2(self, body):
        """{"maxConcurrentStreams": n} for the HTTP/2 connections accepted
        from now on."""
        if body.get("maxConcurrentStreams") is not None:
            self.conns.max_streams = max(1, int(body["maxConcurrentStreams"]))
        return {"maxConcurrentStreams": self.conns.max_streams}

    def do_compact(self, body):
        """etcd compaction; {"restartWatchCache": true} also restarts the
        watch caches, so watches from older rvs get 410 too."""
        with self.store.cond:
            self.store.compact()
            if body.get("restartWatchCache"):
                self.store.restart_watch_caches()
            return {"compacted": self.store.rv}

    def do_generate_name(self, body):
        """{"suffixes": [...]}: the next generateName suffixes, before random
        ones (two equal ones force the collision of a real apiserver)."""
        kinds.FORCED_SUFFIXES[:] = [str(s) for s in body.get("suffixes") or []]
        return {"pending": len(kinds.FORCED_SUFFIXES)}

    def do_watch_cache(self, body):
        """Optional {"capacity", "max", "freshSeconds"} (watchcache.Config)
        and {"restart": true}; answers the config and each resource's window."""
        with self.store.cond:
            self.store.configure_watch_caches(
                capacity=body.get("capacity"), maximum=body.get("max"),
                fresh=body.get("freshSeconds"))
            if body.get("restart"):
                self.store.restart_watch_caches()
            return {"config": self.store.wc_cfg.doc(), "resourceVersion": self.store.rv,
                    "resources": {t.res.qualified: t.wc.doc()
                                  for t in self.store.tables.values()}}

    def do_fail(self, body):
        rule = {"count": int(body.get("count", 1)), "code": int(body.get("code", 500)),
                "retryAfter": body.get("retryAfter"), "pathPrefix": body.get("pathPrefix"),
                "methods": body.get("methods")}
        with self.lock:
            if rule["count"] <= 0:
                self.fails = []     # count 0 clears pending failures
            else:
                self.fails.append(rule)
        return {"pending": sum(f["count"] for f in self.fails)}

    def do_latency(self, body):
        self.latency_ms = max(0, int(body.get("ms", 0)))
        return {"ms": self.latency_ms}

    def do_watch_inject(self, body):
        raw = body.get("raw", "")
        close = bool(body.get("close", False))
        with self.store.cond:
            n = 0
            for w in self.store.all_watchers():
                if body.get("resource") and w.res.plural != body["resource"]:
                    continue
                w.queue.append((raw, close))
                n += 1
            self.store.cond.notify_all()
        return {"streams": n}

    def do_seed(self, body):
        api = self.api
        plural = body.get("resource", "pods")
        res = None
        for r in api.registry.by_gvr.values():
            if r.plural == plural and (body.get("group") is None or r.group == body["group"]):
                res = r
                break
        if res is None:
            raise ApiError(404, "NotFound", "unknown resource %s" % plural)
        ns = body.get("namespace", "default") if res.namespaced else ""
        count = int(body.get("count", 0))
        prefix = body.get("namePrefix", "seed-")
        start = int(body.get("start", 0))
        tpl = copy.deepcopy(body.get("template") or {})
        tpl["kind"], tpl["apiVersion"] = res.kind, res.api_version
        tmd = tpl.pop("metadata", None) or {}
        tpl["metadata"] = {}
        if res.kind == "Pod":
            tpl.setdefault("spec", {}).setdefault(
                "containers", [{"name": "c", "image": "busybox:1.36"}])
        res.hooks.default(tpl)
        ts = rest.now()
        mf = managedfields.update(None, dict(tpl, metadata=tmd), managedfields.MISSING,
                                  body.get("fieldManager", "unknown"), res.api_version, "",
                                  res.builtin, res.has_status(), ts, res.kind)
        if hasattr(res.hooks, "admit_plugins"):
            res.hooks.admit_plugins(tpl)
        res.hooks.prepare_create(tpl)
        tpl = api.order(res, tpl)
        width = max(6, len(str(start + count - 1)))
        sort = api.sort_keys(res)
        with self.store.cond:
            if res.namespaced and not api.namespace_exists(ns):
                nsr = api.registry.lookup("", "v1", "namespaces")
                nso = {"kind": "Namespace", "apiVersion": "v1", "metadata": {
                    "name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": ts,
                    "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
                self.store.put(nsr, ns, nso, False)
            items = []
            for i in range(start, start + count):
                name = "%s%0*d" % (prefix, width, i)
                key = rest.key_of(res, ns, name)
                if self.store.get(res, key) is not None:
                    raise ApiError(409, "AlreadyExists", "%s %s already exists" % (plural, name))
                md = dict(tmd)
                md.update({"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": ts})
                if res.namespaced:
                    md["namespace"] = ns
                if res.generation:
                    md["generation"] = 1
                if mf:
                    md["managedFields"] = mf    # shared too
                o = dict(tpl)     # spec/status shared: stored objects are immutable
                o["metadata"] = md
                items.append((key, o))
            self.store.bulk_add(res, items, sort)
            return {"created": count, "resourceVersion": self.store.rv}
