"""metadata.managedFields as the apiserver's field manager keeps them for
writes that are not server-side apply (operation "Update"), so objects
are as large and shaped as a real cluster's (about half of a pod's JSON).

Per write (create, update, patch; a subresource write gets its own entry
with "subresource"), structured-merge-diff's Update: the old and new
objects are compared; the writer's set becomes (its set - removed) |
modified | added, every other manager loses the modified, added and
removed paths, and empty entries are dropped. A non-leaf path absent from
the old object is itself a member ("." in fieldsV1). The writer's entry gets
a new "time" only when it took fields. Entries are sorted like the
apiserver's (operation, time, manager, apiVersion, subresource).

The manager is the fieldManager parameter, else the User-Agent up to its
first "/", else "unknown". managedFields sent by the client are taken as
the starting point when valid (an empty list or [{}] resets them), else
the stored ones are kept.

Simplifications: the set is taken on the object after decoding and
defaulting, before admission (as the real handler does), with the kind's
reset fields (status for the main resource, everything but status for
/status) left out. List keys are a table of the built-in associative lists
(containers by name, ports by containerPort+protocol, ...); finalizers are
a set; every other list is atomic, and so are all lists of custom
resources. The "empty" old object of a create is {} for custom resources
and Go's zero value for built-ins (ZERO: a pod's spec and its null
containers count as present, so they carry no "." as on a real pod)."""

import json

MISSING = object()

# Paths the field manager never tracks (fieldmanager's stripMeta).
STRIP = {("f:apiVersion",), ("f:kind",), ("f:metadata",)} | {
    ("f:metadata", "f:" + f) for f in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")}

# listType=map of the built-in kinds: field name -> key fields
LIST_KEYS = {
    "containers": ("name",), "initContainers": ("name",),
    "ephemeralContainers": ("name",), "ports": ("containerPort", "protocol"),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",), "imagePullSecrets": ("name",),
    "ownerReferences": ("uid",), "conditions": ("type",), "podIPs": ("ip",),
    "hostAliases": ("ip",), "resourceClaims": ("name",), "webhooks": ("name",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
SET_LISTS = {"finalizers"}
# +structType=atomic: owned as a whole (fields, and list elements by key)
ATOMIC_FIELDS = {"involvedObject", "fieldRef", "resourceFieldRef", "configMapKeyRef",
                 "secretKeyRef", "labelSelector", "namespaceSelector", "objectSelector",
                 "selector"}
ATOMIC_ELEMS = {"ownerReferences", "imagePullSecrets"}
ATOMIC = object()
# The zero value of a built-in object as Go's converter renders it: structs
# are present (empty), non-omitempty fields null or "", so a create does not
# make them members ("."), as on a real server.
_POD_SPEC = {"containers": None}
ZERO = {
    "Pod": {"metadata": {}, "spec": _POD_SPEC, "status": {}},
    "PodTemplate": {"metadata": {}, "template": {"metadata": {}, "spec": _POD_SPEC}},
    "Event": {"metadata": {}, "involvedObject": {}, "source": {}, "eventTime": None},
    "CustomResourceDefinition": {"metadata": {}, "spec": {
        "group": "", "names": {"plural": "", "kind": ""}, "scope": "", "versions": None},
        "status": {"conditions": None, "acceptedNames": {"plural": "", "kind": ""},
                   "storedVersions": None}},
}
BUILTIN_ZERO = {"metadata": {}, "spec": {}, "status": {}}


def manager_name(query_manager, user_agent):
    if query_manager:
        return query_manager
    m = "".join(ch for ch in (user_agent or "").split("/")[0] if ch.isprintable())[:128]
    return m or "unknown"


# ---- field sets: sets of path tuples ("f:spec", 'k:{"name":"c"}', ...)

def _key(item, fields):
    return "k:" + json.dumps({f: item.get(f) for f in sorted(fields) if f in item},
                             separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _children(v, name, builtin):
    """{path element: (child, its field name)} of a non-leaf value, or None
    for a leaf; the name MISSING marks a set member, ATOMIC an atomic one."""
    if name is ATOMIC or (builtin and name in ATOMIC_FIELDS):
        return None
    if isinstance(v, dict):
        return {"f:" + k: (c, k) for k, c in v.items()}
    if isinstance(v, list) and builtin and v:
        if name in LIST_KEYS and all(isinstance(x, dict) for x in v):
            elem = ATOMIC if name in ATOMIC_ELEMS else None
            return {_key(x, LIST_KEYS[name]): (x, elem) for x in v}
        if name in SET_LISTS:
            return {"v:" + json.dumps(x, separators=(",", ":")): (x, MISSING) for x in v}
    return None


def _all(v, path, name, builtin, out):
    ch = _children(v, name, builtin)
    out.add(path)
    if ch:
        for pe, (c, n) in ch.items():
            if n is MISSING:
                out.add(path + (pe,))
            else:
                _all(c, path + (pe,), n, builtin, out)


def compare(old, new, builtin, path=(), name=None, c=None):
    """(added, modified, removed) path sets between two objects."""
    if c is None:
        c = (set(), set(), set())
    added, modified, removed = c
    if old is MISSING:
        _all(new, path, name, builtin, added)
        return c
    if new is MISSING:
        _all(old, path, name, builtin, removed)
        return c
    nc = _children(new, name, builtin)
    oc = _children(old, name, builtin)
    if nc is not None and (oc is not None or old is None or old == [] or old == {}):
        oc = oc or {}
        for pe, (v, n) in nc.items():
            if n is MISSING:
                if pe not in oc:
                    added.add(path + (pe,))
                continue
            compare(oc[pe][0] if pe in oc else MISSING, v, builtin, path + (pe,), n, c)
        for pe, (v, n) in oc.items():
            if pe not in nc:
                if n is MISSING:
                    removed.add(path + (pe,))
                else:
                    _all(v, path + (pe,), n, builtin, removed)
        return c
    if old != new:
        if oc is not None:
            _all(old, path, name, builtin, removed)
            removed.discard(path)
        if nc is not None:
            _all(new, path, name, builtin, added)
            added.discard(path)
        modified.add(path)
    return c


def to_fields(paths):
    """fieldsV1 of a path set: members with children carry "."."""
    root = {}
    for p in sorted(paths, key=len):
        node = root
        for pe in p:
            node = node.setdefault(pe, {})
    for p in paths:
        node = root
        for pe in p:
            node = node[pe]
        if node and p:
            node["."] = {}
    return _sorted(root)


def _order(k):
    return ("./fkvi".index(k[0]) if k[0] in "./fkvi" else 9, k)


def _sorted(node):
    return {k: _sorted(node[k]) for k in sorted(node, key=_order)}


def from_fields(fv, path=()):
    out = set()
    for k, v in fv.items():
        if k == ".":
            out.add(path)
        elif not isinstance(v, dict):
            raise ValueError("bad fieldsV1")
        elif not v:
            out.add(path + (k,))
        else:
            out |= from_fields(v, path + (k,))
    return out


# ---- entries

def _ident(e):
    return (e.get("manager", ""), e.get("operation", ""), e.get("apiVersion", ""),
            e.get("subresource", ""))


def decode(entries):
    """{ident: [entry, paths]} of a managedFields list; ValueError if invalid."""
    out = {}
    if not isinstance(entries, list):
        raise ValueError("managedFields must be a list")
    for e in entries:
        if not isinstance(e, dict) or e.get("fieldsType") != "FieldsV1" or \
                e.get("operation") not in ("Apply", "Update") or \
                not isinstance(e.get("fieldsV1", {}), dict):
            raise ValueError("invalid managedFields entry")
        out[_ident(e)] = [dict(e), from_fields(e.get("fieldsV1") or {})]
    return out


def _is_reset(entries):
    return isinstance(entries, list) and (entries == [] or entries == [{}])


def _excluded(paths, sub, has_status):
    paths = {p for p in paths if p and p not in STRIP}
    if sub == "status":
        return {p for p in paths if p[0] == "f:status"}
    if has_status:
        return {p for p in paths if p[0] != "f:status"}
    return paths


def update(old, new, sent, manager, api_version, sub, builtin, has_status, now, kind=""):
    """The managedFields list for `new` written by `manager` over `old`
    (None on create). `sent` is what the client put in new's metadata
    (MISSING when absent)."""
    live = (old or {}).get("metadata", {}).get("managedFields") or []
    if sub:
        managed = _safe_decode(live)
    elif _is_reset(sent):
        managed = {}
    else:
        try:
            managed = decode(sent) if sent not in (MISSING, None) and sent else None
        except ValueError:
            managed = None
        if not managed:
            managed = _safe_decode(live)
    base = old if old is not None else (ZERO.get(kind, BUILTIN_ZERO) if builtin else {})
    added, modified, removed = compare(_strip(base), _strip(new), builtin)
    added = _excluded(added, sub, has_status)
    modified = _excluded(modified, sub, has_status)
    removed = _excluded(removed, sub, has_status)
    ident = (manager, "Update", api_version, sub or "")
    taken = added | modified
    for k, (e, paths) in list(managed.items()):
        if k != ident:
            managed[k][1] = paths - taken - removed
            if not managed[k][1]:
                del managed[k]
    if taken:
        e, paths = managed.get(ident, [None, set()])
        e = {"manager": manager, "operation": "Update", "apiVersion": api_version,
             "time": now}
        if sub:
            e["subresource"] = sub
        managed[ident] = [e, (paths - removed) | taken]
    elif ident in managed:
        managed[ident][1] -= removed
        if not managed[ident][1]:
            del managed[ident]
    return encode(managed)


def _safe_decode(entries):
    try:
        return decode(entries)
    except ValueError:
        return {}


def _strip(obj):
    o = dict(obj)
    md = o.get("metadata")
    if isinstance(md, dict):
        o["metadata"] = {k: v for k, v in md.items() if k != "managedFields"}
    return o


def encode(managed):
    out = []
    for e, paths in managed.values():
        ent = {"manager": e.get("manager", ""), "operation": e.get("operation", "Update"),
               "apiVersion": e.get("apiVersion", "")}
        if e.get("time"):
            ent["time"] = e["time"]
        ent["fieldsType"] = "FieldsV1"
        ent["fieldsV1"] = to_fields(paths)
        if e.get("subresource"):
            ent["subresource"] = e["subresource"]
        out.append(ent)
    out.sort(key=lambda e: (e["operation"], e.get("time", ""), e["manager"],
                            e["apiVersion"], e.get("subresource", "")))
    return out
