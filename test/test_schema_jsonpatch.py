"""Table tests of kubeemu/jsonpatch.py (RFC 6902 appendix A, apiserver error
texts) and kubeemu/schema.py (the widgets CRD's recorded 422 causes)."""

import copy
import json
import os
import sys
import unittest

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "kubeemu"))

import jsonpatch  # noqa: E402
import schema  # noqa: E402

FIX = os.path.join(HERE, "fixtures")

ERR = object()  # marks "patch must fail"

# RFC 6902 appendix A: (name, doc, patch, result or (ERR, message))
RFC = [
    ("A.1 add object member", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux"}], {"baz": "qux", "foo": "bar"}),
    ("A.2 add array element", {"foo": ["bar", "baz"]},
     [{"op": "add", "path": "/foo/1", "value": "qux"}], {"foo": ["bar", "qux", "baz"]}),
    ("A.3 remove object member", {"baz": "qux", "foo": "bar"},
     [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ("A.4 remove array element", {"foo": ["bar", "qux", "baz"]},
     [{"op": "remove", "path": "/foo/1"}], {"foo": ["bar", "baz"]}),
    ("A.5 replace", {"baz": "qux", "foo": "bar"},
     [{"op": "replace", "path": "/baz", "value": "boo"}], {"baz": "boo", "foo": "bar"}),
    ("A.6 move value", {"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ("A.7 move array element", {"foo": ["all", "grass", "cows", "eat"]},
     [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ("A.8 test success", {"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ("A.9 test error", {"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}],
     (ERR, "testing value /baz failed: test failed")),
    ("A.10 add nested member", {"foo": "bar"},
     [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ("A.11 ignore unrecognized elements", {"foo": "bar"},
     [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}], {"foo": "bar", "baz": "qux"}),
    ("A.12 add to nonexistent target", {"foo": "bar"},
     [{"op": "add", "path": "/baz/bat", "value": "qux"}],
     (ERR, 'add operation does not apply: doc is missing path: "/baz/bat": missing value')),
    ("A.14 ~ escape ordering", {"/": 9, "~1": 10},
     [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ("A.15 comparing strings and numbers", {"/": 9, "~1": 10},
     [{"op": "test", "path": "/~01", "value": "10"}],
     (ERR, "testing value /~01 failed: test failed")),
    ("A.16 add array value", {"foo": ["bar"]},
     [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}], {"foo": ["bar", ["abc", "def"]]}),
]

# beyond the RFC: array index rules, copy, and the apiserver's messages
MORE = [
    ("append at len", {"a": [1]}, [{"op": "add", "path": "/a/1", "value": 2}], {"a": [1, 2]}),
    ("add past len", {"a": [1]}, [{"op": "add", "path": "/a/2", "value": 2}],
     (ERR, "error in add for path: '/a/2': Unable to access invalid index: 2: "
           "invalid index referenced")),
    ("leading zero", {"a": [1, 2]}, [{"op": "remove", "path": "/a/01"}],
     (ERR, "error in remove for path: '/a/01': Unable to access invalid index: 01: "
           "invalid index referenced")),
    ("remove at len", {"a": [1]}, [{"op": "remove", "path": "/a/1"}],
     (ERR, "error in remove for path: '/a/1': Unable to access invalid index: 1: "
           "invalid index referenced")),
    ("replace at len", {"a": [1]}, [{"op": "replace", "path": "/a/1", "value": 0}],
     (ERR, "replace operation does not apply: doc is missing key: /a/1: missing value")),
    ("non-numeric index", {"a": []}, [{"op": "add", "path": "/a/x", "value": 0}],
     (ERR, "error in add for path: '/a/x': value was not a proper array index: 'x': "
           "strconv.Atoi: parsing \"x\": invalid syntax")),
    ("copy", {"a": {"b": [1]}}, [{"op": "copy", "from": "/a/b", "path": "/c"}],
     {"a": {"b": [1]}, "c": [1]}),
    ("copy missing", {"a": {}}, [{"op": "copy", "from": "/a/b", "path": "/c"}],
     (ERR, "copy operation does not apply: doc is missing from path: /a/b: missing value")),
    ("escaped key", {"metadata": {"annotations": {}}},
     [{"op": "add", "path": "/metadata/annotations/thaw.dev~1original-images", "value": "{}"}],
     {"metadata": {"annotations": {"thaw.dev/original-images": "{}"}}}),
    ("fixture d", {"metadata": {}},
     [{"op": "add", "path": "/metadata/annotations/thaw.dev~1original-images", "value": "{}"}],
     (ERR, 'add operation does not apply: doc is missing path: '
           '"/metadata/annotations/thaw.dev~1original-images": missing value')),
    ("fixture d2", {"spec": {"containers": [{"image": "a"}]}},
     [{"op": "replace", "path": "/spec/containers/7/image", "value": "busybox"}],
     (ERR, "replace operation does not apply: doc is missing path: /spec/containers/7/image: "
           "missing value")),
    ("fixture d3", {"metadata": {"labels": {"a": "b"}}},
     [{"op": "remove", "path": "/metadata/labels/does-not-exist"}],
     (ERR, "error in remove for path: '/metadata/labels/does-not-exist': Unable to remove "
           "nonexistent key: does-not-exist: missing value")),
    ("replace absent member (json-patch v4 adds)", {"a": {}},
     [{"op": "replace", "path": "/a/b", "value": 1}], {"a": {"b": 1}}),
    ("unknown op", {}, [{"op": "frob", "path": "/a"}], (ERR, "Unexpected kind: frob")),
    ("test true is not 1", {"a": True}, [{"op": "test", "path": "/a", "value": 1}],
     (ERR, "testing value /a failed: test failed")),
]


class JSONPatch(unittest.TestCase):
    def test_tables(self):
        for name, doc, ops, want in RFC + MORE:
            with self.subTest(name):
                before = copy.deepcopy(doc)
                if isinstance(want, tuple) and want[0] is ERR:
                    with self.assertRaises(jsonpatch.JSONPatchError) as cm:
                        jsonpatch.apply(doc, ops)
                    self.assertEqual(str(cm.exception), want[1])
                else:
                    self.assertEqual(jsonpatch.apply(doc, ops), want)
                self.assertEqual(doc, before, "input mutated")

    def test_strict_replace(self):
        with self.assertRaises(jsonpatch.JSONPatchError) as cm:
            jsonpatch.apply({"a": {}}, [{"op": "replace", "path": "/a/b", "value": 1}], strict=True)
        self.assertEqual(cm.exception.message,
                         "replace operation does not apply: doc is missing key: /a/b: "
                         "missing value")

    def test_failed_patch_leaves_input(self):
        doc = {"a": [1, 2]}
        with self.assertRaises(jsonpatch.JSONPatchError):
            jsonpatch.apply(doc, [{"op": "remove", "path": "/a/0"},
                                  {"op": "remove", "path": "/nope"}])
        self.assertEqual(doc, {"a": [1, 2]})

    def test_merge_patch(self):
        # RFC 7386 appendix A, a selection
        for doc, patch, want in [
                ({"a": "b"}, {"a": "c"}, {"a": "c"}),
                ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
                ({"a": "b"}, {"a": None}, {}),
                ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
                ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
                (["a", "b"], ["c", "d"], ["c", "d"]),
                ({"a": "foo"}, "bar", "bar"),
                ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}})]:
            self.assertEqual(jsonpatch.merge_patch(doc, patch), want)


def widget_schema():
    with open(os.path.join(FIX, "kube-api", "crd-create-201.json")) as f:
        crd = json.load(f)["request"]["body"]
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def cause(reason, field, message):
    return {"reason": reason, "message": message, "field": field}


SPEC = {"type": "object", "properties": {"spec": {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 5, "minLength": 2, "pattern": "^[a-z]+$"},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "ratio": {"type": "number", "maximum": 1.5, "exclusiveMinimum": True, "minimum": 0},
        "count": {"type": "integer", "maximum": 1000000, "multipleOf": 2},
        "flag": {"type": "boolean"},
        "when": {"type": "string", "format": "date-time"},
        "port": {"x-kubernetes-int-or-string": True},
        "opt": {"type": "string", "nullable": True},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string", "minLength": 1}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        "sub": {"type": "object", "required": ["x"], "properties": {
            "x": {"type": "integer", "default": 3},
            "y": {"type": "string", "default": "why"}}},
    }}}}

SCHEMA_CASES = [
    ({"name": "abc", "mode": "a", "ratio": 1, "count": 4, "flag": False,
      "when": "2026-01-02T03:04:05Z", "port": "http", "opt": None, "tags": ["x"],
      "labels": {"k": "v"}, "free": {"any": [1]}, "sub": {"x": 1}}, []),
    ({"port": 8080}, []),
    ({"name": "toolong"}, [cause("FieldValueTooLong", "spec.name",
                                 "Too long: may not be longer than 5")]),
    ({"name": "a"}, [cause("FieldValueInvalid", "spec.name",
                           'Invalid value: "a": spec.name in body should be at least 2 chars long')]),
    ({"name": "AB"}, [cause("FieldValueInvalid", "spec.name",
                            'Invalid value: "AB": spec.name in body should match \'^[a-z]+$\'')]),
    ({"mode": "c"}, [cause("FieldValueNotSupported", "spec.mode",
                           'Unsupported value: "c": supported values: "a", "b"')]),
    ({"ratio": 0}, [cause("FieldValueInvalid", "spec.ratio",
                          "Invalid value: 0: spec.ratio in body should be greater than 0")]),
    ({"ratio": 2.5}, [cause("FieldValueInvalid", "spec.ratio",
                            "Invalid value: 2.5: spec.ratio in body should be less than or "
                            "equal to 1.5")]),
    ({"count": 2000000}, [cause("FieldValueInvalid", "spec.count",
                                "Invalid value: 2000000: spec.count in body should be less than "
                                "or equal to 1000000")]),
    ({"count": 3}, [cause("FieldValueInvalid", "spec.count",
                          "Invalid value: 3: spec.count in body should be a multiple of 2")]),
    ({"count": 1.5}, [cause("FieldValueTypeInvalid", "spec.count",
                            'Invalid value: "number": spec.count in body must be of type '
                            'integer: "number"'),
                      # Go's number validator still runs on the mistyped float
                      cause("FieldValueInvalid", "spec.count",
                            "Invalid value: 1.5: spec.count in body should be a multiple of 2")]),
    ({"flag": "yes"}, [cause("FieldValueTypeInvalid", "spec.flag",
                             'Invalid value: "string": spec.flag in body must be of type '
                             'boolean: "string"')]),
    ({"flag": None}, [cause("FieldValueTypeInvalid", "spec.flag",
                            'Invalid value: "null": spec.flag in body must be of type '
                            'boolean: "null"')]),
    ({"when": "yesterday"}, [cause("FieldValueTypeInvalid", "spec.when",
                                   'Invalid value: "yesterday": spec.when in body must be of '
                                   'type date-time: "yesterday"')]),
    ({"port": True}, [cause("FieldValueTypeInvalid", "spec.port",
                            'Invalid value: "boolean": spec.port in body must be of type '
                            'integer,string: "boolean"')]),
    ({"tags": ["a", "", "c"]}, [
        cause("FieldValueInvalid", "spec.tags[1]",
              'Invalid value: "": spec.tags[1] in body should be at least 1 chars long'),
        cause("FieldValueTooMany", "spec.tags", "Too many: 3: must have at most 2 items")]),
    ({"labels": {"k": 1}}, [cause("FieldValueTypeInvalid", "spec.labels.k",
                                  'Invalid value: "integer": spec.labels.k in body must be of '
                                  'type string: "integer"')]),
    ({"sub": {}}, [cause("FieldValueRequired", "spec.sub.x", "Required value")]),
    ({"tags": {}}, [cause("FieldValueTypeInvalid", "spec.tags",
                          'Invalid value: "object": spec.tags in body must be of type array: '
                          '"object"')]),
]


class Schema(unittest.TestCase):
    def test_widget_fixtures(self):
        s = widget_schema()
        for name in ("widget-create-422-invalid.json", "widget-create-422-invalid-type.json"):
            with self.subTest(name):
                with open(os.path.join(FIX, "kube-api", name)) as f:
                    rec = json.load(f)
                body, want = rec["request"]["body"], rec["response"]["body"]
                causes = schema.validate(s, body)
                self.assertEqual(causes, want["details"]["causes"])
                err = schema.invalid_error("example.com", "Widget", body["metadata"]["name"],
                                           causes)
                self.assertEqual(err.status(), want)

    def test_widget_valid(self):
        ok = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "a"},
              "spec": {"image": "busybox", "size": 3}, "status": {"phase": "Ready"}}
        self.assertEqual(schema.validate(widget_schema(), ok), [])

    def test_table(self):
        for spec, want in SCHEMA_CASES:
            with self.subTest(spec=spec):
                self.assertEqual(schema.validate(SPEC, {"metadata": {"x": 1}, "spec": spec}), want)

    def test_prune(self):
        obj = {"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"}, "extra": 1,
               "spec": {"name": "ab", "bogus": {"x": 1}, "free": {"any": {"deep": 1}},
                        "labels": {"k": "v"}, "sub": {"x": 1, "z": 2},
                        "tags": ["a"]}}
        unknown = []
        out = schema.prune(SPEC, obj, unknown)
        self.assertEqual(out, {"apiVersion": "v1", "kind": "K", "metadata": {"name": "n"},
                               "spec": {"name": "ab", "free": {"any": {"deep": 1}},
                                        "labels": {"k": "v"}, "sub": {"x": 1}, "tags": ["a"]}})
        self.assertEqual(sorted(unknown), ["extra", "spec.bogus", "spec.sub.z"])
        self.assertIn("bogus", obj["spec"], "input mutated")

    def test_defaults(self):
        obj = {"metadata": {"name": "n"}, "spec": {"sub": {"y": None}, "opt": None, "flag": None}}
        out = schema.apply_defaults(SPEC, obj)
        self.assertEqual(out["spec"]["sub"], {"y": "why", "x": 3})
        self.assertIsNone(out["spec"]["opt"])      # nullable keeps its null
        self.assertNotIn("flag", out["spec"])      # non-nullable null without default dropped
        self.assertEqual(obj["spec"]["sub"], {"y": None}, "input mutated")
        self.assertEqual(schema.validate(SPEC, out), [])

    def test_go_float(self):
        for x, want in ((1.0, "1"), (0.5, "0.5"), (1e6, "1e+06"), (123456.0, "123456"),
                        (1.5e-5, "1.5e-05"), (0.0001, "0.0001"), (-2.25, "-2.25")):
            self.assertEqual(schema.go_float(x), want)


if __name__ == "__main__":
    unittest77.main()
