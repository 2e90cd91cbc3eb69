"""Read a Swift/K 0.96 ``runNNN/swift.log`` into tasks, with the standard library only.

What the log holds (seen in real runs of 0.96.2 on coasters; the default log4j levels):

- ``Loader RUN_ID run001``, ``Loader ARGUMENTS [..., p6.swift, -nsim=20]``, ``Loader RUN_START``
  and, when swift got to the end, ``Loader Swift finished with no errors`` / ``... with errors``.
  A run cut short (killed, a disk filled up, a copy that stopped half way) has no such line.
- ``Loader SWIFT_CONFIGURATION`` followed by the effective swift.conf, one key per line.
- ``swift PROCEDURE line=3 thread=R-4-0-2 name=simulation``: the Swift app a thread runs;
  ``swift THREAD_ASSOCIATION jobid=sh-zrdhf4xr thread=R-4-0-2 host=cloud-static``: a job's thread.
  (``tr=`` on the job lines is only the executable, e.g. ``sh`` for ``sh @script``.)
- Per job: ``JOB_INIT`` (its inputs are ready), ``JOB_SITE_SELECT`` (waiting for a site, i.e. for
  Swift's own throttle; again before each retry), ``JOB_START ... arguments=[...]`` (an attempt),
  ``Execute JOB_TASK jobid=... taskid=urn:...`` (handed to the coaster service), then
  ``Execute TASK_STATUS_CHANGE taskid=... status=S [workerid=BLOCK:NNNNNN] [message]`` with the
  CoG states 8 submitting, 1 submitted, 16 stage in, 2 active, 17 stage out, 7 completed,
  5 failed (``Process completed with exit code 3``); finally ``JOB_END`` (success) or
  ``APPLICATION_EXCEPTION jobid=... exit code of 3`` + the app's stderr (failure). A retry reuses
  the job id with a new JOB_START and a new task id.
- ``RuntimeStats$ProgressTicker   Selecting site:8  Active:2  Finished successfully:10``: the
  counts behind the console's ``Progress:`` lines, about once a second.

A *task* here is one attempt of one job (one JOB_START): what a worker ran. The worker is the
``workerid`` of its first status that has one (``<block id>:<worker number>``; swiftrun names
blocks ``<cluster>-<instance id>``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from swiftrun.errors import ConfigError

# CoG task states (org.globus.cog.abstraction.interfaces.Status).
SUBMITTING, SUBMITTED, ACTIVE, FAILED, COMPLETED, STAGE_IN, STAGE_OUT = 8, 1, 2, 5, 7, 16, 17

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3})([+-]\d\d)(\d\d) +(\w+) +(\S+) ?(.*)$")
_KV = re.compile(r"(\w+)=(\S*)")
_STATUS = re.compile(r"taskid=(\S+) status=(\d+)(?: workerid=(\S+))?(?: (.*))?$")
_JOB_START = re.compile(r"jobid=(\S+) tr=(\S+) arguments=\[(.*)\] tmpdir=(\S*) host=(\S+)")
_EXIT = re.compile(r"exit code(?: of)? (-?\d+)")
_COUNT = re.compile(r"^([A-Za-z][A-Za-z ]*?):(\d+)$")
_CONF_KEY = re.compile(r"^\s*([^\s:{}#][^:{}#]*?)\s*(?::\s*(.*?))?\s*(\{)?\s*(?:#.*)?$")
_INTERPRETERS = {"sh", "bash", "dash", "zsh", "python", "python3", "perl", "Rscript", "ruby",
                 "java", "octave", "matlab", "julia", "node", "tclsh"}


@dataclass
class Task:
    """One attempt of one job. Times are POSIX seconds (floats); None when the log has no event."""

    job_id: str
    attempt: int = 1
    app: str = ""               # the Swift app (procedure) name, else the executable
    executable: str = ""        # tr=: what the app runs (sh, sort, ...)
    arguments: list[str] = field(default_factory=list)
    host: str = ""              # the Swift site
    task_id: str | None = None
    ready: float | None = None      # JOB_INIT / JOB_SITE_SELECT: waiting for Swift's throttle
    start: float | None = None      # JOB_START
    submitted: float | None = None  # JOB_TASK: handed to the coaster service
    taken: float | None = None      # first status naming a worker: a worker took it
    active: float | None = None     # status 2: the app runs
    stage_out: float | None = None  # status 17
    end: float | None = None        # status 7 / 5 (or JOB_END / APPLICATION_EXCEPTION)
    worker: str | None = None       # "p6-i-0aaa:000000"
    state: str = "unfinished"       # "ok" | "failed" | "unfinished"
    exit_code: int | None = None
    message: str = ""               # why it failed (first line)
    stderr: str = ""                # the app's stderr as swift logged it (failures)

    @property
    def command(self) -> str:
        """``sh simulate.sh`` for an interpreter running a script, else the executable."""
        first = self.arguments[0] if self.arguments else ""
        if self.executable in _INTERPRETERS and first and not first.startswith("-"):
            return f"{self.executable} {first.rsplit('/', 1)[-1]}"
        return self.executable

    @property
    def block(self) -> str | None:
        return self.worker.rsplit(":", 1)[0] if self.worker and ":" in self.worker else self.worker

    @property
    def run_s(self) -> float | None:
        """How long the app ran on the worker (active -> stage out, or -> the end)."""
        stop = self.stage_out if self.stage_out is not None else self.end
        if self.active is None or stop is None:
            return None
        return max(0.0, stop - self.active)

    @property
    def busy_until(self) -> float | None:
        return self.end if self.end is not None else self.stage_out


@dataclass
class Snapshot:
    """One ``Progress:`` tick: Swift's counts of jobs per state at time ``t``."""

    t: float
    counts: dict[str, int]


@dataclass
class SwiftRun:
    path: Path
    run_id: str = ""
    version: str = ""
    script: str = ""
    arguments: list[str] = field(default_factory=list)   # swift's -name=value arguments
    first: float | None = None      # the log's first timestamp (the JVM is up)
    start: float | None = None      # RUN_START (compiled; the workflow begins)
    end: float | None = None        # "Swift finished ..." (None: the log stops before that)
    last: float | None = None       # the log's last timestamp
    outcome: str | None = None      # "ok" | "failed" | None (unfinished)
    tz: timezone = timezone.utc
    config: dict[str, str] = field(default_factory=dict)   # flattened SWIFT_CONFIGURATION
    tasks: list[Task] = field(default_factory=list)
    progress: list[Snapshot] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run directory's name (``run003``), else swift's own RUN_ID."""
        d = self.path.parent.name
        return d if d.startswith("run") and d[3:].isdigit() else (self.run_id or d)

    @property
    def finished(self) -> bool:
        return self.end is not None

    @property
    def wall_s(self) -> float:
        """From swift's start (the log's first line) to its end (or the last line)."""
        stop = self.end if self.end is not None else self.last
        return max(0.0, (stop or 0.0) - (self.first or 0.0))

    @property
    def window(self) -> tuple[float, float]:
        """The workflow's own time: RUN_START -> end; what idle shares are measured against."""
        lo = self.start if self.start is not None else (self.first or 0.0)
        hi = self.end if self.end is not None else (self.last or lo)
        return lo, max(lo, hi)

    def site_option(self, key: str, site: str | None = None) -> str | None:
        """``execution.options.tasksPerNode`` etc. of the site the tasks ran on."""
        site = site or next((t.host for t in self.tasks if t.host), None)
        if site is None:
            sites = self.config.get("sites", "").strip("[] ").split(",")
            site = sites[0].strip().strip('"') if sites and sites[0].strip() else None
        return self.config.get(f"site.{site}.{key}") if site else None

    def iso(self, t: float | None) -> str | None:
        if t is None:
            return None
        return datetime.fromtimestamp(t, self.tz).isoformat(timespec="milliseconds")


class _Clock:
    """Timestamp -> POSIX seconds, caching the expensive part (one strptime per second)."""

    def __init__(self):
        self._sec: dict[tuple[str, str, str], float] = {}
        self.tz: timezone | None = None

    def __call__(self, stamp: str, ms: str, tzh: str, tzm: str) -> float:
        key = (stamp, tzh, tzm)
        base = self._sec.get(key)
        if base is None:
            sign = -1 if tzh.startswith("-") else 1
            tz = timezone(sign * timedelta(hours=abs(int(tzh)), minutes=int(tzm)))
            if self.tz is None:
                self.tz = tz
            base = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=tz).timestamp()
            if len(self._sec) > 100_000:
                self._sec.clear()
            self._sec[key] = base
        return base + int(ms) / 1000.0


def _flatten_config(lines: list[str]) -> dict[str, str]:
    """The SWIFT_CONFIGURATION dump (``key {`` / ``key: value  # [R] line 5`` / ``}``) -> dotted keys."""
    out: dict[str, str] = {}
    stack: list[str] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("[") and line[1:2] in "DRC" and "]" in line[:4]:
            continue                              # "[D] /path/etc/swift.conf": the sources
        if line.startswith("}"):
            if stack:
                stack.pop()
            continue
        if line == "{":
            continue
        m = _CONF_KEY.match(line)
        if not m:
            continue
        key, value, opens = m.group(1).strip().strip('"'), m.group(2), m.group(3)
        if opens and not value:
            stack.append(key)
        elif value is not None:
            out[".".join([*stack, key])] = value.strip().strip('"')
    return out


def _args(text: str) -> list[str]:
    return [a.strip() for a in text.split(",")] if text.strip() else []


def parse(path: Path) -> SwiftRun:
    """Read ``path`` (a swift.log). Raises ConfigError (one line) for an empty or unreadable log;
    an unfinished log is returned with ``finished`` False (see :func:`check_complete`)."""
    path = Path(path)
    name = path.parent.name or str(path)
    try:
        fh = path.open("r", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (a run directory holds swift.log once swift "
                          "has started; was the run fetched?)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    run = SwiftRun(path=path)
    clock = _Clock()
    attempts: dict[str, list[Task]] = {}        # job id -> its attempts, in order
    by_task: dict[str, Task] = {}               # task urn -> attempt
    thread_app: dict[str, str] = {}             # thread -> procedure name
    job_thread: dict[str, str] = {}
    job_ready: dict[str, float] = {}
    config_lines: list[str] | None = None
    continuation: list[str] | None = None       # continuation lines of the record being read
    pending_exc: Task | None = None
    saw_line = False
    with fh:
        for raw in fh:
            m = _LINE.match(raw)
            if m is None:
                if continuation is not None:
                    continuation.append(raw.rstrip("\n"))
                continue
            saw_line = True
            if pending_exc is not None:
                _take_stderr(pending_exc, continuation or [])
                pending_exc = None
            if config_lines is not None:
                run.config = _flatten_config(config_lines)
                config_lines = None
            continuation = None
            stamp, ms, tzh, tzm, _level, cat, msg = m.groups()
            t = clock(stamp, ms, tzh, tzm)
            if run.first is None:
                run.first = t
            run.last = t
            if cat == "swift" or cat == "Execute":
                word, _, rest = msg.partition(" ")
                if word == "TASK_STATUS_CHANGE":
                    sm = _STATUS.match(rest)
                    if sm is None:
                        continue
                    task = by_task.get(sm.group(1))
                    if task is None:
                        continue
                    status, worker, note = int(sm.group(2)), sm.group(3), sm.group(4) or ""
                    if worker and task.worker is None:
                        task.worker, task.taken = worker, t
                    if status == ACTIVE and task.active is None:
                        task.active = t
                    elif status == STAGE_OUT and task.stage_out is None:
                        task.stage_out = t
                    elif status == COMPLETED:
                        task.end, task.state = t, "ok"
                    elif status == FAILED:
                        task.end, task.state = t, "failed"
                        task.message = task.message or note.strip()
                        em = _EXIT.search(note)
                        if em and task.exit_code is None:
                            task.exit_code = int(em.group(1))
                    continue
                kv = dict(_KV.findall(rest)) if word in (
                    "JOB_INIT", "JOB_SITE_SELECT", "THREAD_ASSOCIATION", "JOB_TASK", "JOB_END",
                    "APPLICATION_EXCEPTION", "PROCEDURE") else {}
                if word == "PROCEDURE":
                    if kv.get("thread") and kv.get("name"):
                        thread_app[kv["thread"]] = kv["name"]
                elif word in ("JOB_INIT", "JOB_SITE_SELECT"):
                    jid = kv.get("jobid")
                    if jid:
                        job_ready[jid] = t      # again before a retry: the attempt's own wait
                elif word == "THREAD_ASSOCIATION":
                    if kv.get("jobid") and kv.get("thread"):
                        job_thread[kv["jobid"]] = kv["thread"]
                elif word == "JOB_START":
                    jm = _JOB_START.match(rest)
                    if jm is None:
                        continue
                    jid = jm.group(1)
                    tries = attempts.setdefault(jid, [])
                    task = Task(job_id=jid, attempt=len(tries) + 1, executable=jm.group(2),
                                arguments=_args(jm.group(3)), host=jm.group(5), start=t,
                                ready=job_ready.get(jid, t))
                    tries.append(task)
                    run.tasks.append(task)
                elif word == "JOB_TASK":
                    tries = attempts.get(kv.get("jobid", ""))
                    if tries and kv.get("taskid"):
                        tries[-1].task_id = kv["taskid"]
                        tries[-1].submitted = t
                        by_task[kv["taskid"]] = tries[-1]
                elif word == "JOB_END":
                    tries = attempts.get(kv.get("jobid", ""))
                    if tries:
                        task = tries[-1]
                        task.state = "ok"
                        task.end = task.end if task.end is not None else t
                elif word == "APPLICATION_EXCEPTION":
                    tries = attempts.get(kv.get("jobid", ""))
                    if tries:
                        task = tries[-1]
                        task.state = "failed"
                        task.end = task.end if task.end is not None else t
                        detail = rest.split(" - ", 1)[-1].strip()
                        detail = detail.removeprefix("Application exception:").strip()
                        task.message = detail or task.message
                        em = _EXIT.search(detail)
                        if em:
                            task.exit_code = int(em.group(1))
                        pending_exc, continuation = task, []
            elif cat == "RuntimeStats$ProgressTicker":
                if not msg.startswith("HeapMax"):
                    counts = {}
                    for part in re.split(r"\s{2,}", msg.strip()):
                        cm = _COUNT.match(part.strip())
                        if cm:
                            counts[cm.group(1)] = int(cm.group(2))
                    run.progress.append(Snapshot(t, counts))
            elif cat == "Loader":
                if msg.startswith("RUN_ID "):
                    run.run_id = msg[7:].strip()
                elif msg.startswith("VERSION "):
                    run.version = msg[8:].strip()
                elif msg.startswith("ARGUMENTS "):
                    items = _args(msg[10:].strip().strip("[]"))
                    for i, item in enumerate(items):
                        if item.endswith(".swift") or item.endswith(".kml"):
                            run.script = item.rsplit("/", 1)[-1]
                            run.arguments = [a for a in items[i + 1:] if a.startswith("-")]
                            break
                elif msg.startswith("SWIFT_CONFIGURATION"):
                    config_lines = continuation = []
                elif msg.strip() == "RUN_START":
                    run.start = t
                elif msg.startswith("Swift finished"):
                    run.end = t
                    run.outcome = "ok" if "no errors" in msg else "failed"
    if pending_exc is not None:
        _take_stderr(pending_exc, continuation or [])
    if config_lines is not None:
        run.config = _flatten_config(config_lines)
    if not saw_line:
        raise ConfigError(f"swift.log of {name} is empty or not a swift log ({path}): swift did "
                          "not get far enough to write one, or the copy failed; see its swift.out")
    run.tz = clock.tz or timezone.utc
    run.run_id = run.run_id or name
    for task in run.tasks:
        task.app = _app_name(job_thread.get(task.job_id), thread_app) or task.executable
    return run


def _take_stderr(task: Task, lines: list[str]) -> None:
    text, inside = [], False
    for line in lines:
        if line.startswith("------- Application STDERR"):
            inside = True
        elif inside and line.startswith("-----------------------------------"):
            break
        elif inside:
            text.append(line)
    task.stderr = "\n".join(text).strip()


def _app_name(thread: str | None, thread_app: dict[str, str]) -> str | None:
    """The procedure of the job's thread, or of the nearest enclosing thread."""
    while thread:
        if thread in thread_app:
            return thread_app[thread]
        cut = max(thread.rfind("-"), thread.rfind("x"))
        thread = thread[:cut] if cut > 0 else None
    return None


def unfinished(run: SwiftRun) -> list[Task]:
    """Attempts that started but have no end in the log."""
    return [t for t in run.tasks if t.end is None]


def check_complete(run: SwiftRun) -> None:
    """Raise a one-line ConfigError unless the log covers the whole run."""
    name = run.path.parent.name or run.run_id
    if run.start is None:
        raise ConfigError(f"swift.log of {name} has no run in it (no RUN_START: swift stopped "
                          f"before the workflow began, e.g. a compile or configuration error; "
                          f"see {name}/swift.out): {run.path}")
    if not run.finished:
        open_ = unfinished(run)
        what = f"no JOB_END for {len(open_)} task{'s' if len(open_) != 1 else ''}" if open_ \
            else "every task it names has ended"
        raise ConfigError(f"swift.log of {name} ends before the run finished (no 'Swift "
                          f"finished' line; {what}): the run was cut short or the copy is "
                          f"incomplete; fetch it again once swift has ended: {run.path}")


def run_dirs(directory: Path) -> list[Path]:
    """``runNNN/`` directories with a swift.log, oldest first (by number)."""
    found = []
    for p in Path(directory).iterdir() if Path(directory).is_dir() else ():
        if p.name.startswith("run") and p.name[3:].isdigit() and (p / "swift.log").is_file():
            found.append((int(p.name[3:]), p))
    return [p for _, p in sorted(found)]


def log_header(log: Path, max_lines: int = 400) -> tuple[str, list[str]]:
    """(script name, swift arguments) from a log's ARGUMENTS line, reading only its head."""
    try:
        with Path(log).open("r", encoding="utf-8", errors="replace") as fh:
            for i, line in enumerate(fh):
                if i >= max_lines:
                    break
                k = line.find(" Loader ARGUMENTS [")
                if k >= 0:
                    items = _args(line[k + 19:].rstrip().rstrip("]"))
                    for j, item in enumerate(items):
                        if item.endswith(".swift") or item.endswith(".kml"):
                            return item.rsplit("/", 1)[-1], [a for a in items[j + 1:]
                                                              if a.startswith("-")]
    except OSError:
        pass
    return "", []


def expected_tasks(directory: Path, script: str, arguments: list[str] | tuple = ()) -> int | None:
    """How many jobs the newest finished run of ``script`` with the same swift arguments had.

    The live view uses it as the total of its bar: Swift only learns of a job when its inputs
    are ready, so a run's own progress lines never say how many jobs are still to come.
    """
    script = Path(script).name
    for d in reversed(run_dirs(directory)):
        s, a = log_header(d / "swift.log")
        if s != script or list(a) != [x for x in arguments if x.startswith("-")]:
            continue
        jobs, done = set(), False
        with (d / "swift.log").open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                k = line.find(" JOB_START jobid=")
                if k >= 0:
                    jobs.add(line[k + 17:].split(" ", 1)[0])
                elif " Loader Swift finished" in line:
                    done = True
        if done:
            return len(jobs)
    return None
