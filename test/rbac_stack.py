"""thaw's daemons as their ServiceAccounts, under the RBAC that manifests/
grants, enforced by the emulator (test/kubeemu/rbac.py): the rendered
Roles, ClusterRoles and bindings are created in the emulator, and each
daemon gets a kubeconfig with its own token (a "TOKEN
system:serviceaccount:thaw-system:NAME" line in the tokens file).

Rendering is `kubectl kustomize` (kubectl's built-in kustomize, installed by
test/deps.sh): patches and Components apply exactly as on a cluster. A
missing kubectl is a failure, never a fallback."""

import copy
import os

import yaml

import rbac
import test_manifests
from stack import SYSTEM_NS, Controller, Webhook

RBAC_KINDS = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
              "Role": "roles", "RoleBinding": "rolebindings"}
RBAC_PATH = "/apis/rbac.authorization.k8s.io/v1"
SA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:" + SYSTEM_NS,
             "system:authenticated")
# The Components of manifests/ each daemon's test run uses.
COMPONENTS = {"thaw-controller": ("components/private-images",), "thaw-webhook": ()}


def sa_user(name):
    return "system:serviceaccount:%s:%s" % (SYSTEM_NS, name)


def rendered(components=()):
    """Objects of manifests/ plus Components, as `kubectl kustomize` renders
    them (test_manifests.kubectl_kustomize fails when kubectl is missing)."""
    objs = test_manifests.overlay(*components)
    assert objs, "kubectl kustomize rendered nothing"
    return objs


def rbac_objects(objs, sa=None):
    """The RBAC objects of objs; with sa, only those binding that
    ServiceAccount and the roles they reference."""
    out = [o for o in objs if o["kind"] in RBAC_KINDS]
    if sa is None:
        return out
    user = {"username": sa_user(sa), "groups": list(SA_GROUPS)}
    binds = [b for b in out if b["kind"].endswith("Binding")
             and any(rbac.subject_matches(s, user) for s in b.get("subjects") or [])]
    refs = {(b["roleRef"]["kind"], b["metadata"].get("namespace")
             if b["roleRef"]["kind"] == "Role" else None, b["roleRef"]["name"]) for b in binds}
    roles = [r for r in out if (r["kind"], r["metadata"].get("namespace"),
                                r["metadata"]["name"]) in refs]
    return roles + binds


def object_path(o):
    ns = o["metadata"].get("namespace")
    base = RBAC_PATH + ("/namespaces/%s" % ns if ns else "")
    return "%s/%s" % (base, RBAC_KINDS[o["kind"]])


def put_object(api, o):
    """Creates o in the emulator, or replaces it (a grant or a revocation
    takes effect at the next request)."""
    path = object_path(o)
    st, doc, _ = api.request("POST", path, o)
    if st == 409:
        cur = api.ok("GET", path + "/" + o["metadata"]["name"])
        o = dict(copy.deepcopy(o), metadata=dict(
            o["metadata"], resourceVersion=cur["metadata"]["resourceVersion"]))
        st, doc, _ = api.request("PUT", path + "/" + o["metadata"]["name"], o)
    if st not in (200, 201):
        raise AssertionError("loading %s %s: %s %s" % (o["kind"], o["metadata"]["name"],
                                                       st, doc))


def load(api, objs):
    for o in sorted(objs, key=lambda o: o["kind"].endswith("Binding")):
        put_object(api, o)


def without(objs, kind, name, group, resource, verb):
    """A copy of objs where role kind/name no longer grants verb on
    group/resource (the rule is split, so the other verbs stay)."""
    out = copy.deepcopy(objs)
    role = [o for o in out if o["kind"] == kind and o["metadata"]["name"] == name][0]
    rules = []
    for r in role["rules"]:
        if group in r.get("apiGroups", []) and resource in r.get("resources", []) \
                and verb in r["verbs"]:
            rest = [x for x in r["resources"] if x != resource]
            if rest:
                rules.append(dict(r, resources=rest))
            verbs = [v for v in r["verbs"] if v != verb]
            if verbs:
                rules.append(dict(r, resources=[resource], verbs=verbs))
        else:
            rules.append(r)
    assert rules != role["rules"], (kind, name, resource, verb)
    role["rules"] = rules
    return out


def sa_kubeconfig(sa, path):
    """A token for the ServiceAccount in the emulator's tokens file, and a
    copy of $KUBECONFIG that uses it (mode 0600)."""
    token = "sa-" + os.urandom(16).hex()
    with open(os.environ["THAW_EMU_TOKENS_FILE"], "a") as f:
        f.write("%s %s\n" % (token, sa_user(sa)))
    with open(os.environ["KUBECONFIG"]) as f:
        kc = yaml.safe_load(f)
    for u in kc["users"]:
        u["user"] = {"token": token}
    with open(path, "w") as f:
        yaml.safe_dump(kc, f)
    os.chmod(path, 0o600)
    return token


class _AsSA:
    """Mixin: argv() with the ServiceAccount's kubeconfig."""

    def argv(self):
        a = super().argv()
        a[a.index("--kubeconfig") + 1] = self.kubeconfig
        return a


class SAController(_AsSA, Controller):
    def __init__(self, kubeconfig, *a, **kw):
        super().__init__(*a, **kw)
        self.kubeconfig = kubeconfig


class SAWebhook(_AsSA, Webhook):
    """thaw-webhook as its ServiceAccount; extra: more flags
    (e.g. ["--cold-wait=30s"])."""

    def __init__(self, kubeconfig, *a, extra=(), **kw):
        super().__init__(*a, extra=extra, **kw)
        self.kubeconfig = kubeconfig
