"""Per-request audit for kubeemu: what the apiserver's RequestInfoFactory
derives from a request (verb, apiGroup, resource, subresource, namespace,
name), recorded per authenticated API request in a bounded log that
control.py serves at /_emulator/audit, with RBAC's decision (rbac.py) and
the HTTP status of the answer.

Verbs as Kubernetes derives them (k8s.io/apiserver/pkg/endpoints/request):
GET/HEAD on a name -> get, on a collection -> list, with ?watch=1|true or
under the deprecated /watch/ prefix -> watch; POST -> create; PUT -> update;
PATCH -> patch; DELETE on a name -> delete, on a collection ->
deletecollection. list/watch with fieldSelector metadata.name=N carry name N
(as RBAC's resourceNames see them). Anything outside /api and /apis is a
non-resource request: verb is the lower-cased method, nonResourceURL the
path."""

import collections
import threading
from urllib.parse import parse_qs

LIMIT = 100000
NAMESPACE_SUBRESOURCES = ("status", "finalize")
VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "GET": "get",
         "HEAD": "get", "DELETE": "delete"}


def request_info(method, path, query):
    """The audit fields of one request (query: the raw query string or a
    dict of first values)."""
    if isinstance(query, str):
        query = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    parts = [p for p in path.split("/") if p]
    info = {"verb": method.lower(), "apiGroup": "", "apiVersion": "", "resource": "",
            "subresource": "", "namespace": "", "name": ""}
    if parts[:1] == ["api"] and len(parts) >= 3:
        info["apiVersion"], cur = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        info["apiGroup"], info["apiVersion"], cur = parts[1], parts[2], parts[3:]
    else:
        info["nonResourceURL"] = path
        return info
    verb = VERBS.get(method, method.lower())
    if cur[0] == "watch":
        verb, cur = "watch", cur[1:]
        if not cur:
            info["nonResourceURL"] = path
            return dict(info, verb=method.lower())
    if cur[0] == "namespaces":
        if len(cur) > 1:
            info["namespace"] = cur[1]
            if len(cur) > 2 and cur[2] not in NAMESPACE_SUBRESOURCES:
                cur = cur[2:]
    info["resource"] = cur[0]
    if len(cur) >= 2:
        info["name"] = cur[1]
    if len(cur) >= 3:
        info["subresource"] = cur[2]
    if not info["name"]:
        if verb == "get":
            verb = "list"
        elif verb == "delete":
            verb = "deletecollection"
    if verb == "list" and query.get("watch") in ("1", "true"):
        verb = "watch"
    if verb in ("list", "watch", "deletecollection") and not info["name"]:
        for term in (query.get("fieldSelector") or "").split(","):
            k, sep, v = term.partition("=")
            if k.strip() == "metadata.name" and sep and not v.startswith("="):
                info["name"] = v.strip()
            elif k.strip() == "metadata.name" and v.startswith("="):
                info["name"] = v[1:].strip()
    info["verb"] = verb
    return info


class AuditLog:
    """The last LIMIT entries; thread-safe."""

    def __init__(self, limit=LIMIT):
        self.lock = threading.Lock()
        self.entries = collections.deque(maxlen=limit)
        self.total = 0

    def record(self, user, method, path, query, uri):
        """Appends and returns the entry; the caller may set entry["code"]
        once the request is answered."""
        e = {"user": (user or {}).get("username", "")}
        e.update(request_info(method, path, query))
        e["requestURI"] = uri
        e["decision"] = None    # rbac.py: "allow" or "forbid"
        e["code"] = None
        with self.lock:
            self.entries.append(e)
            self.total += 1
        return e

    def items(self, user=None):
        with self.lock:
            out = [dict(e) for e in self.entries if user is None or e["user"] == user]
            return out, self.total

    def clear(self):
        with self.lock:
            n = len(self.entries)
            self.entries.clear()
            return n
