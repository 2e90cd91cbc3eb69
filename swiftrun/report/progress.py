"""Live progress of a streaming swift console, driven by Swift's own ``Progress:`` lines.

:class:`ProgressView` is a binary file-like object (``write``/``flush``) to hand to the stream
follower in place of ``sys.stdout.buffer``; ``feed`` is the same as ``write``. It

- passes the console through at once: nothing is held back, nothing waits (a partial line is
  shown as soon as it arrives; there are no sleeps on the write path);
- reads every complete ``Progress: <date>  Selecting site:3  Active:2  Finished successfully:5``
  and ``Final status: ...`` line (any chunking: lines may arrive in pieces);
- on a terminal shows a footer (rich Live) under the console lines, which scroll above it:
  the counts (waiting, submitted, active, finished, failed), a bar when the total is known, the
  elapsed time and the workers connected (``set_workers(n)``, from outside: the console does not
  say);
- without a terminal writes the console unchanged and, on the ``status`` stream (stderr by
  default), a one-line summary at most every ``summary_every`` seconds and only when something
  changed since the last one (plus, with ``heartbeat=S``, at least every S seconds anyway);
  a summary is only ever written between two console lines.

The total: Swift counts a job only once its inputs are ready (p6's ``stats`` job appears when
all simulations are done), so its progress lines never tell how many jobs are still to come.
The view therefore shows a bar only when a total is given (``total=`` / ``set_total``, e.g.
:func:`swiftrun.report.swiftlog.expected_tasks`: the job count of the newest finished run of the
same script with the same arguments), raised if more jobs show up than it says; or after
``Final status``, when the count is final. Otherwise it shows how many jobs are known so far.

Swift's states, as the view groups them: waiting = Initializing, Selecting site (Swift's own
throttle), Failed but can retry; submitted = Submitting, Submitted (at the coaster service,
no worker yet); active = Stage in, Active, Stage out; finished = Finished successfully,
Finished in previous run; failed = Failed.
"""

from __future__ import annotations

import codecs
import re
import sys
import threading
import time

GROUPS = {
    "Initializing": "waiting", "Selecting site": "waiting", "Failed but can retry": "waiting",
    "Checking status": "waiting",
    "Submitting": "submitted", "Submitted": "submitted",
    "Stage in": "active", "Active": "active", "Stage out": "active",
    "Finished successfully": "finished", "Finished in previous run": "finished",
    "Failed": "failed",
}
ORDER = ("waiting", "submitted", "active", "finished", "failed")
_PROGRESS = re.compile(r"^(Progress|Final status):")
_COUNT = re.compile(r"^([A-Za-z][A-Za-z ]*?):(\d+)$")


def parse_progress(line: str) -> tuple[bool, dict[str, int]] | None:
    """``(final, {state: count})`` for a Progress / Final status line, else None."""
    m = _PROGRESS.match(line)
    if m is None:
        return None
    counts = {}
    for part in re.split(r"\s{2,}", line[m.end():].strip())[1:]:     # [0] is the date
        cm = _COUNT.match(part.strip())
        if cm:
            counts[cm.group(1)] = int(cm.group(2))
    return m.group(1) == "Final status", counts


def group(counts: dict[str, int]) -> dict[str, int]:
    out = dict.fromkeys(ORDER, 0)
    for state, n in counts.items():
        out[GROUPS.get(state, "waiting")] += n
    return out


def _clock_text(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressView:
    """See the module docstring. Use as a context manager, or call ``close()`` at the end."""

    def __init__(self, out=None, *, console=None, terminal: bool | None = None, status=None,
                 summary_every: float = 30.0, heartbeat: float | None = None,
                 total: int | None = None, workers: int | None = None,
                 clock=time.monotonic, timer: bool = True, refresh_per_second: float = 4):
        self._lock = threading.RLock()
        self._clock = clock
        self._t0 = clock()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self.counts: dict[str, int] = {}      # the latest line's raw counts
        self.final = False
        self.failed_run = False               # the console said "Execution failed:"
        self.run_id: str | None = None
        self.lines_seen = 0
        self._total = total
        self._workers = workers
        self._known_max = 0
        self.summary_every = float(summary_every)
        self.heartbeat = heartbeat
        self._last_summary = self._t0
        self._summarised: tuple | None = self._key()
        self._closed = False
        self._live = None
        self._footer = None                   # (what it shows, the Text)
        self._stop = threading.Event()
        self._thread = None
        if terminal is None:
            if console is not None:
                terminal = bool(console.is_terminal) and not console.is_dumb_terminal
            else:
                probe = out if out is not None else sys.stdout
                terminal = bool(getattr(probe, "isatty", lambda: False)())
                if terminal:
                    from rich.console import Console

                    console = Console(highlight=False)
                    terminal = not console.is_dumb_terminal
        self.terminal = bool(terminal)
        if self.terminal:
            if console is None:
                from rich.console import Console

                console = Console(highlight=False)
            from rich.live import Live

            self.console = console
            self._live = Live(get_renderable=self._render, console=console,
                              refresh_per_second=refresh_per_second or 4, transient=False,
                              redirect_stdout=False, redirect_stderr=False,
                              auto_refresh=refresh_per_second > 0)
            self._live.start()
        else:
            self.console = None
            self.out = out if out is not None else sys.stdout.buffer
            self.status = status if status is not None else sys.stderr
            if timer:
                self._thread = threading.Thread(target=self._tick_loop, name="progress-summary",
                                                daemon=True)
                self._thread.start()

    # -- what the follower calls ------------------------------------------------------------------
    def write(self, data: bytes) -> int:
        if not data:
            return 0
        with self._lock:
            if self._closed:
                raise ValueError("write to a closed ProgressView")
            if not self.terminal:
                self.out.write(data)          # first, before any parsing: latency stays as it was
                self.out.flush()
            text = self._decoder.decode(bytes(data))
            self._take(text)
            if self.terminal:
                if self._partial:        # printed lines re-draw the footer; a piece alone must too
                    self._live.refresh()
            else:
                self._maybe_summary()
        return len(data)

    feed = write

    def flush(self) -> None:
        if not self.terminal:
            self.out.flush()

    def set_workers(self, n: int | None) -> None:
        with self._lock:
            self._workers = n
            self._refresh()

    def set_total(self, n: int | None) -> None:
        with self._lock:
            self._total = n
            self._refresh()

    def note(self, text: str) -> None:
        """A line of swiftrun's own (e.g. "still running"): above the footer on a terminal, on
        the status stream otherwise."""
        with self._lock:
            if self.terminal:
                from rich.text import Text

                self.console.print(Text(text, style="dim"), highlight=False)
            else:
                print(text, file=self.status, flush=True)

    def tick(self) -> None:
        """Check whether a plain-mode summary is due (the timer thread calls this every second)."""
        with self._lock:
            if not self.terminal and not self._closed:
                self._maybe_summary()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._take(tail)
            self._stop.set()
            if self.terminal:
                if self._partial:                 # never lose the last, unterminated line
                    self._print_lines([self._partial])
                    self._partial = ""
                self._live.stop()                 # the last footer stays; the cursor comes back
            else:
                self.out.flush()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- state ------------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self._clock() - self._t0

    @property
    def grouped(self) -> dict[str, int]:
        return group(self.counts)

    @property
    def known(self) -> int:
        """Jobs Swift has told of so far (the sum of the latest line's counts)."""
        return sum(self.counts.values())

    @property
    def total(self) -> int | None:
        """The bar's total: after Final status the count; else the given total (never below
        what is known); else None (unknown)."""
        if self.final:
            return self.known
        if self._total is None:
            return None
        return max(self._total, self._known_max)

    @property
    def workers(self) -> int | None:
        return self._workers

    def _key(self) -> tuple:
        return (tuple(sorted(self.counts.items())), self.final, self._workers, self.failed_run)

    # -- internals --------------------------------------------------------------------------------
    def _take(self, text: str) -> None:
        text = self._partial + text
        *lines, self._partial = text.split("\n")
        for i, line in enumerate(lines):
            line = line.rstrip("\r")
            lines[i] = line
            self._parse(line)
        if lines and self.terminal:
            self._print_lines(lines)

    def _parse(self, line: str) -> None:
        self.lines_seen += 1
        parsed = parse_progress(line)
        if parsed is not None:
            final, counts = parsed
            self.counts = counts
            self.final = self.final or final
            self._known_max = max(self._known_max, sum(counts.values()))
        elif line.startswith("RunID: "):
            self.run_id = line[7:].strip()
        elif line.startswith("Execution failed:"):
            self.failed_run = True

    def _print_lines(self, lines: list[str]) -> None:
        """Above the footer, as they came (no wrapping or markup by rich: the terminal wraps).

        Live draws the footer it last rendered under printed lines: hand it the current one
        first (rich's LiveRender.set_renderable; with a rich that lacks it, refresh after the
        print, in the same write to the terminal). One footer render per chunk keeps the
        stream as fast as without the view."""
        raw = _Raw("\n".join(lines))
        live_render = getattr(self._live, "_live_render", None)
        with self.console:
            if self._closed or not hasattr(live_render, "set_renderable"):
                self.console.print(raw, crop=False, highlight=False, markup=False, emoji=False)
                if not self._closed:
                    self._live.refresh()
            else:
                live_render.set_renderable(self._render())
                self.console.print(raw, crop=False, highlight=False, markup=False, emoji=False)

    def _refresh(self) -> None:
        if self.terminal and self._live is not None and not self._closed:
            self._live.refresh()

    def summary_line(self) -> str:
        g = self.grouped
        total = self.total
        done = g["finished"] + g["failed"]
        of = (f"{done} of {total} jobs done" if total is not None
              else f"{done} jobs done ({self.known} known so far)")
        workers = "?" if self._workers is None else str(self._workers)
        state = " (final)" if self.final else (" (execution failed)" if self.failed_run else "")
        return (f"    progress: {_clock_text(self.elapsed)} elapsed, {of}{state}: "
                f"{g['finished']} finished, {g['failed']} failed, {g['active']} active, "
                f"{g['submitted']} submitted, {g['waiting']} waiting; {workers} workers connected")

    def _maybe_summary(self) -> None:
        if self._partial:                        # only ever between two console lines
            return
        now = self._clock()
        since = now - self._last_summary
        changed = self._key() != self._summarised
        due = (changed and since >= self.summary_every) or (
            self.heartbeat is not None and since >= self.heartbeat)
        if not due:
            return
        print(self.summary_line(), file=self.status, flush=True)
        self._last_summary = now
        self._summarised = self._key()

    def _tick_loop(self) -> None:
        step = max(0.05, min(1.0, self.summary_every / 4))
        while not self._stop.wait(step):
            try:
                self.tick()
            except Exception:     # noqa: BLE001 - a broken status stream must not kill the run
                return

    def _render(self):
        """The footer: one Text (cheap to draw: it is drawn again for every chunk printed),
        rebuilt only when something in it changed."""
        width = self.console.width
        key = (self._key(), self._partial, int(self.elapsed), self.run_id, self.total, width)
        if self._footer is not None and self._footer[0] == key:
            return self._footer[1]
        from rich.text import Text

        g = self.grouped
        text = Text(no_wrap=False)
        if self._partial:                      # its newest part, on one row
            text.append(self._partial[-max(8, width - 2):] + "\n")
        total = self.total
        done = g["finished"] + g["failed"]
        workers = "?" if self._workers is None else str(self._workers)
        if total:
            bar = 30
            filled = min(bar, bar * min(done, total) // total)
            colour = "red" if g["failed"] else "green"
            text.append("\u2501" * filled, style=colour)
            text.append("\u2501" * (bar - filled), style="grey23")
            text.append(f"  {done}/{total} {done * 100 // total}%  ")
        elif self.counts:
            text.append(f"{self.known} jobs known so far   ", style="dim")
        text.append(f"{_clock_text(self.elapsed)}   workers connected {workers}\n")
        text.append("swift", style="bold cyan")
        if self.run_id:
            text.append(f" {self.run_id}", style="cyan")
        text.append(": ")
        if not self.counts and not self.final:
            text.append("starting", style="dim")
        else:
            styles = {"waiting": "dim", "submitted": "yellow", "active": "bold blue",
                      "finished": "green", "failed": "bold red" if g["failed"] else "dim"}
            for i, name in enumerate(ORDER):
                text.append(("  " if i else "") + f"{name} {g[name]}", style=styles[name])
        if self.final:
            text.append("  done", style="bold")
        elif self.failed_run:
            text.append("  execution failed", style="bold red")
        footer = _Rendered(self.console.render_lines(text, self.console.options.update(
            width=max(10, width - 1)), pad=False))
        self._footer = (key, footer)
        return footer


class _Raw:
    """Text printed as is: one segment, no wrapping, cell measuring or markup (cheap)."""

    def __init__(self, text: str):
        self.text = text

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        yield Segment(self.text)
        yield Segment.line()          # a renderable ends its own line (print adds no `end`)


class _Rendered:
    """Lines rendered once (the footer), yielded again at every re-draw."""

    def __init__(self, lines):
        self.lines = lines

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            yield from line
            if i < last:
                yield Segment.line()
