"""The resource types the emulator serves: the built-in ones thaw uses and
the custom ones defined by established CRDs."""

import base64
import hashlib

import kinds
import rbac

BUILTIN_VERBS = ["create", "delete", "deletecollection", "get", "list",
                 "patch", "update", "watch"]
CR_VERBS = ["delete", "deletecollection", "get", "list", "patch", "create",
            "update", "watch"]
SUB_VERBS = ["get", "patch", "update"]

POD_FIELDS = {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "status.phase", "status.podIP",
              "status.podIPs", "status.nominatedNodeName"}
EVENT_FIELDS = {"involvedObject.kind", "involvedObject.namespace",
                "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion",
                "involvedObject.fieldPath", "reason", "reportingComponent",
                "source", "type"}


class Resource:
    def __init__(self, group, version, plural, singular, kind, namespaced,
                 short=(), categories=(), subresources=(), builtin=True,
                 return_deleted=False, create_on_update=False,
                 generation=False, fields=(), hooks=None, verbs=None):
        self.group, self.version, self.plural = group, version, plural
        self.singular, self.kind, self.namespaced = singular, kind, namespaced
        self.short, self.categories = list(short), list(categories)
        self.subresources = list(subresources)
        self.builtin = builtin
        self.return_deleted = return_deleted     # DELETE answers the object
        self.create_on_update = create_on_update  # PUT may create
        self.generation = generation
        self.fields = {"metadata.name", "metadata.namespace"} | set(fields)
        self.hooks = hooks or kinds.Hooks()
        self.verbs = verbs or (BUILTIN_VERBS if builtin else CR_VERBS)
        self.schema = None      # openAPIV3Schema of custom resources
        self.crd_name = None

    @property
    def id(self):
        return (self.group, self.plural)

    @property
    def api_version(self):
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def list_kind(self):
        return self.kind + "List"

    @property
    def qualified(self):
        """`widgets.example.com`, `pods`: the name used in error messages."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    @property
    def qualified_kind(self):
        """`Widget.example.com`, `Event`: used in Invalid messages."""
        return "%s.%s" % (self.kind, self.group) if self.group else self.kind

    def has_status(self):
        return "status" in self.subresources

    def storage_hash(self):
        h = hashlib.sha256(("%s/%s/%s" % (self.group, self.version, self.kind)).encode())
        return base64.b64encode(h.digest()[:8]).decode()


def builtins():
    R = Resource
    return [
        R("", "v1", "namespaces", "namespace", "Namespace", False, short=["ns"],
          subresources=["status", "finalize"], return_deleted=True,
          fields={"status.phase"}, hooks=kinds.NamespaceHooks(),
          verbs=["create", "delete", "get", "list", "patch", "update", "watch"]),
        R("", "v1", "nodes", "node", "Node", False, short=["no"],
          subresources=["status"], fields={"spec.unschedulable"}),
        R("", "v1", "pods", "pod", "Pod", True, short=["po"], categories=["all"],
          subresources=["status", "ephemeralcontainers", "binding"], return_deleted=True,
          fields=POD_FIELDS, hooks=kinds.PodHooks()),
        R("", "v1", "podtemplates", "podtemplate", "PodTemplate", True,
          hooks=kinds.PodTemplateHooks()),
        R("", "v1", "secrets", "secret", "Secret", True, fields={"type"},
          hooks=kinds.SecretHooks()),
        R("", "v1", "configmaps", "configmap", "ConfigMap", True, short=["cm"]),
        R("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True,
          short=["sa"]),
        R("", "v1", "events", "event", "Event", True, short=["ev"],
          create_on_update=True, fields=EVENT_FIELDS, hooks=kinds.EventHooks()),
        R("coordination.k8s.io", "v1", "leases", "lease", "Lease", True,
          create_on_update=True, hooks=kinds.LeaseHooks()),
        R("apiextensions.k8s.io", "v1", "customresourcedefinitions",
          "customresourcedefinition", "CustomResourceDefinition", False,
          short=["crd", "crds"], categories=["api-extensions"],
          subresources=["status"], generation=True, return_deleted=True,
          hooks=kinds.CRDHooks()),
        R("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations",
          "mutatingwebhookconfiguration", "MutatingWebhookConfiguration", False,
          categories=["api-extensions"], generation=True,
          hooks=kinds.WebhookConfigHooks()),
        R(rbac.GROUP, "v1", "roles", "role", "Role", True,
          hooks=rbac.RoleHooks(True)),
        R(rbac.GROUP, "v1", "clusterroles", "clusterrole", "ClusterRole", False,
          hooks=rbac.RoleHooks(False)),
        R(rbac.GROUP, "v1", "rolebindings", "rolebinding", "RoleBinding", True,
          hooks=rbac.BindingHooks(True)),
        R(rbac.GROUP, "v1", "clusterrolebindings", "clusterrolebinding",
          "ClusterRoleBinding", False, hooks=rbac.BindingHooks(False)),
    ]


class Registry:
    def __init__(self):
        self.by_gvr = {}
        for r in builtins():
            self.add(r)

    def add(self, r):
        self.by_gvr[(r.group, r.version, r.plural)] = r

    def lookup(self, group, version, plural):
        return self.by_gvr.get((group, version, plural))

    def by_kind(self, group, kind):
        for r in self.by_gvr.values():
            if r.group == group and r.kind == kind:
                return r
        return None

    def groups(self):
        """[(group, [versions])] in registration order, built-ins first."""
        out = {}
        for r in self.by_gvr.values():
            vs = out.setdefault(r.group, [])
            if r.version not in vs:
                vs.append(r.version)
        return list(out.items())

    def in_group_version(self, group, version):
        return [r for r in self.by_gvr.values()
                if r.group == group and r.version == version]

    def custom_from_crd(self, crd):
        """Resources (one per served version) for an established CRD; an
        existing Resource is updated in place so its table survives."""
        spec = crd["spec"]
        names = spec["names"]
        out = []
        for v in spec.get("versions", []):
            if not v.get("served", True):
                continue
            r = self.lookup(spec["group"], v["name"], names["plural"])
            if r is None:
                r = Resource(spec["group"], v["name"], names["plural"],
                             names.get("singular") or names["kind"].lower(),
                             names["kind"], spec.get("scope") == "Namespaced",
                             builtin=False, generation=True,
                             hooks=kinds.CustomHooks())
                self.add(r)
            r.short = list(names.get("shortNames") or [])
            r.categories = list(names.get("categories") or [])
            r.subresources = ["status"] if "status" in (v.get("subresources") or {}) else []
            r.schema = (v.get("schema") or {}).get("openAPIV3Schema")
            r.crd_name = crd["metadata"]["name"]
            out.append(r)
        return out

    def remove_crd(self, crd_name):
        gone = [k for k, r in self.by_gvr.items() if r.crd_name == crd_name]
        return [self.by_gvr.pop(k) for k in gone]
