"""Golden and behaviour tests of the webhook's decision (webhook/admit.c).

Usage: test_admit.py ADMIT_DUMP [--update]

Every AdmissionReview fixture in test/fixtures/admission runs through admit_dump under several
cluster states (env variants). For each run:
  - the reply must match test/golden/admission/<fixture>.json exactly (uid,
    allowed, decoded patch ops in order, warnings, recorded refs, decisions);
  - independently of the golden file, the patch is applied with
    kubeemu/jsonpatch.py (the apiserver's RFC 6902 semantics) and the
    resulting pod is checked against a small model of docs/design.md's decision
    written here, with the normalised forms of the fixture images typed in
    by hand;
  - the patched pod, sent again (reinvocation), must give no patch.
Then own cases built from the fixtures, and bad input that must give
THAW_EPARSE (exit 2) or a pass-through, never a crash.
--update rewrites the golden files (review the diff before committing).
Prints one line per failure; exit 1 if any."""

import base64
import hashlib
import copy
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "kubeemu"))
import jsonpatch  # noqa: E402  (the emulator's RFC 6902, as the apiserver)

FIXTURES = os.path.join(HERE, "fixtures", "admission")
GOLDEN = os.path.join(HERE, "golden", "admission")
CACHE = "localhost:7439"
PRIVATE = "localhost:7440/private"  # private images, with thaw-pull
PULL_SECRET = "thaw-pull"
ANN = "thaw.dev/original-images"
GATE = "thaw.dev/warming"
COLD_WAIT = "thaw.dev/cold-wait-seconds"
D = "sha256:194318eaf5c205c21de69e3f05904c8436845ba512cee64743604d29bac1757f"
KD = "sha256:edbbfcb55e847cd2ba07b8ccecedcc455d52e529ed9760307bf23f71c291418f"
QD = "sha256:87188007450e8840a3ac8c822de3d7b02b669f0bdc9682e184a4d5054af59f84"

# image as written -> (normalised, rewritten under CACHE), worked out by hand
# from docs/design.md "Image references".
IMAGES = {
    "grycap/imagemagick": ("docker.io/grycap/imagemagick:latest",
                           CACHE + "/docker.io/grycap/imagemagick:latest"),
    "busybox": ("docker.io/library/busybox:latest",
                CACHE + "/docker.io/library/busybox:latest"),
    "busybox:1.36": ("docker.io/library/busybox:1.36",
                     CACHE + "/docker.io/library/busybox:1.36"),
    "localhost:5000/team/app:1.2": ("localhost:5000/team/app:1.2",
                                    CACHE + "/localhost__5000/team/app:1.2"),
    "my.registry.example:5443/a/b/c:v1@" + D: (
        "my.registry.example:5443/a/b/c:v1@" + D,
        CACHE + "/my.registry.example__5443/a/b/c:v1@" + D),
    "quay.io/prometheus/node-exporter:v1.7.0": (
        "quay.io/prometheus/node-exporter:v1.7.0",
        CACHE + "/quay.io/prometheus/node-exporter:v1.7.0"),
    "registry.k8s.io/pause:3.9": ("registry.k8s.io/pause:3.9",
                                  CACHE + "/registry.k8s.io/pause:3.9"),
    "docker.io/library/nginx": ("docker.io/library/nginx:latest",
                                CACHE + "/docker.io/library/nginx:latest"),
    "index.docker.io/grycap/imagemagick@" + KD: (
        "docker.io/grycap/imagemagick@" + KD,
        CACHE + "/docker.io/grycap/imagemagick@" + KD),
    "gcr.io/knative-releases/knative.dev/serving/cmd/queue@" + QD: (
        "gcr.io/knative-releases/knative.dev/serving/cmd/queue@" + QD,
        CACHE + "/gcr.io/knative-releases/knative.dev/serving/cmd/queue@" + QD),
    "ghcr.io/grycap/oscar-theano-plants:latest": (
        "ghcr.io/grycap/oscar-theano-plants:latest",
        CACHE + "/ghcr.io/grycap/oscar-theano-plants:latest"),
    "busybox@" + KD: ("docker.io/library/busybox@" + KD,
                      CACHE + "/docker.io/library/busybox@" + KD),
    "rclone/rclone": ("docker.io/rclone/rclone:latest",
                      CACHE + "/docker.io/rclone/rclone:latest"),
    CACHE + "/docker.io/grycap/imagemagick:latest": (
        CACHE + "/docker.io/grycap/imagemagick:latest", None),
    CACHE + "/localhost__5000/team/app:1.2": (
        CACHE + "/localhost__5000/team/app:1.2", None),
    PRIVATE + "/docker.io/grycap/imagemagick:latest": (
        PRIVATE + "/docker.io/grycap/imagemagick:latest", None),
    PRIVATE + "/localhost__5000/team/app:1.2@" + D: (
        PRIVATE + "/localhost__5000/team/app:1.2@" + D, None),
}



def cache_digest(norm):
    """The status.digest admit_dump gives a Ready image (its default)."""
    return "sha256:" + hashlib.sha256(norm.encode()).hexdigest()


# Rewrites are content-addressed (docs/design.md "Image references"): a tag
# without a digest gets "@<status.digest>" after it.
IMAGES = {img: (norm, rw if rw is None or "@" in norm
                else rw + "@" + cache_digest(norm))
          for img, (norm, rw) in IMAGES.items()}

# Cluster states. "private_ns" gives every namespace cache-private.
VARIANTS = {
    "ready": {"default_image": "ready", "registry_up": True},
    "cold": {"default_image": "absent", "registry_up": True},
    "present": {"default_image": "present", "registry_up": True},
    "down": {"default_image": "ready", "registry_up": False},
    "private": {"default_image": "ready_private", "registry_up": True},
    "private_ns": {"default_image": "ready_private", "registry_up": True,
                   "cache_private_all": True},
    # cold wait (--cold-wait=30s, a fresh Lease): cold pods are gated
    "cold_wait": {"default_image": "absent", "registry_up": True,
                  "cold_wait_seconds": 30, "leader_fresh": True},
    "cold_wait_warming": {"default_image": "present", "registry_up": True,
                          "cold_wait_seconds": 30, "leader_fresh": True},
    "cold_wait_failed": {"default_image": "failed", "registry_up": True,
                         "cold_wait_seconds": 30, "leader_fresh": True},
    "cold_wait_ready": {"default_image": "ready", "registry_up": True,
                        "cold_wait_seconds": 30, "leader_fresh": True},
}

failures = []


def fail(what):
    failures.append(what)
    print("FAIL: " + what)


def check(cond, what):
    if not cond:
        fail(what)
    return cond


class Dump:
    def __init__(self, exe):
        self.exe = exe

    def run(self, body, env):
        """Runs admit_dump; returns (exit code, parsed output or None)."""
        env = dict(env)
        if env.pop("cache_private_all", False):
            ns = set()
            try:
                req = json.loads(body)["request"]
                ns.add(req.get("namespace") or "")
            except Exception:
                pass
            env.setdefault("namespaces", {})
            for n in ns:
                env["namespaces"].setdefault(n, []).append("cache_private")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(env, f)
            envpath = f.name
        try:
            data = body if isinstance(body, bytes) else body.encode()
            p = subprocess.run([self.exe, envpath, "-"], input=data,
                               capture_output=True, timeout=120)
        finally:
            os.unlink(envpath)
        out = None
        if p.stdout.strip():
            try:
                out = json.loads(p.stdout)
            except ValueError:
                out = None
        return p.returncode, out, p.stderr.decode(errors="replace")


def decode(out):
    """The reply as a comparable dict: patch decoded, raw text parsed."""
    resp = json.loads(out["response"])
    r = resp["response"]
    got = {"apiVersion": resp.get("apiVersion"), "kind": resp.get("kind"),
           "uid": r.get("uid"), "allowed": r.get("allowed"),
           "patchType": r.get("patchType"), "warnings": r.get("warnings"),
           "patch": None}
    extra = set(r) - {"uid", "allowed", "patchType", "patch", "warnings"}
    got["extra_fields"] = sorted(extra)
    if "patch" in r:
        got["patch"] = json.loads(base64.b64decode(r["patch"], validate=True))
    return {"response": got, "recorded": out["recorded"],
            "decisions": out["decisions"], "patched": out["patched"],
            "dry_run": out["dry_run"], "gated": out["gated"]}


# --- the model of docs/design.md's decision ------------------------------------

def gates_of(pod):
    spec = pod.get("spec") if isinstance(pod, dict) else None
    return spec.get("schedulingGates") if isinstance(spec, dict) else None


def has_gate(pod):
    g = gates_of(pod)
    return isinstance(g, list) and any(
        isinstance(x, dict) and x.get("name") == GATE for x in g)


def model(req, env):
    """Expected (images by (list, index), annotation dict or None,
    recorded list, decisions dict, gated) for a request under env."""
    images, recorded, decisions = {}, [], {}
    cold = secret = False
    reverts = {}  # kept by a gated pod too
    ann_add = {}
    op, sub = req.get("operation"), req.get("subResource") or ""
    kind = req.get("kind", {})
    obj = req.get("object")
    if kind.get("kind") != "Pod" or kind.get("group") != "" or \
            not isinstance(obj, dict):
        return images, None, recorded, decisions, False, False
    if op == "CREATE" and not sub:
        lists = ["initContainers", "containers"]
    elif op == "UPDATE" and sub == "ephemeralcontainers":
        lists = ["ephemeralContainers"]
    else:
        return images, None, recorded, decisions, False, False
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    ns = req.get("namespace") or meta.get("namespace") or ""
    flags = set(env.get("namespaces", {}).get(ns, []))
    if env.get("cache_private_all"):
        flags.add("cache_private")
    out = ("opted_out" in flags or ns in ("kube-system", "thaw-system") or
           ns in env.get("excluded_namespaces", []) or
           (meta.get("labels") or {}).get("thaw.dev/caching") == "disabled" or
           "kubernetes.io/config.mirror" in (meta.get("annotations") or {}))
    old_names = set()
    if lists == ["ephemeralContainers"]:
        old = ((req.get("oldObject") or {}).get("spec") or {})
        old_names = {c.get("name") for c in old.get("ephemeralContainers", [])}
    dry = req.get("dryRun") is True

    def bump(d):
        decisions[d] = decisions.get(d, 0) + 1

    for lst in lists:
        for i, c in enumerate((obj.get("spec") or {}).get(lst) or []):
            img = c.get("image")
            if not isinstance(img, str) or c.get("name") in old_names:
                continue
            if out:
                bump("opted_out")
                continue
            norm, rw = IMAGES[img]
            if img.startswith(CACHE + "/") or img.startswith(PRIVATE + "/"):
                got = cache_path(img, lst, flags, obj, env)
                bump(got[0])
                if got[1]:
                    images[(lst, i)] = got[1]
                if got[0] == "private":
                    reverts[(lst, i)] = got[1]
                secret = secret or got[2]
                if got[0] == "rewritten":
                    ann_add.setdefault(("init/" if lst == "initContainers"
                                        else "container/") + c["name"], img)
                continue
            if c.get("imagePullPolicy") == "Never":
                bump("pull_never")
                continue
            state = (env.get("images") or {}).get(norm, env["default_image"])
            digests = env.get("digests") or {}
            if state in ("ready", "ready_private") and norm in digests:
                if digests[norm] is None:
                    state = "failed"  # Ready without a digest: row 6
                elif "@" not in norm:
                    rw = rw[:rw.rindex("@") + 1] + digests[norm]
            if state in ("ready", "ready_private"):
                private = state == "ready_private"
                named = PULL_SECRET in pull_secret_names(obj)
                if private and ("cache_private" not in flags or
                                (lst == "ephemeralContainers" and not named)):
                    bump("private")  # an ephemeral update cannot add thaw-pull
                elif not env["registry_up"]:
                    bump("registry_down")
                else:
                    bump("rewritten")
                    if private:  # through the namespace's own credentials
                        rw = PRIVATE + rw[len(CACHE):]
                        secret = secret or lst != "ephemeralContainers"
                    images[(lst, i)] = rw
                    if lst != "ephemeralContainers":
                        key = ("init/" if lst == "initContainers"
                               else "container/") + c["name"]
                        ann_add.setdefault(key, img)
                continue
            bump("cold")
            # rows 5 and 6 with a warm to come (not all Failed/Expiring)
            cold = cold or state in ("absent", "present")
            if state == "absent" and not dry and norm not in recorded:
                recorded.append(norm)
    gated = False
    if env.get("cold_wait_seconds") and lists != ["ephemeralContainers"] and not out:
        spec = obj.get("spec") or {}
        node = spec.get("nodeName") not in (None, "")
        gates_ok = gates_of(obj) is None or isinstance(gates_of(obj), list)
        if has_gate(obj):                 # the release rewrites them
            images, ann_add, secret = dict(reverts), {}, False
        elif (cold and env["registry_up"] and env.get("leader_fresh") and
              not node and gates_ok and isinstance(obj.get("metadata"), dict)):
            images, ann_add, gated = dict(reverts), {}, True
    return images, ann_add, recorded, decisions, gated, secret


def original_of(img):
    """The original of a cache path in IMAGES (no IPv6 host among them)."""
    host = PRIVATE if img.startswith(PRIVATE + "/") else CACHE
    reg, rest = img[len(host) + 1:].split("/", 1)
    return reg.replace("__", ":") + "/" + rest


def cache_path(img, lst, flags, pod, env):
    """(decision, new image or None, thaw-pull wanted) of a container that
    names a cache path itself: a private image's goes back to its original
    where the pod may not be served it; where it may, the pod gets
    thaw-pull and a cache-host path its private form (docs/design.md "A
    hand-written cache path never leaks and never blocks a pod")."""
    orig = original_of(img)
    key = orig.split("@")[0] if ":" in orig.split("@")[0].rsplit("/", 1)[-1] else orig
    state = (env.get("images") or {}).get(key, env["default_image"])
    private_form = img.startswith(PRIVATE + "/")
    if not private_form and state != "ready_private":
        return "already", None, False
    named = PULL_SECRET in pull_secret_names(pod)
    if "cache_private" not in flags or (lst == "ephemeralContainers" and not named):
        return "private", orig, False
    secret = lst != "ephemeralContainers"
    digest = (env.get("digests") or {}).get(key, cache_digest(key))
    if private_form or digest is None:
        return "already", None, secret
    return "rewritten", PRIVATE + img[len(CACHE):] + ("" if "@" in img else "@" + digest), secret


def pull_secret_names(pod):
    secrets = (pod.get("spec") or {}).get("imagePullSecrets")
    return [e.get("name") for e in secrets if isinstance(e, dict)] \
        if isinstance(secrets, list) else []


def annotation(pod):
    meta = pod.get("metadata")
    anns = meta.get("annotations") if isinstance(meta, dict) else None
    return anns.get(ANN) if isinstance(anns, dict) else None


def check_model(name, req, env, got):
    """Applies the patch to the object and compares it with the model."""
    images, ann_add, recorded, decisions, gated, secret = model(req, env)
    check(got["recorded"] == recorded,
          f"{name}: recorded {got['recorded']} want {recorded}")
    check(got["decisions"] == decisions,
          f"{name}: decisions {got['decisions']} want {decisions}")
    r = got["response"]
    check(r["uid"] == req["uid"] and r["allowed"] is True and
          r["apiVersion"] == "admission.k8s.io/v1" and
          r["kind"] == "AdmissionReview" and not r["extra_fields"],
          f"{name}: envelope {r}")
    check(got["dry_run"] == (1 if req.get("dryRun") is True and
                             decisions else 0) or not decisions,
          f"{name}: dry_run stat {got['dry_run']}")
    patch = r["patch"]
    check(got["gated"] == (1 if gated else 0),
          f"{name}: gated {got['gated']} want {gated}")
    if gated:
        return check_gated(name, req, env, got, images)
    if not images and not (secret and PULL_SECRET not in pull_secret_names(req["object"])):
        check(patch is None and r["patchType"] is None and
              got["patched"] == 0, f"{name}: unexpected patch {patch}")
        return None
    if not check(patch and r["patchType"] == "JSONPatch" and
                 got["patched"] == 1, f"{name}: no patch"):
        return None
    try:
        pod = jsonpatch.apply(req["object"], patch, strict=True)
    except jsonpatch.JSONPatchError as e:
        fail(f"{name}: patch does not apply: {e.message}")
        return None
    before = req["object"]
    for lst in ("initContainers", "containers", "ephemeralContainers"):
        for i, c in enumerate(before.get("spec", {}).get(lst) or []):
            want = images.get((lst, i), c.get("image"))
            check(pod["spec"][lst][i].get("image") == want,
                  f"{name}: {lst}[{i}] = {pod['spec'][lst][i].get('image')}"
                  f" want {want}")
    # Nothing but images and the annotation changed.
    a, b = copy.deepcopy(pod), copy.deepcopy(before)
    for x in (a, b):
        meta = x.get("metadata")
        if isinstance(meta, dict):
            if isinstance(meta.get("annotations"), dict):
                meta["annotations"].pop(ANN, None)
            if meta.get("annotations") in ({}, None):
                meta.pop("annotations", None)
        for lst in ("initContainers", "containers", "ephemeralContainers"):
            for c in x.get("spec", {}).get(lst) or []:
                c.pop("image", None)
    # a private rewrite, or a private cache path the pod may have, adds
    # thaw-pull to imagePullSecrets, once
    if secret:
        names = pull_secret_names(pod)
        check(names.count(PULL_SECRET) == 1, f"{name}: imagePullSecrets {names}")
        check(names[:len(pull_secret_names(before))] == pull_secret_names(before),
              f"{name}: imagePullSecrets reordered: {names}")
        for x in (a, b):
            spec = x.get("spec") or {}
            spec["imagePullSecrets"] = [e for e in spec.get("imagePullSecrets") or []
                                        if not (isinstance(e, dict) and
                                                e.get("name") == PULL_SECRET)] or None
            if spec["imagePullSecrets"] is None:
                spec.pop("imagePullSecrets")
    check(a == b, f"{name}: patch changed more than images, annotation and pull secrets")
    old_ann = annotation(before)
    new_ann = annotation(pod)
    if "ephemeralContainers" in [k[0] for k in images] or not ann_add:
        check(new_ann == old_ann, f"{name}: annotation written on ephemeral"
              " or for no rewrite")
    else:
        want = json.loads(old_ann) if old_ann else {}
        for k, v in ann_add.items():
            want.setdefault(k, v)
        check(new_ann is not None and json.loads(new_ann) == want,
              f"{name}: annotation {new_ann} want {want}")
    # Every op applies as the apiserver applies it (non-strict too).
    check(jsonpatch.apply(req["object"], patch) == pod,
          f"{name}: strict and lenient application differ")
    return pod


def check_gated(name, req, env, got, reverts):
    """A gated pod: the annotation op, then the gate op; images as sent but
    for private images' cache paths put back (reverts, first). In a
    cache-private namespace also thaw-pull in imagePullSecrets (once), so
    that its release may serve private images."""
    patch = got["response"]["patch"]
    before = req["object"]
    want_rv = [{"op": "replace", "path": "/spec/%s/%d/image" % k, "value": v}
               for k, v in sorted(reverts.items(), key=lambda kv: (
                   ["initContainers", "containers"].index(kv[0][0]), kv[0][1]))]
    if not check((patch or [])[:len(want_rv)] == want_rv,
                 f"{name}: gated reverts {patch} want {want_rv}"):
        return None
    if want_rv:
        before = jsonpatch.apply(before, want_rv, strict=True)
        patch = patch[len(want_rv):]
    ns = req.get("namespace") or (before.get("metadata") or {}).get("namespace") or ""
    private_ns = env.get("cache_private_all") or \
        "cache_private" in env.get("namespaces", {}).get(ns, [])
    secret = private_ns and PULL_SECRET not in pull_secret_names(before)
    if not check(patch and len(patch) == 2 + secret and got["patched"] == 1,
                 f"{name}: gated patch {patch}"):
        return None
    anns = before["metadata"].get("annotations")
    want_ann = ({"op": "add", "path": "/metadata/annotations/" + COLD_WAIT.replace("/", "~1"),
                 "value": str(env["cold_wait_seconds"])}
                if isinstance(anns, dict) else
                {"op": "add", "path": "/metadata/annotations",
                 "value": {COLD_WAIT: str(env["cold_wait_seconds"])}})
    check(patch[0] == want_ann, f"{name}: annotation op {patch[0]} want {want_ann}")
    want_gate = ({"op": "add", "path": "/spec/schedulingGates/-", "value": {"name": GATE}}
                 if isinstance(gates_of(before), list) else
                 {"op": "add", "path": "/spec/schedulingGates", "value": [{"name": GATE}]})
    check(patch[1] == want_gate, f"{name}: gate op {patch[1]} want {want_gate}")
    try:
        pod = jsonpatch.apply(before, patch, strict=True)
    except jsonpatch.JSONPatchError as e:
        fail(f"{name}: gate patch does not apply: {e.message}")
        return None
    check(jsonpatch.apply(before, patch) == pod,
          f"{name}: strict and lenient application differ")
    check(pod["metadata"]["annotations"][COLD_WAIT] == str(env["cold_wait_seconds"]),
          f"{name}: {COLD_WAIT}")
    old_gates = gates_of(before) if isinstance(gates_of(before), list) else []
    check(pod["spec"]["schedulingGates"] == old_gates + [{"name": GATE}],
          f"{name}: gates {pod['spec']['schedulingGates']}")
    # Nothing else changed: images as submitted, no other annotation.
    a, b = copy.deepcopy(pod), copy.deepcopy(before)
    for x in (a, b):
        if isinstance(x["metadata"].get("annotations"), dict):
            x["metadata"]["annotations"].pop(COLD_WAIT, None)
            if not x["metadata"]["annotations"]:
                x["metadata"].pop("annotations")
        if x["metadata"].get("annotations", 0) is None:
            x["metadata"].pop("annotations")
        g = x["spec"].get("schedulingGates")
        if isinstance(g, list):
            x["spec"]["schedulingGates"] = [e for e in g if e != {"name": GATE}]
            if not x["spec"]["schedulingGates"]:
                x["spec"].pop("schedulingGates")
        elif g is None:
            x["spec"].pop("schedulingGates", None)
        if secret:
            check(pull_secret_names(x).count(PULL_SECRET) <= 1, f"{name}: thaw-pull twice")
            ps = [e for e in x["spec"].get("imagePullSecrets") or []
                  if e != {"name": PULL_SECRET}]
            x["spec"]["imagePullSecrets"] = ps
            if not ps:
                x["spec"].pop("imagePullSecrets")
    if secret:
        check(PULL_SECRET in pull_secret_names(pod), f"{name}: no thaw-pull on a gated pod")
    check(a == b, f"{name}: the gate patch changed more than gate and annotation")
    return pod


# --- fixtures --------------------------------------------------------------

def fixture_requests():
    out = []
    for fn in sorted(os.listdir(FIXTURES)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(FIXTURES, fn)) as f:
            doc = json.load(f)
        if doc.get("kind") == "AdmissionReview":
            out.append((fn[:-5], doc))
    return out


def run_fixtures(dump, update):
    fixtures = fixture_requests()
    check(len(fixtures) >= 10, f"only {len(fixtures)} fixtures in {FIXTURES}")
    os.makedirs(GOLDEN, exist_ok=True)
    for name, doc in fixtures:
        body = json.dumps(doc)
        golden = {}
        for vname, env in VARIANTS.items():
            label = f"{name}/{vname}"
            rc, out, err = dump.run(body, env)
            if not check(rc == 0 and out and out["rc"] == 0,
                         f"{label}: exit {rc} {err.strip()}"):
                continue
            got = decode(out)
            golden[vname] = got
            pod = check_model(label, doc["request"], env, got)
            if pod is not None:
                # Reinvocation: the webhook sees its own output again.
                again = copy.deepcopy(doc)
                again["request"]["object"] = pod
                rc2, out2, _ = dump.run(json.dumps(again), env)
                if check(rc2 == 0 and out2, f"{label}: reinvocation failed"):
                    r2 = decode(out2)
                    # a gated pod's cold images are still cold: recorded
                    # again (the recorder de-duplicates), nothing patched
                    check(r2["response"]["patch"] is None and
                          (r2["recorded"] == [] or got["gated"]),
                          f"{label}: reinvocation patched "
                          f"{r2['response']['patch']}")
        path = os.path.join(GOLDEN, name + ".json")
        if update:
            with open(path, "w") as f:
                json.dump(golden, f, indent=1, sort_keys=True)
                f.write("\n")
            continue
        try:
            with open(path) as f:
                want = json.load(f)
        except OSError:
            fail(f"{name}: no golden file {path}")
            continue
        for vname in VARIANTS:
            check(golden.get(vname) == want.get(vname),
                  f"{name}/{vname}: differs from golden:\n got "
                  f"{json.dumps(golden.get(vname), sort_keys=True)}\n want "
                  f"{json.dumps(want.get(vname), sort_keys=True)}")
    return dict(fixtures)


# --- own cases --------------------------------------------------------------

READY = VARIANTS["ready"]


def run_case(dump, name, doc, env=READY):
    rc, out, err = dump.run(json.dumps(doc), env)
    if not check(rc == 0 and out and out["rc"] == 0,
                 f"{name}: exit {rc} {err.strip()}"):
        return None, None
    got = decode(out)
    pod = check_model(name, doc["request"], env, got)
    return got, pod


def own_cases(dump, fx):
    job = fx["oscar-job-pod"]
    mount = fx["oscar-mount-pod"]

    # 30 containers and 5 initContainers: exact indexes, one key each.
    d = copy.deepcopy(job)
    spec = d["request"]["object"]["spec"]
    tmpl = spec["containers"][0]
    imgs = [k for k, v in IMAGES.items() if v[1]]
    spec["containers"] = []
    for i in range(30):
        c = copy.deepcopy(tmpl)
        c["name"], c["image"] = f"c{i}", imgs[i % len(imgs)]
        spec["containers"].append(c)
    spec["initContainers"] = []
    for i in range(5):
        c = copy.deepcopy(tmpl)
        c["name"], c["image"] = f"i{i}", imgs[(i + 3) % len(imgs)]
        spec["initContainers"].append(c)
    got, pod = run_case(dump, "30-containers", d)
    if got:
        ops = got["response"]["patch"]
        check(len(ops) == 36 and ops[0]["path"] == "/metadata/annotations",
              f"30-containers: {len(ops)} ops")
        check([o["path"] for o in ops[1:6]] ==
              [f"/spec/initContainers/{i}/image" for i in range(5)] and
              [o["path"] for o in ops[6:]] ==
              [f"/spec/containers/{i}/image" for i in range(30)],
              "30-containers: op order/indexes")
        rc, out, _ = dump.run(json.dumps(d), VARIANTS["cold"])
        check(out and out["recorded"] == list(dict.fromkeys(
            IMAGES[c["image"]][0] for c in spec["initContainers"] +
            spec["containers"])), "30-containers: cold records once each")

    # A name needing escaping, with existing annotations (add the key).
    d = copy.deepcopy(job)
    o = d["request"]["object"]
    o["spec"]["containers"][0]["name"] = 'a/b~c"\\'
    o["metadata"]["annotations"] = {"other": "x"}
    got, pod = run_case(dump, "escaping", d)
    if got:
        ops = got["response"]["patch"]
        check(ops[0] == {"op": "add",
                         "path": "/metadata/annotations/thaw.dev~1original-images",
                         "value": json.dumps({'container/a/b~c"\\':
                                              "grycap/imagemagick"},
                                             separators=(",", ":"))},
              f"escaping: {ops[0]}")
        check(pod["metadata"]["annotations"]["other"] == "x",
              "escaping: other annotation lost")

    # annotations: null -> add /metadata/annotations replaces it.
    d = copy.deepcopy(job)
    d["request"]["object"]["metadata"]["annotations"] = None
    got, pod = run_case(dump, "annotations-null", d)
    check(got and got["response"]["patch"][0]["path"] == "/metadata/annotations",
          "annotations-null: first op")

    # Existing annotation: merged, the first original kept.
    d = copy.deepcopy(mount)
    first = json.dumps({"container/oscar-container": "first/original:1",
                        "unrelated": 7})
    d["request"]["object"]["metadata"]["annotations"] = {ANN: first}
    got, pod = run_case(dump, "merge", d)
    if got and pod:
        ops = got["response"]["patch"]
        check(ops[0]["op"] == "replace" and
              ops[0]["path"] == "/metadata/annotations/thaw.dev~1original-images",
              f"merge: {ops[0]}")
        check(json.loads(pod["metadata"]["annotations"][ANN]) ==
              {"container/oscar-container": "first/original:1", "unrelated": 7,
               "init/rclone-container": "rclone/rclone"},
              f"merge: {pod['metadata']['annotations'][ANN]}")
        check(pod["spec"]["containers"][0]["image"] ==
              IMAGES["grycap/imagemagick"][1], "merge: image not rewritten")

    # Existing annotation that is not a JSON object: left alone, warned once.
    for bad in ("not json", "[1]", '{"a":1} x'):
        d = copy.deepcopy(mount)
        d["request"]["object"]["metadata"]["annotations"] = {ANN: bad}
        rc, out, _ = dump.run(json.dumps(d), READY)
        if check(rc == 0 and out, "bad-annotation: exit"):
            got = decode(out)
            ops = got["response"]["patch"] or []
            check([o["path"] for o in ops] ==
                  ["/spec/initContainers/0/image", "/spec/containers/0/image"],
                  f"bad-annotation {bad!r}: ops {ops}")
            w = got["response"]["warnings"] or []
            check(len(w) == 1 and ANN in w[0] and len(w[0]) <= 120,
                  f"bad-annotation {bad!r}: warnings {w}")

    # Ephemeral container already in oldObject: not touched; a new one is.
    eph = fx["ephemeral-update"]
    d = copy.deepcopy(eph)
    d["request"]["oldObject"]["spec"]["ephemeralContainers"] = copy.deepcopy(
        d["request"]["object"]["spec"]["ephemeralContainers"])
    got, _ = run_case(dump, "ephemeral-existing", d)
    check(got and got["response"]["patch"] is None,
          "ephemeral-existing: patched")
    newc = copy.deepcopy(d["request"]["object"]["spec"]["ephemeralContainers"][0])
    newc["name"], newc["image"] = "debugger2", "rclone/rclone"
    d["request"]["object"]["spec"]["ephemeralContainers"].append(newc)
    got, pod = run_case(dump, "ephemeral-second", d)
    check(got and got["response"]["patch"] ==
          [{"op": "replace", "path": "/spec/ephemeralContainers/1/image",
            "value": IMAGES["rclone/rclone"][1]}],
          f"ephemeral-second: {got and got['response']['patch']}")

    # Cache paths named by hand (docs/design.md "A hand-written cache path
    # never leaks and never blocks a pod"): a private image's goes back to
    # its original where the pod may not be served it, a gated pod keeping
    # that; where it may, thaw-pull is added and a cache-host path becomes
    # the private form. A public image's stays.
    d = copy.deepcopy(mount)
    spec = d["request"]["object"]["spec"]
    ctr = copy.deepcopy(spec["containers"][0])
    spec["initContainers"][0]["image"] = PRIVATE + "/localhost__5000/team/app:1.2@" + D
    spec["containers"] = []
    for i, img in enumerate([CACHE + "/docker.io/grycap/imagemagick:latest",
                             CACHE + "/localhost__5000/team/app:1.2",
                             PRIVATE + "/docker.io/grycap/imagemagick:latest", "rclone/rclone"]):
        c = copy.deepcopy(ctr)
        c["name"], c["image"] = "c%d" % i, img
        spec["containers"].append(c)
    orig_app = "localhost:5000/team/app:1.2"
    want = {  # variant -> decisions
        "ready": {"already": 2, "private": 2, "rewritten": 1},
        "private": {"private": 5},
        "private_ns": {"rewritten": 3, "already": 2},
        "cold_wait": {"already": 2, "private": 2, "cold": 1},
        "cold_wait_private": {"private": 4, "cold": 1},
    }
    for v, dec in want.items():
        env = VARIANTS.get(v) or dict(VARIANTS["cold_wait"], images={
            IMAGES["grycap/imagemagick"][0]: "ready_private", orig_app: "ready_private"})
        got, pod = run_case(dump, "cache-paths/" + v, d, env)
        check(got and got["decisions"] == dec, f"cache-paths/{v}: {got and got['decisions']}")
        if pod is None:
            continue
        imgs = [c["image"] for c in pod["spec"]["initContainers"] + pod["spec"]["containers"]]
        if v == "private":
            check(imgs[:4] == ["localhost:5000/team/app:1.2@" + D,
                               "docker.io/grycap/imagemagick:latest", orig_app,
                               "docker.io/grycap/imagemagick:latest"],
                  f"cache-paths/private: {imgs}")
            w = got["response"]["warnings"] or []
            check(len(w) == 4 and all("original used" in x and len(x) <= 120 for x in w),
                  f"cache-paths/private: warnings {w}")
        if v == "private_ns":
            check(imgs[1] == PRIVATE + "/docker.io/grycap/imagemagick:latest@" +
                  cache_digest("docker.io/grycap/imagemagick:latest") and
                  pull_secret_names(pod).count(PULL_SECRET) == 1,
                  f"cache-paths/private_ns: {imgs} {pull_secret_names(pod)}")
    # Only a hand-written private path the pod may have: thaw-pull, no op else.
    d2 = copy.deepcopy(mount)
    d2["request"]["object"]["spec"]["initContainers"] = []
    d2["request"]["object"]["spec"]["containers"] = [dict(ctr, image=PRIVATE + "/docker.io/grycap/imagemagick:latest")]
    got, pod = run_case(dump, "cache-path-secret", d2, VARIANTS["private_ns"])
    check(got and got["response"]["patch"] and len(got["response"]["patch"]) == 1 and
          got["response"]["patch"][0]["path"] == "/spec/imagePullSecrets",
          f"cache-path-secret: {got and got['response']['patch']}")
    # An ephemeral container's update cannot add thaw-pull: put back unless named.
    e = copy.deepcopy(fx["ephemeral-update"])
    e["request"]["object"]["spec"]["ephemeralContainers"][0]["image"] = \
        PRIVATE + "/docker.io/grycap/imagemagick:latest"
    got, _ = run_case(dump, "cache-path-ephemeral", e, VARIANTS["private_ns"])
    check(got and got["decisions"] == {"private": 1}, f"cache-path-ephemeral: {got}")
    e["request"]["object"]["spec"]["imagePullSecrets"] = [{"name": PULL_SECRET}]
    got, _ = run_case(dump, "cache-path-ephemeral-named", e, VARIANTS["private_ns"])
    check(got and got["decisions"] == {"already": 1} and got["response"]["patch"] is None,
          f"cache-path-ephemeral-named: {got}")

    # dryRun: rewritten, nothing recorded; the stat says dry run.
    dry = fx["dryrun-create"]
    got, pod = run_case(dump, "dryrun-ready", dry)
    check(got and got["response"]["patch"] and got["dry_run"] == 1,
          "dryrun: no rewrite")
    got, _ = run_case(dump, "dryrun-cold", dry, VARIANTS["cold"])
    check(got and got["recorded"] == [] and got["decisions"] == {"cold": 1},
          "dryrun: recorded")

    # Content-addressed: each tag is pinned to its own image's digest; a
    # Ready image without a digest is cold (row 6: nothing recorded); an
    # image that names a digest keeps it, whatever the cache's.
    rc_ = IMAGES["rclone/rclone"][0]
    im_ = IMAGES["grycap/imagemagick"][0]
    got, _ = run_case(dump, "pin-one", mount, dict(READY, digests={
        rc_: None, im_: "sha256:" + "e" * 64}))
    ops = got and got["response"]["patch"] or []
    check(got and got["decisions"] == {"rewritten": 1, "cold": 1} and
          got["recorded"] == [] and
          [o["value"] for o in ops if o["op"] == "replace"] ==
          [CACHE + "/docker.io/grycap/imagemagick:latest@sha256:" + "e" * 64],
          f"pin-one: {got}")
    d = copy.deepcopy(mount)
    d["request"]["object"]["spec"]["containers"][0]["image"] = "busybox@" + KD
    got, _ = run_case(dump, "pin-own", d, dict(READY, digests={
        "docker.io/library/busybox@" + KD: "sha256:" + "e" * 64}))
    ops = got and got["response"]["patch"] or []
    check(got and CACHE + "/docker.io/library/busybox@" + KD in
          [o["value"] for o in ops if o["op"] == "replace"], f"pin-own: {got}")

    # Opt-outs: pod label, namespace flag, system namespaces, mirror pod.
    outs = []
    d = copy.deepcopy(mount)
    d["request"]["object"]["metadata"]["labels"]["thaw.dev/caching"] = "disabled"
    outs.append(("optout-pod", d, READY))
    outs.append(("optout-ns", mount, dict(READY, namespaces={
        "oscar-svc": ["opted_out", "cache_private"]})))
    for ns in ("kube-system", "thaw-system"):
        d = copy.deepcopy(mount)
        d["request"]["namespace"] = ns
        d["request"]["object"]["metadata"]["namespace"] = ns
        outs.append(("system-" + ns, d, READY))
    # --exclude-namespaces: as a system namespace, whatever its labels
    outs.append(("excluded-ns", mount, dict(READY, excluded_namespaces=["oscar-svc"],
                                            namespaces={"oscar-svc": ["cache_private"]})))
    d = copy.deepcopy(mount)
    d["request"]["object"]["metadata"]["annotations"] = {
        "kubernetes.io/config.mirror": "abc"}
    outs.append(("mirror", d, READY))
    d = copy.deepcopy(mount)
    d["request"]["object"]["metadata"]["labels"]["thaw.dev/caching"] = "enabled"
    for name, doc, env in outs:
        for e in (env, dict(env, default_image="absent")):
            got, _ = run_case(dump, name, doc, e)
            check(got and got["response"]["patch"] is None and
                  got["recorded"] == [] and
                  got["decisions"] == {"opted_out": 2},
                  f"{name}: {got and got['decisions']}")
    got, _ = run_case(dump, "caching-enabled-label", d)
    check(got and got["decisions"] == {"rewritten": 2}, "caching=enabled")

    # Invalid images: unchanged, a warning of at most 120 characters each,
    # the valid image beside them still rewritten.
    d = copy.deepcopy(mount)
    cs = d["request"]["object"]["spec"]["containers"]
    bads = ["Grycap/ImageMagick", "x" * 2000, "a" * 300 + ":\u00e9\x01",
            "busybox@sha256:short", "", "localhost:7439/UPPER/x"]
    for i, img in enumerate(bads):
        c = copy.deepcopy(cs[0])
        c["name"], c["image"] = f"bad-{i}-" + "n" * 60, img
        cs.append(c)
    rc, out, _ = dump.run(json.dumps(d), READY)
    if check(rc == 0 and out, "invalid: exit"):
        got = decode(out)
        w = got["response"]["warnings"] or []
        check(len(w) == len(bads), f"invalid: {len(w)} warnings")
        for x in w:
            check(len(x) <= 120 and x.startswith('thaw: image "') and
                  '" of container "bad-' in x and " not cached: " in x and
                  all(0x20 <= ord(ch) < 0x7f for ch in x),
                  f"invalid: warning {x!r} ({len(x)})")
            # the reason is kept whole; the name is clipped to 16
            why = x.split(" not cached: ", 1)[-1]
            check(len(why) >= 10 and not why.endswith("...") and
                  len(x.split('of container "')[1].split('"')[0]) <= 16,
                  f"invalid: reason or name clipped in {x!r}")
        check(any(x.endswith("longer than 1024 characters") for x in w),
              f"invalid: no whole reason for the long image in {w}")
        check(got["decisions"] == {"invalid": len(bads), "rewritten": 2},
              f"invalid: {got['decisions']}")
        ops = got["response"]["patch"]
        check([o["path"] for o in ops][1:] ==
              ["/spec/initContainers/0/image", "/spec/containers/0/image"],
              f"invalid: ops {ops}")
    # Many invalid images: at most 10 warnings.
    d = copy.deepcopy(job)
    cs = d["request"]["object"]["spec"]["containers"]
    cs[:] = [dict(cs[0], name=f"u{i}", image="UP/x") for i in range(40)]
    rc, out, _ = dump.run(json.dumps(d), READY)
    check(out and len(decode(out)["response"]["warnings"]) == 10,
          "invalid: warnings capped")

    # Same image twice (two spellings): recorded once.
    d = copy.deepcopy(mount)
    cs = d["request"]["object"]["spec"]["containers"]
    cs.append(dict(cs[0], name="again", image="docker.io/grycap/imagemagick"))
    rc, out, _ = dump.run(json.dumps(d), VARIANTS["cold"])
    check(out and out["recorded"] == ["docker.io/rclone/rclone:latest",
                                      "docker.io/grycap/imagemagick:latest"],
          f"dedup records: {out and out['recorded']}")

    # Requests that pass through untouched.
    passes = []
    d = copy.deepcopy(job)
    d["request"]["kind"]["kind"] = "Deployment"
    passes.append(("non-pod-kind", d))
    d = copy.deepcopy(job)
    d["request"]["kind"]["group"] = "apps"
    passes.append(("pod-other-group", d))
    d = copy.deepcopy(job)
    d["request"]["operation"] = "DELETE"
    d["request"]["oldObject"], d["request"]["object"] = \
        d["request"]["object"], None
    passes.append(("delete", d))
    d = copy.deepcopy(job)
    d["request"]["subResource"] = "status"
    passes.append(("create-subresource", d))
    passes.append(("plain-update", fx["pod-update-label"]))
    d = copy.deepcopy(eph)
    d["request"]["operation"] = "CREATE"
    passes.append(("create-with-ephemeral-subresource", d))
    d = copy.deepcopy(job)
    d["request"]["object"] = None
    passes.append(("object-null", d))
    d = copy.deepcopy(job)
    d["request"]["object"] = [1, 2]
    passes.append(("object-array", d))
    d = copy.deepcopy(job)
    c = d["request"]["object"]["spec"]["containers"][0]
    del c["image"]
    passes.append(("no-image", d))
    for img in (None, 7, ["x"], {"a": 1}, True):
        d = copy.deepcopy(job)
        d["request"]["object"]["spec"]["containers"][0]["image"] = img
        passes.append((f"image-{type(img).__name__}", d))
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["containers"] = {"a": 1}
    passes.append(("containers-object", d))
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["containers"] = [1, "x", None]
    passes.append(("containers-scalars", d))
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"] = None
    passes.append(("spec-null", d))
    for name, doc in passes:
        for env in (READY, VARIANTS["cold"]):
            rc, out, err = dump.run(json.dumps(doc), env)
            if check(rc == 0 and out, f"{name}: exit {rc} {err}"):
                got = decode(out)
                check(got["response"]["patch"] is None and
                      got["recorded"] == [] and got["decisions"] == {} and
                      got["response"]["uid"] == doc["request"]["uid"],
                      f"{name}: {got}")

    # A non-object metadata: images rewritten, no annotation op.
    d = copy.deepcopy(job)
    d["request"]["object"]["metadata"] = "x"
    rc, out, _ = dump.run(json.dumps(d), READY)
    check(out and [o["path"] for o in decode(out)["response"]["patch"]] ==
          ["/spec/containers/0/image"], "metadata-not-object")

    # An odd uid is echoed exactly.
    d = copy.deepcopy(job)
    d["request"]["uid"] = 'u"\\\n\u00e9/'
    rc, out, _ = dump.run(json.dumps(d), READY)
    check(out and decode(out)["response"]["uid"] == d["request"]["uid"],
          "uid escaping")


def cold_wait_cases(dump, fx):
    """Cold wait (docs/design.md): each condition of the gate on its own,
    from a pod that is gated under CW. Every run goes through check_model,
    which applies the patch as the apiserver does."""
    job = fx["oscar-job-pod"]
    mount = fx["oscar-mount-pod"]     # initContainer rclone + imagemagick
    CW = VARIANTS["cold_wait"]

    def run(name, doc, env, want_gated):
        got, pod = run_case(dump, name, doc, env)
        if got:
            check(got["gated"] == want_gated,
                  f"cold-wait {name}: gated {got['gated']} want {want_gated}")
        return got, pod

    got, pod = run("gated", job, CW, 1)
    check(got and got["recorded"] == ["docker.io/grycap/imagemagick:latest"],
          "cold-wait gated: the cold image is still recorded")
    # Reinvocation: the gate is there: nothing more, images untouched.
    if pod:
        again = copy.deepcopy(job)
        again["request"]["object"] = pod
        got2, _ = run("reinvocation", again, CW, 0)
        check(got2 and got2["response"]["patch"] is None,
              f"cold-wait reinvocation: {got2 and got2['response']['patch']}")
        # ... even when the image turned Ready meanwhile: the release rewrites
        got2, _ = run("reinvocation-ready", again, VARIANTS["cold_wait_ready"], 0)
        check(got2 and got2["response"]["patch"] is None and
              got2["decisions"] == {"rewritten": 1},
              f"cold-wait reinvocation-ready: {got2}")
    # Each condition off: not gated (and as without cold wait).
    for name, env in (("flag-off", dict(CW, cold_wait_seconds=0)),
                      ("leader-stale", dict(CW, leader_fresh=False)),
                      ("no-lease", {k: v for k, v in CW.items() if k != "leader_fresh"}),
                      ("health-gate-down", dict(CW, registry_up=False)),
                      ("all-failed", VARIANTS["cold_wait_failed"])):
        got, _ = run(name, job, env, 0)
        check(got and got["response"]["patch"] is None, f"cold-wait {name}: patched")
    # Warming (row 6 with a warm to come): gated, nothing recorded.
    got, _ = run("warming", job, VARIANTS["cold_wait_warming"], 1)
    check(got and got["recorded"] == [], "cold-wait warming: recorded")
    # spec.nodeName set: not gated; "" or null counts as unset.
    for node, want in (("node-1", 0), ("", 1), (None, 1)):
        d = copy.deepcopy(job)
        d["request"]["object"]["spec"]["nodeName"] = node
        run(f"nodeName={node!r}", d, CW, want)
    # schedulingGates: other gates -> append; null -> add; non-array -> none.
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["schedulingGates"] = [{"name": "example.com/other"}]
    got, pod = run("other-gates", d, CW, 1)
    check(got and got["response"]["patch"][1]["path"] == "/spec/schedulingGates/-" and
          pod and pod["spec"]["schedulingGates"] == [{"name": "example.com/other"},
                                                      {"name": GATE}],
          f"cold-wait other-gates: {pod and pod['spec'].get('schedulingGates')}")
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["schedulingGates"] = None
    run("gates-null", d, CW, 1)
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["schedulingGates"] = []
    run("gates-empty", d, CW, 1)
    for bad in ({"name": GATE}, "x", 3):
        d = copy.deepcopy(job)
        d["request"]["object"]["spec"]["schedulingGates"] = bad
        got, _ = run(f"gates-{type(bad).__name__}", d, CW, 0)
        check(got and got["response"]["patch"] is None,
              f"cold-wait gates {bad!r}: patched")
    # The gate among others already: nothing at all.
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["schedulingGates"] = [{"name": "a"}, {"name": GATE}]
    got, _ = run("gate-present", d, CW, 0)
    check(got and got["response"]["patch"] is None, "cold-wait gate-present: patched")
    # metadata not an object: no gate, no op at all (the annotation is needed).
    d = copy.deepcopy(job)
    d["request"]["object"]["metadata"] = "x"
    got, _ = run("metadata-not-object", d, CW, 0)
    check(got and got["response"]["patch"] is None, "cold-wait metadata: patched")
    # Annotations present: add the key, others kept; null: add the map;
    # the key present already (a user's): replaced by add.
    for anns in ({"other": "x"}, None, {COLD_WAIT: "5", "other": "y"},
                 {ANN: '{"container/x":"y"}'}):
        d = copy.deepcopy(job)
        d["request"]["object"]["metadata"]["annotations"] = anns
        got, pod = run(f"annotations={anns!r}", d, CW, 1)
        if pod:
            want = dict(anns or {}, **{COLD_WAIT: "30"})
            check(pod["metadata"]["annotations"] == want,
                  f"cold-wait annotations {anns!r}: {pod['metadata']['annotations']}")
    # A name needing escaping does not matter; seconds are the env's.
    got, pod = run("seconds", job, dict(CW, cold_wait_seconds=300), 1)
    check(pod and pod["metadata"]["annotations"][COLD_WAIT] == "300", "cold-wait 300")
    # Only pull_never images, only private or already rewritten: nothing cold.
    d = copy.deepcopy(job)
    d["request"]["object"]["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    got, _ = run("pull-never-only", d, CW, 0)
    check(got and got["decisions"] == {"pull_never": 1}, "cold-wait pull_never")
    # gated in a cache-private namespace: thaw-pull added (the release may
    # then serve private images; a pod's secrets cannot change later)
    for secrets in (None, [{"name": "mine"}], [{"name": PULL_SECRET}]):
        d = copy.deepcopy(job)
        if secrets is not None:
            d["request"]["object"]["spec"]["imagePullSecrets"] = secrets
        got, pod = run("gated-private-ns-%r" % (secrets,), d,
                       dict(CW, cache_private_all=True), 1)
        check(pod and pull_secret_names(pod) ==
              [e["name"] for e in secrets or []] +
              ([PULL_SECRET] if PULL_SECRET not in [e["name"] for e in secrets or []] else []),
              "gated private ns %r: %s" % (secrets, pod and pull_secret_names(pod)))
    got, _ = run("private-row", job, dict(CW, default_image="ready_private"), 0)
    check(got and got["decisions"] == {"private": 1}, "cold-wait private")
    got, _ = run("already", fx["already-rewritten-pod"], CW, 0)
    # Mixed: one Ready image, one cold: gated, the Ready one not rewritten.
    ready_rclone = dict(CW, images={"docker.io/rclone/rclone:latest": "ready"})
    got, pod = run("mixed", mount, ready_rclone, 1)
    check(got and got["decisions"] == {"cold": 1, "rewritten": 1} and pod and
          pod["spec"]["initContainers"][0]["image"] == "rclone/rclone",
          f"cold-wait mixed: {got and got['decisions']}")
    # Ready and Failed mixed: no cold image to wait for: rewritten as usual.
    got, _ = run("ready-and-failed", mount,
                 dict(ready_rclone, default_image="failed"), 0)
    check(got and got["response"]["patch"] and
          [o["path"] for o in got["response"]["patch"]] ==
          ["/metadata/annotations", "/spec/initContainers/0/image"],
          f"cold-wait ready-and-failed: {got and got['response']['patch']}")
    # Opted out, ephemeral containers, other requests: never gated.
    d = copy.deepcopy(job)
    d["request"]["object"]["metadata"]["labels"]["thaw.dev/caching"] = "disabled"
    run("opted-out", d, CW, 0)
    run("ephemeral", fx["ephemeral-update"], CW, 0)
    run("plain-update", fx["pod-update-label"], CW, 0)
    # dryRun: the answer is the same as for a real create.
    got, _ = run("dry-run", fx["dryrun-create"], CW, 1)
    check(got and got["dry_run"] == 1 and got["recorded"] == [], "cold-wait dry run")


def bad_input(dump):
    """Bodies that must give THAW_EPARSE (exit 2) or pass, never crash."""
    job = fixture_requests()[0][1]
    uid = job["request"]["uid"]
    deep = b"[" * 100000 + b"]" * 100000
    eparse = {
        "junk-10MiB": bytes((i * 7919) % 251 for i in range(1 << 16)) * 160,
        "truncated": json.dumps(job).encode()[:-7],
        "top-level-array": b"[" + json.dumps(job).encode() + b"]",
        "nested-100000": deep,
        "nested-100000-in-object": (b'{"request":{"uid":"x","object":' +
                                    deep + b"}}"),
        "empty": b"",
        "string": b'"AdmissionReview"',
        "no-request": b'{"kind":"AdmissionReview"}',
        "request-null": b'{"request":null}',
        "uid-number": b'{"request":{"uid":5}}',
        "uid-missing": b'{"request":{"kind":{"kind":"Pod"}}}',
        "trailing-garbage": json.dumps(job).encode() + b" }",
        "two-values": json.dumps(job).encode() + json.dumps(job).encode(),
        "nul-inside": json.dumps(job).encode()[:50] + b"\0" +
        json.dumps(job).encode()[50:],
    }
    for name, body in eparse.items():
        rc, out, err = dump.run(body, READY)
        check(rc == 2 and out and out["rc"] != 0 and out["response"] is None
              and err.strip(), f"bad input {name}: exit {rc} {err[:200]}")
    passes = {
        "trailing-whitespace": json.dumps(job).encode() + b" \n\t",
        "nested-900-in-object": (b'{"request":{"uid":"x","object":' +
                                 b"[" * 900 + b"]" * 900 + b"}}"),
        "minimal": b'{"request":{"uid":"x"}}',
    }
    for name, body in passes.items():
        rc, out, err = dump.run(body, READY)
        if check(rc == 0 and out, f"pass input {name}: exit {rc} {err[:200]}"):
            r = decode(out)["response"]
            check(r["patch"] is None and r["uid"] in ("x", uid),
                  f"pass input {name}: {r}")


def main():
    args = [a for a in sys.argv[1:] if a != "--update"]
    if len(args) != 1:
        print(__doc__)
        return 2
    if not os.path.isdir(FIXTURES):
        print(f"no fixtures at {FIXTURES}")
        return 1
    dump = Dump(args[0])
    fx = run_fixtures(dump, "--update" in sys.argv)
    own_cases(dump, fx)
    cold_wait_cases(dump, fx)
    bad_input(dump)
    print(f"test_admit: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
