#!/usr/bin/env python3
"""fault_http.py - a loopback HTTP server that answers with injected faults.

Every request (any method, any path except /_fault/...) takes the next step
of a plan; the last step repeats forever. A step is a JSON object:
  {"status": 500}                 status code (default 200)
  {"delay": 0.5}                  seconds to wait before answering
  {"reset": true}                 close the connection with a TCP RST, no reply
  {"close": true}                 close the connection cleanly, no reply
  {"body": "...", "headers": {"Name": "value"}}
The plan is given with --plan (a JSON list) and can be replaced at run time
with PUT /_fault/plan (a JSON list in the body). GET /_fault/stats returns
{"hits", "max_concurrent", "active", "statuses"} since the last plan and never
counts as a hit.

    fault_http.py --plan '[{"status":200},{"status":500}]' --ready-file F

binds 127.0.0.1 on a free port (or --port), writes the port to the ready
file once listening, and serves until SIGTERM or SIGINT.
"""
import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20


class State:
    def __init__(self, plan):
        self.lock = threading.Lock()
        self.plan = plan
        self.pos = 0
        self.hits = 0
        self.active = 0
        self.max_concurrent = 0
        self.statuses = []

    def next_step(self):
        with self.lock:
            step = self.plan[min(self.pos, len(self.plan) - 1)]
            self.pos += 1
            self.hits += 1
            self.active += 1
            self.max_concurrent = max(self.max_concurrent, self.active)
            return step

    def finish(self, what):
        with self.lock:
            self.active -= 1
            if len(self.statuses) < 10000:
                self.statuses.append(what)


def check_plan(plan):
    if not isinstance(plan, list) or not plan:
        raise ValueError("plan must be a non-empty JSON list")
    for step in plan:
        if not isinstance(step, dict):
            raise ValueError("each step must be a JSON object")
    return plan


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault_http"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fault_http: " + (fmt % args) + "\n")

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def reply(self, status, body, headers=None):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def control(self):
        st = self.server.state
        if self.path == "/_fault/stats" and self.command == "GET":
            with st.lock:
                out = {"hits": st.hits, "max_concurrent": st.max_concurrent,
                       "active": st.active,
                       "statuses": list(st.statuses)}
            self.reply(200, json.dumps(out),
                       {"Content-Type": "application/json"})
        elif self.path == "/_fault/plan" and self.command in ("PUT", "POST"):
            try:
                plan = check_plan(json.loads(self.read_body()))
            except ValueError as e:
                self.reply(400, str(e) + "\n")
                return
            with st.lock:  # counters restart with each plan
                st.plan, st.pos, st.hits = plan, 0, 0
                st.max_concurrent, st.statuses = st.active, []
            self.reply(204, b"")
        else:
            self.reply(404, "unknown control path\n")

    def handle_any(self):
        if self.path.startswith("/_fault/"):
            self.control()
            return
        st = self.server.state
        step = st.next_step()
        what = "?"
        try:
            self.read_body()
            if step.get("delay"):
                time.sleep(float(step["delay"]))
            if step.get("reset"):
                # SO_LINGER with a zero timeout makes close() send a RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
                self.close_connection = True
                what = "reset"
                return
            if step.get("close"):
                self.close_connection = True
                what = "close"
                return
            status = int(step.get("status", 200))
            body = step.get("body", "{}" if status < 300 else "")
            headers = {"Content-Type": "application/json"}
            headers.update(step.get("headers") or {})
            self.reply(status, body, headers)
            what = status
        except (BrokenPipeError, ConnectionResetError):
            what = "client-gone"
        finally:
            st.finish(what)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--plan", default='[{"status": 200}]')
    ap.add_argument("--ready-file")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if a.host not in ("127.0.0.1", "::1", "localhost"):
        sys.exit("fault_http: loopback only")
    try:
        plan = check_plan(json.loads(a.plan))
    except ValueError as e:
        sys.exit("fault_http: --plan: %s" % e)
    srv = Server((a.host, a.port), Handler)
    srv.state = State(plan)
    srv.verbose = a.verbose

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % srv.server_address[1])
        os.rename(tmp, a.ready_file)
    srv.serve_forever()
    srv.server_close()


if __name__ == "__main__":
    main()
