"""The reference experiment's network (issue 11): a remote registry that
plays Docker Hub, N nodes with their own containerd, and the registries of
each scenario. Used by bench/experiment_run.py; needs root (netns, tc).

    net = Network(nodes=3, rate="100mbit", rtt_s=0.040)   # everything up
    net.remote.push(layout_dir, "grycap/imagemagick", "latest")
    net.remote.ref("grycap/imagemagick:latest")   # CLUSTER_IP:PORT/grycap/...
    net.remote.counters()                          # what it served
    net.close()                                    # idempotent; also atexit

Layout (X: a /24 free on this host; names end in a random suffix so that
parallel runs never clash):
- the "cluster network": a bridge in the root namespace, 10.202.X.1/24.
  What the cluster runs lives there: the API-server emulator (loopback),
  thaw-webhook, thaw-controller, the cache registry and the mirror, bound
  to 10.202.X.1 (Network.cluster_ip).
- the remote, network namespace "...-remote": docker-registry with token
  auth (test/token_server.py, anonymous pull of grycap/*, like Docker Hub)
  and the token server, reached over a veth pair (10.203.X.2) whose
  remote-side egress is shaped with `tc tbf rate RATE burst 64kb latency
  50ms`. Clients never reach it directly: two delay proxies
  (test/fault_proxy.py, rule {"delay": RTT} on every request) on the
  cluster IP front the registry and the token realm, so every request costs
  one round trip. The proxies count what the remote serves.
- node i, network namespace "...-nI": a veth on the bridge (10.202.X.(10+i)),
  its own containerd (test/containerd.py, containerd and ctr both inside
  the namespace: ctr fetches), and on the node's own loopback: the thaw
  node-local endpoint on 127.0.0.1:7439 (config.yml of
  manifests/node-local/configmap.yaml, only storage and proxy.remoteurl
  rewritten) and the floor registry (127.0.0.1:5000, the image, no auth).

Every process is a child stopped by PID (and PR_SET_PDEATHSIG); every
namespace, veth, bridge and qdisc is removed by close(), which runs on every
exit path (try/finally in the caller, atexit, SIGTERM/SIGINT/SIGHUP). Their
names all carry the suffix (random, or given): namespaces thaw-exp-SFX-*,
links txb-SFX, txr-SFX-r, txI-SFX-r, so a wrapper can sweep them after a
SIGKILL (bench/oscar-experiment.sh does)."""

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TEST = os.path.join(REPO, "test")
sys.path[:0] = [TEST, os.path.join(TEST, "kubeemu")]

import containerd  # noqa: E402
import fault_proxy  # noqa: E402
import registry  # noqa: E402

NODE_LOCAL_YAML = os.path.join(REPO, "manifests", "node-local", "configmap.yaml")
NODE_LOCAL_PORT = 7439
FLOOR_PORT = 5000
REMOTE_PORT = 5000
PUSHER = ("pusher", secrets.token_hex(8))   # only the set-up pushes; never logged


def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s" % (" ".join(cmd), (r.stderr or r.stdout).strip()))
    return r


def in_ns(ns):
    return ["ip", "netns", "exec", ns] if ns else []


class Proc:
    """A server child (optionally inside a netns: `ip netns exec` execs, so
    the PID is the server's), its output in a log file; stop() by PID."""

    def __init__(self, name, argv, logdir, ns=None):
        self.name = name
        self.log_path = os.path.join(logdir, name + ".log")
        with open(self.log_path, "ab") as lg:
            self.proc = subprocess.Popen(in_ns(ns) + argv, stdout=lg, stderr=subprocess.STDOUT,
                                         preexec_fn=registry.die_with_parent)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            registry.stop_proc(self.proc, grace=5)
            self.proc = None


def http_code(url, ns=None, timeout=2):
    """HTTP status of GET url as seen from namespace ns (curl), or 0."""
    r = subprocess.run(in_ns(ns) + ["curl", "-s", "-o", "/dev/null", "-m", str(timeout),
                                    "-w", "%{http_code}", url], capture_output=True, text=True)
    try:
        return int(r.stdout.strip() or 0)
    except ValueError:
        return 0


def wait_http(proc, url, ns=None, ok=(200, 401), timeout=20):
    deadline = time.time() + timeout
    while http_code(url, ns) not in ok:
        if not proc.alive():
            raise RuntimeError("%s exited; log:\n%s" % (proc.name, proc.log_tail()))
        if time.time() > deadline:
            raise RuntimeError("%s: %s not answering after %d s; log:\n%s"
                               % (proc.name, url, timeout, proc.log_tail()))
        time.sleep(0.05)


def free_port(host):
    import socket
    s = socket.socket()
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


class DistRegistry:
    """docker-registry serving `config` (a dict, written as config.yml) with
    filesystem storage in its own dir, inside namespace ns or not."""

    def __init__(self, name, logdir, addr, ns=None, extra=None, workdir=None):
        self.name, self.ns, self.addr = name, ns, addr
        self.dir = tempfile.mkdtemp(prefix="thaw-exp-%s." % name, dir=workdir)
        self.url = "http://" + addr
        cfg = {"version": 0.1,
               "log": {"level": "warn", "accesslog": {"disabled": True}},
               "storage": {"filesystem": {"rootdirectory": os.path.join(self.dir, "storage")},
                           "delete": {"enabled": True}},
               "http": {"addr": addr}}
        for k, v in (extra or {}).items():
            cfg[k] = v
        self.serve(cfg, logdir)

    def serve(self, cfg, logdir):
        """Writes cfg as config.yml and starts the registry; closes on failure."""
        self.write(cfg)
        self.proc = Proc(self.name, [registry.BINARY, "serve", self.config], logdir, self.ns)
        try:
            wait_http(self.proc, self.url + "/v2/", self.ns)
        except BaseException:
            self.close()
            raise

    def write(self, cfg):
        self.config = os.path.join(self.dir, "config.yml")
        with open(self.config, "w") as f:
            yaml.safe_dump(cfg, f)

    def close(self):
        self.proc.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class NodeLocal(DistRegistry):
    """thaw's node-local endpoint as manifests/node-local ships it: its
    config.yml, with only the storage path and proxy.remoteurl (the cache
    registry's address in this cluster) rewritten; 127.0.0.1:7439 kept."""

    def __init__(self, name, logdir, ns, cache_url, workdir=None):
        with open(NODE_LOCAL_YAML) as f:
            cm = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "ConfigMap")
        cfg = yaml.safe_load(cm["data"]["config.yml"])
        self.shipped = cfg
        self.name, self.ns = name, ns
        self.dir = tempfile.mkdtemp(prefix="thaw-exp-%s." % name, dir=workdir)
        self.addr = cfg["http"]["addr"]
        self.url = "http://" + self.addr
        cfg["storage"]["filesystem"]["rootdirectory"] = os.path.join(self.dir, "storage")
        cfg["proxy"]["remoteurl"] = cache_url
        self.serve(cfg, logdir)


class Remote:
    """The remote registry ("Docker Hub") in its own namespace; see the
    module docstring. ref(path) is how clients name its images."""

    REPOS = "grycap/*"

    def __init__(self, net, rate, rtt_s):
        self.net = net
        self.ns = net.name + "-remote"
        self.dir = tempfile.mkdtemp(prefix="thaw-exp-remote.", dir=net.workdir)
        self.procs = []
        net.add_ns(self.ns)
        vr, vn = "txr-%s-r" % net.suffix, "txr-%s-n" % net.suffix
        net.add_link(vr)
        sh("ip", "link", "add", vr, "type", "veth", "peer", "name", vn)
        sh("ip", "link", "set", vn, "netns", self.ns)
        self.gw_ip, self.ip = "10.203.%d.1" % net.x, "10.203.%d.2" % net.x
        sh("ip", "addr", "add", self.gw_ip + "/30", "dev", vr)
        sh("ip", "link", "set", vr, "up")
        for cmd in (["ip", "addr", "add", self.ip + "/30", "dev", vn],
                    ["ip", "link", "set", vn, "up"], ["ip", "link", "set", "lo", "up"]):
            sh(*(in_ns(self.ns) + cmd))
        self.veth_ns = vn
        # token server inside the remote, its realm behind a delay proxy
        conf = os.path.join(self.dir, "token.json")
        with open(conf, "w") as f:
            json.dump({"issuer": "thaw-exp-hub", "service": "thaw-exp-hub", "expires_in": 300,
                       "users": {PUSHER[0]: PUSHER[1]},
                       "acl": [{"account": "*", "repo": self.REPOS, "actions": ["pull"]},
                               {"account": PUSHER[0], "repo": "*",
                                "actions": ["pull", "push"]}]}, f)
        ready = os.path.join(self.dir, "token.ready")
        tok = Proc("remote-token", [sys.executable, os.path.join(TEST, "token_server.py"),
                                    "--config", conf, "--dir", self.dir, "--host", self.ip,
                                    "--ready-file", ready], net.logdir, self.ns)
        self.procs.append(tok)
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if not tok.alive() or time.time() > deadline:
                raise RuntimeError("token server did not start; log:\n" + tok.log_tail())
            time.sleep(0.05)
        with open(ready) as f:
            tport = int(f.read())
        self.token_proxy = self._proxy("remote-token-proxy", "http://%s:%d" % (self.ip, tport),
                                       rtt_s)
        self.realm = "http://%s/token" % self.token_proxy.host
        self.registry = DistRegistry(
            "remote-registry", net.logdir, "%s:%d" % (self.ip, REMOTE_PORT), self.ns,
            extra={"auth": {"token": {"realm": self.realm, "service": "thaw-exp-hub",
                                      "issuer": "thaw-exp-hub",
                                      "rootcertbundle": os.path.join(self.dir, "cert.pem")}}},
            workdir=net.workdir)
        self.proxy = self._proxy("remote-proxy", self.registry.url, rtt_s)
        self.host = self.proxy.host          # what clients call the remote
        self.rate = rate
        self.shaped = False

    def _proxy(self, name, upstream, rtt_s):
        """A fault_proxy on the cluster IP delaying every request by rtt_s."""
        ready = os.path.join(self.dir, name + ".ready")
        p = Proc(name, [sys.executable, fault_proxy.__file__, "--upstream", upstream,
                        "--listen", self.net.cluster_ip, "--ready-file", ready,
                        "--rules", json.dumps([{"match": "", "delay": rtt_s, "times": 0}])],
                 self.net.logdir)
        self.procs.append(p)
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if not p.alive() or time.time() > deadline:
                raise RuntimeError("%s did not start; log:\n%s" % (name, p.log_tail()))
            time.sleep(0.05)
        with open(ready) as f:
            p.port = int(f.read())
        p.host = "%s:%d" % (self.net.cluster_ip, p.port)
        p.url = "http://" + p.host
        return p

    def shape(self):
        """tbf on the remote side's egress: what it serves crosses RATE."""
        sh(*(in_ns(self.ns) + ["tc", "qdisc", "add", "dev", self.veth_ns, "root", "tbf",
                               "rate", self.rate, "burst", "64kb", "latency", "50ms"]))
        self.shaped = True

    def push(self, layout, repo, tag, policy):
        """skopeo copy of an OCI layout's tag into the remote (as the pusher,
        straight to the registry, not through the delay)."""
        dest = "docker://%s:%d/%s:%s" % (self.ip, REMOTE_PORT, repo, tag)
        r = subprocess.run(["skopeo", "--policy", policy, "copy", "--preserve-digests",
                            "--dest-tls-verify=false", "--dest-creds", "%s:%s" % PUSHER,
                            "oci:%s:%s" % (layout, tag), dest], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("push to the remote failed: %s" % r.stderr.strip())

    def ref(self, path):
        return "%s/%s" % (self.host, path)

    def _stats(self, p):
        import urllib.request
        with urllib.request.urlopen(p.url + "/_fault", timeout=10) as r:
            return json.load(r)

    def reset_counters(self):
        import urllib.request
        for p in (self.proxy, self.token_proxy):
            req = urllib.request.Request(p.url + "/_fault?counters", method="DELETE")
            urllib.request.urlopen(req, timeout=10).read()

    def counters(self):
        """What the remote served since reset_counters(): body bytes of the
        registry, GETs of manifests and blobs, token GETs, all requests."""
        reg, tok = self._stats(self.proxy), self._stats(self.token_proxy)

        def gets(kind):
            # answered 2xx: a 401 token challenge is not a pull (Docker Hub
            # counts manifest GETs that serve a manifest)
            return sum(n for k, n in reg["answers"].items()
                       if k.startswith("GET ") and "/%s/" % kind in k
                       and k.rsplit(" ", 1)[1].startswith("2"))
        return {"bytes": reg["bytes"], "manifest_gets": gets("manifests"),
                "blob_gets": gets("blobs"),
                "challenged": sum(n for k, n in reg["answers"].items() if k.endswith(" 401")),
                "token_gets": sum(n for k, n in tok["methods"].items()
                                  if k.startswith("GET /token")),
                "requests": reg["requests"] + tok["requests"]}

    def requests(self):
        """{"METHOD path": n} of what the remote's registry was asked."""
        return dict(self._stats(self.proxy)["methods"])

    def close(self):
        for p in reversed(self.procs):
            p.stop()
        if getattr(self, "registry", None):
            self.registry.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Node:
    """Node i: its namespace on the bridge, its containerd, and what runs
    on its own loopback (node-local endpoint, floor registry)."""

    def __init__(self, net, i):
        self.net, self.i = net, i
        self.name = "node-%d" % i
        self.ns = "%s-n%d" % (net.name, i)
        net.add_ns(self.ns)
        vr, vn = "tx%d-%s-r" % (i, net.suffix), "tx%d-%s-n" % (i, net.suffix)
        net.add_link(vr)
        sh("ip", "link", "add", vr, "type", "veth", "peer", "name", vn)
        sh("ip", "link", "set", vn, "netns", self.ns)
        sh("ip", "link", "set", vr, "master", net.bridge)
        sh("ip", "link", "set", vr, "up")
        self.ip = "10.202.%d.%d" % (net.x, 10 + i)
        for cmd in (["ip", "addr", "add", self.ip + "/24", "dev", vn],
                    ["ip", "link", "set", vn, "up"], ["ip", "link", "set", "lo", "up"]):
            sh(*(in_ns(self.ns) + cmd))
        self.cd = None
        self.node_local = None
        self.floor = None

    def fresh_containerd(self):
        """A new containerd with empty root and state: a cold node."""
        if self.cd:
            self.cd.close()
            self.cd = None
        self.cd = containerd.Containerd(netns=self.ns)
        return self.cd

    def start_node_local(self, cache_url):
        self.stop_node_local()
        self.node_local = NodeLocal("node-local-%d" % self.i, self.net.logdir, self.ns,
                                    cache_url, self.net.workdir)
        return self.node_local

    def stop_node_local(self):
        if self.node_local:
            self.node_local.close()
            self.node_local = None

    def start_floor(self, layout, repo, tag, policy):
        """The floor: a plain registry on this node's loopback holding the image."""
        self.floor = DistRegistry("floor-%d" % self.i, self.net.logdir,
                                  "127.0.0.1:%d" % FLOOR_PORT, self.ns, workdir=self.net.workdir)
        r = subprocess.run(in_ns(self.ns) + [
            "skopeo", "--policy", policy, "copy", "--preserve-digests",
            "--dest-tls-verify=false", "oci:%s:%s" % (layout, tag),
            "docker://127.0.0.1:%d/%s:%s" % (FLOOR_PORT, repo, tag)],
            capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("push to %s's floor failed: %s" % (self.name, r.stderr.strip()))
        return "127.0.0.1:%d/%s:%s" % (FLOOR_PORT, repo, tag)

    def close(self):
        for what in ("floor", "node_local", "cd"):
            thing = getattr(self, what)
            if thing:
                try:
                    thing.close()
                except Exception as e:  # keep closing the rest
                    sys.stderr.write("cleanup %s %s: %s\n" % (self.name, what, e))
                setattr(self, what, None)


class Network:
    """The bridge, the remote and the nodes; see the module docstring."""

    def __init__(self, nodes=3, rate="100mbit", rtt_s=0.040, workdir=None, logdir=None,
                 suffix=None):
        self.suffix = suffix or secrets.token_hex(3)[:5]
        if not (len(self.suffix) <= 5 and self.suffix.isalnum()):
            raise ValueError("suffix: up to 5 letters or digits (interface names <= 15)")
        self.name = "thaw-exp-" + self.suffix
        self.workdir = workdir or tempfile.mkdtemp(prefix="thaw-exp.")
        os.makedirs(self.workdir, exist_ok=True)
        self.logdir = logdir or self.workdir
        os.makedirs(self.logdir, exist_ok=True)
        self.namespaces, self.links = [], []
        self.nodes, self.remote = [], None
        self.closed = False
        _live.append(self)
        try:
            used = sh("ip", "-o", "-4", "addr").stdout + sh("ip", "-o", "-4", "route").stdout
            self.x = next(i for i in list(range(os.getpid() % 200 + 20, 250)) + list(range(20, 250))
                          if "10.202.%d." % i not in used and "10.203.%d." % i not in used)
            self.cluster_ip = "10.202.%d.1" % self.x
            self.bridge = "txb-" + self.suffix
            self.add_link(self.bridge)
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", self.cluster_ip + "/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            self.remote = Remote(self, rate, rtt_s)
            self.nodes = [Node(self, i) for i in range(nodes)]
        except BaseException:
            self.close()
            raise

    def add_ns(self, ns):
        self.namespaces.append(ns)
        sh("ip", "netns", "add", ns)

    def add_link(self, link):
        self.links.append(link)

    def cluster_registry(self, name, extra=None):
        """A docker-registry on the cluster IP (cache registry, mirror)."""
        addr = "%s:%d" % (self.cluster_ip, free_port(self.cluster_ip))
        return DistRegistry(name, self.logdir, addr, None, extra, self.workdir)

    def close(self):
        """Stops everything by PID, deletes namespaces, veths (with their
        qdiscs) and the bridge. Safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        for n in self.nodes:
            n.close()
        if self.remote:
            try:
                self.remote.close()
            except Exception as e:
                sys.stderr.write("cleanup remote: %s\n" % e)
        for link in reversed(self.links):
            sh("ip", "link", "del", link, check=False)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        if self in _live:
            _live.remove(self)


_live = []


def _close_all():
    for n in list(_live):
        n.close()


def _on_signal(signum, _frame):
    # finally-blocks and atexit run on the way out
    sys.exit(128 + signum)


atexit.register(_close_all)


def install_signal_handlers():
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)
