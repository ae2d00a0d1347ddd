"""JSON merge patch (RFC 7386) and the part of strategic merge patch that
clients of built-in kinds rely on: lists of objects merged by their key."""

import copy

# patchMergeKey of the list fields thaw and kubectl touch
MERGE_KEYS = {"containers": "name", "initContainers": "name",
              "ephemeralContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort",
              "imagePullSecrets": "name", "ownerReferences": "uid",
              "conditions": "type", "hostAliases": "ip", "readinessGates": "conditionType",
              "schedulingGates": "name"}


def merge(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def strategic(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k.startswith("$"):
            continue   # $setElementOrder, $retainKeys...: ordering hints only
        if v is None:
            out.pop(k, None)
        elif isinstance(v, list) and k in MERGE_KEYS and isinstance(out.get(k), list):
            out[k] = _merge_list(out[k], v, MERGE_KEYS[k])
        elif isinstance(v, dict):
            out[k] = strategic(out.get(k), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _merge_list(cur, patch, key):
    out = list(cur)
    for item in patch:
        if not isinstance(item, dict):
            out.append(copy.deepcopy(item))
            continue
        idx = next((i for i, c in enumerate(out)
                    if isinstance(c, dict) and c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
        elif idx is None:
            out.append(strategic({}, item))
        else:
            out[idx] = strategic(out[idx], item)
    return out
