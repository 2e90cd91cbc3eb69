"""See a run: the report of a fetched ``runNNN/`` and the live progress view.

- :func:`write_report` reads ``runNNN/swift.log`` and writes ``activeplot.png``,
  ``cumulativeplot.png``, ``workersplot.png`` and ``report.json`` beside it; it returns the
  summary document (see :mod:`swiftrun.report.summary` for what each figure means and for the
  ``swiftrun-run.json`` cost contract).
- :func:`find_run` picks the run a command means (the newest ``runNNN/`` with a swift.log).
- :class:`swiftrun.report.progress.ProgressView` is the live view of a streaming console.

These modules use only the standard library, rich (progress) and matplotlib (plots, optional:
``pip install 'swiftrun[report]'``), and of swiftrun only :mod:`swiftrun.errors`.
"""

from __future__ import annotations

import json
from pathlib import Path

from swiftrun.errors import ConfigError, UsageError

REPORT_JSON = "report.json"


def find_run(where: Path | None = None, *, script: str | None = None) -> Path:
    """The run directory ``where`` means: itself when it holds a swift.log, else the newest
    ``runNNN/`` under it (of ``script`` when given, judged by the log's ARGUMENTS line).
    ``where`` may also be a ``.swift`` file: its directory's newest run of that script."""
    from swiftrun.report.swiftlog import log_header, run_dirs

    where = Path(where or Path.cwd()).expanduser().absolute()
    if where.suffix == ".swift" and not where.is_dir():
        script = script or where.name
        where = where.parent if str(where.parent) else Path.cwd()
    if not where.exists():
        raise UsageError(f"{where}: no such directory (give a run directory such as run003, or "
                         "the directory of the script whose runs to report on)")
    if not where.is_dir():
        raise UsageError(f"{where}: not a directory (give a run directory such as run003)")
    if (where / "swift.log").exists():
        return where
    runs = run_dirs(where)
    if script:
        runs = [d for d in runs if log_header(d / "swift.log")[0] == Path(script).name]
    if not runs:
        looks_like_run = where.name.startswith("run") and where.name[3:].isdigit()
        if looks_like_run:
            raise ConfigError(f"{where} has no swift.log (swift writes it there when a run starts; "
                              "was the run fetched? `swiftrun fetch`)")
        of = f" of {Path(script).name}" if script else ""
        raise ConfigError(f"no run{of} in {where}: no runNNN/ directory with a swift.log "
                          "(run the script, or `swiftrun fetch` to bring the last run back)")
    return runs[-1]


def load(run_dir: Path, *, cost_meta: dict | None = None):
    """(parsed run, summary document) of a complete run; one-line ConfigError otherwise."""
    from swiftrun.report import summary, swiftlog

    run_dir = Path(run_dir)
    run = swiftlog.parse(run_dir / "swift.log")
    swiftlog.check_complete(run)
    reason = None
    if cost_meta is None:
        cost_meta, reason = summary.load_meta(run_dir)
    return run, summary.summarize(run, cost_meta, meta_reason=reason)


def write_report(run_dir: Path, *, cost_meta: dict | None = None, plots: bool = True) -> dict:
    """Write the plots and report.json into ``run_dir``; return the summary document, whose
    ``plots`` maps active / cumulative / workers to the PNG paths.

    ``cost_meta`` is the ``swiftrun-run.json`` content (see summary.py); None reads that file
    from ``run_dir`` if it is there. Raises ConfigError (one line, exit 2) for a missing, empty
    or truncated swift.log, and when matplotlib is missing (``plots=False`` skips them).
    """
    from swiftrun.report import summary

    run_dir = Path(run_dir)
    run, doc = load(run_dir, cost_meta=cost_meta)
    if plots:
        from swiftrun.report import plots as plotting

        paths, boxes = plotting.draw(summary.series(run), doc, run_dir)
        doc["plots"] = paths
        doc["plot_axes"] = boxes     # [left, top, right, bottom] pixels of each plot's axes
    try:
        (run_dir / REPORT_JSON).write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {run_dir / REPORT_JSON}: {exc.strerror or exc}") from None
    doc["report_json"] = str(run_dir / REPORT_JSON)
    return doc
