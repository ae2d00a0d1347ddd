"""Pod Security Standards v1.26 (the level that manifests/base/namespace.yaml
pins): a checker of pod templates, written from the published rules
(https://kubernetes.io/docs/concepts/security/pod-security-standards/, the
v1.26 page). `violations()` returns the names of the rules a pod breaks, as
that page titles them; `restricted` includes every `baseline` rule. Each
check below quotes the rule it implements. Windows pods (spec.os.name
windows), which v1.26 exempts from some restricted rules, are not handled:
thaw runs none."""

BASELINE = "baseline"
RESTRICTED = "restricted"

# Capabilities: "Adding additional capabilities beyond those listed below
# must be disallowed" (baseline).
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL",
                 "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID",
                 "SYS_CHROOT"}
# Sysctls: "Sysctls can disable security mechanisms or affect all containers
# on a host, and should be disallowed except for an allowed 'safe' subset"
# (v1.26's list; ip_local_reserved_ports came in v1.27).
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range"}
# SELinux: "Setting the SELinux type is restricted, and setting a custom
# SELinux user or role option is forbidden."
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}
# Volume Types (restricted): "In addition to restricting HostPath volumes,
# the restricted policy limits usage of non-core volume types to those
# defined through PersistentVolumes."
VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                "persistentVolumeClaim", "projected", "secret"}
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"

# Kinds whose objects carry a pod template, and where.
TEMPLATE_PATHS = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def pod_template(obj):
    """(metadata, spec) of the pod that obj runs, or None for other kinds."""
    path = TEMPLATE_PATHS.get(obj.get("kind"))
    if path is None:
        return None
    t = obj
    for key in path:
        t = t[key]
    return t.get("metadata") or {}, t["spec"]


def containers(spec):
    """Every container of every kind: the rules name containers[*],
    initContainers[*] and ephemeralContainers[*] alike."""
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            yield key, c


def violations(meta, spec, level=RESTRICTED):
    """The rules of `level` that the pod (metadata, spec) breaks, as a set of
    the page's rule titles."""
    bad = set()
    psc = spec.get("securityContext") or {}
    ctrs = list(containers(spec))

    def csc(c):
        return c.get("securityContext") or {}

    # --- baseline ---------------------------------------------------------
    # HostProcess: "Windows pods offer the ability to run HostProcess
    # containers ... must be disallowed": hostProcess false or undefined.
    if (psc.get("windowsOptions") or {}).get("hostProcess") or any(
            (csc(c).get("windowsOptions") or {}).get("hostProcess") for _, c in ctrs):
        bad.add("HostProcess")
    # Host Namespaces: "Sharing the host namespaces must be disallowed":
    # hostNetwork, hostPID, hostIPC false or undefined.
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        bad.add("Host Namespaces")
    # Privileged Containers: "Privileged Pods disable most security
    # mechanisms and must be disallowed": privileged false or undefined.
    if any(csc(c).get("privileged") for _, c in ctrs):
        bad.add("Privileged Containers")
    # Capabilities (baseline): add only from the default set.
    for _, c in ctrs:
        if set((csc(c).get("capabilities") or {}).get("add") or []) - BASELINE_CAPS:
            bad.add("Capabilities")
    # HostPath Volumes: "HostPath volumes must be forbidden."
    if any("hostPath" in v for v in spec.get("volumes") or []):
        bad.add("HostPath Volumes")
    # Host Ports: "HostPorts should be disallowed entirely (recommended) or
    # restricted to a known list": undefined or 0 (the entire-ban variant).
    if any(p.get("hostPort") for _, c in ctrs for p in c.get("ports") or []):
        bad.add("Host Ports")
    # AppArmor: "On supported hosts, the runtime/default AppArmor profile is
    # applied by default. The baseline policy should prevent overriding or
    # disabling the default AppArmor profile": the annotation undefined,
    # runtime/default or localhost/*.
    for k, v in (meta.get("annotations") or {}).items():
        if k.startswith(APPARMOR_PREFIX) and v != "runtime/default" \
                and not v.startswith("localhost/"):
            bad.add("AppArmor")
    # SELinux: type from the list above; user and role undefined or "".
    for opts in [psc.get("seLinuxOptions")] + [csc(c).get("seLinuxOptions") for _, c in ctrs]:
        if opts and (opts.get("type", "") not in SELINUX_TYPES
                     or opts.get("user") or opts.get("role")):
            bad.add("SELinux")
    # /proc Mount Type: "The default /proc masks are set up to reduce attack
    # surface, and should be required": procMount undefined or Default.
    if any(csc(c).get("procMount", "Default") != "Default" for _, c in ctrs):
        bad.add("/proc Mount Type")
    # Seccomp (baseline): "Seccomp profile must not be explicitly set to
    # Unconfined."
    profiles = [psc.get("seccompProfile")] + [csc(c).get("seccompProfile") for _, c in ctrs]
    if any(p and p.get("type") == "Unconfined" for p in profiles):
        bad.add("Seccomp")
    # Sysctls: only the safe subset.
    if any(s.get("name") not in SAFE_SYSCTLS for s in psc.get("sysctls") or []):
        bad.add("Sysctls")
    if level == BASELINE:
        return bad

    # --- restricted -------------------------------------------------------
    # Volume Types: every volume is one of the allowed kinds.
    for v in spec.get("volumes") or []:
        if not (set(v) - {"name"}) <= VOLUME_TYPES:
            bad.add("Volume Types")
    # Privilege Escalation (v1.8+): "Privilege escalation (such as via setuid
    # or setgid file mode) should not be allowed": allowPrivilegeEscalation
    # false, on every container.
    if any(csc(c).get("allowPrivilegeEscalation") is not False for _, c in ctrs):
        bad.add("Privilege Escalation")
    # Running as Non-root: "Containers must be required to run as non-root
    # users": runAsNonRoot true; "the container fields may be undefined/null
    # if the pod-level spec.securityContext.runAsNonRoot is set to true".
    pod_nonroot = psc.get("runAsNonRoot") is True
    for _, c in ctrs:
        v = csc(c).get("runAsNonRoot")
        if v is False or (v is None and not pod_nonroot):
            bad.add("Running as Non-root")
    if psc.get("runAsNonRoot") is False:
        bad.add("Running as Non-root")
    # Running as Non-root user (v1.23+): "Containers must not set runAsUser
    # to 0": runAsUser any non-zero value or undefined.
    if psc.get("runAsUser") == 0 or any(csc(c).get("runAsUser") == 0 for _, c in ctrs):
        bad.add("Running as Non-root user")
    # Seccomp (v1.19+): "Seccomp profile must be explicitly set to one of the
    # allowed values. Both the Unconfined profile and the absence of a
    # profile are prohibited": RuntimeDefault or Localhost; "the container
    # fields may be undefined/null if the pod-level field is set
    # appropriately".
    allowed = ("RuntimeDefault", "Localhost")
    pod_ok = (psc.get("seccompProfile") or {}).get("type") in allowed
    for _, c in ctrs:
        p = csc(c).get("seccompProfile")
        if (p is None and not pod_ok) or (p is not None and p.get("type") not in allowed):
            bad.add("Seccomp")
    if psc.get("seccompProfile") and not pod_ok:
        bad.add("Seccomp")
    # Capabilities (v1.22+): "Containers must drop ALL capabilities, and are
    # only permitted to add back the NET_BIND_SERVICE capability."
    for _, c in ctrs:
        caps = csc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or \
                set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            bad.add("Capabilities")
    return bad


def level_of(namespace):
    """The level a Namespace object enforces (no label: privileged, the
    admission controller's default unless the cluster configures another)."""
    labels = namespace["metadata"].get("labels") or {}
    return labels.get("pod-security.kubernetes.io/enforce", "privileged")


def admits(level, meta, spec):
    """Whether a namespace enforcing `level` admits the pod."""
    return level == "privileged" or not violations(meta, spec, level)
