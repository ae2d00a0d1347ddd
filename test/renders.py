"""Every install manifests/ describes, rendered by kubectl's kustomize: the
default install, each overlay under manifests/overlays/, and each of those
with each Component under manifests/components/ added (all of them
together on the default install too). Directories are discovered, so a new
overlay or Component is covered without naming it here."""

import os
import tempfile

import yaml

import test_manifests
from test_manifests import MANIFESTS, kubectl_kustomize, kustomization_file, load_all

OVERLAYS = os.path.join(MANIFESTS, "overlays")
COMPONENTS = os.path.join(MANIFESTS, "components")


def subdirs(top, kind):
    """Directories under top whose kustomization is of `kind`."""
    out = []
    for name in sorted(os.listdir(top)):
        d = os.path.join(top, name)
        k = kustomization_file(d) if os.path.isdir(d) else None
        if k and load_all(k)[0].get("kind", "Kustomization") == kind:
            out.append(d)
    return out


def overlays():
    return subdirs(OVERLAYS, "Kustomization")


def components():
    return subdirs(COMPONENTS, "Component")


def used_components(d):
    """Components a kustomization lists, as real paths."""
    k = load_all(kustomization_file(d))[0]
    return {os.path.realpath(os.path.join(d, c)) for c in k.get("components") or []}


def render(base, comps=(), extra=None):
    """Objects of `base` with `comps` added, through a kustomization in a
    temporary directory; `extra` is merged into that kustomization."""
    with tempfile.TemporaryDirectory() as tmp:
        k = {"resources": [os.path.relpath(base, tmp)],
             "components": [os.path.relpath(c, tmp) for c in comps]}
        k.update(extra or {})
        with open(os.path.join(tmp, "kustomization.yaml"), "w") as f:
            yaml.safe_dump(k, f)
        return kubectl_kustomize(tmp)


def name(d):
    """"default" for manifests/ itself, else the path under manifests/."""
    return "default" if os.path.realpath(d) == os.path.realpath(MANIFESTS) \
        else os.path.relpath(d, MANIFESTS)


_cache = {}


def installs():
    """[(label, objects)]: every base (the default install and each overlay),
    alone and with each Component it does not already use, and the default
    install with every Component at once."""
    if "all" not in _cache:
        out = []
        for base in [MANIFESTS] + overlays():
            out.append((name(base), kubectl_kustomize(base)))
            for c in components():
                if os.path.realpath(c) not in used_components(base):
                    out.append(("%s + %s" % (name(base), name(c)), render(base, [c])))
        out.append(("all components", render(MANIFESTS, components())))
        _cache["all"] = out
    return _cache["all"]


__all__ = ["installs", "overlays", "components", "render", "name", "test_manifests"]
