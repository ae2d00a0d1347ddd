"""thaw's images run as manifests/ runs them, in a private containerd
(test/containerd.py), with `ctr run` on the host's network.

    pods = rendered()                          # `kubectl kustomize manifests`
    spec = container(pods, "thaw-webhook", "webhook")
    c = Container(cd, image_ref, config, spec, name="webhook",
                  volumes={"tls": tls_dir}, service_account=sa_dir,
                  overrides={"--bind-address": "127.0.0.1:9443"},
                  env={"KUBERNETES_SERVICE_HOST": "127.0.0.1", ...})
    c.start(); c.pid; c.status(); c.log(); c.close()

From the manifest's container it takes: the args (after the image's
ENTRYPOINT, as the kubelet does; $(VAR) expanded from env; a flag in
`overrides` replaced, and it must be in the manifest), the env (fieldRef
metadata.namespace is thaw-system), the volumeMounts (each volume a host
directory given in `volumes`, read-only as the mount says; the service
account token at its in-cluster path when automountServiceAccountToken),
and the securityContext, mapped onto ctr's flags:
readOnlyRootFilesystem -> --read-only, capabilities.drop [ALL] -> every
capability of containerd's default set dropped, seccompProfile
RuntimeDefault -> --seccomp, allowPrivilegeEscalation false -> ctr's
default NoNewPrivileges. ctr cannot set a user: runAsUser is the image's
USER at work, which status() lets a test check (Uid, CapBnd, NoNewPrivs,
Seccomp of the process). A setting it cannot map is an error, not ignored.

Containers are killed and deleted by close() (task SIGKILL, then
`ctr task rm`, `ctr container rm`); runc's state lives in the containerd's
temp dir (--runc-root) and each container's cgroup goes with it, so
nothing outlives them.
"""

import os
import re
import signal
import subprocess
import time

from test_manifests import find, kubectl_kustomize  # noqa: E402  (find: exactly one)

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFESTS = os.path.join(os.path.dirname(HERE), "manifests")
SYSTEM_NS = "thaw-system"
SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

# containerd 1.6's default capability set (oci.populateDefaultUnixSpec);
# ctr's --cap-drop takes names, not ALL.
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def rendered(path=MANIFESTS):
    """Every object of `kubectl kustomize path`."""
    return kubectl_kustomize(path)


def container(objs, deployment, name):
    """(pod spec, container) of a Deployment's container."""
    pod = find(objs, "Deployment", deployment)["spec"]["template"]["spec"]
    for c in pod["containers"]:
        if c["name"] == name:
            return pod, c
    raise LookupError("no container %s in Deployment %s" % (name, deployment))


def security_flags(pod, c):
    """ctr run flags for the pod's and container's securityContext."""
    sc = dict(pod.get("securityContext") or {})
    sc.update(c.get("securityContext") or {})
    flags = []
    known = {"runAsNonRoot", "runAsUser", "runAsGroup", "fsGroup", "fsGroupChangePolicy",
             "readOnlyRootFilesystem", "capabilities", "seccompProfile",
             "allowPrivilegeEscalation"}
    if set(sc) - known:
        raise ValueError("securityContext settings not mapped: %s" % sorted(set(sc) - known))
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    caps = sc.get("capabilities") or {}
    if caps.get("add") or (caps.get("drop") not in (None, ["ALL"])):
        raise ValueError("capabilities not mapped: %s" % caps)
    if caps.get("drop") == ["ALL"]:
        for cap in DEFAULT_CAPS:
            flags += ["--cap-drop", cap]
    seccomp = (sc.get("seccompProfile") or {}).get("type")
    if seccomp == "RuntimeDefault":
        flags.append("--seccomp")
    elif seccomp not in (None, "Unconfined"):
        raise ValueError("seccompProfile %s not mapped" % seccomp)
    if sc.get("allowPrivilegeEscalation", True):
        flags.append("--allow-new-privs")
    return flags


def expand(value, env):
    """Kubernetes' $(VAR) expansion in args."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: env.get(m.group(1), m.group(0)), value)


def pod_env(c):
    """The container's env as the kubelet sets it in namespace thaw-system."""
    env = {}
    for e in c.get("env") or []:
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
        elif (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") \
                == "metadata.namespace":
            env[e["name"]] = SYSTEM_NS
        else:
            raise ValueError("env %s not mapped" % e["name"])
    return env


def pod_args(c, env, overrides):
    """The manifest's args, $(VAR) expanded; each flag in overrides (which the
    manifest must pass) gets the given value."""
    args, seen = [], set()
    for a in c.get("args") or []:
        a = expand(a, env)
        flag = a.split("=", 1)[0]
        if flag in overrides:
            seen.add(flag)
            a = "%s=%s" % (flag, overrides[flag])
        args.append(a)
    missing = set(overrides) - seen
    if missing:
        raise ValueError("flags not in the manifest's args: %s" % sorted(missing))
    return args


LIVE = []  # started and not yet closed: close_all() on any exit


def close_all():
    for c in list(LIVE):
        c.close()


class Container:
    """One container of a manifest, run detached by `ctr run` (see the
    module docstring)."""

    def __init__(self, cd, ref, config, pod_container, name, volumes=None,
                 service_account=None, overrides=None, env=None, extra_mounts=()):
        pod, c = pod_container
        self.cd, self.name = cd, "%s-%d" % (name, os.getpid())
        self.log_path = os.path.join(cd.dir, self.name + ".log")
        self.pid_file = os.path.join(cd.dir, self.name + ".pid")
        self.env = pod_env(c)
        self.env.update(env or {})
        self.args = pod_args(c, self.env, overrides or {})
        self.argv = list(config["config"]["Entrypoint"]) + self.args
        mounts = []
        for m in c.get("volumeMounts") or []:
            if m["name"] not in (volumes or {}):
                raise ValueError("no host directory for volume %s" % m["name"])
            mounts.append((volumes[m["name"]], m["mountPath"], m.get("readOnly", False)))
        if pod.get("automountServiceAccountToken"):
            if not service_account:
                raise ValueError("the pod mounts its service account token: give one")
            mounts.append((service_account, SA_PATH, True))
        mounts += list(extra_mounts)
        self.flags = ["--detach", "--net-host"] + _private(cd) + [
            "--log-uri", "file://" + self.log_path, "--pid-file", self.pid_file]
        self.flags += security_flags(pod, c)
        for src, dst, ro in mounts:
            self.flags += ["--mount", "type=bind,src=%s,dst=%s,options=rbind:%s"
                           % (src, dst, "ro" if ro else "rw")]
        for k, v in sorted(self.env.items()):
            self.flags += ["--env", "%s=%s" % (k, v)]
        self.ref = ref
        self.started = False

    def start(self):
        self.started = True   # close() undoes a half-made container too
        LIVE.append(self)
        self.cd.ctr(*(["run"] + self.flags + [self.ref, self.name] + self.argv))
        return self

    @property
    def pid(self):
        with open(self.pid_file) as f:
            return int(f.read().strip())

    def running(self):
        r = self.cd.ctr("task", "ls", check=False)
        for line in r.stdout.splitlines()[1:]:
            f = line.split()
            if f and f[0] == self.name:
                return f[-1] == "RUNNING"
        return False

    def status(self):
        """/proc/PID/status of the container's process as {field: value}."""
        out = {}
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
        return out

    def log(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def kill_now(self):
        """SIGKILL to the container's process by PID, without containerd (a
        signal handler's first step: containerd may be going down too)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except (OSError, ValueError):
            pass

    def close(self):
        if not self.started:
            return
        self.cd.ctr("task", "kill", "--signal", "SIGKILL", self.name, check=False, timeout=20)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.cd.ctr("task", "rm", self.name, check=False, timeout=20).returncode == 0:
                break
            time.sleep(0.1)
        self.cd.ctr("container", "rm", self.name, check=False, timeout=20)
        self.started = False
        LIVE.remove(self)


def _private(cd):
    """ctr run flags that keep a container's traces inside the containerd's
    temp dir: runc's state there, and cgroup "" (runc's own cgroup per
    container, removed with it, instead of one per namespace left behind)."""
    return ["--snapshotter", cd.snapshotter, "--runc-root", os.path.join(cd.dir, "runc"),
            "--cgroup", ""]


def run_once(cd, ref, name, argv, timeout=30):
    """`ctr run --rm` of argv in the image, read-only, no network, no
    capabilities: (exit status, stdout, stderr)."""
    cmd = ["run", "--rm", "--read-only"] + _private(cd)
    for cap in DEFAULT_CAPS:
        cmd += ["--cap-drop", cap]
    r = cd.ctr(*(cmd + [ref, "%s-%d" % (name, os.getpid())] + list(argv)), check=False,
               timeout=timeout)
    return r.returncode, r.stdout, r.stderr
