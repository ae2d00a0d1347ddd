"""JSON Patch (RFC 6902) and JSON Merge Patch (RFC 7386), as the apiserver applies them.

Error messages follow github.com/evanphx/json-patch v4 (vendored by
kube-apiserver v1.26), because they reach clients verbatim inside Status
messages (see fixtures/admission/responses.json cases d, d2, d3).
One v4 quirk is kept on purpose: `replace` of an absent object member acts as
`add` (v4's partialDoc.get never fails); pass strict=True for RFC behaviour.
"""

import copy

MISSING = "missing value"              # ErrMissing
INVALID_INDEX = "invalid index referenced"  # ErrInvalidIndex
TEST_FAILED = "test failed"            # ErrTestFailed


class JSONPatchError(Exception):
    """A patch that does not apply; str() is the apiserver's message."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


def _unescape(token):
    # ~1 first, then ~0, so "~01" decodes to "~1" (RFC 6901 section 4).
    return token.replace("~1", "/").replace("~0", "~")


def _index(token, length, allow_end):
    """Array index per RFC 6901: digits, no leading zeros. None if invalid."""
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        return None
    i = int(token)
    if i > length or (i == length and not allow_end):
        return None
    return i


def _parent(doc, path):
    """Go's findObject: the container holding the last token, and that token.

    Returns (None, None) when any intermediate step is missing or a scalar."""
    split = path.split("/")
    if len(split) < 2:
        return None, None
    cur = doc
    for raw in split[1:-1]:
        tok = _unescape(raw)
        if isinstance(cur, dict):
            if tok not in cur:
                return None, None
            cur = cur[tok]
        elif isinstance(cur, list):
            i = _index(tok, len(cur), False)
            if i is None:
                return None, None
            cur = cur[i]
        else:
            return None, None
        if not isinstance(cur, (dict, list)):
            return None, None
    return cur, _unescape(split[-1])


def _bad_index(key):
    return "Unable to access invalid index: %s: %s" % (key, INVALID_INDEX)


def _get(con, key):
    """(found, value) like container.get; arrays reject bad indexes."""
    if isinstance(con, dict):
        return (key in con), con.get(key)
    i = _index(key, len(con), False)
    if i is None:
        return False, None
    return True, con[i]


def _add(con, key, value, path):
    if isinstance(con, dict):
        con[key] = value
        return
    if key == "-":
        con.append(value)
        return
    if not key.isdigit():
        raise JSONPatchError(
            "error in add for path: '%s': value was not a proper array index: "
            "'%s': strconv.Atoi: parsing \"%s\": invalid syntax" % (path, key, key))
    i = _index(key, len(con), True)
    if i is None:
        raise JSONPatchError("error in add for path: '%s': %s" % (path, _bad_index(key)))
    con.insert(i, value)


def _remove(con, key, path, verb="remove"):
    if isinstance(con, dict):
        if key not in con:
            raise JSONPatchError(
                "error in %s for path: '%s': Unable to remove nonexistent key: %s: %s"
                % (verb, path, key, MISSING))
        return con.pop(key)
    i = _index(key, len(con), False)
    if i is None:
        raise JSONPatchError("error in %s for path: '%s': %s" % (verb, path, _bad_index(key)))
    return con.pop(i)


def _path(op, field="path"):
    if field not in op or not isinstance(op[field], str):
        raise JSONPatchError("operation missing %s field: %s" % (field, MISSING))
    return op[field]


def _apply_op(doc, op, strict):
    """Apply one operation; returns the (possibly replaced) document."""
    kind = op.get("op") if isinstance(op, dict) else None
    if kind == "add":
        path = _path(op)
        con, key = _parent(doc, path)
        if con is None:
            raise JSONPatchError('add operation does not apply: doc is missing path: "%s": %s'
                                 % (path, MISSING))
        _add(con, key, copy.deepcopy(op.get("value")), path)
    elif kind == "remove":
        path = _path(op)
        con, key = _parent(doc, path)
        if con is None:
            raise JSONPatchError('remove operation does not apply: doc is missing path: "%s": %s'
                                 % (path, MISSING))
        _remove(con, key, path)
    elif kind == "replace":
        path = _path(op)
        if path == "":
            return copy.deepcopy(op.get("value"))
        con, key = _parent(doc, path)
        if con is None:
            raise JSONPatchError("replace operation does not apply: doc is missing path: %s: %s"
                                 % (path, MISSING))
        found, _ = _get(con, key)
        if not found and (isinstance(con, list) or strict):
            raise JSONPatchError("replace operation does not apply: doc is missing key: %s: %s"
                                 % (path, MISSING))
        value = copy.deepcopy(op.get("value"))
        if isinstance(con, dict):
            con[key] = value
        else:
            con[int(key)] = value
    elif kind == "move":
        frm = _path(op, "from")
        con, key = _parent(doc, frm)
        if con is None:
            raise JSONPatchError("move operation does not apply: doc is missing from path: %s: %s"
                                 % (frm, MISSING))
        path = _path(op)
        if path != frm and path.startswith(frm + "/"):
            raise JSONPatchError("move operation does not apply: from is a prefix of path")
        val = _remove(con, key, key, "move")
        con, key = _parent(doc, path)
        if con is None:
            raise JSONPatchError(
                "move operation does not apply: doc is missing destination path: %s: %s"
                % (path, MISSING))
        _add(con, key, val, path)
    elif kind == "copy":
        frm = _path(op, "from")
        con, key = _parent(doc, frm)
        found, val = (False, None) if con is None else _get(con, key)
        if not found:
            raise JSONPatchError("copy operation does not apply: doc is missing from path: %s: %s"
                                 % (frm, MISSING))
        path = _path(op)
        con, key = _parent(doc, path)
        if con is None:
            raise JSONPatchError(
                "copy operation does not apply: doc is missing destination path: %s: %s"
                % (path, MISSING))
        _add(con, key, copy.deepcopy(val), path)
    elif kind == "test":
        path = _path(op)
        if path == "":
            found, val = True, doc
        else:
            con, key = _parent(doc, path)
            if con is None:
                raise JSONPatchError("test operation does not apply: is missing path: %s: %s"
                                     % (path, MISSING))
            found, val = _get(con, key)
        if not (found and _equal(val, op.get("value"))):
            raise JSONPatchError("testing value %s failed: %s" % (path, TEST_FAILED))
    else:
        raise JSONPatchError("Unexpected kind: %s" % (kind if isinstance(kind, str) else "unknown"))
    return doc


def _equal(a, b):
    # JSON equality: 1 == 1.0, but true != 1 (Python says True == 1).
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return a == b


def apply(doc, ops, strict=False):
    """Return a patched deep copy of doc; the input is never mutated.

    ops is a decoded JSON array of operations. Raises JSONPatchError."""
    if not isinstance(ops, list):
        raise JSONPatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    out = copy.deepcopy(doc)
    for op in ops:
        out = _apply_op(out, op, strict)
    return out


def merge_patch(doc, patch):
    """RFC 7386 merge patch; returns a new document."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out
