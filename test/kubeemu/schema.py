"""CRD openAPIV3Schema validation, pruning and defaulting, as the apiserver does them.

Messages follow kube-openapi's validator (k8s.io/kube-openapi/pkg/validation)
turned into field errors by apiextensions-apiserver's ValidateCustomResource,
because clients see them verbatim in 422 Status causes
(fixtures/kube-api/widget-create-422-*.json).
Object properties are visited in the object's own key order: Go iterates a
map at random, and the body order reproduces the recorded fixtures.
"""

import base64
import copy
import json
import re
from decimal import Decimal

from errors import ApiError

# metadata/apiVersion/kind at the root are the server's business.
ROOT_SKIP = ("apiVersion", "kind", "metadata")

REASONS = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
}


def go_float(x):
    """fmt's %v of a float64: strconv 'g' with shortest digits (1e+06, 0.5)."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "0"
    sign, digits, e = Decimal(repr(abs(x))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    dp = len(digits) + e          # position of the decimal point
    exp = dp - 1
    neg = "-" if x < 0 else ""
    if exp < -4 or exp >= 6:      # eprec is 6 for shortest precision
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return "%s%se%s%02d" % (neg, mant, "-" if exp < 0 else "+", abs(exp))
    if dp <= 0:
        return neg + "0." + "0" * (-dp) + ds
    if dp >= len(ds):
        return neg + ds + "0" * (dp - len(ds))
    return neg + ds[:dp] + "." + ds[dp:]


def go_quote(s):
    """fmt's %q of a string."""
    return json.dumps(s, ensure_ascii=False)


def _num(v):
    """%v of a JSON number as the apiserver holds it (int64 or float64)."""
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 2 ** 63:
            return str(int(v))  # unstructured JSON decodes 3.0 as int64 3
        return go_float(v)
    return str(v)


def _value(v):
    """field.Error's rendering of a bad value."""
    if v is None:
        return '"null"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return _num(v)
    if isinstance(v, str):
        return go_quote(v)
    return json.dumps(v, separators=(",", ":"))


def _cause(kind, field, value=None, detail=""):
    if kind in ("Required value", "Too long"):
        body = kind
    else:
        body = "%s: %s" % (kind, _value(value))
    if detail:
        body += ": " + detail
    return {"reason": REASONS[kind], "message": body, "field": field}


def _type_of(v):
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return "null"


def _types(s):
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    t = s.get("type")
    return [t] if t else []


_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_FORMATS = {
    "date-time": _DATE_TIME.match,
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$").match,
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$").match,
    "ipv4": re.compile(r"^(\d{1,3})(\.\d{1,3}){3}$").match,
}


def _format_ok(fmt, s):
    if fmt == "byte":
        try:
            base64.b64decode(s, validate=True)
            return True
        except ValueError:
            return False
    check = _FORMATS.get(fmt)
    return check is None or bool(check(s))


def _type_ok(types, v):
    t = _type_of(v)
    if t in types:
        return True
    # An integral float passes as integer; an integer passes as number.
    if t == "number" and "integer" in types and v.is_integer():
        return True
    return t == "integer" and "number" in types


def _check(s, v, path, out):
    """Validate v against schema s at path, appending causes to out."""
    if not isinstance(s, dict):
        return
    types = _types(s)
    if v is None:
        if types and not s.get("nullable"):
            out.append(_cause("Invalid value", path, "null", "%s in body must be of type %s: %s"
                              % (path, ",".join(types), go_quote("null"))))
            out[-1]["reason"] = "FieldValueTypeInvalid"
        _check_enum(s, v, path, out)
        return
    if types and not _type_ok(types, v):
        t = _type_of(v)
        out.append(_cause("Invalid value", path, t, "%s in body must be of type %s: %s"
                          % (path, ",".join(types), go_quote(t))))
        out[-1]["reason"] = "FieldValueTypeInvalid"
    for sub in s.get("allOf", []):
        _check(sub, v, path, out)
    if isinstance(v, str):
        _check_string(s, v, path, out)
    elif isinstance(v, (int, float)) and not isinstance(v, bool):
        _check_number(s, v, path, out)
    elif isinstance(v, list):
        _check_array(s, v, path, out)
    _check_enum(s, v, path, out)
    if isinstance(v, dict):
        _check_object(s, v, path, out)


def _check_string(s, v, path, out):
    n = len(v)
    if "maxLength" in s and n > s["maxLength"]:
        out.append(_cause("Too long", path, v, "may not be longer than %d" % s["maxLength"]))
    if "minLength" in s and n < s["minLength"]:
        out.append(_cause("Invalid value", path, v, "%s in body should be at least %d chars long"
                          % (path, s["minLength"])))
    if "pattern" in s and not re.search(s["pattern"], v):
        out.append(_cause("Invalid value", path, v, "%s in body should match '%s'"
                          % (path, s["pattern"])))
    fmt = s.get("format")
    if fmt and not _format_ok(fmt, v):
        out.append(_cause("Invalid value", path, v, "%s in body must be of type %s: %s"
                          % (path, fmt, go_quote(v))))
        out[-1]["reason"] = "FieldValueTypeInvalid"


def _bound(b, v):
    # An int64 value is compared with int64(bound), and the bound printed so.
    return str(int(b)) if isinstance(v, int) else go_float(float(b))


def _check_number(s, v, path, out):
    m = s.get("multipleOf")
    if m:
        bad = (v % int(m) != 0) if isinstance(v, int) and m >= 1 else \
            not float(v / m if m >= 1 else v * (1 / m)).is_integer()
        if bad:
            out.append(_cause("Invalid value", path, v, "%s in body should be a multiple of %s"
                              % (path, _bound(m, v))))
    if "maximum" in s:
        mx = int(s["maximum"]) if isinstance(v, int) else s["maximum"]
        exc = s.get("exclusiveMaximum", False)
        if v > mx or (exc and v == mx):
            out.append(_cause("Invalid value", path, v, "%s in body should be less than %s%s"
                              % (path, "" if exc else "or equal to ", _bound(s["maximum"], v))))
    if "minimum" in s:
        mn = int(s["minimum"]) if isinstance(v, int) else s["minimum"]
        exc = s.get("exclusiveMinimum", False)
        if v < mn or (exc and v == mn):
            out.append(_cause("Invalid value", path, v, "%s in body should be greater than %s%s"
                              % (path, "" if exc else "or equal to ", _bound(s["minimum"], v))))


def _check_array(s, v, path, out):
    items = s.get("items")
    if isinstance(items, dict):
        for i, x in enumerate(v):
            _check(items, x, "%s[%d]" % (path, i), out)
    if "minItems" in s and len(v) < s["minItems"]:
        out.append(_cause("Invalid value", path, len(v), "%s in body should have at least %d items"
                          % (path, s["minItems"])))
    if "maxItems" in s and len(v) > s["maxItems"]:
        out.append(_cause("Too many", path, len(v), "must have at most %d items" % s["maxItems"]))
    if s.get("uniqueItems"):
        seen = []
        for x in v:
            if x in seen:
                out.append(_cause("Invalid value", path, "", "%s in body shouldn't contain duplicates"
                                  % path))
                break
            seen.append(x)


def _check_enum(s, v, path, out):
    enum = s.get("enum")
    if not enum or any(v == e and type(v) is type(e) or
                       (_type_of(v) in ("integer", "number") and
                        _type_of(e) in ("integer", "number") and v == e) for e in enum):
        return
    values = ", ".join(go_quote(e) if isinstance(e, str) else
                       go_quote(json.dumps(e, separators=(",", ":"))) for e in enum)
    out.append(_cause("Unsupported value", path, v, "supported values: " + values))


def _child(path, key):
    return key if not path else path + "." + key


def _check_object(s, v, path, out):
    n = len(v)
    if "minProperties" in s and n < s["minProperties"]:
        out.append(_cause("Invalid value", path, n, "%s in body should have at least %d properties"
                          % (path, s["minProperties"])))
    if "maxProperties" in s and n > s["maxProperties"]:
        out.append(_cause("Too many", path, n, "must have at most %d items" % s["maxProperties"]))
    props = s.get("properties", {})
    addl = s.get("additionalProperties")
    for key, val in v.items():
        if not path and key in ROOT_SKIP:
            continue
        if key in props:
            _check(props[key], val, _child(path, key), out)
        elif isinstance(addl, dict):
            _check(addl, val, _child(path, key), out)
    for key in s.get("required", []):
        if key not in v and not (not path and key in ROOT_SKIP):
            out.append(_cause("Required value", _child(path, key)))


def validate(schema, obj):
    """Causes ({reason, message, field}) for obj against an openAPIV3Schema.

    Empty list when valid. The root's apiVersion/kind/metadata are skipped."""
    out = []
    _check(schema, obj, "", out)
    return out


def invalid_error(group, kind, name, causes):
    """The 422 ApiError the apiserver returns for schema violations."""
    gk = "%s.%s" % (kind, group) if group else kind
    errs = []
    for c in causes:
        e = "%s: %s" % (c["field"], c["message"]) if c.get("field") else c["message"]
        if e not in errs:
            errs.append(e)
    msg = "%s %s is invalid" % (gk, go_quote(name))
    if errs:
        msg += ": " + (errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    details = {"name": name, "group": group, "kind": kind, "causes": causes}
    return ApiError(422, "Invalid", msg, details=details)


def _preserves(s):
    return bool(s.get("x-kubernetes-preserve-unknown-fields"))


def _prune(s, v, path, unknown, root=False):
    if isinstance(v, dict) and isinstance(s, dict):
        props = s.get("properties", {})
        addl = s.get("additionalProperties")
        embedded = root or s.get("x-kubernetes-embedded-resource")
        for key in list(v):
            if embedded and key in ROOT_SKIP:
                continue
            if key in props:
                _prune(props[key], v[key], _child(path, key), unknown)
            elif isinstance(addl, dict):
                _prune(addl, v[key], _child(path, key), unknown)
            elif addl is True or _preserves(s):
                continue
            else:
                unknown.append(_child(path, key))
                del v[key]
    elif isinstance(v, list) and isinstance(s, dict) and isinstance(s.get("items"), dict):
        for i, x in enumerate(v):
            _prune(s["items"], x, "%s[%d]" % (path, i), unknown)


def prune(schema, obj, unknown=None):
    """A copy of obj without fields the structural schema does not declare.

    x-kubernetes-preserve-unknown-fields keeps a subtree's unknown fields;
    apiVersion/kind/metadata are kept at the root and in embedded resources.
    Dropped paths ("spec.foo") are appended to the list `unknown` if given,
    for fieldValidation Warn/Strict."""
    out = copy.deepcopy(obj)
    _prune(schema, out, "", unknown if unknown is not None else [], root=True)
    return out


def _default(s, v):
    if isinstance(v, dict) and isinstance(s, dict):
        props = s.get("properties", {})
        for key, ps in props.items():
            if not isinstance(ps, dict):
                continue
            if key not in v or (v[key] is None and not ps.get("nullable")):
                if "default" in ps:
                    v[key] = copy.deepcopy(ps["default"])
                elif key in v:
                    del v[key]  # a non-nullable null without default is pruned
        for key in list(v):
            sub = props.get(key, s.get("additionalProperties"))
            if isinstance(sub, dict):
                _default(sub, v[key])
    elif isinstance(v, list) and isinstance(s, dict) and isinstance(s.get("items"), dict):
        for x in v:
            _default(s["items"], x)


def apply_defaults(schema, obj):
    """A copy of obj with schema defaults filled in where fields are absent.

    Like structural defaulting, a null in a non-nullable field is replaced by
    its default, or dropped when there is none; root metadata is untouched."""
    out = copy.deepcopy(obj)
    if isinstance(out, dict):
        meta = {k: out.pop(k) for k in ROOT_SKIP if k in out}
        _default(schema, out)
        out.update(meta)
    return out
