"""`swiftrun report [RUNDIR]`: what a fetched run did, as text (or --json) and three PNGs.

Which run: RUNDIR itself when it holds a swift.log (``run003``); a directory: its newest
``runNNN/`` with a swift.log; a ``.swift`` file (or --script): the newest run of that script in
its directory; nothing: the newest run in the directory of -p FILE, else the current directory.
Only the standard library is needed for the summary; the plots need matplotlib
(``pip install 'swiftrun[report]'``), imported only when drawing.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("rundir", required=False, type=click.Path(path_type=Path))
@click.option("--script", type=click.Path(path_type=Path), metavar="SCRIPT",
              help="The newest run of SCRIPT, in SCRIPT's directory.")
@click.option("-p", "--project", "project_file", metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Look for runs in the directory of this project file (swiftrun.toml).")
@click.option("--json", "json_mode", is_flag=True, help="Print one JSON document on stdout.")
@click.option("--no-plots", is_flag=True, help="Only the summary (no matplotlib needed).")
def report(rundir, script, project_file, json_mode, no_plots):
    """Report on a fetched run: wall time, tasks by app, queueing, workers, failures, cost.

    Writes activeplot.png, cumulativeplot.png (the cloud tutorial's plots), workersplot.png and
    report.json into the run directory. RUNDIR defaults to the newest runNNN/ of the current
    directory (or of SCRIPT's directory with --script).
    """
    from swiftrun.errors import UsageError
    from swiftrun.report import find_run, write_report
    from swiftrun.report.summary import format_text

    if project_file is not None and not project_file.exists():
        raise UsageError(f"-p {project_file}: no such file (give the path of swiftrun.toml, or "
                         "leave -p out to look in the current directory)")
    if rundir is not None:
        where = rundir
    elif script is not None:
        where = script
    elif project_file is not None:
        where = project_file.resolve().parent
    else:
        where = Path.cwd()
    name = script.name if script is not None and script.suffix == ".swift" else None
    run_dir = find_run(where, script=name)
    doc = write_report(run_dir, plots=not no_plots)
    if json_mode:
        from swiftrun.commands._common import emit

        emit(doc)
    else:
        print(format_text(doc), flush=True)
    return 0
