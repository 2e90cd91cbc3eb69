"""`swiftrun conf SCRIPT`: the swift.conf a run would use, checked against Swift 0.96's keys."""

from __future__ import annotations

from pathlib import Path

import click

from swiftrun.commands._common import Env, project_options
from swiftrun.commands.run import _script


@click.command()
@click.argument("script", type=click.Path(path_type=Path))
@project_options
def conf(script, project_file, cluster_name, json_mode, yes, quiet):
    """Print the swift.conf a run of SCRIPT would use (template + [swift] conf + ./swift.conf)."""
    from swiftrun import swiftconf

    script = _script(script)
    env = Env(project_file, cluster_name, json_mode, yes, quiet, start=script.parent)
    rendered = swiftconf.render_checked(env.project, script_dir=script.parent)
    if json_mode:
        env.emit({"swift_conf": rendered.text})
    else:
        print(rendered.text.rstrip())
    return 0
