"""The demo's last figure, the number a user came for: the imagemagick image
pulled by a real containerd, cold, once from the upstream registry made to
look remote and once through thaw, with both times.

    rc = demo_pull.compare(api, upstream_url, cache_url, image_ref, info, ns, workdir)

- "Remote": test/fault_proxy.py in front of the demo's upstream, adding
  40 ms to every request (a round trip to a registry far away) and
  throttling each response body to 100 Mbit/s. No TLS and no token dance,
  so a real remote is slower still.
- "Through thaw": the reference the API server stores for a new job pod
  (thaw-webhook rewrote it to localhost:7439/...), pulled through a
  node-local endpoint that has never served it: a pull-through
  docker-registry with manifests/node-local's config in front of the cache
  registry, mapped onto localhost:7439 with a containerd hosts.toml (as
  test/test_ctr_pull.py does).
- "Floor": the upstream itself on loopback, with no delay: what unpacking
  and a local registry cost, which no cache can beat.
Every pull is cold: containerd starts empty and `ctr image rm --sync`
drops the previous image's blobs and snapshots before the next pull. Then
the job runs once in a container of the image (the same digest), and its
output must be the input in grayscale. Needs root (containerd); otherwise
it says so and returns 0."""

import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "bench")]

import containerd  # noqa: E402
import experiment_image  # noqa: E402
import fault_proxy  # noqa: E402
from test_ctr_pull import ConfigRegistry, manifest_config, MANIFESTS, CACHE_HOST  # noqa: E402

RTT_S = 0.040
RATE = 100e6 / 8   # bytes/s per response: a 100 Mbit/s link


def stored_image(api, ns, image, tries=5):
    """Creates an OSCAR-like job pod of image (generateName, Always) and
    returns the image the API server stored, deleting the pod."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "imagemagick-job-", "namespace": ns},
           "spec": {"restartPolicy": "Never", "containers": [
               {"name": "oscar-container", "image": image, "imagePullPolicy": "Always"}]}}
    for _ in range(tries):  # a generateName collision is a 409 to retry
        st, doc, _ = api.request("POST", "/api/v1/namespaces/%s/pods" % ns, pod)
        if st == 201:
            api.request("DELETE", "/api/v1/namespaces/%s/pods/%s"
                        % (ns, doc["metadata"]["name"]))
            return doc["spec"]["containers"][0]["image"]
        if st != 409:
            raise RuntimeError("pod create: %d %s" % (st, doc))
        time.sleep(1)
    raise RuntimeError("pod create: %d generateName collisions" % tries)


def timed_pull(cd, ref, **kw):
    t0 = time.monotonic()
    got = cd.pull(ref, **kw)
    return time.monotonic() - t0, got


def compare(api, upstream_url, cache_url, image, info, ns, workdir):
    """Prints both pull times and their ratio; returns 0, or 1 when a pull
    or the job fails."""
    mb = sum(info["layers"]) / 1e6
    print("\nThe imagemagick image (%s, %.1f MB in %d layers) pulled by containerd, cold:"
          % (image.split("/", 1)[1], mb, len(info["layers"])), flush=True)
    if os.geteuid() != 0:
        print("  skipped: containerd needs root (run the demo as root for this figure)")
        return 0
    stack = []
    try:
        remote = fault_proxy.FaultProxy(upstream_url)
        stack.append(remote)
        remote.add(match="^/v2/", delay=RTT_S, rate=RATE, times=0)
        node_local = ConfigRegistry(manifest_config(
            os.path.join(MANIFESTS, "node-local", "configmap.yaml"), "thaw-node-local"),
            "node-local", remoteurl=cache_url)
        stack.append(node_local)
        hosts = os.path.join(workdir, "hosts.d")
        os.makedirs(os.path.join(hosts, CACHE_HOST), exist_ok=True)
        with open(os.path.join(hosts, CACHE_HOST, "hosts.toml"), "w") as f:
            f.write('server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve"]\n'
                    % (node_local.url, node_local.url))
        rewritten = stored_image(api, ns, image)
        if not rewritten.startswith(CACHE_HOST + "/"):
            print("  a new job pod kept %s: not rewritten to the cache" % rewritten)
            return 1
        cd = containerd.Containerd()
        stack.append(cd)
        far = remote.host + "/" + image.split("/", 1)[1]
        t_remote, got = timed_pull(cd, far)
        ok = got["digest"] == info["digest"]
        cd.remove(far)
        t_thaw, got = timed_pull(cd, rewritten, hosts_dir=hosts)
        ok = ok and got["digest"] == info["digest"]
        near = upstream_url.split("//", 1)[1] + "/" + image.split("/", 1)[1]
        cd.remove(rewritten)
        t_floor, got = timed_pull(cd, near)
        ok = ok and got["digest"] == info["digest"]
        print("  from the remote registry  %6.2f s   (the upstream behind %d ms per request"
              " and 100 Mbit/s per response)" % (t_remote, RTT_S * 1000))
        print("  through thaw              %6.2f s   (%s, via a cold node-local endpoint)"
              % (t_thaw, rewritten))
        print("  floor                     %6.2f s   (the upstream itself on loopback, no delay:"
              " no cache can beat it)" % t_floor)
        print("  thaw: %.1fx faster than the remote; every pull includes unpacking %.0f MB into"
              " containerd's %s snapshotter" % (t_remote / t_thaw,
                                                sum(info["layers_uncompressed"]) / 1e6,
                                                cd.snapshotter))
        if not ok:
            print("  a pulled digest is not the image's %s" % info["digest"])
            return 1
        out = os.path.join(workdir, "out")
        os.makedirs(out, exist_ok=True)
        t0 = time.monotonic()
        r = experiment_image.run(cd, near, os.path.dirname(info["input"]), out,
                                 "demo-job-%d" % os.getpid())
        problem = experiment_image.check_gray(info["input"], os.path.join(out, "output.png")) \
            if r.returncode == 0 else "exit %d: %s" % (r.returncode, r.stderr.strip())
        print("  the job (%s) ran in %.2f s: %s"
              % (" ".join(info["argv"][1:]), time.monotonic() - t0,
                 "output.png is the input in grayscale" if problem is None else problem),
              flush=True)
        return 0 if problem is None else 1
    except RuntimeError as e:
        print("  failed: %s" % e, flush=True)
        return 1
    finally:
        for s in reversed(stack):
            s.close()
        shutil.rmtree(os.path.join(workdir, "out"), ignore_errors=True)
