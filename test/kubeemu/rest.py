"""The REST verbs on stored objects: get, list, create, update, patch,
delete, with the apiserver's order of steps: decode, default, admission
plugins, mutating webhooks, PrepareForCreate/Update, name generation,
validation, storage."""

import base64
import bisect
import copy
import datetime
import heapq
import itertools
import json
import uuid

import kinds
import managedfields
import patch as mpatch
import selector
from errors import ApiError, already_exists, bad_request, cause, conflict, invalid, not_found
from store import dumps

try:
    import admission
except ImportError:      # written by another engineer; no webhooks until then
    admission = None
try:
    import schema
except ImportError:
    schema = None
try:
    import jsonpatch
except ImportError:
    jsonpatch = None

LIST_TOO_OLD = "The resourceVersion for the provided list is too old."
CONTINUE_TOO_OLD = (
    "The provided continue parameter is too old to display a consistent list result. You "
    "can start a new list without the continue parameter, or use the continue token in "
    "this response to retrieve the remainder of the results. Continuing with the provided "
    "token results in an inconsistent list - objects that were created, modified, or "
    "deleted between the time the first chunk was returned and now may show up in the list.")
CR_PATCH_TYPES = ["application/json-patch+json", "application/merge-patch+json",
                  "application/apply-patch+yaml"]
CORE_PATCH_TYPES = CR_PATCH_TYPES + ["application/strategic-merge-patch+json"]


# Kinds whose strategy has AllowUnconditionalUpdate() false: a PUT must
# carry metadata.resourceVersion (custom resources too).
CONDITIONAL_UPDATE_KINDS = {"CustomResourceDefinition", "MutatingWebhookConfiguration",
                            "ValidatingWebhookConfiguration"}


def allow_unconditional_update(res):
    return res.builtin and res.kind not in CONDITIONAL_UPDATE_KINDS


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_of(res, ns, name):
    return "%s/%s" % (ns, name) if res.namespaced else name


def encode_continue(rv, start):
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(tok):
    try:
        raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
        d = json.loads(raw)
        return int(d["rv"]), d["start"]
    except (ValueError, KeyError, TypeError) as e:
        raise bad_request("invalid continue token: %s" % e)


def parse_rv(s, what="resourceVersion"):
    try:
        v = int(s)
        if v < 0:
            raise ValueError
        return v
    except ValueError:
        raise bad_request('invalid resource version: strconv.ParseUint: parsing "%s": '
                          'invalid syntax' % s)


def json_error(body, kind):
    """The 400 for a body that is not JSON, worded like the apiserver's."""
    text = body.decode("utf-8", "replace")
    try:
        json.loads(text)
        return None
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            why = "unexpected end of JSON input"
        else:
            why = "invalid character '%s' looking for beginning of value" % text[e.pos]
    short = text if len(text) <= 30 else text[:30] + " ..."
    return bad_request("the object provided is unrecognized (must be of type %s): couldn't get "
                       "version/kind; json parse error: %s (%s)" % (kind, why, short))


class Request:
    """What the HTTP layer parsed: verb, target and caller."""

    def __init__(self, method, query, headers, body, user):
        self.method, self.query, self.headers = method, query, headers
        self.body, self.user = body, user
        self.warnings = []

    def q(self, name, default=""):
        return self.query.get(name, default)

    def dry_run(self):
        return self.q("dryRun") == "All"

    def manager(self):
        """The field manager of this write (managedfields.py)."""
        ua = self.headers.get("User-Agent") if self.headers else None
        return managedfields.manager_name(self.q("fieldManager"), ua)


class Api:
    def __init__(self, store, registry):
        self.store = store
        self.registry = registry
        with store.cond:    # every built-in watch cache starts with the server
            for r in list(registry.by_gvr.values()):
                store.table(r)

    # ---- helpers

    def sort_keys(self, res):
        return not res.builtin    # unstructured objects serialise sorted

    def order(self, res, obj):
        """Built-in objects go out as kind, apiVersion, metadata, ...;
        the store's list-item trick depends on it."""
        obj["kind"] = res.kind
        obj["apiVersion"] = res.api_version
        if not res.builtin:
            return obj
        out = {"kind": res.kind, "apiVersion": res.api_version,
               "metadata": obj.get("metadata", {})}
        for k, v in obj.items():
            if k not in out:
                out[k] = v
        return out

    def parse_body(self, req, res):
        """The request's JSON object; res is a Resource or a kind's name."""
        kind = res if isinstance(res, str) else res.kind
        err = json_error(req.body or b"", kind)
        if err:
            raise err
        obj = json.loads(req.body)
        if not isinstance(obj, dict):
            raise bad_request("the object provided is unrecognized (must be of type %s): "
                              "couldn't get version/kind; json parse error: json: cannot "
                              "unmarshal array into Go value of type struct" % kind)
        return obj

    def namespace_exists(self, ns):
        ns_res = self.registry.lookup("", "v1", "namespaces")
        return self.store.get(ns_res, ns) is not None

    def require_namespace(self, res, ns):
        if res.namespaced and not self.namespace_exists(ns):
            ns_res = self.registry.lookup("", "v1", "namespaces")
            raise not_found(ns_res, ns)

    def list_configs(self):
        r = self.registry.lookup("admissionregistration.k8s.io", "v1",
                                 "mutatingwebhookconfigurations")
        with self.store.cond:
            t = self.store.tables.get(r.id)
            return [copy.deepcopy(t.objs[k].obj) for k in t.keys] if t else []

    def get_namespace(self, name):
        r = self.registry.lookup("", "v1", "namespaces")
        with self.store.cond:
            rec = self.store.get(r, name)
            return copy.deepcopy(rec.obj) if rec else None

    def admit(self, req, res, op, sub, ns, name, obj, old):
        """Mutating admission webhooks; returns the possibly mutated object."""
        if admission is None or not hasattr(admission, "AdmissionChain"):
            return obj
        opts = {"kind": "CreateOptions" if op == "CREATE" else "UpdateOptions",
                "apiVersion": "meta.k8s.io/v1"}
        if req.dry_run():
            opts["dryRun"] = ["All"]
        if req.q("fieldManager"):
            opts["fieldManager"] = req.q("fieldManager")
        if req.q("fieldValidation"):
            opts["fieldValidation"] = req.q("fieldValidation")
        attrs = {"operation": op, "group": res.group, "version": res.version,
                 "resource": res.plural, "subresource": sub or "",
                 "kind": {"group": res.group, "version": res.version, "kind": res.kind},
                 "namespace": ns or "", "name": name or "", "object": obj,
                 "old_object": old, "dry_run": req.dry_run(), "options": opts,
                 "user_info": req.user}
        chain = admission.AdmissionChain(self.list_configs, self.get_namespace)
        out, warnings = chain.admit(attrs)
        req.warnings.extend(warnings or [])
        return out if out is not None else obj

    def schema_check(self, res, obj):
        if res.builtin or not res.schema or schema is None:
            return []
        return schema.validate(res.schema, obj) or []

    def prune(self, req, res, obj):
        """Drop fields the CRD schema does not declare (reporting them per
        fieldValidation: Strict 400, Warn warning, Ignore nothing), then
        apply the schema's defaults."""
        if res.builtin or not res.schema or schema is None:
            return obj
        unknown = []
        obj = schema.prune(res.schema, obj, unknown)
        mode = req.q("fieldValidation") or "Warn"
        if unknown and mode == "Strict":
            raise bad_request("strict decoding error: " + ", ".join(
                'unknown field "%s"' % u for u in unknown))
        if mode == "Warn":
            req.warnings.extend('unknown field "%s"' % u for u in unknown
                                if 'unknown field "%s"' % u not in req.warnings)
        f = getattr(schema, "apply_defaults", None)
        return f(res.schema, obj) if f else obj

    # ---- read

    def get(self, req, res, ns, name):
        with self.store.cond:
            rec = self.store.get(res, key_of(res, ns, name))
            if rec is None:
                raise not_found(res, name)
            return 200, rec.js

    def list(self, req, res, ns):
        lsel = selector.parse_labels(req.q("labelSelector"))
        fsel = selector.parse_fields(req.q("fieldSelector"), res.fields)
        try:
            limit = int(req.q("limit") or 0)
        except ValueError:
            raise bad_request("limit: Invalid value")
        cont, rv, match = req.q("continue"), req.q("resourceVersion"), req.q("resourceVersionMatch")
        if match and not rv:
            raise bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if cont and rv:
            raise bad_request("specifying resource version is not allowed when using continue")
        prefix = ns + "/" if res.namespaced and ns else ""
        with self.store.cond:
            t = self.store.table(res)
            snap, start = None, ""
            if cont:
                trv, start = decode_continue(cont)
                if trv >= 0 and trv < t.compacted:
                    raise ApiError(410, "Expired", CONTINUE_TOO_OLD,
                                   metadata={"continue": encode_continue(-1, start)})
                snap = trv if trv >= 0 else None
            elif rv:
                rvn = parse_rv(rv)
                if rvn > self.store.rv and not self.store.wait_for_rv(rvn, 3.0):
                    raise ApiError(504, "Timeout", "Too large resource version: %d, current: %d"
                                   % (rvn, self.store.rv),
                                   {"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}],
                                    "retryAfterSeconds": 1})
                if match == "Exact":
                    if rvn < t.compacted:
                        raise ApiError(410, "Expired", LIST_TOO_OLD)
                    snap = rvn
                elif rvn == 0 and not match:
                    limit = 0     # served from the watch cache, which ignores limit
            body = self._page(res, t, prefix, start, snap, limit, lsel, fsel)
        return 200, body

    def _page(self, res, t, prefix, start, snap, limit, lsel, fsel):
        lo, hi = t.range(prefix)
        skey = prefix + start if start else ""
        if skey:
            lo = max(lo, bisect.bisect_left(t.keys, skey))
        objs = t.objs
        if snap is not None and snap < self.store.rv:
            overlay = {k: v for k, v in self.store.state_at(t, snap).items()
                       if k.startswith(prefix) and k >= skey}
        else:
            overlay = {}
        cur = itertools.islice(t.keys, lo, hi)
        if overlay:
            extra = sorted(k for k, v in overlay.items() if v is not None)
            keys = heapq.merge((k for k in cur if k not in overlay), extra)
            total = (hi - lo) - sum(1 for k in overlay if k in objs) + len(extra)
        else:
            keys = cur
            total = hi - lo
        items, last, more = [], None, False
        for k in keys:
            rec = overlay[k] if k in overlay else objs[k]
            o = rec.obj
            if lsel and not selector.match_labels(lsel, o.get("metadata", {}).get("labels")):
                continue
            if fsel and not selector.match_fields(fsel, o):
                continue
            if limit and len(items) == limit:
                more = True
                break
            items.append(rec)
            last = k
        rv = str(snap if snap is not None else self.store.rv)
        meta = {}
        if more:
            meta["continue"] = encode_continue(int(rv), last[len(prefix):] + "\x00")
            if not lsel and not fsel:
                meta["remainingItemCount"] = total - len(items)
        if res.builtin:
            md = {"resourceVersion": rv}
            md.update(meta)
            return '{"kind":%s,"apiVersion":%s,"metadata":%s,"items":[%s]}' % (
                dumps(res.list_kind), dumps(res.api_version), dumps(md),
                ",".join(r.item_js() for r in items))
        md = {"continue": meta.get("continue", "")}
        if "remainingItemCount" in meta:
            md["remainingItemCount"] = meta["remainingItemCount"]
        md["resourceVersion"] = rv
        return '{"apiVersion":%s,"items":[%s],"kind":%s,"metadata":%s}' % (
            dumps(res.api_version), ",".join(r.js for r in items), dumps(res.list_kind),
            dumps(md))

    # ---- create

    def create(self, req, res, ns, obj=None):
        if obj is None:
            obj = self.parse_body(req, res)
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        if res.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        sent = md.pop("managedFields", managedfields.MISSING)
        for f in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "generation", "selfLink"):
            md.pop(f, None)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        with self.store.cond:
            self.require_namespace(res, ns)
        res.hooks.decode(obj)
        obj = self.prune(req, res, obj)
        res.hooks.default(obj)
        # the field manager sees the decoded object, before admission
        mf = managedfields.update(None, obj, sent, req.manager(), res.api_version, "",
                                  res.builtin, res.has_status(), now(), res.kind)
        if hasattr(res.hooks, "admit_plugins"):
            res.hooks.admit_plugins(obj)
        if res.kind == "Pod":
            obj["metadata"]["creationTimestamp"] = None   # what the webhooks see
        obj = self.admit(req, res, "CREATE", "", ns, md.get("name", ""), obj, None)
        obj["kind"], obj["apiVersion"] = res.kind, res.api_version
        obj = self.prune(req, res, obj)
        res.hooks.default(obj)
        md = obj.setdefault("metadata", {})
        if res.namespaced:
            md["namespace"] = ns
        if not res.builtin and res.has_status():
            obj.pop("status", None)
        res.hooks.prepare_create(obj)
        generated = not md.get("name") and bool(md.get("generateName"))
        if generated:
            md["name"] = md["generateName"] + kinds.generate_suffix()
        name = md.get("name") or ""
        causes = kinds.validate_meta(obj)
        if not causes:
            causes = res.hooks.validate(obj, None) + self.schema_check(res, obj)
        if causes:
            raise invalid(res, name, causes)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = now()
        if res.generation:
            md["generation"] = 1
        md.pop("managedFields", None)    # what admission put there is dropped
        if mf:
            md["managedFields"] = mf
        obj = self.order(res, obj)
        with self.store.cond:
            key = key_of(res, ns, name)
            if self.store.get(res, key) is not None:
                err = already_exists(res, name)
                if generated:     # v1.26 does not retry another name
                    err.message += (", the server was not able to generate a unique name "
                                    "for the object")
                    err.details["retryAfterSeconds"] = 1
                    err.headers["Retry-After"] = "1"
                raise err
            self.require_namespace(res, ns)
            if req.dry_run():
                return 201, dumps(obj, self.sort_keys(res))
            rec = self.store.put(res, key, obj, self.sort_keys(res))
            if res.kind == "CustomResourceDefinition":
                self.establish(res, key, rec)
        return 201, rec.js

    def establish(self, crd_res, key, rec):
        """Names accepted and Established at once, as a real apiserver does
        within milliseconds; the group is served from then on."""
        obj = copy.deepcopy(rec.obj)
        names = obj["spec"]["names"]
        t = now()
        obj["status"]["acceptedNames"] = {k: names[k] for k in
                                          ("plural", "singular", "shortNames", "kind",
                                           "listKind", "categories") if k in names}
        obj["status"]["conditions"] = [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": t,
             "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": t,
             "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}]
        mf = managedfields.update(rec.obj, obj, managedfields.MISSING, "kube-apiserver",
                                  crd_res.api_version, "status", True, True, t)
        obj["metadata"].pop("managedFields", None)
        obj["metadata"]["managedFields"] = mf
        self.store.put(crd_res, key, obj, self.sort_keys(crd_res))
        for r in self.registry.custom_from_crd(obj):
            self.store.table(r)

    # ---- pods/binding (the scheduler's write: BindingREST.Create, assignPod)

    def bind(self, req, res, ns, name):
        """POST pods/NAME/binding: sets spec.nodeName of an unbound,
        ungated pod and its PodScheduled condition, in one write (a MODIFIED
        event; managedFields untouched, as the store's GuaranteedUpdate).
        The Binding's uid and resourceVersion are preconditions. Answers
        201 with a Success Status."""
        b = self.parse_body(req, "Binding")
        md = b.get("metadata") if isinstance(b.get("metadata"), dict) else {}
        if md.get("namespace") and md["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        if md.get("name") != name:
            raise bad_request("name in URL does not match name in Binding object")
        target = b.get("target") if isinstance(b.get("target"), dict) else {}
        errs = []      # ValidatePodBinding: an aggregate, not a Status (500)
        if target.get("kind") not in (None, "", "Node"):
            errs.append('target.kind: Unsupported value: "%s": supported values: "Node", '
                        '"<empty>"' % target["kind"])
        if not target.get("name"):
            errs.append("target.name: Required value")
        if errs:
            raise ApiError(500, "", errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
        key = key_of(res, ns, name)
        with self.store.cond:
            cur = self.store.get(res, key)
            if cur is None:
                raise not_found(res, name)
            pod = cur.obj
            for what, want, have in (("UID", md.get("uid"), pod["metadata"].get("uid")),
                                     ("ResourceVersion", md.get("resourceVersion"),
                                      pod["metadata"].get("resourceVersion"))):
                if want and want != have:
                    raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on pods "%s": '
                                   "StorageError: invalid object, Code: 4, Key: /registry/pods/"
                                   "%s/%s, ResourceVersion: 0, AdditionalErrorMsg: Precondition "
                                   "failed: %s in precondition: %s, %s in object meta: %s"
                                   % (name, ns, name, what, want, what, have or ""),
                                   {"name": name, "kind": "pods"})
            spec = pod.get("spec") or {}
            why = None
            if pod["metadata"].get("deletionTimestamp"):
                why = "pod %s is being deleted, cannot be assigned to a host" % name
            elif spec.get("nodeName"):
                why = 'pod %s is already assigned to node "%s"' % (name, spec["nodeName"])
            elif spec.get("schedulingGates"):
                why = "pod %s has non-empty .spec.schedulingGates" % name
            if why:     # a plain error from the update: NewConflict on pods/binding
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on pods/binding '
                               '"%s": %s' % (name, why), {"name": name, "kind": "pods/binding"})
            new = copy.deepcopy(pod)
            new["spec"]["nodeName"] = target["name"]
            ann = md.get("annotations")
            if isinstance(ann, dict) and ann:
                new["metadata"].setdefault("annotations", {}).update(ann)
            kinds.scheduled_condition(new.setdefault("status", {}), "True", now=now())
            if not req.dry_run():
                self.store.put(res, key, self.order(res, new), self.sort_keys(res))
        return 201, dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Success", "code": 201})

    # ---- update and patch

    def update(self, req, res, ns, name, sub):
        body = self.parse_body(req, res)
        bmd = body.get("metadata") or {}
        if bmd.get("name") and bmd["name"] != name:
            raise bad_request("the name of the object (%s) does not match the name on the URL (%s)"
                              % (bmd["name"], name))
        if res.namespaced and bmd.get("namespace") and bmd["namespace"] != ns:
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        want_rv = bmd.get("resourceVersion") or None
        with self.store.cond:
            cur = self.store.get(res, key_of(res, ns, name))
        if cur is None:
            if res.create_on_update and not sub:
                body.setdefault("metadata", {})["name"] = name
                return self.create(req, res, ns, body)
            raise not_found(res, name)
        if not want_rv and not allow_unconditional_update(res):
            raise invalid(res, name, [cause(
                "FieldValueInvalid", "metadata.resourceVersion",
                "Invalid value: 0x0: must be specified for an update")])
        return self._update(req, res, ns, name, sub, lambda old: copy.deepcopy(body), want_rv)

    def patch(self, req, res, ns, name, sub):
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip()
        allowed = CORE_PATCH_TYPES if res.builtin else CR_PATCH_TYPES
        if ctype not in allowed:
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media "
                           "types include: " + ", ".join(allowed))
        try:
            p = json.loads(req.body or b"")
        except ValueError as e:
            raise bad_request("error decoding patch: %s" % e)
        if ctype == "application/json-patch+json":
            if not isinstance(p, list):
                raise bad_request("json: cannot unmarshal object into Go value of type "
                                  "jsonpatch.Patch")

            def fn(old):
                if jsonpatch is None:
                    raise ApiError(500, "InternalError", "json patch not available")
                try:
                    return jsonpatch.apply(copy.deepcopy(old), p)
                except ApiError:
                    raise
                except Exception as e:
                    raise ApiError(422, "Invalid", str(e))
        elif ctype == "application/strategic-merge-patch+json":
            fn = lambda old: mpatch.strategic(copy.deepcopy(old), p)  # noqa: E731
        else:
            if not isinstance(p, dict):
                raise bad_request("json: cannot unmarshal into object")
            fn = lambda old: mpatch.merge(copy.deepcopy(old), p)  # noqa: E731
        want = None
        if isinstance(p, dict):
            want = (p.get("metadata") or {}).get("resourceVersion")
        return self._update(req, res, ns, name, sub, fn, want)

    def _update(self, req, res, ns, name, sub, make, want_rv):
        key = key_of(res, ns, name)
        sort = self.sort_keys(res)
        for _ in range(10):
            with self.store.cond:
                cur = self.store.get(res, key)
                if cur is None:
                    raise not_found(res, name)
                if want_rv and want_rv != cur.obj["metadata"]["resourceVersion"]:
                    raise conflict(res, name)
            old = cur.obj
            new = make(old)
            if not isinstance(new, dict):
                raise bad_request("the object provided is unrecognized")
            nmd = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
            if nmd.get("name", name) != name:   # checkName after a patch
                raise bad_request("the name of the object (%s) does not match the name on "
                                  "the URL (%s)" % (nmd.get("name"), name))
            if res.namespaced and nmd.get("namespace", ns) != ns:
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            sent = (new.get("metadata") or {}).get("managedFields", managedfields.MISSING) \
                if isinstance(new.get("metadata"), dict) else managedfields.MISSING
            new = self._prepare_update(req, res, sub, new, old)
            mf = managedfields.update(old, new, sent, req.manager(), res.api_version, sub,
                                      res.builtin, res.has_status(), now(), res.kind)
            new = self.admit(req, res, "UPDATE", sub, ns, name, new, copy.deepcopy(old))
            new = self._prepare_update(req, res, sub, new, old)
            new["metadata"].pop("managedFields", None)
            if mf:
                new["metadata"]["managedFields"] = mf
            causes = kinds.validate_labels(new["metadata"]) + res.hooks.validate(new, old) + \
                self.schema_check(res, new)
            if causes:
                raise invalid(res, name, causes)
            if res.generation and self._spec_changed(res, new, old):
                new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
            new = self.order(res, new)
            with self.store.cond:
                if self.store.get(res, key) is not cur:
                    if want_rv:
                        raise conflict(res, name)
                    continue    # someone wrote meanwhile: redo on the new state
                same = dict(new, metadata=dict(new["metadata"], resourceVersion=None)) == \
                    dict(old, metadata=dict(old["metadata"], resourceVersion=None))
                if same or req.dry_run():
                    return 200, dumps(new, sort) if not same else cur.js
                md = new["metadata"]
                if md.get("deletionTimestamp") and old["metadata"].get("finalizers") \
                        and not md.get("finalizers"):
                    self.store.remove(res, key, new, sort)
                    return 200, dumps(new, sort)
                rec = self.store.put(res, key, new, sort)
                if res.kind == "CustomResourceDefinition":
                    self.registry.custom_from_crd(new)
                return 200, rec.js
        raise ApiError(409, "Conflict", "too many concurrent updates")

    def _prepare_update(self, req, res, sub, new, old):
        """Keep what the client may not change (PrepareForUpdate)."""
        new["kind"], new["apiVersion"] = res.kind, res.api_version
        omd = old["metadata"]
        if sub == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            return new
        if sub == "ephemeralcontainers":
            ecs = (new.get("spec") or {}).get("ephemeralContainers")
            new = copy.deepcopy(old)
            if ecs is None:
                new["spec"].pop("ephemeralContainers", None)
            else:
                new["spec"]["ephemeralContainers"] = ecs
            kinds.default_pod_spec({"ephemeralContainers": ecs or []})
            return new
        md = new.get("metadata")
        if not isinstance(md, dict):
            md = new["metadata"] = {}
        for f in ("name", "namespace", "uid", "creationTimestamp", "generation",
                  "deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            if f in omd:
                md[f] = omd[f]
            else:
                md.pop(f, None)
        md.pop("managedFields", None)
        new = self.prune(req, res, new)
        res.hooks.decode(new)
        res.hooks.default(new)
        if not res.builtin and res.has_status():
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        res.hooks.prepare_update(new, old)
        return new

    def _spec_changed(self, res, new, old):
        skip = {"metadata", "status"} if (res.has_status() or res.builtin) else {"metadata"}
        a = {k: v for k, v in new.items() if k not in skip}
        b = {k: v for k, v in old.items() if k not in skip}
        return a != b

    # ---- delete

    def delete_options(self, req):
        opts = {}
        if req.body and req.body.strip():
            try:
                opts = json.loads(req.body)
            except ValueError as e:
                raise bad_request("error decoding DeleteOptions: %s" % e)
            if not isinstance(opts, dict):
                raise bad_request("invalid DeleteOptions")
        if req.q("gracePeriodSeconds"):
            opts["gracePeriodSeconds"] = int(req.q("gracePeriodSeconds"))
        if req.q("dryRun"):
            opts["dryRun"] = [req.q("dryRun")]
        return opts

    def delete(self, req, res, ns, name):
        opts = self.delete_options(req)
        sort = self.sort_keys(res)
        dry = "All" in (opts.get("dryRun") or [])
        with self.store.cond:
            key = key_of(res, ns, name)
            cur = self.store.get(res, key)
            if cur is None:
                raise not_found(res, name)
            obj = cur.obj
            md = obj["metadata"]
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": '
                               'Precondition failed: UID in precondition: %s, UID in object '
                               'meta: %s' % (res.qualified, name, pre["uid"], md.get("uid")),
                               {"name": name, "group": res.group, "kind": res.plural}
                               if res.group else {"name": name, "kind": res.plural})
            if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
                raise ApiError(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": '
                               'Precondition failed: ResourceVersion in precondition: %s, '
                               'ResourceVersion in object meta: %s'
                               % (res.qualified, name, pre["resourceVersion"],
                                  md.get("resourceVersion")),
                               {"name": name, "group": res.group, "kind": res.plural}
                               if res.group else {"name": name, "kind": res.plural})
            if dry:
                return 200, self._deleted_body(res, obj, cur)
            grace = self._grace(res, obj, opts)
            if md.get("finalizers") or grace:
                if md.get("deletionTimestamp"):
                    return 200, cur.js      # already terminating
                new = copy.deepcopy(obj)
                ts = datetime.datetime.now(datetime.timezone.utc) + \
                    datetime.timedelta(seconds=grace)
                new["metadata"]["deletionTimestamp"] = ts.strftime("%Y-%m-%dT%H:%M:%SZ")
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                return 200, self.store.put(res, key, new, sort).js
            self._remove(res, key, obj, sort)
            return 200, self._deleted_body(res, obj, cur)

    def _grace(self, res, obj, opts):
        """Graceful deletion only for pods bound to a node (a kubelet would
        confirm); unscheduled or finished pods go at once, as on a real
        apiserver."""
        if res.kind != "Pod":
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        g = opts.get("gracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return max(int(g), 0)

    def _deleted_body(self, res, obj, rec):
        if res.return_deleted:
            return rec.js
        d = {"name": obj["metadata"]["name"]}
        if res.group:
            d["group"] = res.group
        d["kind"] = res.plural
        d["uid"] = obj["metadata"].get("uid")
        return dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                      "status": "Success", "details": d})

    def _remove(self, res, key, obj, sort):
        """Lock held. Cascades: a namespace takes its objects with it, a CRD
        its custom objects and endpoints. (The namespace skips the
        Terminating phase: its contents go synchronously.)"""
        if res.kind == "Namespace":
            ns = obj["metadata"]["name"]
            for t in list(self.store.tables.values()):
                if t.res.namespaced:
                    lo, hi = t.range(ns + "/")
                    for k in list(t.keys[lo:hi]):
                        self.store.remove(t.res, k, copy.deepcopy(t.objs[k].obj),
                                          self.sort_keys(t.res))
        if res.kind == "CustomResourceDefinition":
            gone = self.registry.remove_crd(obj["metadata"]["name"])
            for r in gone:
                t = self.store.tables.get(r.id)
                if t:
                    for k in list(t.keys):
                        self.store.remove(r, k, copy.deepcopy(t.objs[k].obj), False)
                self.store.drop_table(r)
        self.store.remove(res, key, copy.deepcopy(obj), sort)

    def delete_collection(self, req, res, ns):
        lsel = selector.parse_labels(req.q("labelSelector"))
        fsel = selector.parse_fields(req.q("fieldSelector"), res.fields)
        prefix = ns + "/" if res.namespaced and ns else ""
        with self.store.cond:
            t = self.store.table(res)
            lo, hi = t.range(prefix)
            names = []
            for k in t.keys[lo:hi]:
                o = t.objs[k].obj
                if selector.match_labels(lsel, o["metadata"].get("labels")) and \
                        selector.match_fields(fsel, o):
                    names.append((o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            items = []
            for n_ns, n in names:
                try:
                    _, body = self.delete(req, res, n_ns, n)
                    items.append(body)
                except ApiError:
                    pass
            if res.builtin:
                return 200, '{"kind":%s,"apiVersion":%s,"metadata":{"resourceVersion":"%d"},' \
                    '"items":[%s]}' % (dumps(res.list_kind), dumps(res.api_version),
                                       self.store.rv, ",".join(items))
            return 200, dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Success"})
