"""Per-kind apiserver behaviour: decode-time defaulting, the built-in
admission plugins thaw can observe, PrepareForCreate/Update and validation.
Only what a client can see is emulated."""

import base64
import binascii
import copy
import datetime
import random
import re

from errors import ApiError, cause

NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"   # utilrand.String's alphabet
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
               "characters, '-' or '.', and must start and end with an alphanumeric "
               "character (e.g. 'example.com', regex used for validation is "
               "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rand_suffix(n=5):
    return "".join(random.choice(NAME_CHARS) for _ in range(n))


# generateName suffixes to hand out before random ones (/_emulator/generate-name:
# a test forces a collision deterministically)
FORCED_SUFFIXES = []


def generate_suffix():
    return FORCED_SUFFIXES.pop(0) if FORCED_SUFFIXES else rand_suffix()


LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                 "must start and end with an alphanumeric character (e.g. 'MyName',  or "
                 "'my.name',  or '123-abc', regex used for validation is "
                 "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric "
                   "characters, '-', '_' or '.', and must start and end with an alphanumeric "
                   "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for "
                   "validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def _qualified_name_error(key):
    """ValidateQualifiedName's first complaint about a label or annotation key."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return ("a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyName',  or "
                "'my.name',  or '123-abc', regex used for validation is "
                "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain "
                "prefix and '/' (e.g. 'example.com/MyName')")
    if prefix and (len(prefix) > 253 or not DNS1123.match(prefix)):
        return "prefix part " + DNS1123_MSG
    if not name:
        return "name part must be non-empty"
    if len(name) > 63:
        return "name part must be no more than 63 characters"
    if not LABEL_NAME.match(name):
        return NAME_PART_MSG
    return None


QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def qualified_name_errors(value):
    """Every message of validation.IsQualifiedName, in its order."""
    parts = value.split("/")
    if len(parts) > 2:
        return ["a qualified name " + QUALIFIED_NAME_MSG + " with an optional DNS subdomain "
                "prefix and '/' (e.g. 'example.com/MyName')"]
    errs = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not DNS1123.match(prefix):
                errs.append("prefix part " + DNS1123_MSG)
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not LABEL_NAME.match(name):
        errs.append("name part " + QUALIFIED_NAME_MSG)
    return errs


def validate_labels(md):
    causes = []
    labels = md.get("labels") or {}
    for k, v in (labels.items() if isinstance(labels, dict) else []):
        err = _qualified_name_error(k)
        if err:
            causes.append(cause("FieldValueInvalid", "metadata.labels",
                                'Invalid value: "%s": %s' % (k, err)))
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            msg = "must be no more than 63 characters" if isinstance(v, str) and \
                len(v) > 63 else LABEL_VALUE_MSG
            causes.append(cause("FieldValueInvalid", "metadata.labels",
                                'Invalid value: "%s": %s' % (v, msg)))
    ann = md.get("annotations") or {}
    for k in (ann if isinstance(ann, dict) else []):
        err = _qualified_name_error(k.lower())
        if err:
            causes.append(cause("FieldValueInvalid", "metadata.annotations",
                                'Invalid value: "%s": %s' % (k, err)))
    return causes


def validate_meta(obj):
    md = obj.get("metadata") or {}
    name = md.get("name") or ""
    if not name:
        return [cause("FieldValueRequired", "metadata.name",
                      "Required value: name or generateName is required")]
    if len(name) > 253 or not DNS1123.match(name):
        return [cause("FieldValueInvalid", "metadata.name",
                      'Invalid value: "%s": %s' % (name, DNS1123_MSG))]
    return validate_labels(md)


class Hooks:
    """Generic behaviour; subclasses override what their kind does."""

    def decode(self, obj):
        """Checks the apiserver does while decoding (400 BadRequest)."""

    def default(self, obj):
        """Defaulting, run on decode (before admission) and again after."""

    def prepare_create(self, obj):
        pass

    def prepare_update(self, new, old):
        pass

    def validate(self, obj, old):
        return []


# ---- pods

def pull_policy(image):
    """Always for :latest or no tag, else IfNotPresent (SetDefaults_Container)."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        tag = last.rsplit(":", 1)[1]
    else:
        tag = "" if "@" in image else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def default_container(c):
    c.setdefault("resources", {})
    res = c["resources"]
    if res.get("limits"):
        req = res.setdefault("requests", {})
        for k, v in res["limits"].items():
            req.setdefault(k, v)
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        fr = (e.get("valueFrom") or {}).get("fieldRef")
        if fr is not None:
            fr.setdefault("apiVersion", "v1")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if not c.get("imagePullPolicy") and isinstance(c.get("image"), str):
        c["imagePullPolicy"] = pull_policy(c["image"])


def default_pod_spec(spec):
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                default_container(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for v in spec.get("volumes") or []:
        for src in ("configMap", "secret", "projected"):
            if isinstance(v.get(src), dict):
                v[src].setdefault("defaultMode", 420)


def qos_class(spec):
    reqs, lims, all_guaranteed = False, False, True
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        r = (c.get("resources") or {})
        req, lim = r.get("requests") or {}, r.get("limits") or {}
        reqs = reqs or bool(req)
        lims = lims or bool(lim)
        if not ("cpu" in lim and "memory" in lim and req == {k: lim[k] for k in req}
                and all(req.get(k) == lim.get(k) for k in ("cpu", "memory"))):
            all_guaranteed = False
    if not reqs and not lims:
        return "BestEffort"
    return "Guaranteed" if all_guaranteed else "Burstable"


def admit_pod_plugins(pod):
    """ServiceAccount, DefaultTolerationSeconds and Priority admission plugins,
    which run before the webhooks."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("serviceAccountName", "default")
    spec["serviceAccount"] = spec["serviceAccountName"]
    if spec.get("automountServiceAccountToken") is not False:
        vols = spec.setdefault("volumes", [])
        names = [v.get("name", "") for v in vols]
        if not any(n.startswith("kube-api-access-") for n in names):
            vname = "kube-api-access-" + rand_suffix()
            vols.append({"name": vname, "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                    "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                "defaultMode": 420}})
            for key in ("initContainers", "containers"):
                for c in spec.get(key) or []:
                    c.setdefault("volumeMounts", []).append({
                        "name": vname, "readOnly": True,
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    tols = spec.setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == key and t.get("effect") in ("NoExecute", None, "")
                   for t in tols):
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300})
    spec.setdefault("priority", 0)
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")


def validate_containers(spec, key, field, required):
    causes = []
    cs = spec.get(key)
    if required and not cs:
        return [cause("FieldValueRequired", field, "Required value")]
    seen = set()
    for i, c in enumerate(cs or []):
        p = "%s[%d]" % (field, i)
        if not isinstance(c, dict):
            causes.append(cause("FieldValueInvalid", p, "Invalid value: must be an object"))
            continue
        if not c.get("name"):
            causes.append(cause("FieldValueRequired", p + ".name", "Required value"))
        elif c["name"] in seen:
            causes.append(cause("FieldValueDuplicate", p + ".name",
                                'Duplicate value: "%s"' % c["name"]))
        seen.add(c.get("name"))
        if not c.get("image"):
            causes.append(cause("FieldValueRequired", p + ".image", "Required value"))
    return causes


MUTABLE_MSG = ("Forbidden: pod updates may not change fields other than "
               "`spec.containers[*].image`,`spec.initContainers[*].image`,"
               "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
               "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it "
               "to be set to 1 if it was previously negative)")


def _spec_sans_mutable(spec):
    s = copy.deepcopy(spec)
    for key in ("containers", "initContainers"):
        for c in s.get(key) or []:
            c.pop("image", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds",
                "ephemeralContainers", "schedulingGates"):
        s.pop(key, None)
    return s


# ---- scheduling gates (PodSchedulingReadiness: beta and on from v1.27)

GATED_MSG = "Scheduling is blocked due to non-empty scheduling gates"


def gate_names(spec):
    return [g.get("name") if isinstance(g, dict) else None
            for g in spec.get("schedulingGates") or []]


def validate_scheduling_gates(spec):
    """validateSchedulingGates: qualified names, no duplicates."""
    causes, seen = [], set()
    for i, name in enumerate(gate_names(spec)):
        path = "spec.schedulingGates[%d]" % i
        name = name if isinstance(name, str) else ""
        for msg in qualified_name_errors(name):
            causes.append(cause("FieldValueInvalid", path, 'Invalid value: "%s": %s' % (name, msg)))
        if name in seen:
            causes.append(cause("FieldValueDuplicate", path, 'Duplicate value: "%s"' % name))
        seen.add(name)
    return causes


def validate_only_deleted_gates(spec, old_spec):
    """validateOnlyDeletedSchedulingGates: a gate may be removed, never
    added (nor renamed, which adds one)."""
    old = set(gate_names(old_spec))
    last = {}
    for i, name in enumerate(gate_names(spec)):
        last[name] = i     # a map by name, as upstream: a repeated name's last index
    return [cause("FieldValueForbidden", "spec.schedulingGates[%d].name" % i,
                  "Forbidden: only deletion is allowed, but found new scheduling gate '%s'"
                  % name) for name, i in sorted(last.items(), key=lambda kv: kv[1])
            if name not in old]


def scheduled_condition(status, value, reason=None, message=None, now=None):
    """podutil.UpdatePodCondition for PodScheduled: lastTransitionTime moves
    only when the status does."""
    conds = status.setdefault("conditions", [])
    new = {"type": "PodScheduled", "status": value, "lastProbeTime": None,
           "lastTransitionTime": now}
    if reason:
        new["reason"] = reason
    if message:
        new["message"] = message
    for i, c in enumerate(conds):
        if c.get("type") == "PodScheduled":
            if c.get("status") == value:
                new["lastTransitionTime"] = c.get("lastTransitionTime")
            conds[i] = new
            return
    conds.append(new)


class PodHooks(Hooks):
    def default(self, obj):
        spec = obj.setdefault("spec", {})
        default_pod_spec(spec)
        if "schedulingGates" in spec and not spec["schedulingGates"]:
            del spec["schedulingGates"]     # omitempty: [] and null are not stored
        obj.setdefault("status", {})

    def admit_plugins(self, obj):
        admit_pod_plugins(obj)

    def prepare_create(self, obj):
        status = obj["status"] = {"phase": "Pending"}
        if obj["spec"].get("schedulingGates"):     # applySchedulingGatedCondition
            scheduled_condition(status, "False", "SchedulingGated", GATED_MSG, now())
        status["qosClass"] = qos_class(obj["spec"])

    def prepare_update(self, new, old):
        new["status"] = copy.deepcopy(old.get("status", {}))
        spec = new.setdefault("spec", {})
        if "ephemeralContainers" in (old.get("spec") or {}):
            spec["ephemeralContainers"] = copy.deepcopy(old["spec"]["ephemeralContainers"])
        else:
            spec.pop("ephemeralContainers", None)

    def validate(self, obj, old):
        spec = obj.get("spec") or {}
        causes = validate_containers(spec, "containers", "spec.containers", True)
        causes += validate_containers(spec, "initContainers", "spec.initContainers", False)
        causes += validate_containers(spec, "ephemeralContainers",
                                      "spec.ephemeralContainers", False)
        causes += validate_scheduling_gates(spec)
        if old is None and spec.get("nodeName") and spec.get("schedulingGates"):
            causes.append(cause("FieldValueForbidden", "spec.nodeName", "Forbidden: cannot be "
                                "set until all schedulingGates have been cleared"))
        if old is not None:
            causes += validate_only_deleted_gates(spec, old.get("spec") or {})
        if old is not None and _spec_sans_mutable(spec) != _spec_sans_mutable(old.get("spec") or {}):
            causes.append(cause("FieldValueForbidden", "spec", MUTABLE_MSG))
        if old is not None:
            olds = {c.get("name"): c for c in (old.get("spec") or {}).get("ephemeralContainers") or []}
            news = {c.get("name"): c for c in spec.get("ephemeralContainers") or []}
            for n, c in olds.items():
                if news.get(n) != c:
                    causes.append(cause("FieldValueForbidden", "spec.ephemeralContainers",
                                        "Forbidden: existing ephemeral containers %s may not "
                                        "be changed" % n if n in news else
                                        "Forbidden: existing ephemeral containers %s may not "
                                        "be removed" % n))
        return causes


class PodTemplateHooks(Hooks):
    def default(self, obj):
        tpl = obj.setdefault("template", {})
        default_pod_spec(tpl.setdefault("spec", {}))


# ---- secrets

class SecretHooks(Hooks):
    def decode(self, obj):
        for k, v in (obj.get("data") or {}).items():
            try:
                base64.b64decode(v or "", validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise ApiError(400, "BadRequest",
                               'Secret in version "v1" cannot be handled as a Secret: '
                               'illegal base64 data at input byte 0')

    def default(self, obj):
        obj.setdefault("type", "Opaque")
        sd = obj.pop("stringData", None)
        if sd:
            data = obj.setdefault("data", {})
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()

    def validate(self, obj, old):
        if obj.get("type") == "kubernetes.io/dockerconfigjson":
            data = obj.get("data") or {}
            if ".dockerconfigjson" not in data:
                return [cause("FieldValueRequired", "data[.dockerconfigjson]", "Required value")]
            import json
            try:
                json.loads(base64.b64decode(data[".dockerconfigjson"]))
            except ValueError as e:
                return [cause("FieldValueInvalid", "data[.dockerconfigjson]",
                              'Invalid value: "<secret contents redacted>": %s' % e)]
        if old is not None and old.get("type") != obj.get("type"):
            return [cause("FieldValueInvalid", "type",
                          'Invalid value: "%s": field is immutable' % obj.get("type"))]
        return []


# ---- events

class EventHooks(Hooks):
    def default(self, obj):
        obj.setdefault("eventTime", None)

    def validate(self, obj, old):
        ns = (obj.get("metadata") or {}).get("namespace", "")
        io = obj.get("involvedObject") or {}
        ions = io.get("namespace", "")
        bad = (ns not in ("", "default")) if not ions else ns != ions
        if bad and not obj.get("eventTime"):
            return [cause("FieldValueInvalid", "involvedObject.namespace",
                          'Invalid value: "%s": does not match event.namespace' % ions)]
        return []


# ---- leases: MicroTime fields are parsed like Go's time.Parse(RFC3339Micro)

_MICRO_LAYOUT = [("2006", r"\d{4}"), ("-", "-"), ("01", r"\d{2}"), ("-", "-"),
                 ("02", r"\d{2}"), ("T", "T"), ("15", r"\d{2}"), (":", ":"),
                 ("04", r"\d{2}"), (":", ":"), ("05", r"\d{2}"),
                 (".000000", r"\.\d{6}"), ("Z07:00", r"Z|[+-]\d{2}:\d{2}")]
MICRO = "2006-01-02T15:04:05.000000Z07:00"


def micro_time_error(value):
    rest = value
    for elem, rx in _MICRO_LAYOUT:
        m = re.match(rx, rest)
        if not m:
            return 'parsing time "%s" as "%s": cannot parse "%s" as "%s"' % (
                value, MICRO, rest, elem)
        rest = rest[m.end():]
    if rest:
        return 'parsing time "%s": extra text: "%s"' % (value, rest)
    return None


class LeaseHooks(Hooks):
    def decode(self, obj):
        spec = obj.get("spec") or {}
        for f in ("acquireTime", "renewTime"):
            v = spec.get(f)
            if v is None:
                continue
            err = micro_time_error(v) if isinstance(v, str) else \
                "json: cannot unmarshal %s into Go value of type string" % type(v).__name__
            if err:
                raise ApiError(400, "BadRequest",
                               'Lease in version "v1" cannot be handled as a Lease: %s' % err)


# ---- namespaces

class NamespaceHooks(Hooks):
    def default(self, obj):
        md = obj.setdefault("metadata", {})
        if md.get("name"):
            md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md["name"]
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])

    def prepare_create(self, obj):
        obj["status"] = {"phase": "Active"}

    def prepare_update(self, new, old):
        new["status"] = copy.deepcopy(old.get("status", {}))
        new["spec"] = copy.deepcopy(old.get("spec", {}))


# ---- CRDs and webhook configurations

class CRDHooks(Hooks):
    def default(self, obj):
        spec = obj.setdefault("spec", {})
        spec.setdefault("conversion", {"strategy": "None"})
        names = spec.setdefault("names", {})
        if names.get("kind"):
            names.setdefault("listKind", names["kind"] + "List")
        if names.get("plural"):
            names.setdefault("singular", names.get("kind", "").lower())

    def prepare_create(self, obj):
        spec = obj["spec"]
        obj["status"] = {"conditions": None, "acceptedNames": {"plural": "", "kind": ""},
                         "storedVersions": [v["name"] for v in spec.get("versions", [])
                                            if v.get("storage")]}

    def prepare_update(self, new, old):
        new["status"] = copy.deepcopy(old.get("status", {}))

    def validate(self, obj, old):
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        causes = []
        for f, v in (("spec.group", spec.get("group")), ("spec.names.plural", names.get("plural")),
                     ("spec.names.kind", names.get("kind")), ("spec.scope", spec.get("scope"))):
            if not v:
                causes.append(cause("FieldValueRequired", f, "Required value"))
        if causes:
            return causes
        want = "%s.%s" % (names["plural"], spec["group"])
        if obj["metadata"].get("name") != want:
            causes.append(cause("FieldValueInvalid", "metadata.name",
                                'Invalid value: "%s": must be spec.names.plural+"."+spec.group'
                                % obj["metadata"].get("name")))
        vers = spec.get("versions") or []
        if not vers:
            causes.append(cause("FieldValueRequired", "spec.versions", "Required value"))
        elif sum(1 for v in vers if v.get("storage")) != 1:
            causes.append(cause("FieldValueInvalid", "spec.versions",
                                "Invalid value: %s: must have exactly one version marked as "
                                "storage version" % len(vers)))
        return causes


class WebhookConfigHooks(Hooks):
    def default(self, obj):
        try:
            import admission
        except ImportError:
            return
        f = getattr(admission, "default_config", None)
        if f:
            f(obj)


class CustomHooks(Hooks):
    pass
