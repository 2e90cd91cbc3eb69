"""`swiftrun init [--from configs]`: write a commented swiftrun.toml."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from swiftrun.errors import UsageError


@click.command()
@click.option("--from", "legacy", type=click.Path(dir_okay=False, path_type=Path),
              help="Convert the tutorial's legacy configs file.")
@click.option("--name", default=None, help="Cluster name (default: this directory's name).")
@click.option("--provider", type=click.Choice(["ec2", "static"]), default="ec2")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("swiftrun.toml"), show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(legacy, name, provider, output, force):
    """Write a commented swiftrun.toml with every setting explained."""
    from swiftrun.project.initfile import convert_legacy, render_init
    from swiftrun.project import sanitize_cluster_name

    if output.exists() and not force:
        raise UsageError(f"{output} exists; use --force to overwrite it or -o to write elsewhere")
    parent = output.parent
    if not parent.exists():
        raise UsageError(f"-o {output}: the directory {parent} does not exist (create it first: "
                         f"mkdir -p {shlex.quote(str(parent))}, or give another -o)")
    if not parent.is_dir():
        raise UsageError(f"-o {output}: {parent} is a file, not a directory (give another -o)")
    if legacy:
        if not legacy.is_file():
            raise UsageError(f"--from {legacy}: no such file")
        replaced: list[str] = []
        text = convert_legacy(legacy, dest_dir=output.resolve().parent, name=name,
                              warnings=replaced)
        for line in replaced:
            click.echo(f"warning: {line}", err=True)
    else:
        text = render_init(name or sanitize_cluster_name(Path.cwd().name), provider=provider)
    try:
        output.write_text(text)
    except OSError as exc:
        raise UsageError(f"-o {output}: cannot write it: {exc.strerror or exc} (check the "
                         "directory's permissions, or give another -o)") from None
    click.echo(f"wrote {output}", err=True)
    return 0
