"""thaw's main job on loopback: the stack of test/demo.sh.

    test/with-emulator.sh python3 test/demo.py BUILD [JOBS]

Starts two real docker-registry instances, one as the upstream (it plays
Docker Hub and ghcr.io, holding images of the OSCAR services: imagemagick is
the reference experiment's image, 33 MB running ImageMagick's convert, built
by bench/experiment_image.py and kept by content in THAW_IMAGE_CACHE; the
others are small synthetic ones, alpine a multi-platform index) and one as
the cache registry, which takes only thaw-controller's tokens as in the
default install; thaw-webhook behind the emulator's admission chain; and
thaw-controller, which warms the cache from the upstream and serves the
cache's pull tokens. Then it plays an
OSCAR-like workload with thaw-showcase: job pods created with generateName
in oscar-svc.

- The imagemagick service exists before the first upload, as a PodTemplate
  in oscar-svc: the controller pre-warms it, so its first job starts warm.
- The other images are cold at first: thaw-webhook records a CachedImage,
  thaw-controller copies the image byte for byte, and later pods are
  pointed at the cache (localhost:7439/...).

At the end: an unauthenticated push into the cache, refused (401); then the
number a user came for (test/demo_pull.py, as root): the
imagemagick image pulled by a real containerd, cold, once from the upstream
made to look remote (40 ms per request, 100 Mbit/s), once through thaw's
node-local endpoint and once from the upstream on loopback (the floor), with
the times; then the job runs in it once.

Meanwhile the emulator drops every watch each second and compacts its
history (restarting its watch caches) every 3 s. Each program's log goes to a file under BUILD/demo-logs/
(kept after the run, replaced by the next), so the screen shows only the
workload; the paths are printed at the start."""

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "kubeemu"), HERE,
                os.path.join(os.path.dirname(HERE), "bench")]

import demo_pull  # noqa: E402
import experiment_image  # noqa: E402
import images  # noqa: E402
import registry  # noqa: E402
import stack  # noqa: E402
import token_server  # noqa: E402
import webhook_stub  # noqa: E402

NS = "oscar-svc"
# The repositories thaw-showcase --upstream uses, with a distinct image each.
SERVICES = ["grycap/imagemagick:latest", "grycap/oscar-theano-plants:latest",
            "rclone/rclone:latest", "library/alpine:3.19"]
PREWARM_S = 60


def push_services(up, tmp):
    """Pushes the services' images; returns the imagemagick image's info
    (bench/experiment_image.py: the study's image, runnable)."""
    imgs = images.Images(os.path.join(tmp, "layouts"))
    t0 = time.monotonic()
    magick = experiment_image.build(os.path.join(tmp, "imagemagick"), cache=imgs.cache)
    print("built %s, the reference experiment's image (%.1f MB in %d layers, ImageMagick's"
          " convert), in %.1f s" % (SERVICES[0], sum(magick["layers"]) / 1e6,
                                   len(magick["layers"]), time.monotonic() - t0), flush=True)
    experiment_image.push(magick, "%s/%s" % (up, SERVICES[0]), tmp)
    for i, path in enumerate(SERVICES[1:], 1):
        if path.startswith("library/alpine"):  # a multi-platform index, as alpine's is
            lo = imgs.multiarch()
        else:
            lo = imgs._layout(path.split(":")[0].replace("/", "-"))
            layer = lo.layer({"service": path.encode() + b"\n",
                              "etc/os-release": b"ID=thaw-demo\n"})
            lo.tag(lo.image([layer], "amd64", path))
        imgs.push(lo, "%s/%s" % (up, path))
    return magick


def chaos(stop):
    url = os.environ["THAW_EMU_URL"] + "/_emulator/"
    ctx = ssl.create_default_context(cafile=os.environ["THAW_EMU_CA"])
    i = 0
    while not stop.wait(1.0):
        i += 1
        for op in ["drop-watches"] + (["compact"] if i % 3 == 0 else []):
            body = b'{"restartWatchCache":true}' if op == "compact" else b"{}"
            req = urllib.request.Request(url + op, data=body, method="POST")
            urllib.request.urlopen(req, context=ctx, timeout=5).read()


def tail(path, n=20):
    with open(path, "rb") as f:
        return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: demo.py BUILD_DIR [JOBS]")
    build = os.path.abspath(sys.argv[1])
    jobs = sys.argv[2] if len(sys.argv) > 2 else "30"
    tmp = tempfile.mkdtemp(prefix="thaw-demo.")
    logs = os.path.join(build, "demo-logs")
    shutil.rmtree(logs, ignore_errors=True)
    os.makedirs(logs)
    api = stack.Api()
    certs = webhook_stub.make_certs(tmp)
    # As the default install: the cache takes only thaw-controller's tokens
    # (its realm is the controller's token endpoint, here on loopback).
    key, cert = token_server.make_key(tmp)
    tport = registry.free_port()
    cache = registry.Registry(token={
        "realm": "http://127.0.0.1:%d/token" % tport, "service": "thaw-registry",
        "issuer": "thaw-controller", "rootcertbundle": cert})
    upstream = registry.Registry()
    up = upstream.url.split("//", 1)[1]
    hook = stack.Webhook(os.path.join(build, "webhook", "thaw-webhook"), certs, cache.url, logs)
    ctl = stack.Controller(os.path.join(build, "controller", "thaw-controller"), cache.url, logs,
                           extra=["--insecure-registries", up, "--prewarm-namespaces", NS,
                                  "--leader-elect=false", "--token-key-file", key,
                                  "--token-cert-file", cert,
                                  "--token-bind-address", "127.0.0.1:%d" % tport])
    stop = threading.Event()
    threads = []
    rc = 1
    try:
        magick_info = push_services(up, tmp)
        for ns in (NS, stack.SYSTEM_NS):
            api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                want=(201, 409))
        hook.start()
        api.ok("POST", stack.MWC_PATH, stack.webhook_configuration(hook.url, certs["ca_bundle"]),
               want=(201,))
        ctl.start()
        print("thaw-webhook on %s, thaw-controller metrics on %s" % (hook.url, ctl.metrics_url))
        print("upstream registry %s, cache registry %s (token auth: only thaw-controller"
              " writes)" % (upstream.url, cache.url))
        showcase_log = os.path.join(logs, "thaw-showcase.log")
        print("logs: %s, %s, %s\n  (the emulator drops every watch each second: the warnings"
              " about ended watches in them are expected)" % (hook.log_path, ctl.log_path,
                                                              showcase_log), flush=True)
        # An OSCAR service is a PodTemplate: warmed before its first job.
        magick = "%s/%s" % (up, SERVICES[0])
        api.ok("POST", "/api/v1/namespaces/%s/podtemplates" % NS, {
            "apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "imagemagick"},
            "template": {"spec": {"containers": [{"name": "oscar-container", "image": magick}]}}},
            want=(201, 409))
        ci = stack.wait_ci_ready(api, magick, PREWARM_S, poll=0.2)
        if ci is None:
            print("pre-warm of %s did not finish in %d s; log:\n%s"
                  % (magick, PREWARM_S, ctl.log_tail()), flush=True)
            return 1
        print("pre-warmed %s: %s, %d bytes\n" % (magick, ci["status"]["digest"],
                                               ci["status"]["sizeBytes"]), flush=True)
        threads = [threading.Thread(target=chaos, args=(stop,), daemon=True)]
        for t in threads:
            t.start()
        with open(showcase_log, "ab") as err:
            rc = subprocess.call([os.path.join(build, "test", "thaw-showcase"),
                                  "--kubeconfig", os.environ["KUBECONFIG"], "--jobs", jobs,
                                  "--upstream", up], stderr=err)
        if rc != 0:
            print("thaw-showcase exited %d; %s ends:\n%s" % (rc, showcase_log,
                                                            tail(showcase_log)), flush=True)
        print("\nCachedImages:", flush=True)
        # Every service ran jobs: each image's use reaches its status
        # (lastUsedAt) within a tick or two.
        deadline = time.time() + 10
        while True:
            cis = api.ok("GET", stack.CI_PATH)["items"]
            if all((ci.get("status") or {}).get("lastUsedAt") for ci in cis) or \
                    time.time() > deadline:
                break
            time.sleep(0.2)
        print("  %-8s %-50s %-19s %7s %7s %s" % ("PHASE", "IMAGE", "DIGEST", "SIZE",
                                                 "USED-BY", "LAST-USED"))
        for ci in cis:
            st = ci.get("status") or {}
            used = st.get("usedBy") or {}
            print("  %-8s %-50s %-19s %7s %7s %s" % (
                st.get("phase", "Pending"), ci["spec"]["image"], st.get("digest", "")[:19],
                st.get("sizeBytes", ""), "%s+%st" % (used.get("count", 0), used.get("templates", 0)),
                st.get("lastUsedAt", "")))
        # The demo doubles as a smoke test: every service warmed, pods rewritten.
        ready = {ci["spec"]["image"] for ci in cis
                 if (ci.get("status") or {}).get("phase") == "Ready"}
        missing = [p for p in SERVICES if "%s/%s" % (up, p) not in ready]
        rewritten = stack.metric(hook.metrics(), "thaw_webhook_images_total",
                                 {"decision": "rewritten"}) or 0
        unused = [ci["spec"]["image"] for ci in cis
                  if not (ci.get("status") or {}).get("lastUsedAt")]
        if missing or rewritten == 0 or unused:
            print("demo: not warmed %s; images rewritten %d; no lastUsedAt %s"
                  % (missing, rewritten, unused))
            rc = rc or 1
        for who, text, prefixes in (
                ("thaw-webhook", hook.metrics(), ("thaw_webhook_images_total",
                                                  "thaw_webhook_records_total",
                                                  "thaw_cache_registry_up")),
                ("thaw-controller", ctl.metrics(), ("thaw_warm_total", "thaw_cachedimages",
                                                    "thaw_warm_bytes_total",
                                                    "thaw_cache_size_bytes",
                                                    "thaw_expired_total"))):
            print("\n%s metrics:" % who, flush=True)
            for line in text.splitlines():
                if line.startswith(prefixes):
                    print("  " + line)
        # Integrity: a push without thaw-controller's token is refused.
        req = urllib.request.Request(cache.url + "/v2/oscar/poison/blobs/uploads/",
                                     data=b"", method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            refused = 202
        except urllib.error.HTTPError as e:
            refused = e.code
        print("\nan unauthenticated push into the cache: HTTP %d (%s)"
              % (refused, "refused" if refused == 401 else "NOT refused"), flush=True)
        if refused != 401:
            rc = rc or 1
        # The number a user came for (test/demo_pull.py).
        rc = demo_pull.compare(api, upstream.url, cache.url, magick, magick_info, NS,
                               tmp) or rc
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        ctl.stop()
        hook.stop()
        cache.close()
        upstream.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
