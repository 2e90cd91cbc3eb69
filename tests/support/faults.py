"""moto server behind a WSGI wrapper that fails chosen AWS operations on demand.

Run it like moto's own server (it serves the very same app, ``DomainDispatcherApplication(
create_backend_app)``, as ``python -m moto.server`` does)::

    python tests/support/faults.py -H 127.0.0.1 -p PORT      # or: python -m tests.support.faults

Control endpoint (plain JSON over HTTP on the same port):

``POST /_faults`` replaces the rules (and zeroes the counters) with a JSON object mapping an
operation name (the ``Action`` parameter of a query-protocol request, e.g. ``RunInstances``) or
``"*"`` (any operation) to a rule::

    {"RunInstances": {"error": "InsufficientInstanceCapacity", "status": 400, "times": 1},
     "*": {"error": "RequestLimitExceeded", "status": 503, "rate": 0.33, "seed": 1}}

Rule fields: ``error`` (the error code, required), ``status`` (HTTP status, default 400),
``message`` (default: a generic text), ``times`` (inject at most this many times; default
unlimited), ``after`` (let this many matching calls through first; default 0), ``rate``
(probability 0..1 that a matching call fails; default 1), ``seed`` (seed of that rule's own
random generator, for repeatable runs), ``service`` (the SigV4 signing name the rule applies to,
default ``"ec2"``; ``"*"`` for any service). The rule of the operation itself is tried first,
then ``"*"``.

``GET /_faults`` returns ``{"rules": ..., "injected": {op: n}, "calls": {op: n}, "total": n}``:
``calls`` counts every request seen per operation (faulted or not, bypass excluded).
``DELETE /_faults`` clears rules and counters.

Errors are written in EC2's XML error format, so botocore parses the code into
``ClientError.response["Error"]["Code"]`` (and retries the throttling / 5xx ones per its
retry mode; every attempt is one call here).

Requests carrying the header ``X-Testcloud-Bypass: 1`` are never faulted nor counted (the
instance simulator polls moto with it so it neither trips nor consumes the faults set for the
code under test).

Between the injector (or the server, with ``--no-faults``) and moto there is always the strict
layer of :mod:`tests.support.strict` (its own control endpoint: ``/_strict``).

In front of everything, :class:`ChangeCounter` counts the requests that may change the cloud's
state (any action but ``Describe*``/``Get*``/``List*``, and any other ``POST`` to the moto API,
such as a reset), bypass ones included. ``GET /_changes`` returns ``{"changes": n}``. Moto moves
an instance's state only when a request does (start, stop and terminate take effect at once), so
the instance simulator re-reads the instance list only when this number moved, instead of
asking moto to render every instance several times a second: with 200 instances that render
alone kept a core busy and starved the code under test.

This module is self-contained (moto + werkzeug + stdlib, and strict.py next to it, loaded by
path) so it can run as a script by path.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import signal
import sys
import threading
import uuid
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs

CONTROL_PATH = "/_faults"
CHANGES_PATH = "/_changes"
_READ_ONLY = ("Describe", "Get", "List")
BYPASS_HEADER = "X-Testcloud-Bypass"
_BYPASS_ENVIRON = "HTTP_" + BYPASS_HEADER.upper().replace("-", "_")
_SERVICE_RE = re.compile(r"Credential=[^/,\s]+/[^/]+/[^/]+/([^/]+)/aws4_request")

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def ec2_error_xml(code: str, message: str, request_id: str | None = None) -> bytes:
    from xml.sax.saxutils import escape

    request_id = request_id or str(uuid.uuid4())
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
            f"<Response><Errors><Error><Code>{escape(code)}</Code>"
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>").encode()


class _Rule:
    def __init__(self, spec: dict[str, Any]):
        if not isinstance(spec, dict) or not spec.get("error"):
            raise ValueError(f"a fault rule needs at least an 'error' code: {spec!r}")
        self.spec = dict(spec)
        self.error = str(spec["error"])
        self.status = int(spec.get("status", 400))
        self.message = str(spec.get("message") or f"Injected fault: {self.error}")
        self.times = None if spec.get("times") is None else int(spec["times"])
        self.after = int(spec.get("after", 0))
        self.rate = float(spec.get("rate", 1.0))
        self.service = str(spec.get("service", "ec2"))
        self.random = random.Random(spec.get("seed"))
        self.seen = 0
        self.fired = 0

    def fires(self, service: str | None) -> bool:
        if self.service != "*" and service != self.service:
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.rate < 1.0 and self.random.random() >= self.rate:
            return False
        self.fired += 1
        return True


class FaultInjector:
    """WSGI middleware: fails matching requests before they reach ``app``."""

    def __init__(self, app: Callable):
        self.app = app
        self.lock = threading.Lock()
        self.rules: dict[str, _Rule] = {}
        self.injected: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    # -- control -------------------------------------------------------------------------
    def set_rules(self, spec: dict[str, Any]) -> None:
        rules = {str(op): _Rule(rule) for op, rule in (spec or {}).items()}
        with self.lock:
            self.rules = rules
            self.injected = {}
            self.calls = {}

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {"rules": {op: r.spec for op, r in self.rules.items()},
                    "injected": dict(self.injected), "calls": dict(self.calls),
                    "total": sum(self.injected.values())}

    def _control(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if method == "POST":
                body = _read_body(environ)
                self.set_rules(json.loads(body or b"{}"))
            elif method == "DELETE":
                self.set_rules({})
            elif method != "GET":
                raise ValueError(f"method {method} not allowed")
            doc, status = self.state(), "200 OK"
        except Exception as exc:  # bad JSON / bad rule: tell the caller
            doc, status = {"error": str(exc)}, "400 Bad Request"
        return _json_reply(start_response, doc, status)

    # -- WSGI ----------------------------------------------------------------------------
    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == CONTROL_PATH:
            return self._control(environ, start_response)
        if environ.get(_BYPASS_ENVIRON):
            return self.app(environ, start_response)
        action = _action(environ)
        if action is None:
            return self.app(environ, start_response)
        service = _service(environ)
        with self.lock:
            self.calls[action] = self.calls.get(action, 0) + 1
            rule = None
            for key in (action, "*"):
                candidate = self.rules.get(key)
                if candidate is not None and candidate.fires(service):
                    rule = candidate
                    break
            if rule is not None:
                self.injected[action] = self.injected.get(action, 0) + 1
        if rule is None:
            return self.app(environ, start_response)
        body = ec2_error_xml(rule.error, rule.message)
        start_response(f"{rule.status} {_REASONS.get(rule.status, 'Error')}",
                       [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
        return [body]


class ChangeCounter:
    """WSGI middleware: counts the requests that may change state (see the module docstring)."""

    def __init__(self, app: Callable):
        self.app = app
        self.lock = threading.Lock()
        self.changes = 0

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == CHANGES_PATH:
            with self.lock:
                return _json_reply(start_response, {"changes": self.changes})
        if path == CONTROL_PATH:
            return self.app(environ, start_response)
        action = _action(environ)
        reply = self.app(environ, start_response)
        # counted once the request has done its work (moto builds the reply in the call): a
        # reader that sees the new count then sees the new state
        if (action is not None and not action.startswith(_READ_ONLY)) or (
                action is None and environ.get("REQUEST_METHOD") not in ("GET", "HEAD")):
            with self.lock:
                self.changes += 1
        return reply


def _json_reply(start_response: Callable, doc: Any, status: str = "200 OK") -> list[bytes]:
    payload = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(payload)))])
    return [payload]


def _read_body(environ: dict) -> bytes:
    """Read the request body and put it back so the wrapped app can read it again."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH") or ""
    if length.isdigit():
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _action(environ: dict) -> str | None:
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if query.get("Action"):
        return query["Action"][0]
    ctype = environ.get("CONTENT_TYPE", "")
    if environ.get("REQUEST_METHOD") == "POST" and ctype.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(_read_body(environ).decode("utf-8", "replace"))
        if form.get("Action"):
            return form["Action"][0]
    return None


def _service(environ: dict) -> str | None:
    match = _SERVICE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


def _fix_moto() -> None:
    """moto 5.2 parses each image's ``creation_date`` in place in its one shared image list, so
    with ``MOTO_AMIS_PATH`` images that carry a creation_date break the second region's backend.
    Give every backend a fresh copy of the list."""
    import copy

    import moto.ec2.models.amis as amis_mod

    if getattr(amis_mod.AmiBackend, "_testcloud_fixed", False):
        return
    pristine = copy.deepcopy(amis_mod.AMIS)
    original = amis_mod.AmiBackend._load_amis
    lock = threading.Lock()

    def _load_amis(self: Any) -> None:
        with lock:
            amis_mod.AMIS = copy.deepcopy(pristine)
            original(self)

    amis_mod.AmiBackend._load_amis = _load_amis  # type: ignore[method-assign]
    amis_mod.AmiBackend._testcloud_fixed = True  # type: ignore[attr-defined]


def _strict_layer(app: Callable) -> Callable:
    """``app`` behind tests/support/strict.py (loaded by path: this file may run as a script)."""
    import importlib.util

    name = "testcloud_strict"
    module = sys.modules.get(name)
    if module is None:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "strict.py")
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[name] = module
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.StrictCloud(app)


def build_app(faults: bool = True) -> Callable:
    """moto server's own WSGI app (as ``moto.server.main`` builds it) behind the strict layer
    (always: see tests/support/strict.py), behind the injector unless ``faults`` is false."""
    from moto.server import DomainDispatcherApplication, create_backend_app

    _fix_moto()
    main_app = DomainDispatcherApplication(create_backend_app)
    main_app.debug = True  # type: ignore[attr-defined]
    app = _strict_layer(main_app)
    return ChangeCounter(FaultInjector(app) if faults else app)


def command(port: int, host: str = "127.0.0.1", faults: bool = True) -> list[str]:
    """argv that serves moto (behind the injector unless ``faults`` is false). Runs this file by
    path, so it needs nothing on sys.path."""
    argv = [sys.executable, os.path.abspath(__file__), "-H", host, "-p", str(port)]
    return argv if faults else argv + ["--no-faults"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--no-faults", action="store_true", help="serve moto without the injector")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    def _exit(signum: int, frame: Any) -> None:
        os._exit(0)  # nothing to flush; sys.exit would wait for keep-alive request threads

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    from werkzeug.serving import run_simple

    run_simple(args.host, args.port, build_app(faults=not args.no_faults), threaded=True)


if __name__ == "__main__":
    # Run by path, this file's directory is sys.path[0]; keep its siblings (cloud, proxy, ...)
    # from shadowing anything moto imports.
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    main()
