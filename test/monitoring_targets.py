"""What the Prometheus Operator makes of manifests/components/monitoring:
the scrape targets of each ServiceMonitor and the labels it gives them,
computed from the rendered manifests, so that the test's Prometheus scrapes
the local daemons with the labels a cluster would produce.

    objs = render(["components/monitoring"])          # kubectl kustomize
    for t in targets(objs): t["labels"], t["container"], t["path"]

The operator's rules followed here (its generated scrape config): a
ServiceMonitor without namespaceSelector selects Services of its own
namespace by label; an endpoint `port` names a Service port; each pod
behind the Service (here: each replica of the workload whose pod template
the Service selects) is a target, labelled namespace, service, pod,
container (the container owning the target port), endpoint (the port's
name) and job (the Service's name, or the value of its `jobLabel` label),
then the endpoint's relabelings. Anything else in a ServiceMonitor is
refused, so the model cannot silently drift from the manifests."""

import os

import renders

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(os.path.dirname(HERE), "manifests")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
SM_FIELDS = {"selector", "endpoints", "jobLabel"}
EP_FIELDS = {"port", "path", "interval", "relabelings"}


def render(components):
    """The default install plus the given Components (paths under
    manifests/), rendered by kubectl's kustomize (test/deps.sh installs it)."""
    return renders.render(MANIFESTS, [os.path.join(MANIFESTS, c) for c in components])


def matches(selector, labels):
    """A LabelSelector (matchLabels, matchExpressions) against labels."""
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        op, key, vals = e["operator"], e["key"], e.get("values") or []
        ok = {"In": lambda: labels.get(key) in vals,
              "NotIn": lambda: labels.get(key) not in vals,
              "Exists": lambda: key in labels,
              "DoesNotExist": lambda: key not in labels}[op]()
        if not ok:
            return False
    return True


def relabel(labels, rules):
    """The relabelings thaw's ServiceMonitors use: replace a label with a
    fixed value. Any other kind is refused (not modelled)."""
    out = dict(labels)
    for r in rules or []:
        if set(r) - {"action", "targetLabel", "replacement"} or \
                r.get("action", "replace") != "replace":
            raise AssertionError("relabeling not modelled: %s" % r)
        out[r["targetLabel"]] = r["replacement"]
    return out


def owner_of(pod_spec, port):
    """(container name, containerPort) of the container exposing port
    (a name or a number), or None."""
    for c in pod_spec.get("containers") or []:
        for p in c.get("ports") or []:
            if port in (p.get("name"), p["containerPort"]):
                return c["name"], p["containerPort"]
    return None


def targets(objs):
    """Every target of every ServiceMonitor in objs: dicts with labels,
    container, port (the container's), path, workload and replica."""
    out = []
    for sm in (o for o in objs if o["kind"] == "ServiceMonitor"):
        ns, spec = sm["metadata"]["namespace"], sm["spec"]
        if set(spec) - SM_FIELDS:
            raise AssertionError("%s: fields not modelled: %s"
                                 % (sm["metadata"]["name"], set(spec) - SM_FIELDS))
        services = [s for s in objs if s["kind"] == "Service"
                    and s["metadata"].get("namespace") == ns
                    and matches(spec["selector"], s["metadata"].get("labels"))]
        for ep in spec["endpoints"]:
            if set(ep) - EP_FIELDS:
                raise AssertionError("%s: endpoint fields not modelled: %s"
                                     % (sm["metadata"]["name"], set(ep) - EP_FIELDS))
            for svc in services:
                sport = [p for p in svc["spec"]["ports"] if p.get("name") == ep["port"]]
                if not sport:
                    continue
                target_port = sport[0].get("targetPort", sport[0]["port"])
                job = svc["metadata"]["name"]
                if spec.get("jobLabel"):
                    job = svc["metadata"].get("labels", {}).get(spec["jobLabel"], job)
                for w in objs:
                    if w["kind"] not in WORKLOADS or w["metadata"].get("namespace") != ns:
                        continue
                    tmpl = w["spec"]["template"]
                    if not matches({"matchLabels": svc["spec"]["selector"]},
                                   tmpl["metadata"].get("labels")):
                        continue
                    owner = owner_of(tmpl["spec"], target_port)
                    if owner is None:
                        continue
                    for i in range(w["spec"].get("replicas", 1)):
                        pod = "%s-%d" % (w["metadata"]["name"], i)
                        labels = relabel({"job": job, "namespace": ns, "service":
                                          svc["metadata"]["name"], "pod": pod,
                                          "container": owner[0], "endpoint": ep["port"]},
                                         ep.get("relabelings"))
                        out.append({"labels": labels, "container": owner[0], "port": owner[1],
                                    "path": ep.get("path", "/metrics"),
                                    "workload": w["metadata"]["name"], "replica": i,
                                    "monitor": sm["metadata"]["name"]})
    return out


def admits(objs, target, peer_ns_labels, peer_labels):
    """Whether the NetworkPolicies in objs let a pod with peer_labels in a
    namespace with peer_ns_labels reach target's port (ipBlock peers are
    taken as never matching a pod). A pod no Ingress policy selects admits
    everything."""
    ns = target["labels"]["namespace"]
    w = [o for o in objs if o["kind"] in WORKLOADS and o["metadata"]["name"] == target["workload"]
         and o["metadata"].get("namespace") == ns][0]
    pod_labels = w["spec"]["template"]["metadata"].get("labels") or {}
    own_ns_labels = {"kubernetes.io/metadata.name": ns}
    policies = [p for p in objs if p["kind"] == "NetworkPolicy"
                and p["metadata"].get("namespace") == ns
                and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
                and matches(p["spec"]["podSelector"], pod_labels)]
    if not policies:
        return True
    port_name = [p.get("name") for c in w["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports") or [] if p["containerPort"] == target["port"]]
    for p in policies:
        for rule in p["spec"].get("ingress") or []:
            ports = rule.get("ports")
            if ports and not any(x.get("port") in [target["port"]] + port_name for x in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                nsl = peer.get("namespaceSelector")
                in_ns = matches(nsl, peer_ns_labels) if nsl is not None \
                    else peer_ns_labels == own_ns_labels
                if in_ns and matches(peer.get("podSelector") or {}, peer_labels):
                    return True
    return False
