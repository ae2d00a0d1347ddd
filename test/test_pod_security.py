"""Pod Security Standards over every install (test/renders.py: the default,
each overlay, each with each Component): every pod of thaw-system meets
`restricted`, which that namespace enforces; the node-local endpoint, alone
in thaw-node (enforce: privileged), meets it except exactly hostNetwork.
The checker (test/pss.py) is tested first: a pod broken in one way is
flagged for exactly the rule it breaks."""

import copy
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import unittest77  # noqa: E402  (exit 77 when anything was skipped)

import pss  # noqa: E402
import renders  # noqa: E402

NS, NODE_NS = "thaw-system", "thaw-node"

# A pod that meets restricted, set at the pod level where the rules allow.
GOOD = {
    "metadata": {"annotations": {pss.APPARMOR_PREFIX + "app": "runtime/default"}},
    "spec": {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            "seLinuxOptions": {"type": "container_t"},
                            "sysctls": [{"name": "net.ipv4.ip_local_port_range",
                                         "value": "1024 65535"}]},
        "containers": [{"name": "app", "image": "x",
                        "ports": [{"containerPort": 80}],
                        "securityContext": {"allowPrivilegeEscalation": False,
                                            "capabilities": {"drop": ["ALL"],
                                                             "add": ["NET_BIND_SERVICE"]}}}],
        "initContainers": [{"name": "init", "image": "x",
                            "securityContext": {"allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": k, k: {}} for k in sorted(pss.VOLUME_TYPES)],
    },
}


def ctr(pod, i=0):
    return pod["spec"]["containers"][i].setdefault("securityContext", {})


def init(pod):
    return pod["spec"]["initContainers"][0]["securityContext"]


# (what is broken, how, the rules it breaks at restricted, at baseline)
BAD = [
    ("hostProcess", lambda p: ctr(p).update(windowsOptions={"hostProcess": True}),
     {"HostProcess"}, {"HostProcess"}),
    ("hostNetwork", lambda p: p["spec"].update(hostNetwork=True),
     {"Host Namespaces"}, {"Host Namespaces"}),
    ("hostPID", lambda p: p["spec"].update(hostPID=True),
     {"Host Namespaces"}, {"Host Namespaces"}),
    ("hostIPC", lambda p: p["spec"].update(hostIPC=True),
     {"Host Namespaces"}, {"Host Namespaces"}),
    ("privileged init container", lambda p: init(p).update(privileged=True),
     {"Privileged Containers"}, {"Privileged Containers"}),
    ("SYS_ADMIN added", lambda p: ctr(p)["capabilities"].update(add=["SYS_ADMIN"]),
     {"Capabilities"}, {"Capabilities"}),
    ("CHOWN added (baseline allows it)", lambda p: ctr(p)["capabilities"].update(add=["CHOWN"]),
     {"Capabilities"}, set()),
    ("ALL not dropped", lambda p: init(p)["capabilities"].update(drop=["NET_RAW"]),
     {"Capabilities"}, set()),
    ("hostPath volume", lambda p: p["spec"]["volumes"].append({"name": "h", "hostPath": {
        "path": "/"}}), {"HostPath Volumes", "Volume Types"}, {"HostPath Volumes"}),
    ("hostPort", lambda p: p["spec"]["containers"][0]["ports"][0].update(hostPort=80),
     {"Host Ports"}, {"Host Ports"}),
    ("AppArmor unconfined", lambda p: p["metadata"]["annotations"].update(
        {pss.APPARMOR_PREFIX + "app": "unconfined"}), {"AppArmor"}, {"AppArmor"}),
    ("SELinux type", lambda p: p["spec"]["securityContext"]["seLinuxOptions"].update(
        type="spc_t"), {"SELinux"}, {"SELinux"}),
    ("SELinux user", lambda p: ctr(p).update(seLinuxOptions={"user": "system_u"}),
     {"SELinux"}, {"SELinux"}),
    ("SELinux role", lambda p: ctr(p).update(seLinuxOptions={"role": "system_r"}),
     {"SELinux"}, {"SELinux"}),
    ("procMount Unmasked", lambda p: ctr(p).update(procMount="Unmasked"),
     {"/proc Mount Type"}, {"/proc Mount Type"}),
    ("seccomp Unconfined", lambda p: ctr(p).update(seccompProfile={"type": "Unconfined"}),
     {"Seccomp"}, {"Seccomp"}),
    ("no seccomp profile", lambda p: p["spec"]["securityContext"].pop("seccompProfile"),
     {"Seccomp"}, set()),
    ("unsafe sysctl", lambda p: p["spec"]["securityContext"]["sysctls"].append(
        {"name": "kernel.msgmax", "value": "1"}), {"Sysctls"}, {"Sysctls"}),
    ("nfs volume", lambda p: p["spec"]["volumes"].append({"name": "n", "nfs": {
        "server": "s", "path": "/"}}), {"Volume Types"}, set()),
    ("privilege escalation unset", lambda p: ctr(p).pop("allowPrivilegeEscalation"),
     {"Privilege Escalation"}, set()),
    ("privilege escalation true", lambda p: init(p).update(allowPrivilegeEscalation=True),
     {"Privilege Escalation"}, set()),
    ("runAsNonRoot false on a container", lambda p: ctr(p).update(runAsNonRoot=False),
     {"Running as Non-root"}, set()),
    ("runAsNonRoot nowhere", lambda p: p["spec"]["securityContext"].pop("runAsNonRoot"),
     {"Running as Non-root"}, set()),
    ("runAsUser 0 on the pod", lambda p: p["spec"]["securityContext"].update(runAsUser=0),
     {"Running as Non-root user"}, set()),
    ("runAsUser 0 on a container", lambda p: init(p).update(runAsUser=0),
     {"Running as Non-root user"}, set()),
]


class Checker(unittest.TestCase):
    def check(self, pod, level=pss.RESTRICTED):
        return pss.violations(pod["metadata"], pod["spec"], level)

    def test_good_pod_passes(self):
        self.assertEqual(self.check(GOOD), set())
        self.assertEqual(self.check(GOOD, pss.BASELINE), set())

    def test_each_rule_flags_its_bad_pod(self):
        names = set()
        for what, breaks, restricted, baseline in BAD:
            with self.subTest(what):
                pod = copy.deepcopy(GOOD)
                breaks(pod)
                self.assertEqual(self.check(pod), restricted)
                self.assertEqual(self.check(pod, pss.BASELINE), baseline)
                names |= restricted
        # Every rule of the page has a pod that breaks it.
        self.assertEqual(names, {
            "HostProcess", "Host Namespaces", "Privileged Containers", "Capabilities",
            "HostPath Volumes", "Host Ports", "AppArmor", "SELinux", "/proc Mount Type",
            "Seccomp", "Sysctls", "Volume Types", "Privilege Escalation",
            "Running as Non-root", "Running as Non-root user"})

    def test_container_level_settings_stand_in_for_the_pod_level(self):
        pod = copy.deepcopy(GOOD)
        psc = pod["spec"]["securityContext"]
        del psc["runAsNonRoot"], psc["seccompProfile"]
        for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
            c["securityContext"].update(runAsNonRoot=True,
                                        seccompProfile={"type": "Localhost",
                                                        "localhostProfile": "p.json"})
        self.assertEqual(self.check(pod), set())
        # An ephemeral container is a container too.
        pod["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "x"}]
        self.assertEqual(self.check(pod), {"Privilege Escalation", "Running as Non-root",
                                           "Seccomp", "Capabilities"})

    def test_every_workload_kind_yields_its_pod(self):
        pod = {"metadata": {}, "spec": {"hostPID": True, "containers": []}}
        objs = {"Pod": dict(pod, kind="Pod"),
                "CronJob": {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {
                    "template": pod}}}}}
        for kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet",
                     "ReplicationController", "Job"):
            objs[kind] = {"kind": kind, "spec": {"template": pod}}
        for kind, o in objs.items():
            meta, spec = pss.pod_template(o)
            self.assertEqual(pss.violations(meta, spec, pss.BASELINE), {"Host Namespaces"}, kind)
        self.assertIsNone(pss.pod_template({"kind": "Service", "spec": {}}))

    def test_levels(self):
        bad = copy.deepcopy(GOOD)
        bad["spec"]["hostNetwork"] = True
        ns = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}
        self.assertEqual(pss.level_of(ns), "baseline")
        self.assertEqual(pss.level_of({"metadata": {}}), "privileged")
        self.assertFalse(pss.admits("baseline", bad["metadata"], bad["spec"]))
        self.assertTrue(pss.admits("privileged", bad["metadata"], bad["spec"]))
        self.assertTrue(pss.admits("restricted", GOOD["metadata"], GOOD["spec"]))


def workloads(objs):
    """(object, metadata, spec) of every object that runs pods."""
    out = []
    for o in objs:
        t = pss.pod_template(o)
        if t is not None:
            out.append((o, t[0], t[1]))
        else:  # no kind with a pod template escapes the checker
            spec = o.get("spec") or {}
            assert "template" not in spec and "jobTemplate" not in spec, o["kind"]
    return out


class Installs(unittest.TestCase):
    def test_namespaces_enforce_their_level(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                ns = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Namespace"}
                self.assertEqual(set(ns), {NS, NODE_NS})
                labels = ns[NS]["metadata"]["labels"]
                for mode in ("enforce", "warn", "audit"):
                    self.assertEqual(labels["pod-security.kubernetes.io/" + mode], "restricted")
                # Privileged, and nothing to warn or audit about: the one
                # violation there is known (hostNetwork) and would be
                # reported on every apply and every pod.
                node = {k: v for k, v in ns[NODE_NS]["metadata"]["labels"].items()
                        if k.startswith("pod-security.kubernetes.io/")}
                self.assertEqual(node, {"pod-security.kubernetes.io/enforce": "privileged"})

    def test_thaw_system_pods_meet_restricted(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                pods = [(o, m, s) for o, m, s in workloads(objs)
                        if o["metadata"].get("namespace") == NS]
                self.assertGreaterEqual(len(pods), 3)  # webhook, controller, registry
                for o, meta, spec in pods:
                    self.assertEqual(pss.violations(meta, spec), set(),
                                     "%s %s" % (o["kind"], o["metadata"]["name"]))

    def test_node_local_breaks_restricted_only_by_host_network(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                node = [(o, m, s) for o, m, s in workloads(objs)
                        if o["metadata"].get("namespace") == NODE_NS]
                self.assertEqual([(o["kind"], o["metadata"]["name"]) for o, _, _ in node],
                                 [("DaemonSet", "thaw-node-local")])
                _, meta, spec = node[0]
                self.assertEqual(pss.violations(meta, spec), {"Host Namespaces"})
                self.assertEqual(pss.violations(meta, spec, pss.BASELINE), {"Host Namespaces"})
                self.assertIs(spec["hostNetwork"], True)
                self.assertFalse(spec.get("hostPID") or spec.get("hostIPC"))
                # The same pod without hostNetwork would be admitted anywhere.
                self.assertEqual(pss.violations(meta, dict(spec, hostNetwork=False)), set())

    def test_every_pod_is_admitted_by_its_namespace(self):
        for label, objs in renders.installs():
            with self.subTest(label):
                ns = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Namespace"}
                for o, meta, spec in workloads(objs):
                    level = pss.level_of(ns[o["metadata"]["namespace"]])
                    self.assertTrue(pss.admits(level, meta, spec),
                                    "%s %s in %s" % (o["kind"], o["metadata"]["name"], level))


if __name__ == "__main__":
    unittest77.main()
