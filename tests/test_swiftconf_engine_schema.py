"""swiftrun's table of Swift 0.96 configuration keys against the engine's own schema.

The distribution's lib/cog-swift-svn.jar holds swift.conf.schema, the file Swift itself checks a
configuration against. Every key of swiftrun's table that the schema also has must check values
at least as strictly: a StrictlyPositiveInt (maxParallelTasks, maxJobs, ...) refuses 0 and
negatives, a PositiveInt (executionRetries) refuses negatives, a Choice refuses what is not one
of its values. So a bad value fails locally, before anything is paid for, not on the headnode.
"""

from __future__ import annotations

import re
import tarfile
import zipfile
from io import BytesIO

import pytest
from pyhocon import ConfigFactory

from swiftrun.errors import ConfigError
from swiftrun.swiftconf import schema
from tests.support.nodeimage import SWIFT_TARBALL


def engine_schema() -> str:
    if not SWIFT_TARBALL.is_file():
        pytest.skip(f"needs the Swift/K distribution at {SWIFT_TARBALL}")
    with tarfile.open(SWIFT_TARBALL) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/lib/cog-swift-svn.jar"))
        jar = zipfile.ZipFile(BytesIO(tar.extractfile(member).read()))
    return jar.read("swift.conf.schema").decode()


def parse(text: str) -> dict[tuple, str]:
    """path (with "*" for any name) -> type, e.g. ("site", "*", "maxParallelTasks") ->
    "StrictlyPositiveInt". Enough of the schema's syntax for its leaves and _type lines."""
    text = re.sub(r'"""(.|\n)*?"""', '""', text)
    out: dict[tuple, str] = {}
    stack: list[tuple] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line == "}":
            stack.pop()
            continue
        m = re.fullmatch(r'([\w."*-]+)\s*:?\s*\{', line)
        if m:
            stack.append(tuple(p.strip('"') for p in m.group(1).split(".")))
            continue
        m = re.fullmatch(r'([\w."*-]+)\s*:\s*"\??([^"]*)"', line)
        if m:
            key = tuple(p.strip('"') for p in m.group(1).split("."))
            base = tuple(p for part in stack for p in part)
            path = base if key == ("_type",) else base + key
            out[path] = m.group(2)
    return out


def ours(path: tuple):
    """swiftrun's spec for a schema path, or None when the table does not have it."""
    spec = schema.SCHEMA
    for part in path:
        if isinstance(spec, tuple) and spec[0] == "obj":
            spec = spec[1].get(part)
        elif isinstance(spec, tuple) and spec[0] == "map" and part == "*":
            spec = spec[1]
        else:
            return None
        if spec is None:
            return None
    return spec


def test_every_shared_key_checks_values_as_strictly_as_the_engine():
    theirs = parse(engine_schema())
    assert theirs[("site", "*", "maxParallelTasks")] == "StrictlyPositiveInt"   # the parser works
    wrong = []
    for path, kind in sorted(theirs.items()):
        spec = ours(path)
        if spec is None or spec == "any":
            continue
        choice = re.fullmatch(r"Choice\[(.*)\]", kind)
        want = ("posint" if kind == "StrictlyPositiveInt" else "natint" if kind == "PositiveInt"
                else ("enum", tuple(sorted(v.strip() for v in choice.group(1).split(","))))
                if choice else None)
        if want is None:
            continue
        got = (spec[0], tuple(sorted(spec[1]))) if isinstance(spec, tuple) and spec[0] == "enum" else spec
        if got != want:
            wrong.append(f"{'.'.join(path)}: ours {got}, the engine's {kind}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("text,needle", [
    ("site.s { maxParallelTasks: 0 }", "maxParallelTasks"),
    ("site.s { execution { options { maxJobs: -2 } } }", "maxJobs"),
    ("executionRetries: -1", "executionRetries"),
    ("site.s { staging: nfs }", "staging"),
    ("site.s { wrapperParameterMode: both }", "wrapperParameterMode"),
])
def test_bad_values_fail_locally(text, needle):
    with pytest.raises(ConfigError, match=needle):
        schema.check(ConfigFactory.parse_string(text), "swift.conf", partial=True)


@pytest.mark.parametrize("text", ["site.s { maxParallelTasks: 8 }", "executionRetries: 0",
                                  "site.s { execution { options { maxJobs: 1 } } }"])
def test_good_values_pass(text):
    schema.check(ConfigFactory.parse_string(text), "swift.conf", partial=True)
