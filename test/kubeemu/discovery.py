"""Discovery documents (/api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v>),
shaped like kube-apiserver v1.26's."""

from errors import ApiError

VERSION = {"major": "1", "minor": "26", "gitVersion": "v1.26.0",
           "gitCommit": "d15ef3101210b20aac2e7a044ef087f397ad58c0",
           "gitTreeState": "clean", "buildDate": "2026-11-26T16:52:14Z",
           "goVersion": "go1.19.8", "compiler": "gc", "platform": "linux/amd64"}

# The built-in groups of a v1.26 apiserver, in its order (discovery-apis.json).
# Groups the emulator does not implement list no resources.
BUILTIN_GROUPS = [
    ('apiregistration.k8s.io', ['v1']),
    ('apps', ['v1']),
    ('events.k8s.io', ['v1']),
    ('authentication.k8s.io', ['v1']),
    ('authorization.k8s.io', ['v1']),
    ('autoscaling', ['v2', 'v1']),
    ('batch', ['v1']),
    ('certificates.k8s.io', ['v1']),
    ('networking.k8s.io', ['v1']),
    ('policy', ['v1']),
    ('rbac.authorization.k8s.io', ['v1']),
    ('storage.k8s.io', ['v1', 'v1beta1']),
    ('admissionregistration.k8s.io', ['v1']),
    ('apiextensions.k8s.io', ['v1']),
    ('scheduling.k8s.io', ['v1']),
    ('coordination.k8s.io', ['v1']),
    ('node.k8s.io', ['v1']),
    ('discovery.k8s.io', ['v1']),
    ('flowcontrol.apiserver.k8s.io', ['v1beta3', 'v1beta2']),
]

NOT_FOUND = ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _resource_list(registry, group, version):
    out = []
    for r in registry.in_group_version(group, version):
        e = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
             "kind": r.kind, "verbs": list(r.verbs)}
        if r.short:
            e["shortNames"] = list(r.short)
        if r.categories:
            e["categories"] = list(r.categories)
        e["storageVersionHash"] = r.storage_hash()
        out.append(e)
        for sub in r.subresources:
            kind, verbs = r.kind, ["get", "patch", "update"]
            if sub == "finalize":
                verbs = ["update"]
            elif sub == "binding":
                kind, verbs = "Binding", ["create"]
            out.append({"name": "%s/%s" % (r.plural, sub), "singularName": "",
                        "namespaced": r.namespaced, "kind": kind, "verbs": verbs})
    return out


def _group(name, versions):
    vs = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in versions]
    return {"name": name, "versions": vs, "preferredVersion": vs[0]}


def handle(registry, path, server_address):
    """Returns the document for a discovery path, or None if not one."""
    parts = [p for p in path.split("/") if p]
    if parts == ["version"]:
        return VERSION
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": server_address}]}
    if parts == ["api", "v1"]:
        return {"kind": "APIResourceList", "groupVersion": "v1",
                "resources": _resource_list(registry, "", "v1")}
    groups = dict(BUILTIN_GROUPS)
    for g, vs in registry.groups():
        if g and g not in groups:
            groups[g] = vs
    if parts == ["apis"]:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_group(g, vs) for g, vs in groups.items()]}
    if len(parts) in (2, 3) and parts[0] == "apis":
        vs = groups.get(parts[1])
        if not parts[1] or vs is None:
            raise NOT_FOUND
        if len(parts) == 2:
            d = {"kind": "APIGroup", "apiVersion": "v1"}
            d.update(_group(parts[1], vs))
            return d
        if parts[2] not in vs:
            raise NOT_FOUND
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (parts[1], parts[2]),
                "resources": _resource_list(registry, parts[1], parts[2])}
    return None
