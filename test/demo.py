"""thaw's main job on loopback: the stack of test/demo.sh.

    test/with-emulator.sh python3 test/demo.py BUILD [JOBS]

Starts a real docker-registry (the cache registry) and thaw-webhook, registers
the webhook's MutatingWebhookConfiguration in the API-server emulator, and
plays an OSCAR-like workload with thaw-showcase: job pods created with
generateName in oscar-svc, through the emulator's admission chain. The first
pods of each image are cold and thaw-webhook records a CachedImage for them;
once a CachedImage is Ready, later pods are pointed at the cache.

Until thaw-controller arrives (Step 3 of the roadmap), a stand-in here turns
each CachedImage Ready a moment after it appears, without copying anything:
it shows the webhook's side only. Meanwhile the emulator drops every watch
each second and compacts its history every 3 s."""

import hashlib
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "kubeemu"), HERE]

import registry  # noqa: E402
import stack  # noqa: E402
import webhook_stub  # noqa: E402

WARM_S = 1.5  # how long the stand-in pretends a warm takes


def stand_in_controller(api, stop):
    """Marks each CachedImage Ready WARM_S after it appears."""
    seen = {}
    while not stop.wait(0.3):
        for ci in api.ok("GET", stack.CI_PATH)["items"]:
            name = ci["metadata"]["name"]
            if (ci.get("status") or {}).get("phase") == "Ready":
                continue
            first = seen.setdefault(name, time.time())
            if time.time() - first < WARM_S:
                continue
            image = ci["spec"]["image"]
            digest = "sha256:" + hashlib.sha256(image.encode()).hexdigest()
            api.ok("PATCH", stack.CI_PATH + "/" + name + "/status",
                   {"status": {"phase": "Ready", "digest": digest}},
                   ctype="application/merge-patch+json")
            print("  [stand-in controller] %s is Ready" % image, flush=True)


def chaos(stop):
    url = os.environ["THAW_EMU_URL"] + "/_emulator/"
    ctx = ssl.create_default_context(cafile=os.environ["THAW_EMU_CA"])
    i = 0
    while not stop.wait(1.0):
        i += 1
        for op in ["drop-watches"] + (["compact"] if i % 3 == 0 else []):
            req = urllib.request.Request(url + op, data=b"{}", method="POST")
            urllib.request.urlopen(req, context=ctx, timeout=5).read()


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: demo.py BUILD_DIR [JOBS]")
    build = os.path.abspath(sys.argv[1])
    jobs = sys.argv[2] if len(sys.argv) > 2 else "30"
    tmp = tempfile.mkdtemp(prefix="thaw-demo.")
    api = stack.Api()
    certs = webhook_stub.make_certs(tmp)
    reg = registry.Registry()
    hook = stack.Webhook(os.path.join(build, "webhook", "thaw-webhook"), certs, reg.url, tmp)
    stop = threading.Event()
    threads = []
    rc = 1
    try:
        for ns in ("oscar-svc", stack.SYSTEM_NS):
            api.ok("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
                want=(201, 409))
        hook.start()
        api.ok("POST", stack.MWC_PATH, stack.webhook_configuration(hook.url, certs["ca_bundle"]),
               want=(201,))
        print("thaw-webhook on %s, cache registry on %s" % (hook.url, reg.url), flush=True)
        threads = [threading.Thread(target=stand_in_controller, args=(api, stop), daemon=True),
                   threading.Thread(target=chaos, args=(stop,), daemon=True)]
        for t in threads:
            t.start()
        rc = subprocess.call([os.path.join(build, "test", "thaw-showcase"),
                              "--kubeconfig", os.environ["KUBECONFIG"], "--jobs", jobs])
        text = hook.metrics()
        print("\nthaw-webhook decisions:", flush=True)
        for line in text.splitlines():
            if line.startswith(("thaw_webhook_images_total", "thaw_webhook_records_total",
                                "thaw_cache_registry_up")):
                print("  " + line)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        hook.stop()
        reg.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
