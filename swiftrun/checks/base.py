"""The check type and how checks run: ok / warn / fail, each with what it saw and what to do.

Every check gives one :class:`Check`. Each runs under a time limit (a check that does not answer
in time is a fail saying so), so a dead endpoint or a hung SSH session never hangs ``doctor`` or
``up``. ``up`` turns the first failed pre-launch check into its error with
:func:`raise_on_failure`; ``doctor`` prints them all.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from swiftrun import environ
from swiftrun.errors import CloudError, ConfigError, SwiftrunError

OK, WARN, FAIL = "ok", "warn", "fail"
TIMEOUT = environ.seconds("SWIFTRUN_DOCTOR_TIMEOUT")


@dataclass
class Check:
    name: str
    status: str                 # ok | warn | fail
    detail: str
    fix: str = ""
    section: str = ""
    # what raise_on_failure raises for this check (ConfigError: the project must change)
    error: type = field(default=CloudError, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def doc(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix,
                "section": self.section}


def _as_checks(name: str, result) -> list[Check]:
    if result is None:
        return []
    if isinstance(result, Check):
        return [result]
    return list(result)


def _error_check(name: str, exc: BaseException) -> Check:
    if isinstance(exc, SwiftrunError):
        err = ConfigError if isinstance(exc, ConfigError) else CloudError
        return Check(name, FAIL, exc.message, exc.hint or _default_fix(exc), error=err)
    return Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                 "run again with --debug and report it")


def _default_fix(exc: SwiftrunError) -> str:
    if isinstance(exc, ConfigError):
        return "fix the setting named in the message"
    return "see the message; `swiftrun doctor` again once it is fixed"


def run_checks(items: Iterable[tuple[str, Callable]], *, timeout: float | None = None,
               section: str = "") -> list[Check]:
    """Run ``(name, fn)`` items concurrently, each with ``timeout`` seconds; results in order.

    ``fn`` returns a Check, a list of Checks or None. A SwiftrunError becomes a failed check with
    its message; a check still running at its limit is a fail saying so (its thread is left
    behind as a daemon: nothing can be interrupted safely from outside).
    """
    limit = TIMEOUT if timeout is None else timeout
    jobs = []
    for name, fn in items:
        box: dict = {}

        def target(fn=fn, box=box, name=name):
            try:
                box["result"] = _as_checks(name, fn())
            except BaseException as exc:  # noqa: BLE001 - every problem becomes a check
                box["result"] = [_error_check(name, exc)]

        thread = threading.Thread(target=target, name=f"doctor {name}", daemon=True)
        thread.start()
        jobs.append((name, thread, box, time.monotonic()))
    out: list[Check] = []
    for name, thread, box, started in jobs:
        thread.join(max(0.0, started + limit - time.monotonic()))
        if thread.is_alive() or "result" not in box:
            out.append(Check(name, FAIL, f"no answer within {limit:g}s (the check timed out)",
                             "check the network path to the cloud / node; raise the limit with "
                             "SWIFTRUN_DOCTOR_TIMEOUT=<seconds> if it is only slow"))
        else:
            out.extend(box["result"])
    for check in out:
        check.section = check.section or section
    return out


def run_check(name: str, fn: Callable, *, timeout: float | None = None, section: str = "") -> list[Check]:
    return run_checks([(name, fn)], timeout=timeout, section=section)


def raise_on_failure(checks: list[Check], ui=None) -> None:
    """Warnings go to ``ui``; the first failed check is raised as one line with its fix."""
    for check in checks:
        if check.status == WARN and ui is not None:
            ui.warn(f"{check.name}: {check.detail}" + (f" ({check.fix})" if check.fix else ""))
    for check in checks:
        if check.failed:
            text = f"pre-launch check {check.name!r} failed, nothing was launched: {check.detail}"
            raise check.error(text, hint=check.fix or None)
