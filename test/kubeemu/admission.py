"""The mutating admission webhook chain, called as kube-apiserver v1.26 calls it.

Follows k8s.io/apiserver/pkg/admission/plugin/webhook (mutating/dispatcher.go,
generic/webhook.go, request/admissionreview.go, errors/statuserror.go): the
request body and headers of fixtures/admission/*.json, the response checks
and the error texts of fixtures/admission/responses.json.

clientConfig.service cannot be resolved without a cluster network: map it in
SERVICE_ADDRESSES {(namespace, name, port): "127.0.0.1:PORT"}. The TLS server
name stays "<name>.<namespace>.svc", as the apiserver verifies it.
"""

import copy
import gzip
import http.client
import json
import socket
import ssl
import time
import uuid
from base64 import b64decode
from urllib.parse import urlsplit

import jsonpatch
from errors import ApiError

SERVICE_ADDRESSES = {}

_B64 = {c: i for i, c in enumerate(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_GO_JSON_TYPES = {bool: "bool", int: "number", float: "number", str: "string",
                  list: "array", dict: "object"}


class AdmissionError(ApiError):
    """An ApiError whose Status omits an empty reason, like Go's omitempty
    (a webhook's allowed:false without reason gives a Status with none)."""

    def status(self):
        body = super().status()
        if not body.get("reason"):
            body.pop("reason", None)
        return body


class _CallError(Exception):
    """webhookutil.ErrCallingWebhook: the only errors failurePolicy Ignore hides."""

    def __init__(self, name, reason):
        super().__init__('failed calling webhook "%s": %s' % (name, reason))


def _internal(msg):
    return AdmissionError(500, "InternalError", "Internal error occurred: " + msg,
                          details={"causes": [{"message": msg}]})


# ---- configuration defaults

def default_config(cfg):
    """Fill the apiserver's defaults into a MutatingWebhookConfiguration.

    Mutates cfg in place (the emulator's decode hook ignores the result) and
    returns it. Keys of each webhook and rule come out sorted, as stored."""
    for i, wh in enumerate(cfg.get("webhooks") or []):
        wh.setdefault("failurePolicy", "Fail")
        wh.setdefault("matchPolicy", "Equivalent")
        wh.setdefault("namespaceSelector", {})
        wh.setdefault("objectSelector", {})
        wh.setdefault("reinvocationPolicy", "Never")
        wh.setdefault("timeoutSeconds", 10)
        svc = (wh.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)
        rules = []
        for r in wh.get("rules") or []:
            r = dict(r)
            r.setdefault("scope", "*")
            rules.append(dict(sorted(r.items())))
        if "rules" in wh:
            wh["rules"] = rules
        cfg["webhooks"][i] = dict(sorted(wh.items()))
    return cfg


# ---- matching (generic/webhook.go ShouldCallHook)

def selector_matches(sel, labels):
    """metav1.LabelSelector semantics; raises ValueError on a bad operator."""
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        op, key, vals = e.get("operator"), e.get("key"), e.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in vals
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in vals
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ValueError('"%s" is not a valid label selector operator' % op)
        if not ok:
            return False
    return True


def _empty(sel):
    return not (sel or {}).get("matchLabels") and not (sel or {}).get("matchExpressions")


def _any(items, value):
    return any(i == "*" or i == value for i in items or [])


def rule_matches(rule, attrs):
    """rules.Matcher: scope, operation, group, version, resource/subresource."""
    scope = rule.get("scope", "*")
    is_ns = attrs["resource"] == "namespaces" and attrs["group"] == "" and attrs["version"] == "v1"
    if scope == "Namespaced" and (is_ns or not attrs.get("namespace")):
        return False
    if scope == "Cluster" and not (is_ns or not attrs.get("namespace")):
        return False
    if scope not in ("*", "Namespaced", "Cluster"):
        return False
    if not _any(rule.get("operations"), attrs["operation"]):
        return False
    if not _any(rule.get("apiGroups"), attrs["group"]):
        return False
    if not _any(rule.get("apiVersions"), attrs["version"]):
        return False
    for res in rule.get("resources") or []:
        r, _, s = res.partition("/")
        if (r == "*" or r == attrs["resource"]) and (s == "*" or s == attrs.get("subresource", "")):
            return True
    return False


def _labels(obj):
    md = obj.get("metadata") if isinstance(obj, dict) else None
    return md.get("labels") or {} if isinstance(md, dict) else None


# ---- Go-compatible decoding of the webhook's reply

def go_b64decode(src):
    """encoding/base64 StdEncoding.Decode, with Go's error offsets."""
    out, si, n = bytearray(), 0, len(src)

    def bad(off):
        return ValueError("illegal base64 data at input byte %d" % off)
    while True:
        dbuf, dlen, j = [0, 0, 0, 0], 4, 0
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                raise bad(si - j)
            c = src[si]
            si += 1
            if c in _B64:
                dbuf[j] = _B64[c]
                j += 1
                continue
            if c in (10, 13):
                continue
            if c != ord("=") or j < 2:
                raise bad(si - 1)
            if j == 2:  # "==" expected; the first "=" is consumed
                while si < n and src[si] in (10, 13):
                    si += 1
                if si == n:
                    raise bad(n)
                if src[si] != ord("="):
                    raise bad(si - 1)
                si += 1
            while si < n and src[si] in (10, 13):
                si += 1
            if si < n:
                raise bad(si)  # trailing garbage
            dlen = j
            break
        val = dbuf[0] << 18 | dbuf[1] << 12 | dbuf[2] << 6 | dbuf[3]
        out += bytes([(val >> 16) & 255, (val >> 8) & 255, val & 255][:dlen - 1])
        if dlen < 4:
            return bytes(out)


def _field_type_error(resp, field, gotype):
    return ("json: cannot unmarshal %s into Go struct field AdmissionResponse.response.%s of "
            "type %s" % (_GO_JSON_TYPES.get(type(resp[field]), "value"), field, gotype))


def _decode_review(body, version):
    """rest Result.Into(&AdmissionReview{}); raises ValueError(Go's message)."""
    try:
        review = json.loads(body)
    except ValueError as e:
        raise ValueError("couldn't get version/kind; json parse error: %s" % e)
    if not isinstance(review, dict):
        raise ValueError("couldn't get version/kind; json parse error: json: cannot unmarshal "
                         "%s into Go value of type struct { APIVersion string \"json:\\\"apiVersion"
                         ",omitempty\\\"\"; Kind string \"json:\\\"kind,omitempty\\\"\" }"
                         % _GO_JSON_TYPES.get(type(review), "value"))
    av, kind = review.get("apiVersion") or "", review.get("kind") or ""
    want = "admission.k8s.io/" + version
    if av and av != want and kind in ("", "AdmissionReview"):
        if av.startswith("admission.k8s.io/") and av.split("/")[1] in ("v1", "v1beta1"):
            raise ValueError("converting (%s.AdmissionReview) to (%s.AdmissionReview): unknown "
                             "conversion" % (av.split("/")[1], version))
    if (av or want) != want or (kind or "AdmissionReview") != "AdmissionReview":
        raise ValueError('no kind "%s" is registered for version "%s" in scheme '
                         '"pkg/runtime/scheme.go:100"' % (kind or "AdmissionReview", av or want))
    resp = review.get("response")
    if isinstance(resp, dict):
        for field, ok, gotype in (("uid", str, "types.UID"), ("allowed", bool, "bool"),
                                  ("patch", str, "[]uint8"), ("patchType", str, "v1.PatchType")):
            if resp.get(field) is not None and not isinstance(resp[field], ok):
                raise ValueError(_field_type_error(resp, field, gotype))
        if resp.get("patch"):
            resp["patch"] = go_b64decode(resp["patch"].encode())
    return review


def verify_response(uid, review, version):
    """request.VerifyAdmissionResponse for a mutating webhook."""
    r = review.get("response")
    if not isinstance(r, dict):
        raise ValueError("webhook response was absent")
    if (r.get("uid") or "") != uid:
        raise ValueError('expected response.uid="%s", got "%s"' % (uid, r.get("uid") or ""))
    gv = (review.get("apiVersion") or "").split("/")
    got = "%s/%s, Kind=%s" % (gv[0] if len(gv) == 2 else "", gv[-1], review.get("kind") or "")
    if got != "admission.k8s.io/%s, Kind=AdmissionReview" % version:
        raise ValueError("expected webhook response of admission.k8s.io/%s, Kind=AdmissionReview,"
                         " got %s" % (version, got))
    pt, patch = r.get("patchType") or "", r.get("patch") or b""
    if patch and not pt:
        raise ValueError("webhook returned response.patch but not response.patchType")
    if pt and not patch:
        raise ValueError("webhook returned response.patchType but not response.patch")
    if pt and pt != "JSONPatch":
        raise ValueError('webhook returned invalid response.patchType of "%s"' % pt)
    return r


def _status_error(code, body, ctype):
    """client-go's error for a non-2xx reply (Result.Error / NewGenericServerResponse)."""
    try:
        st = json.loads(body)
        if isinstance(st, dict) and st.get("kind") == "Status" and st.get("status") == "Failure":
            return st.get("message") or ""
    except ValueError:
        pass
    text = (ctype or "").split(";")[0].strip()
    msg = body[:2048].decode("utf-8", "replace").strip() if (not text or text.startswith("text/")) \
        else "unknown"
    fixed = {409: "the server reported a conflict",
             404: "the server could not find the requested resource",
             400: "the server rejected our request for an unknown reason",
             401: "the server has asked for the client to provide credentials",
             403: msg, 415: msg,
             405: "the server does not allow this method on the requested resource",
             422: "the server rejected our request due to an error in our request",
             503: "the server is currently unable to handle the request",
             504: "the server was unable to return a response in the time allotted, but may "
                  "still be processing the request",
             429: "the server has received too many requests and has asked us to try again "
                  "later"}
    if code in fixed:
        return fixed[code]
    if code == 406:
        return msg if msg and msg != "unknown" else \
            "the server was unable to respond with a content type that the client supports"
    if code >= 500:
        return 'an error on the server ("%s") has prevented the request from succeeding' % msg
    return "the server responded with the status code %d but did not return more information" \
        % code


# ---- the HTTPS call

def _target(wh):
    """(url for messages, connect host, port, TLS server name, Host header, path+query)."""
    cc = wh.get("clientConfig") or {}
    q = "?timeout=%ds" % wh.get("timeoutSeconds", 10)
    if cc.get("url"):
        u = urlsplit(cc["url"])
        host, port = u.hostname, u.port or 443
        return cc["url"] + q, host, port, host, u.netloc, (u.path or "/") + q
    svc = cc.get("service") or {}
    ns, name, port = svc.get("namespace", ""), svc.get("name", ""), svc.get("port", 443)
    sni = "%s.%s.svc" % (name, ns)
    path = svc.get("path") or ""
    url = "https://%s:%d%s%s" % (sni, port, path, q)
    addr = SERVICE_ADDRESSES.get((ns, name, port))
    if addr is None:
        raise _Dial('service "%s" not found' % name)
    h, _, p = addr.rpartition(":")
    return url, h, int(p), sni, "%s:%d" % (sni, port), (path or "/") + q


class _Dial(Exception):
    pass


def _tls_context(wh):
    ca = (wh.get("clientConfig") or {}).get("caBundle")
    if ca:
        return ssl.create_default_context(cadata=b64decode(ca).decode("ascii", "replace"))
    return ssl.create_default_context()


def _tls_error(e, host):
    code = getattr(e, "verify_code", 0)
    if code in (62, 64):
        return "x509: certificate is not valid for %s" % host
    if code in (9, 10):
        return "x509: certificate has expired or is not yet valid"
    if code:
        return "x509: certificate signed by unknown authority"
    return "remote error: tls: %s" % (getattr(e, "reason", None) or e)


def post(wh, body):
    """POST body to the webhook; (status, reply bytes, content-type).

    Raises ValueError with Go's text after 'failed to call webhook: '."""
    timeout = wh.get("timeoutSeconds", 10)
    deadline = time.monotonic() + timeout
    try:
        url, host, port, sni, hostport, path = _target(wh)
    except _Dial as e:
        cc = (wh.get("clientConfig") or {}).get("service") or {}
        raise ValueError('Post "https://%s.%s.svc:%d%s?timeout=%ds": %s' % (
            cc.get("name"), cc.get("namespace"), cc.get("port", 443), cc.get("path") or "",
            timeout, e))
    where = 'Post "%s": ' % url
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        # as Go's net.Dial: without it, Nagle and the peer's delayed ACK
        # add 40 ms to a request written in two pieces
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except ConnectionRefusedError:
        raise ValueError(where + "dial tcp %s:%d: connect: connection refused" % (host, port))
    except socket.timeout:
        raise ValueError(where + "dial tcp %s:%d: i/o timeout" % (host, port))
    except OSError as e:
        raise ValueError(where + "dial tcp %s:%d: %s" % (host, port, e.strerror or e))
    try:
        try:
            tls = _tls_context(wh).wrap_socket(sock, server_hostname=sni)
        except ssl.SSLError as e:
            raise ValueError(where + _tls_error(e, sni))
        sock = tls
        # HTTPConnection over the TLS socket made above: HTTPSConnection()
        # would build (and never use) a default context, reading the
        # system's CA store each call (about 30 ms)
        conn = http.client.HTTPConnection(sni, port)
        conn.sock = tls
        conn.putrequest("POST", path, skip_host=True, skip_accept_encoding=True)
        for k, v in (("Host", hostport), ("User-Agent", "kube-apiserver-admission"),
                     ("Content-Length", str(len(body))), ("Accept", "application/json, */*"),
                     ("Content-Type", "application/json"), ("Accept-Encoding", "gzip")):
            conn.putheader(k, v)
        conn.endheaders(body)
        tls.settimeout(max(deadline - time.monotonic(), 0.001))
        resp = conn.getresponse()
        data = resp.read()
        if resp.getheader("Content-Encoding") == "gzip":
            data = gzip.decompress(data)
        return resp.status, data, resp.getheader("Content-Type")
    except (socket.timeout, TimeoutError):
        raise ValueError(where + "context deadline exceeded")
    except (OSError, http.client.HTTPException) as e:
        raise ValueError(where + (str(e) or type(e).__name__))
    finally:
        sock.close()


# ---- the chain (mutating/dispatcher.go)

def _review(version, uid, attrs, obj):
    req = {"uid": uid, "kind": attrs["kind"],
           "resource": {"group": attrs["group"], "version": attrs["version"],
                        "resource": attrs["resource"]}}
    if attrs.get("subresource"):
        req["subResource"] = attrs["subresource"]
    req["requestKind"] = attrs["kind"]
    req["requestResource"] = req["resource"]
    if attrs.get("subresource"):
        req["requestSubResource"] = attrs["subresource"]
    if attrs.get("name"):
        req["name"] = attrs["name"]
    if attrs.get("namespace"):
        req["namespace"] = attrs["namespace"]
    req["operation"] = attrs["operation"]
    req["userInfo"] = attrs.get("user_info") or {}
    req["object"] = obj
    req["oldObject"] = attrs.get("old_object")
    req["dryRun"] = bool(attrs.get("dry_run"))
    req["options"] = attrs.get("options")
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/" + version,
            "request": req}


class AdmissionChain:
    """Calls the matching mutating webhooks in order, as one apiserver request does."""

    def __init__(self, list_configs, get_namespace):
        self.list_configs = list_configs
        self.get_namespace = get_namespace

    def _hooks(self):
        cfgs = sorted(self.list_configs() or [], key=lambda c: c["metadata"]["name"])
        for cfg in cfgs:
            cfg = default_config(copy.deepcopy(cfg))
            for i, wh in enumerate(cfg.get("webhooks") or []):
                yield "%s/%s/%d" % (cfg["metadata"]["name"], wh.get("name"), i), wh

    def _ns_labels(self, attrs, obj):
        if attrs["resource"] == "namespaces" and not attrs.get("subresource") \
                and attrs["operation"] in ("CREATE", "UPDATE"):
            return _labels(obj) or {}
        name = attrs.get("namespace") or attrs.get("name")
        ns = self.get_namespace(name)
        if ns is None:
            raise AdmissionError(404, "NotFound", 'namespaces "%s" not found' % name,
                                 details={"name": name, "kind": "namespaces"})
        return _labels(ns) or {}

    def should_call(self, wh, attrs, obj):
        """ShouldCallHook: selectors first, errors only if a rule matches."""
        err = None
        sel = wh.get("namespaceSelector") or {}
        if (attrs.get("namespace") or attrs["resource"] == "namespaces") and not _empty(sel):
            try:
                if not selector_matches(sel, self._ns_labels(attrs, obj)):
                    return False
            except ApiError as e:
                err = e
            except ValueError as e:
                err = _internal(str(e))
        sel = wh.get("objectSelector") or {}
        if not _empty(sel):
            try:
                if not any(lb is not None and selector_matches(sel, lb) for lb in
                           (_labels(obj), _labels(attrs.get("old_object")))):
                    return False
            except ValueError as e:
                err = err or _internal(str(e))
        if not any(rule_matches(r, attrs) for r in wh.get("rules") or []):
            return False
        if err:
            raise err
        return True

    def call(self, wh, attrs, obj):
        """One webhook call: (patched object or None, warnings).

        Raises _CallError (policy applies), AdmissionError (rejection) or
        ApiError 500 (bad patch: never ignored)."""
        name = wh.get("name", "")
        if attrs.get("dry_run"):
            se = wh.get("sideEffects")
            if se is None:
                raise _CallError(name, "Webhook SideEffects is nil")
            if se not in ("None", "NoneOnDryRun"):
                raise AdmissionError(400, "BadRequest",
                                     'admission webhook "%s" does not support dry run' % name)
        versions = [v for v in wh.get("admissionReviewVersions") or [] if v in ("v1", "v1beta1")]
        if not versions:
            raise _CallError(name, "could not create admission objects: webhook does not accept "
                                   "known AdmissionReview versions (v1, v1beta1)")
        uid = str(uuid.uuid4())
        review = _review(versions[0], uid, attrs, obj)
        body = json.dumps(review, separators=(",", ":")).encode()
        try:
            code, data, ctype = post(wh, body)
            if code < 200 or code > 206:
                raise ValueError(_status_error(code, data, ctype))
            if not data:
                raise ValueError("0-length response with status code: %d and content type: %s"
                                 % (code, ctype or ""))
            reply = _decode_review(data, versions[0])
        except ValueError as e:
            raise _CallError(name, "failed to call webhook: %s" % e)
        try:
            r = verify_response(uid, reply, versions[0])
        except ValueError as e:
            raise _CallError(name, "received invalid webhook response: %s" % e)
        warnings = [w for w in r.get("warnings") or [] if isinstance(w, str)]
        if not r.get("allowed"):
            raise self._rejection(name, r.get("status"), warnings)
        if not r.get("patch") or obj is None:
            return None, warnings
        try:
            ops = json.loads(r["patch"])
            patched = jsonpatch.apply(obj, ops)
        except ValueError as e:
            raise _with_warnings(_internal(str(e)), warnings)
        except jsonpatch.JSONPatchError as e:
            raise _with_warnings(_internal(e.message), warnings)
        if not isinstance(patched, dict):
            raise _with_warnings(_internal("json: cannot unmarshal %s into Go value of type "
                                           "map[string]interface {}"
                                           % _GO_JSON_TYPES.get(type(patched), "value")), warnings)
        return patched, warnings

    @staticmethod
    def _rejection(name, st, warnings):
        """webhookerrors.ToStatusErr."""
        st = st if isinstance(st, dict) else {}
        denied = 'admission webhook "%s" denied the request' % name
        code = st.get("code") if isinstance(st.get("code"), int) else 0
        if st.get("message"):
            msg = "%s: %s" % (denied, st["message"])
        elif st.get("reason"):
            msg = "%s: %s" % (denied, st["reason"])
        else:
            msg = denied + " without explanation"
        e = AdmissionError(code if code >= 400 else 400, st.get("reason") or "", msg,
                           details=st.get("details"), metadata=st.get("metadata"))
        return _with_warnings(e, warnings)

    def admit(self, attrs):
        """Run the chain; (mutated object, warnings) or raise ApiError.

        Round 0 calls every matching webhook. A change makes the IfNeeded
        webhooks called before it due again, once, in a reinvocation round."""
        obj = copy.deepcopy(attrs.get("object"))
        hooks = list(self._hooks())
        warnings = []
        previous, reinvoke, again = set(), set(), False
        for rnd in (0, 1):
            if rnd == 1 and not (again and reinvoke):
                break
            start = copy.deepcopy(obj)  # selectors see the object as the round began
            for uid, wh in hooks:
                if rnd == 1 and uid not in reinvoke:
                    continue
                if not self.should_call(wh, attrs, start):
                    continue
                changed = False
                try:
                    patched, w = self.call(wh, attrs, obj)
                    warnings += [x for x in w if x not in warnings]
                    if patched is not None and patched != obj:
                        obj, changed = patched, True
                except _CallError as e:
                    if wh.get("failurePolicy") != "Ignore":
                        raise _with_warnings(_internal(str(e)), warnings)
                except ApiError as e:
                    raise _with_warnings(e, warnings + [x for x in getattr(e, "warnings", [])
                                                        if x not in warnings])
                if changed:
                    reinvoke |= previous
                    previous = set()
                    again = True
                if wh.get("reinvocationPolicy") == "IfNeeded":
                    previous.add(uid)
        return obj, warnings


def _with_warnings(err, warnings):
    """Attach warnings; the HTTP layer sends them as Warning headers."""
    err.warnings = list(warnings)
    if warnings:
        err.headers = dict(err.headers or {})
        err.headers["Warning"] = ", ".join(
            '299 - "%s"' % w.replace("\\", "\\\\").replace('"', '\\"') for w in warnings)
    return err
