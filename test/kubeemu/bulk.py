"""Bulk loading for benchmarks (POST /_emulator/seed-many): many seeds of
control.py's "seed" kind in one request, each with its own template, stored
with one sorted insert per resource (one seed call per template would
re-sort the whole key list each time: 10,000 templates over 100,000 pods
took minutes).

Body: {"seeds": [SEED, ...]}, each SEED as /_emulator/seed takes it
({"resource", "group", "namespace", "count", "namePrefix", "start",
"template", "fieldManager"}) or with "names": [...] instead of
count/namePrefix/start (exact names, e.g. docs/design.md's CachedImage
names). As with "seed", objects skip admission and webhooks and get the
template's managedFields; unlike "seed", a custom resource's template is
pruned and validated against its CRD schema first (strict: an unknown or
invalid field is 400/422 for the whole request), and keeps its status (a
real server would take it only through /status: benchmarks preload what
the controller would have written). Nothing is stored unless every seed is
valid and every name new. Answers {"created": n, "resourceVersion": rv}."""

import copy
import uuid

import managedfields
import rest
from errors import ApiError, bad_request, invalid

SEED_USER = {"username": "kubeemu-seed", "groups": ["system:masters"]}


def _resource(api, body):
    plural = body.get("resource", "pods")
    for r in api.registry.by_gvr.values():
        if r.plural == plural and (body.get("group") is None or r.group == body["group"]):
            return r
    raise ApiError(404, "NotFound", "unknown resource %s" % plural)


def _template(api, res, body):
    """The seed's object without names: defaulted, pruned and validated
    (custom resources), managedFields computed once; (template metadata,
    object, managedFields)."""
    tpl = copy.deepcopy(body.get("template") or {})
    tpl["kind"], tpl["apiVersion"] = res.kind, res.api_version
    tmd = tpl.pop("metadata", None) or {}
    tpl["metadata"] = {}
    if res.kind == "Pod":
        tpl.setdefault("spec", {}).setdefault(
            "containers", [{"name": "c", "image": "busybox:1.36"}])
    if not res.builtin:
        req = rest.Request("POST", {"fieldValidation": "Strict"}, {}, b"", dict(SEED_USER))
        tpl = api.prune(req, res, tpl)
        tpl["metadata"] = {}
    res.hooks.default(tpl)
    mf = managedfields.update(None, dict(tpl, metadata=tmd), managedfields.MISSING,
                              body.get("fieldManager", "unknown"), res.api_version, "",
                              res.builtin, res.has_status(), rest.now(), res.kind)
    if hasattr(res.hooks, "admit_plugins"):
        res.hooks.admit_plugins(tpl)
    res.hooks.prepare_create(tpl)
    if not res.builtin:
        causes = api.schema_check(res, dict(tpl, metadata={"name": "x"}))
        if causes:
            raise invalid(res, "seed template", causes)
    return tmd, api.order(res, tpl), mf


def _names(body):
    if body.get("names") is not None:
        names = [str(n) for n in body["names"]]
        if not all(names):
            raise bad_request("seed-many: empty name")
        return names
    count, start = int(body.get("count", 0)), int(body.get("start", 0))
    prefix = body.get("namePrefix", "seed-")
    width = max(6, len(str(start + count - 1)))
    return ["%s%0*d" % (prefix, width, i) for i in range(start, start + count)]


def seed_many(control, body):
    api, store = control.api, control.store
    plan = []       # (res, namespace, names, template metadata, object, managedFields)
    for s in body.get("seeds") or []:
        res = _resource(api, s)
        ns = s.get("namespace", "default") if res.namespaced else ""
        tmd, tpl, mf = _template(api, res, s)
        plan.append((res, ns, _names(s), tmd, tpl, mf))
    ts = rest.now()
    nsr = api.registry.lookup("", "v1", "namespaces")
    with store.cond:
        by_res, seen = {}, set()
        for res, ns, names, tmd, tpl, mf in plan:
            items = by_res.setdefault(res.id, (res, []))[1]
            for name in names:
                key = rest.key_of(res, ns, name)
                if (res.id, key) in seen or store.get(res, key) is not None:
                    raise ApiError(409, "AlreadyExists", "%s %s already exists"
                                   % (res.plural, name))
                seen.add((res.id, key))
                md = dict(tmd)
                md.update({"name": name, "uid": str(uuid.uuid4()), "creationTimestamp": ts})
                if res.namespaced:
                    md["namespace"] = ns
                if res.generation:
                    md["generation"] = 1
                if mf:
                    md["managedFields"] = mf    # shared: stored objects are immutable
                o = dict(tpl)
                o["metadata"] = md
                items.append((key, o))
        for res, ns, names, tmd, tpl, mf in plan:
            if res.namespaced and not api.namespace_exists(ns):
                store.put(nsr, ns, {"kind": "Namespace", "apiVersion": "v1", "metadata": {
                    "name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": ts,
                    "labels": {"kubernetes.io/metadata.name": ns}},
                    "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
                    False)
        n = 0
        for res, items in by_res.values():
            store.bulk_add(res, items, api.sort_keys(res))
            n += len(items)
        return {"created": n, "resourceVersion": store.rv}
