"""The report's pictures, as the Swift cloud tutorial's ``plot.sh`` draws them, plus the workers.

- ``activeplot.png``: "Active jobs", number of active jobs over time in seconds (the tutorial's
  plot_active.plt), with the slots the workers have as a dashed line when known;
- ``cumulativeplot.png``: "Cumulative jobs", number of completed jobs over time (plot_cumulative.plt),
  failed ones as a second line;
- ``workersplot.png``: tasks per worker (ok / failed), with each worker's idle share.

matplotlib is optional (``pip install 'swiftrun[report]'``) and imported only here, when a plot is
drawn, with the Agg canvas (no display, no pyplot state). Every PNG is ``SIZE`` pixels.
"""

from __future__ import annotations

from pathlib import Path

from swiftrun.errors import ConfigError

SIZE = (800, 500)      # pixels (width, height) of every PNG
DPI = 100
LINE = "#1f4e9c"
FAILED = "#c0392b"
NAMES = {"active": "activeplot.png", "cumulative": "cumulativeplot.png",
         "workers": "workersplot.png"}


def _mpl():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report's plots need matplotlib, which is not installed: "
                          "pip install 'swiftrun[report]' (or --no-plots for the summary alone)") from None
    return Figure, FigureCanvasAgg


def _figure(Figure, FigureCanvasAgg):
    fig = Figure(figsize=(SIZE[0] / DPI, SIZE[1] / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, ax, path: Path) -> list[int]:
    """Save at exactly SIZE; return the axes' box in image pixels [left, top, right, bottom]."""
    fig.tight_layout()
    fig.canvas.draw()
    box = ax.get_window_extent()
    fig.savefig(path, dpi=DPI, format="png", facecolor="white")
    h = SIZE[1]
    return [int(round(box.x0)), int(round(h - box.y1)), int(round(box.x1)), int(round(h - box.y0))]


def draw(series: dict, doc: dict, out_dir: Path) -> tuple[dict[str, str], dict[str, list[int]]]:
    """Write the PNGs into ``out_dir``; return ({name: path}, {name: axes box in pixels})."""
    Figure, Canvas = _mpl()
    out_dir = Path(out_dir)
    paths, boxes = {}, {}
    title_run = f"{doc.get('script') or ''} {doc.get('run') or ''}".strip()
    end = max(series["end_s"], 1e-3)

    # Active jobs (plot_active.plt: "Active  jobs", "Time in sec", "number of active jobs")
    fig, ax = _figure(Figure, Canvas)
    xs, ys = zip(*series["active"])
    ax.step(xs, ys, where="post", color=LINE, linewidth=1.8)
    # the workers' slots: those swift.conf gives the cluster (maxJobs x tasksPerNode), or
    # those of the workers the log names, whichever is more
    slots = max(doc["tasks"].get("slots") or 0, doc["tasks"].get("slots_configured") or 0)
    top = max(max(ys), slots, 1)
    if slots:
        ax.axhline(slots, color="#888888", linestyle="--", linewidth=1)
        ax.text(end, slots, f" {slots} slots", va="bottom", ha="right", color="#555555")
    ax.set_xlim(0, end)
    ax.set_ylim(0, top * 1.1 + 0.5)
    ax.set_title(f"Active jobs ({title_run})")
    ax.set_xlabel("Time in sec")
    ax.set_ylabel("number of active jobs")
    paths["active"] = str(out_dir / NAMES["active"])
    boxes["active"] = _save(fig, ax, Path(paths["active"]))

    # Cumulative jobs (plot_cumulative.plt: "Cumulative jobs", "number of completed jobs")
    fig, ax = _figure(Figure, Canvas)
    xs, ys = zip(*series["finished"])
    ax.step(xs, ys, where="post", color=LINE, linewidth=1.8, label="finished successfully")
    most = max(ys)
    if series["failed"][-1][1]:
        fx, fy = zip(*series["failed"])
        ax.step(fx, fy, where="post", color=FAILED, linewidth=1.8, label="failed")
        ax.legend(loc="upper left")
        most = max(most, max(fy))
    ax.set_xlim(0, end)
    ax.set_ylim(0, max(most, 1) * 1.1 + 0.5)
    ax.set_title(f"Cumulative jobs ({title_run})")
    ax.set_xlabel("Time in seconds")
    ax.set_ylabel("number of completed jobs")
    paths["cumulative"] = str(out_dir / NAMES["cumulative"])
    boxes["cumulative"] = _save(fig, ax, Path(paths["cumulative"]))

    # Tasks per worker
    fig, ax = _figure(Figure, Canvas)
    rows = list(reversed(doc["workers"])) or [{"worker": "(none)", "ok": 0, "failed": 0,
                                               "tasks": 0, "idle_share": None}]
    names = [w["worker"] for w in rows]
    ok = [w["ok"] for w in rows]
    bad = [w["failed"] for w in rows]
    other = [w["tasks"] - w["ok"] - w["failed"] for w in rows]
    ys = range(len(rows))
    ax.barh(ys, ok, color=LINE, label="ok")
    ax.barh(ys, bad, left=ok, color=FAILED, label="failed")
    if any(other):
        ax.barh(ys, other, left=[a + b for a, b in zip(ok, bad)], color="#999999", label="unfinished")
    most = max([w["tasks"] for w in rows] + [1])
    for y, w in zip(ys, rows):
        idle = "" if w.get("idle_share") is None else f", idle {w['idle_share'] * 100:.0f}%"
        ax.text(w["tasks"] + most * 0.01, y, f"{w['tasks']}{idle}", va="center")
    ax.set_yticks(list(ys), names)
    ax.set_xlim(0, most * 1.3)
    if any(bad) or any(other):
        ax.legend(loc="lower right")
    ax.set_title(f"Tasks per worker ({title_run})")
    ax.set_xlabel("number of tasks")
    paths["workers"] = str(out_dir / NAMES["workers"])
    boxes["workers"] = _save(fig, ax, Path(paths["workers"]))
    return paths, boxes
