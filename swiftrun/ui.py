"""What a person (or a CI log) sees: phases, per-node progress, warnings, a heartbeat.

Progress goes to stderr, data (tables, swift.conf, JSON) to stdout. On a terminal it is coloured
with rich; anywhere else it is plain lines, and a heartbeat line while waiting keeps CI runners
from killing a job that looks silent. rich is imported only when a terminal needs it.

Nodes being brought up report their state through ``track`` (pending, running, ssh, booting:
<step>, ready, failed). Inside ``nodes_view`` a terminal shows them live (rich Live: one row per
node with its state and elapsed time, a spinner, the total); anywhere else each change is one
timestamped line, and nothing is said while nothing changes. ``node_states`` is the same record
for a JSON document.

Past ``MANY`` nodes a line per node per change would drown the log (a cold `up` of 200 workers
said ~1000 lines, a warm one 200 "ready"): the headnode and every failure are still said one by
one, the workers as one tally line (``workers: 150 ready, 50 booting``) at most every
``TALLY_EVERY`` seconds while it changes, and once at the end; a terminal shows the nodes that
are not ready yet and the tally, not a table taller than the screen.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

MANY = 12             # nodes in a view past which workers are tallied, not listed
TALLY_EVERY = 5.0     # seconds between two tally lines (CI logs)
SHOWN = 10            # rows of not-yet-ready nodes a terminal shows past MANY
_ORDER = ("ready", "failed", "booting", "ssh", "running", "pending")


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
        self._t0 = time.monotonic()
        self._nodes: dict[str, dict] = {}     # node id -> its state record (see ``track``)
        self._live = None                     # the rich Live of ``nodes_view``, while it runs
        self._title = ""
        self._many = False                    # this view tallies its workers (see MANY)
        self._tallied = ""                    # the last tally line said
        global _current
        _current = self

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
        start = time.monotonic()

        def beat(stop: threading.Event) -> None:
            while not stop.wait(self.heartbeat):
                self.node("waiting", f"{what} ({int(time.monotonic() - start)}s)")

        with _beside(beat):
            yield


    # -- nodes coming up -------------------------------------------------------------------------
    def track(self, node_id: str, role: str, state: str, step: str = "") -> None:
        """``node_id`` is now in ``state`` (pending, running, ssh, booting, ready, failed; a
        booting node names its boot ``step``, a failed one its message). Said once per change."""
        now = time.monotonic()
        with self._lock:
            rec = self._nodes.get(node_id)
            if rec is None:
                rec = self._nodes[node_id] = {"id": node_id, "role": role, "state": "", "step": "",
                                              "start": now, "end": None, "changes": []}
            if (rec["state"], rec["step"]) == (state, step):
                return
            rec.update(state=state, step=step, end=now if state in ("ready", "failed") else None)
            rec["changes"].append({"state": state, "step": step or None,
                                   "at_s": round(now - self._t0, 3)})
            live = self._live
        if live is not None or self.quiet:
            return      # the live view shows it at its next refresh
        if self._many and role != "headnode" and state != "failed":
            return      # in the next tally line
        text = f"{state}: {step}" if step else state
        if self.tty:
            self._emit(f"    {role} {node_id}: {text}", "red" if state == "failed" else "dim")
        else:
            self._emit(f"{time.strftime('%H:%M:%S')} {role} {node_id}: {text} "
                       f"({int(now - rec['start'])}s)")

    def node_states(self) -> list[dict]:
        """Every tracked node: its last state and step, seconds since it was first seen until it
        was ready or failed (or until now), and each change (``at_s`` from the command's start)."""
        now = time.monotonic()
        with self._lock:
            return [{"id": r["id"], "role": r["role"], "state": r["state"], "step": r["step"] or None,
                     "elapsed_s": round((r["end"] or now) - r["start"], 3),
                     "changes": list(r["changes"])} for r in self._nodes.values()]

    def _tally(self, role: str = "worker") -> str:
        """``workers: 150 ready, 12 booting (swift 9, disks 3), 38 running``."""
        with self._lock:
            recs = [(r["state"], r["step"]) for r in self._nodes.values() if r["role"] == role]
        counts = Counter(st for st, _ in recs)
        steps = Counter(step for st, step in recs if st == "booting" and step)

        def part(st: str) -> str:
            where = ", ".join(f"{step} {n}" for step, n in steps.most_common(3))
            return f"{counts[st]} {st}" + (f" ({where})" if st == "booting" and where else "")

        parts = [part(st) for st in _ORDER if counts[st]]
        parts += [part(st) for st in sorted(counts) if st not in _ORDER]
        return f"{role}s: {', '.join(parts)}" if parts else ""

    def _say_tally(self, *, final: bool = False) -> None:
        line = self._tally()
        if line and (line != self._tallied or final and not self._tallied):
            self._tallied = line
            self._emit(f"{time.strftime('%H:%M:%S')} {line} ({int(time.monotonic() - self._t0)}s)")

    @contextmanager
    def nodes_view(self, title: str, *, count: int = 0):
        """While the body runs, show the tracked nodes live on a terminal (elsewhere ``track``
        prints each change, or past ``MANY`` of ``count`` nodes a tally). Nested views are one
        view."""
        if self._live is not None or self._many or self.quiet:
            yield
            return
        if not self.tty:
            if count <= MANY:
                yield
                return
            self._many, self._tallied = True, ""

            def tally(done: threading.Event) -> None:
                while not done.wait(TALLY_EVERY):
                    self._say_tally()

            try:
                with _beside(tally):
                    yield
            finally:
                self._many = False
                self._say_tally(final=True)
            return
        from rich.live import Live

        self._title, self._spinners = title, {}
        live = Live(get_renderable=self._render, console=self._rich(), refresh_per_second=8,
                    redirect_stdout=False, redirect_stderr=False)
        with live:
            self._live = live
            try:
                yield
            finally:
                self._live = None
                live.refresh()

    def _render(self):
        from rich.console import Group
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = time.monotonic()
        with self._lock:
            recs = [dict(r) for r in self._nodes.values()]
        table = Table.grid(padding=(0, 2))
        counts: dict[str, int] = {}
        for r in recs:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        hidden = 0
        if len(recs) > MANY:    # the headnode, the failed, and the first few still under way
            keep = [r for r in recs if r["role"] == "headnode" or r["state"] == "failed"]
            keep += [r for r in recs if r not in keep and r["state"] != "ready"][:SHOWN]
            hidden = len(recs) - len(keep)
            recs_shown = keep
        else:
            recs_shown = recs
        for r in recs_shown:
            if r["state"] == "ready":
                icon = Text("✓", style="green")
            elif r["state"] == "failed":
                icon = Text("✗", style="bold red")
            else:
                icon = self._spinners.setdefault(r["id"], Spinner("dots", style="cyan"))
            text = f"{r['state']}: {r['step']}" if r["step"] else r["state"]
            table.add_row(icon, r["role"], r["id"], Text(text, style="red" if r["state"] == "failed"
                                                          else None),
                          f"{int((r['end'] or now) - r['start'])}s")
        if hidden:
            table.add_row("", "", f"... {hidden} more", "", "")
        parts = [f"{counts[s]} {s}" for s in _ORDER if counts.get(s)]
        parts += [f"{n} {s}" for s, n in counts.items() if s not in _ORDER]
        total = (f"{self._title}: {len(recs)} node(s)" + (f", {', '.join(parts)}" if parts else "")
                 + f", {int(now - self._t0)}s")
        done = recs and all(r["state"] in ("ready", "failed") for r in recs)
        if done:
            return Group(table, Text(total, style="bold"))
        footer = self._spinners.setdefault("", Spinner("dots", style="cyan"))
        footer.update(text=Text(total, style="bold"))
        return Group(table, footer)


_current: UI | None = None


@contextmanager
def slow_notice(text: str, after: float = 1.0):
    """Say ``text`` (``asking EC2 in us-west-2 ...``) on stderr once per process, if the body
    takes longer than ``after`` seconds: a long wait is never silent. Quiet UIs say nothing."""
    global _noticed
    if _noticed:
        yield
        return

    def say(done: threading.Event) -> None:
        global _noticed
        if not done.wait(after) and not _noticed:
            _noticed = True
            ui = _current
            if ui is None:
                print(text, file=sys.stderr, flush=True)
            elif not ui.quiet:
                ui._emit(text, "dim")

    with _beside(say):
        yield


@contextmanager
def _beside(task):
    """Run ``task(done)`` in a daemon thread while the body runs; ``done`` is set when it ends."""
    done = threading.Event()
    threading.Thread(target=task, args=(done,), daemon=True).start()
    try:
        yield
    finally:
        done.set()


_noticed = False


def out(text: str = "") -> None:
    """Data for stdout (tables, swift.conf, JSON)."""
    print(text, flush=True)
