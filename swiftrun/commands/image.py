"""`swiftrun image build`: bake an AMI with Java, Perl and Swift, then set [ec2] image to it."""

from __future__ import annotations

import re

import click

from swiftrun.commands._common import Env, project_options
from swiftrun.errors import UsageError

# What CreateImage accepts as Name (EC2 API reference, CreateImage).
AMI_NAME = re.compile(r"[A-Za-z0-9()\[\] ./\-'@_]{3,128}")


@click.group()
def image():
    """Node images (AMIs) with Swift baked in, so boots skip the installs."""


@image.command()
@click.option("--name", help="Image name (default: swiftrun-<cluster>-<date>).")
@project_options
def build(name, project_file, cluster_name, json_mode, yes, quiet):
    """Boot a node with the project's userdata, scrub it, and save it as an AMI."""
    from swiftrun.cluster.image import build_image

    if name is not None and not AMI_NAME.fullmatch(name):
        raise UsageError(f"--name {name!r}: not a name EC2 takes for an image: 3-128 letters, "
                         "digits, spaces or ( ) [ ] . / - ' @ _ (e.g. --name swiftrun-p4-2026-01-31, "
                         "or leave --name out)")
    env = Env(project_file, cluster_name, json_mode, yes, quiet)
    result = build_image(env.project, env.ui, name=name)
    if json_mode:
        env.emit(result)
    else:
        env.ui.info(f"image {result['image_id']} ({result['name']}) is ready; use it with\n"
                    f"  [ec2]\n  image = \"{result['image_id']}\"")
    return 0
