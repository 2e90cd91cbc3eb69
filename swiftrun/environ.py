"""The environment variables swiftrun reads, each once, checked before anything else runs.

``VARIABLES`` lists every ``SWIFTRUN_*`` variable the tool itself reads (the node-side
``SWIFTRUN_NODE_ROOT`` is the node's business, not the CLI's): its kind, its bounds and what it
means. ``check()`` runs first in ``cli.main``, so a bad value is one line naming the variable
and the fix, exit 2, before any project file, cloud or SSH call. Code reads the variables only
through the typed readers below (``seconds``, ``count``, ``flag``, ``choice``, ``text``), never
with a raw ``float(os.environ[...])``.

Kinds: ``seconds`` (a number of seconds within bounds), ``count`` (a whole number within
bounds), ``flag`` (1/0, true/false, yes/no, on/off), ``choice`` (one of ``choices``),
``persist`` (OpenSSH's ControlPersist: seconds, a time like 10m, yes or no), ``hostport``,
``home`` (a directory swiftrun may create and write) and ``setting`` (a project override that the
project loader checks with the key it stands for; see project/load.py ENV_OVERRIDES).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from swiftrun.errors import ConfigError

DAY = 86400.0


@dataclass(frozen=True)
class Var:
    name: str
    kind: str
    default: str
    meaning: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = field(default=())


VARIABLES: dict[str, Var] = {v.name: v for v in (
    Var("SWIFTRUN_HOME", "home", "", "where the local state lives (default ~/.swiftrun)"),
    Var("SWIFTRUN_DEBUG", "flag", "", "show tracebacks (like --debug)"),
    Var("SWIFTRUN_BOOT_TIMEOUT", "seconds", "900", "how long a node may take to boot", 1, DAY),
    Var("SWIFTRUN_SSH_TIMEOUT", "seconds", "300", "how long to wait for a node's SSH", 1, DAY),
    Var("SWIFTRUN_STATIC_SSH_TIMEOUT", "seconds", "20",
        "how long a static host that refuses SSH is retried", 1, DAY),
    Var("SWIFTRUN_WARM_TTL", "seconds", "900",
        "how long the last tag read is trusted instead of asking EC2 (0: always ask)", 0, 7 * DAY),
    Var("SWIFTRUN_HEARTBEAT", "seconds", "30",
        "after how long without console output a run says it is still running", 1, DAY),
    Var("SWIFTRUN_EC2_CONSISTENCY_TIMEOUT", "seconds", "120",
        "how long EC2's not-yet-consistent answers are retried", 0, DAY),
    Var("SWIFTRUN_DOCTOR_TIMEOUT", "seconds", "30", "how long one doctor check may take", 1, DAY),
    Var("SWIFTRUN_WATCH_DEBOUNCE", "seconds", "0.5",
        "seconds of quiet after a change before --watch runs again", 0, 3600),
    Var("SWIFTRUN_WATCH_MAX_RUNS", "count", "", "stop --watch after this many runs", 1, 10**6),
    Var("SWIFTRUN_SSH_PERSIST", "persist", "600",
        "how long an idle SSH connection is kept (OpenSSH ControlPersist; 0 or no: not kept)"),
    Var("SWIFTRUN_PRICING", "choice", "", "where prices come from",
        choices=("api", "table", "offline", "off", "0", "no")),
    Var("SWIFTRUN_OFFLINE_PRICES", "flag", "", "use the shipped price table, never the API"),
    Var("SWIFTRUN_DOCTOR_HEADNODE_ADDR", "hostport", "",
        "the address doctor checks the coaster port at, as host:port"),
    *(Var(name, "setting", "", f"overrides [{dotted.replace('.', '] ', 1)}")
      for name, dotted in (("SWIFTRUN_CLUSTER", "cluster.name"),
                           ("SWIFTRUN_WORKERS", "cluster.workers"),
                           ("SWIFTRUN_REGION", "ec2.region"),
                           ("SWIFTRUN_PROFILE", "ec2.profile"),
                           ("SWIFTRUN_IMAGE", "ec2.image"),
                           ("SWIFTRUN_SWIFT_URL", "swift.install_url"),
                           ("SWIFTRUN_SWIFT_SHA256", "swift.install_sha256"))),
)}

_TRUE = ("1", "true", "t", "yes", "y", "on")      # what click takes for --debug's envvar, too
_FALSE = ("", "0", "false", "f", "no", "n", "off")
_PERSIST = re.compile(r"(?:\d+[smhdwSMHDW]?)+")


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _raw(name: str, environ: Mapping[str, str] | None = None) -> str:
    return _env(environ).get(name, "").strip()


def _bad(name: str, raw: str, problem: str, example: str) -> ConfigError:
    return ConfigError(f"{name}={raw!r}: {problem}; set it to e.g. {example} or unset it")


def _number(var: Var, raw: str, *, whole: bool) -> float:
    what = "a whole number" if whole else "a number of seconds"
    example = var.default or str(int(var.low or 1))
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise _bad(var.name, raw, f"not {what}", example) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _bad(var.name, raw, f"not {what}", example)
    unit = "" if whole else " s"
    if var.low is not None and value < var.low:
        raise _bad(var.name, raw, f"below the least allowed value {var.low:g}{unit} ({var.meaning})",
                   example)
    if var.high is not None and value > var.high:
        raise _bad(var.name, raw, f"above the largest allowed value {var.high:g}{unit} ({var.meaning})",
                   example)
    return value


def seconds(name: str, environ: Mapping[str, str] | None = None) -> float:
    """The variable as seconds (its default when unset or empty). Raises ConfigError."""
    var = VARIABLES[name]
    raw = _raw(name, environ) or var.default
    return _number(var, raw, whole=False)


def count(name: str, environ: Mapping[str, str] | None = None) -> int | None:
    """The variable as a whole number, or None when unset and without a default."""
    var = VARIABLES[name]
    raw = _raw(name, environ) or var.default
    return None if not raw else int(_number(var, raw, whole=True))


def flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    raw = _raw(name, environ)
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _bad(name, raw, "not a yes/no value", "1 (or 0)")


def choice(name: str, environ: Mapping[str, str] | None = None) -> str:
    var = VARIABLES[name]
    raw = _raw(name, environ).lower() or var.default
    if raw and raw not in var.choices:
        raise _bad(name, raw, f"not one of {', '.join(var.choices)}", var.choices[0])
    return raw


def persist(name: str = "SWIFTRUN_SSH_PERSIST", environ: Mapping[str, str] | None = None) -> str:
    """OpenSSH's ControlPersist: seconds, a time like 10m or 1h30m, yes or no."""
    var = VARIABLES[name]
    raw = _raw(name, environ) or var.default
    if raw.lower() in ("yes", "no") or _PERSIST.fullmatch(raw):
        return raw.lower() if raw.lower() in ("yes", "no") else raw
    raise _bad(name, raw, "not a time OpenSSH's ControlPersist takes (seconds, 10m, yes or no)", "600")


def hostport(name: str, environ: Mapping[str, str] | None = None) -> tuple[str, int] | None:
    raw = _raw(name, environ)
    if not raw:
        return None
    host, _, port = raw.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise _bad(name, raw, "expected host:port with a port from 1 to 65535", "10.0.0.5:50005")
    return host.strip("[]"), int(port)


def text(name: str, environ: Mapping[str, str] | None = None) -> str:
    return _raw(name, environ)


def home(environ: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """(the state directory, the variable that chose it): $SWIFTRUN_HOME or $HOME/.swiftrun."""
    env = _env(environ)
    raw = env.get("SWIFTRUN_HOME", "")
    if raw.strip():
        return Path(raw).expanduser(), "SWIFTRUN_HOME"
    if "HOME" in env:
        home_dir = env["HOME"]
        if not home_dir or not Path(home_dir).is_absolute():
            raise ConfigError(f"HOME={home_dir!r}: not an absolute directory, so swiftrun has "
                              "nowhere to keep ~/.swiftrun; set HOME to your home directory or "
                              "SWIFTRUN_HOME to a writable directory")
        return Path(home_dir) / ".swiftrun", "HOME"
    return Path.home() / ".swiftrun", "HOME"


def check_home(environ: Mapping[str, str] | None = None) -> Path:
    """The state directory, created 0700, or ConfigError naming the variable that chose it."""
    root, var = home(environ)
    shown = f"{var}={_env(environ).get(var, '')!r}"
    fix = ("set SWIFTRUN_HOME to a directory you can write, or unset it" if var == "SWIFTRUN_HOME"
           else "set HOME to your home directory, or SWIFTRUN_HOME to a directory you can write")
    where = "" if var == "SWIFTRUN_HOME" else f" ({root})"
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{shown}: {root} is a file, not a directory; {fix}") from None
    except NotADirectoryError:
        raise ConfigError(f"{shown}: a part of {root} is a file, not a directory; {fix}") from None
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot create{where or ' it'}: "
                          f"{exc.strerror or exc}; {fix}") from None
    if not root.is_dir():
        raise ConfigError(f"{shown}: {root} is not a directory; {fix}")
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"{shown}: {root} is not writable; {fix}")
    return root


def check(environ: Mapping[str, str] | None = None, *, need_home: bool = True) -> None:
    """Every variable of VARIABLES that is set holds a usable value; ConfigError for the first
    that does not. ``need_home``: also make sure the state directory can be created and written."""
    env = _env(environ)
    for var in VARIABLES.values():
        if var.kind in ("setting", "home"):
            continue
        if not _raw(var.name, env):
            continue
        reader = {"seconds": seconds, "count": count, "flag": flag, "choice": choice,
                  "persist": persist, "hostport": hostport}[var.kind]
        reader(var.name, env)
    if need_home:
        check_home(env)
