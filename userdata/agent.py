#!/usr/bin/env python3
"""swiftrun's headnode agent (swiftrun-agent.service): the headnode is the cluster's only door.

Workers never get an SSH connection from the user's machine; instead each one tells the headnode
how its boot goes, and fetches from it what it needs:

  POST /report    id=<instance id>&state=<booting|ready|failed>&step=<boot step>&msg=<text>
                  &hostkey=<its ssh_host_ed25519_key.pub>  -> $STATE/workers/<id> (one JSON line)
  GET  /files/<name>   a file of $STATE/serve/: the Swift tarball the headnode downloaded, the
                  project's tools (so a worker without a public IP needs no internet)

It listens on the agent port, which the security group opens to the cluster's own group only;
the user's machine reads $STATE/workers/ over its SSH connection to the headnode, one command for
any number of workers. Standard library only (every Ubuntu image has python3: cloud-init is one).
Usage: agent.py STATE_DIR PORT
"""

import http.server
import json
import os
import re
import socketserver
import sys
import threading
import time
import urllib.parse

STATE, PORT = sys.argv[1], int(sys.argv[2])
WORKERS = os.path.join(STATE, "workers")
SERVE = os.path.join(STATE, "serve")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
STATES = ("booting", "ready", "failed", "gone")
FIELDS = {"id": 64, "state": 16, "step": 64, "msg": 400, "hostkey": 800, "seq": 20}
# A report that waited in this server's backlog while its sender gave up (curl -m 3, a busy
# headnode) may be read after a newer one: each carries the worker's own count (seq), and an
# older count never replaces a newer one (a "booting" must not undo a "ready").
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "swiftrun-agent"

    def log_message(self, fmt, *args):  # one line per request on stderr (the unit's log)
        sys.stderr.write("%s %s\n" % (self.client_address[0], fmt % args))

    def _answer(self, code: int, body: bytes = b"") -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if self.path != "/report":
            return self._answer(404)
        size = int(self.headers.get("Content-Length") or 0)
        if not 0 < size <= 4096:
            return self._answer(413)
        form = urllib.parse.parse_qs(self.rfile.read(size).decode("utf-8", "replace"))
        doc = {k: (form.get(k) or [""])[0][:limit] for k, limit in FIELDS.items()}
        if not NAME.match(doc["id"]) or doc["state"] not in STATES:
            return self._answer(400)
        doc.update(seen=int(time.time()), addr=self.client_address[0],
                   seq=int(doc["seq"]) if doc["seq"].isdigit() else 0)
        os.makedirs(WORKERS, exist_ok=True)
        dest = os.path.join(WORKERS, doc["id"])
        with LOCK:
            try:
                with open(dest) as fh:
                    known = int(json.loads(fh.readline()).get("seq") or 0)
            except (OSError, ValueError, AttributeError):
                known = 0
            if not doc["seq"] or doc["seq"] >= known:     # else late: the newer report stands
                tmp = os.path.join(WORKERS, ".%s.tmp" % doc["id"])
                with open(tmp, "w") as fh:
                    fh.write(json.dumps(doc, sort_keys=True) + "\n")
                os.replace(tmp, dest)
        self._answer(204)

    def do_GET(self):
        name = self.path[len("/files/"):] if self.path.startswith("/files/") else ""
        path = os.path.join(SERVE, name)
        if not NAME.match(name) or not os.path.isfile(path):
            return self._answer(404)
        with open(path, "rb") as fh:
            self.send_response(200)
            self.send_header("Content-Length", str(os.fstat(fh.fileno()).st_size))
            self.end_headers()
            while True:
                chunk = fh.read(1 << 20)
                if not chunk:
                    break
                self.wfile.write(chunk)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    os.makedirs(WORKERS, exist_ok=True)
    os.makedirs(SERVE, exist_ok=True)
    Server(("0.0.0.0", PORT), Handler).serve_forever()
