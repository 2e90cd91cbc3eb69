"""What a person (or a CI log) sees: phases, per-node progress, warnings, a heartbeat.

Progress goes to stderr, data (tables, swift.conf, JSON) to stdout. On a terminal it is coloured
with rich; anywhere else it is plain lines, and a heartbeat line while waiting keeps CI runners
from killing a job that looks silent. rich is imported only when a terminal needs it.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager


class UI:
    def __init__(self, *, json_mode: bool = False, quiet: bool = False, heartbeat: float = 30.0,
                 stream=None):
        self.stream = stream or sys.stderr
        self.json_mode = json_mode
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) and not json_mode
        self.heartbeat = heartbeat
        self._console = None
        self._lock = threading.Lock()
        self.warnings: list[str] = []

    def _rich(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def _emit(self, text: str, style: str | None = None) -> None:
        with self._lock:
            if self.tty:
                self._rich().print(text, style=style, markup=False)
            else:
                print(text, file=self.stream, flush=True)

    def step(self, text: str) -> None:
        if not self.quiet:
            self._emit(f"==> {text}", "bold cyan")

    def node(self, label: str, text: str) -> None:
        if not self.quiet:
            self._emit(f"    {label}: {text}", "dim")

    def info(self, text: str) -> None:
        if not self.quiet:
            self._emit(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self._emit(f"warning: {text}", "yellow")

    def error(self, text: str) -> None:
        self._emit(f"swiftrun: error: {text}", "bold red")

    @contextmanager
    def waiting(self, what: str):
        """While the body runs, say every ``heartbeat`` seconds that we are still waiting."""
        stop = threading.Event()
        start = time.monotonic()

        def beat():
            while not stop.wait(self.heartbeat):
                self.node("waiting", f"{what} ({int(time.monotonic() - start)}s)")

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()


def out(text: str = "") -> None:
    """Data for stdout (tables, swift.conf, JSON)."""
    print(text, flush=True)
