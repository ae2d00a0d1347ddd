"""RBAC authorization for kubeemu, as k8s.io/kubernetes/plugin/pkg/auth/
authorizer/rbac decides: Roles, ClusterRoles, RoleBindings and
ClusterRoleBindings (rbac.authorization.k8s.io/v1, stored like any other
kind) grant; nothing denies. A request is allowed when the user is in
system:masters (the test token user "thaw-test" is), when the default
discovery policy covers it (below), or when a ClusterRoleBinding, or a
RoleBinding in the request's namespace, binds the user, one of its groups or
its ServiceAccount to a role with a matching rule. A denied request gets the
apiserver's 403 Status (forbidden()).

The request attributes are audit.py's (verb, apiGroup, resource,
subresource, namespace, name, nonResourceURL): list/watch with a
fieldSelector metadata.name=N carry name N, so resourceNames match them,
while create, list, watch and deletecollection without one never match a
rule with resourceNames.

The default policy is built in, not stored: system:discovery,
system:basic-user and system:public-info-viewer bound to
system:authenticated (bootstrappolicy), enough for discovery, health and
self-reviews. Role aggregation and the escalation check on role writes
(the test user, a master, may grant anything) are not emulated."""

import kinds
from errors import ApiError, cause

GROUP = "rbac.authorization.k8s.io"
MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"

# bootstrappolicy.ClusterRoles()' discovery roles, bound to system:authenticated.
DEFAULT_RULES = (
    {"verbs": ["get"], "nonResourceURLs": [
        "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
        "/openapi/*", "/readyz", "/version", "/version/"]},
    {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
     "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
    {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
     "resources": ["selfsubjectreviews"]},
)


# ---- rule matching (rbac.RuleAllows and its helpers)

def _has(values, want):
    return "*" in values or want in values


def rule_allows(rule, a):
    """Does one PolicyRule allow request attributes a?"""
    if not _has(rule.get("verbs") or [], a["verb"]):
        return False
    if a.get("nonResourceURL") is not None:
        path = a["nonResourceURL"]
        for u in rule.get("nonResourceURLs") or []:
            if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
                return True
        return False
    if not _has(rule.get("apiGroups") or [], a["apiGroup"]):
        return False
    sub = a.get("subresource") or ""
    combined = a["resource"] + ("/" + sub if sub else "")
    if not any(r == "*" or r == combined or (sub and r == "*/" + sub)
               for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or (a.get("name") or "") in names


def subject_matches(s, user):
    kind, name = s.get("kind"), s.get("name")
    if kind == "ServiceAccount":
        return "system:serviceaccount:%s:%s" % (s.get("namespace", ""), name) \
            == user.get("username")
    if kind == "User":
        return name == user.get("username")
    if kind == "Group":
        return name in (user.get("groups") or [])
    return False


# ---- the stored policy

def _objects(store, plural):
    t = store.tables.get((GROUP, plural))
    if t is None:
        return []
    return [getattr(r, "obj", r) for r in list(t.objs.values())]


def _role(store, kind, ns, name):
    plural = "clusterroles" if kind == "ClusterRole" else "roles"
    key = name if kind == "ClusterRole" else "%s/%s" % (ns, name)
    t = store.tables.get((GROUP, plural))
    rec = t.objs.get(key) if t is not None else None
    return getattr(rec, "obj", rec) if rec is not None else None


def _bound_rules(store, user, namespace, errors):
    """Yields the rules bound to user that apply in namespace ("": cluster
    scope only), as rbac's VisitRulesFor: ClusterRoleBindings first, then
    the namespace's RoleBindings. Missing roles go to errors."""
    yield from DEFAULT_RULES if AUTHENTICATED in (user.get("groups") or []) else ()
    bindings = [(b, None) for b in _objects(store, "clusterrolebindings")]
    if namespace:
        bindings += [(b, namespace) for b in _objects(store, "rolebindings")
                     if (b.get("metadata") or {}).get("namespace") == namespace]
    for b, ns in bindings:
        if not any(subject_matches(s, user) for s in b.get("subjects") or []):
            continue
        ref = b.get("roleRef") or {}
        kind = ref.get("kind")
        if ns is None and kind != "ClusterRole":
            continue
        role = _role(store, kind, ns, ref.get("name", ""))
        if role is None:
            errors.append('%s.%s "%s" not found' % (
                (kind or "").lower(), GROUP, ref.get("name", "")))
            continue
        yield from role.get("rules") or []


def authorize(store, user, attrs):
    """(allowed, reason): RBAC's decision for attrs (an audit entry)."""
    if MASTERS in (user.get("groups") or []):
        return True, ""
    errors = []
    ns = attrs.get("namespace") or "" if attrs.get("nonResourceURL") is None else ""
    with store.cond:
        for rule in _bound_rules(store, user, ns, errors):
            if rule_allows(rule, attrs):
                return True, ""
    if not errors:
        return False, ""
    return False, "RBAC: " + (errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]")


def forbidden_message(user, a):
    """responsewriters.forbiddenMessage."""
    name = user.get("username", "")
    if a.get("nonResourceURL") is not None:
        return 'User "%s" cannot %s path "%s"' % (name, a["verb"], a["nonResourceURL"])
    res = a["resource"] + ("/" + a["subresource"] if a.get("subresource") else "")
    where = 'in the namespace "%s"' % a["namespace"] if a.get("namespace") \
        else "at the cluster scope"
    return 'User "%s" cannot %s resource "%s" in API group "%s" %s' % (
        name, a["verb"], res, a["apiGroup"], where)


def forbidden(user, a, reason=""):
    """The 403 of responsewriters.Forbidden (apierrors.NewForbidden)."""
    msg = forbidden_message(user, a)
    if reason:
        msg += ": " + reason
    if a.get("nonResourceURL") is not None or not a.get("resource"):
        return ApiError(403, "Forbidden", "forbidden: " + msg, {})
    group, res, name = a["apiGroup"], a["resource"], a.get("name") or ""
    qualified = res + ("." + group if group else "")
    details = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = res
    if name:
        return ApiError(403, "Forbidden", '%s "%s" is forbidden: %s' % (qualified, name, msg),
                        details)
    return ApiError(403, "Forbidden", "%s is forbidden: %s" % (qualified, msg), details)


def check(store, user, entry):
    """The HTTP layer's hook: records the decision in the audit entry and
    raises the 403 when RBAC denies."""
    ok, reason = authorize(store, user, entry)
    entry["decision"] = "allow" if ok else "forbid"
    if not ok:
        raise forbidden(user, entry, reason)


# ---- the kinds' validation (k8s.io/kubernetes/pkg/apis/rbac/validation, in part)

def _rule_causes(rules, namespaced):
    out = []
    for i, r in enumerate(rules or []):
        f = "rules[%d]" % i
        if not r.get("verbs"):
            out.append(cause("FieldValueRequired", f + ".verbs",
                             "Required value: verbs must contain at least one value"))
        if r.get("nonResourceURLs"):
            if namespaced:
                out.append(cause("FieldValueInvalid", f + ".nonResourceURLs",
                                 "Invalid value: %s: namespaced rules cannot apply to "
                                 "non-resource URLs" % r["nonResourceURLs"]))
            if r.get("apiGroups") or r.get("resources") or r.get("resourceNames"):
                out.append(cause("FieldValueInvalid", f + ".nonResourceURLs",
                                 "Invalid value: %s: rules cannot apply to both regular "
                                 "resources and non-resource URLs" % r["nonResourceURLs"]))
        elif not r.get("apiGroups"):
            out.append(cause("FieldValueRequired", f + ".apiGroups",
                             "Required value: resource rules must supply at least one api "
                             "group"))
        elif not r.get("resources"):
            out.append(cause("FieldValueRequired", f + ".resources",
                             "Required value: resource rules must supply at least one "
                             "resource"))
    return out


class RoleHooks(kinds.Hooks):
    def __init__(self, namespaced):
        self.namespaced = namespaced

    def validate(self, obj, old):
        return kinds.validate_meta(obj) or _rule_causes(obj.get("rules"), self.namespaced)


class BindingHooks(kinds.Hooks):
    def __init__(self, namespaced):
        self.namespaced = namespaced

    def validate(self, obj, old):
        out = kinds.validate_meta(obj)
        ref = obj.get("roleRef") or {}
        kinds_ok = ("Role", "ClusterRole") if self.namespaced else ("ClusterRole",)
        if ref.get("kind") not in kinds_ok:
            out.append(cause("FieldValueNotSupported", "roleRef.kind",
                             'Unsupported value: "%s": supported values: %s' % (
                                 ref.get("kind", ""),
                                 ", ".join('"%s"' % k for k in kinds_ok))))
        if not ref.get("name"):
            out.append(cause("FieldValueRequired", "roleRef.name", "Required value"))
        if old is not None and (old.get("roleRef") or {}) != ref:
            out.append(cause("FieldValueInvalid", "roleRef",
                             "Invalid value: %s: cannot change roleRef" % ref))
        for i, s in enumerate(obj.get("subjects") or []):
            if s.get("kind") not in ("User", "Group", "ServiceAccount"):
                out.append(cause("FieldValueNotSupported", "subjects[%d].kind" % i,
                                 'Unsupported value: "%s": supported values: "ServiceAccount",'
                                 ' "User", "Group"' % s.get("kind", "")))
            if not s.get("name"):
                out.append(cause("FieldValueRequired", "subjects[%d].name" % i,
                                 "Required value"))
        return out
