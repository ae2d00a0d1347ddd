# Named selector.py, not selectors.py: that would shadow the stdlib module socketserver imports.
"""Label and field selectors, parsed with the apiserver's grammar and error
messages (k8s.io/apimachinery/pkg/labels/selector.go, fields/selector.go)."""

from errors import ApiError

_SPECIAL = set("=!(),<>")
_TOKENS = {")": "CPAR", ",": "COMMA", "!": "NOT", "==": "DEQ", "=": "EQ",
           ">": "GT", "in": "IN", "<": "LT", "!=": "NEQ", "notin": "NOTIN",
           "(": "OPAR"}


def _lex(s):
    out, i, n = [], 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
            continue
        if c in _SPECIAL:
            buf, last, j = "", None, i
            while j < n and s[j] in _SPECIAL:
                buf += s[j]
                if buf in _TOKENS:
                    last = (_TOKENS[buf], buf)
                elif last:
                    break
                j += 1
            if last is None:
                out.append(("ERR", "error expected: keyword found '%s'" % buf))
                return out + [("EOS", "")]
            out.append(last)
            i += len(last[1])
            continue
        j = i
        while j < n and not s[j].isspace() and s[j] not in _SPECIAL:
            j += 1
        lit = s[i:j]
        out.append((_TOKENS.get(lit, "ID") if lit in ("in", "notin") else "ID", lit))
        i = j
    out.append(("EOS", ""))
    return out


class _Parser:
    def __init__(self, s):
        self.toks, self.pos = _lex(s), 0

    def look(self, values=True):
        t = self.toks[self.pos]
        if values and t[0] in ("IN", "NOTIN"):
            return ("ID", t[1])
        return t

    def take(self, values=True):
        t = self.look(values)
        if self.pos < len(self.toks) - 1:
            self.pos += 1
        return t

    def parse(self):
        reqs = []
        while True:
            tok, lit = self.look()
            if tok in ("ID", "NOT"):
                try:
                    reqs.append(self.requirement())
                except ValueError as e:
                    raise ValueError("unable to parse requirement: %s" % e)
                t, l = self.take()
                if t == "EOS":
                    return reqs
                if t == "COMMA":
                    t2, l2 = self.look()
                    if t2 not in ("ID", "NOT"):
                        raise ValueError("found '%s', expected: identifier after ','" % l2)
                    continue
                raise ValueError("found '%s', expected: ',' or 'end of string'" % l)
            if tok == "EOS":
                return reqs
            raise ValueError("found '%s', expected: !, identifier, or 'end of string'" % lit)

    def requirement(self):
        op = None
        tok, lit = self.take()
        if tok == "NOT":
            op = "!"
            tok, lit = self.take()
        if tok != "ID":
            raise ValueError("found '%s', expected: identifier" % lit)
        key = lit
        if op == "!" or self.look()[0] in ("EOS", "COMMA"):
            return (key, op or "exists", ())
        tok, lit = self.take(values=False)
        ops = {"IN": "in", "NOTIN": "notin", "EQ": "=", "DEQ": "=",
               "NEQ": "!=", "GT": "gt", "LT": "lt"}
        if tok not in ops:
            raise ValueError("found '%s', expected: in, notin, =, ==, !=, gt, lt" % lit)
        op = ops[tok]
        if op in ("in", "notin"):
            return (key, op, self.values())
        t, l = self.look()
        if t in ("EOS", "COMMA"):
            return (key, op, ("",))
        t, l = self.take()
        if t == "ID":
            if op in ("gt", "lt"):
                try:
                    int(l)
                except ValueError:
                    raise ValueError("for 'Gt', 'Lt' operators, the value must be an integer")
            return (key, op, (l,))
        raise ValueError("found '%s', expected: identifier" % l)

    def values(self):
        t, l = self.take()
        if t != "OPAR":
            raise ValueError("found '%s' expected: '('" % l)
        t, l = self.look()
        if t == "CPAR":
            self.take()
            return ("",)
        if t not in ("ID", "COMMA"):
            raise ValueError("found '%s', expected: ',', ')' or identifier" % l)
        vals = set()
        while True:
            t, l = self.take()
            if t == "ID":
                vals.add(l)
                t2, l2 = self.look()
                if t2 == "COMMA":
                    continue
                if t2 == "CPAR":
                    break
                raise ValueError("found '%s', expected: ',' or ')'" % l2)
            elif t == "COMMA":
                if not vals:
                    vals.add("")
                t2, _ = self.look()
                if t2 == "CPAR":
                    vals.add("")
                    break
                if t2 == "COMMA":
                    self.take()
                    vals.add("")
            else:
                raise ValueError("found '%s', expected: ',', or identifier" % l)
        t, _ = self.take()
        if t != "CPAR":
            raise ValueError("found '%s', expected: ')'" % l)
        return tuple(sorted(vals))


def parse_labels(s):
    """Returns a list of (key, op, values); raises ApiError 400."""
    if not s:
        return []
    try:
        return _Parser(s).parse()
    except ValueError as e:
        raise ApiError(400, "BadRequest", str(e))


def match_labels(reqs, labels):
    labels = labels or {}
    for key, op, vals in reqs:
        has = key in labels
        v = labels.get(key)
        if op == "exists":
            ok = has
        elif op == "!":
            ok = not has
        elif op in ("=", "in"):
            ok = has and v in vals
        elif op in ("!=", "notin"):
            ok = not has or v not in vals
        else:  # gt / lt: only integer label values can match
            try:
                lv, rv = int(v), int(vals[0])
            except (TypeError, ValueError):
                return False
            ok = lv > rv if op == "gt" else lv < rv
        if not ok:
            return False
    return True


def _split_unescaped(s, sep):
    parts, cur, i = [], "", 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur += s[i:i + 2]
            i += 2
            continue
        if c == sep:
            parts.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    parts.append(cur)
    return parts


def _unescape(v):
    out, i = "", 0
    while i < len(v):
        if v[i] == "\\" and i + 1 < len(v):
            out += v[i + 1]
            i += 2
        else:
            out += v[i]
            i += 1
    return out


def parse_fields(s, supported):
    """Returns a list of (field, op, value) with op '=' or '!='.
    `supported` is the set of field labels this resource can filter on."""
    if not s:
        return []
    terms = []
    for part in _split_unescaped(s, ","):
        if part == "":
            continue
        for op in ("!=", "==", "="):
            idx = _find_unescaped(part, op)
            if idx >= 0:
                key, val = part[:idx], part[idx + len(op):]
                terms.append((key, "!=" if op == "!=" else "=", _unescape(val)))
                break
        else:
            raise ApiError(400, "BadRequest",
                           "invalid selector: '%s'; can't understand '%s'" % (s, part))
    for key, _, _ in terms:
        if key not in supported:
            raise ApiError(400, "BadRequest", "field label not supported: %s" % key)
    return terms


def _find_unescaped(s, op):
    i = 0
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s.startswith(op, i):
            return i
        i += 1
    return -1


def field_value(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(p)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def match_fields(terms, obj):
    for key, op, val in terms:
        got = field_value(obj, key)
        if (got == val) != (op == "="):
            return False
    return True
