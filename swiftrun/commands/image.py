"""`swiftrun image build`: bake an AMI with Java, Perl and Swift, then set [ec2] image to it."""

from __future__ import annotations

import click

from swiftrun.commands._common import Env, project_options


@click.group()
def image():
    """Node images (AMIs) with Swift baked in, so boots skip the installs."""


@image.command()
@click.option("--name", help="Image name (default: swiftrun-<cluster>-<date>).")
@project_options
def build(name, project_file, cluster_name, json_mode, yes, quiet):
    """Boot a node with the project's userdata, scrub it, and save it as an AMI."""
    from swiftrun.cluster.image import build_image

    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    result = build_image(env.project, env.ui, name=name)
    if json_mode:
        env.emit(result)
    else:
        env.ui.info(f"image {result['image_id']} ({result['name']}) is ready; use it with\n"
                    f"  [ec2]\n  image = \"{result['image_id']}\"")
    return 0
