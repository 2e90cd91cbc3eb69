"""The package's plan stays true: one-way layers, no import cycles, rooms of one concern.

Every module of ``swiftrun/`` is parsed with ``ast`` and every import counts, at module level or
inside a function: the package imports boto3, fabric and pyhocon lazily so that ``--help`` stays
fast, and a lazy import is a dependency all the same. A module's layer is its folder's (``LAYERS``,
top to bottom; docs/architecture.md says what each is for). The checks:

(a) no module imports a layer above its own;
(b) no import cycle: no strongly connected component of more than one module, and no module that
    imports its own package's ``__init__`` (a package's ``__init__`` may re-export the names of
    its modules; those modules import each other, never the ``__init__``; ``swiftrun/__init__.py``
    itself is a ground-floor module holding ``__version__``);
(c) no module over ``MAX_LINES`` lines unless ``LONG_MODULES`` says why it reads better whole.

An import names the module it names (``from swiftrun.sync import fetching`` names the module
``swiftrun.sync.fetching``; ``from swiftrun.sync import fetch`` names ``swiftrun.sync``); that
Python also runs the parent packages' ``__init__`` first is not counted. A lazy ``__init__``
(PEP 562) lists its modules in a ``_WHERE`` table of name -> module, which counts as imports.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "swiftrun"

# Top to bottom. A module may import modules of its own layer or of a layer below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("entry", ("swiftrun.cli", "swiftrun.__main__")),
    ("commands", ("swiftrun.commands",)),
    ("run", ("swiftrun.run",)),
    ("cluster", ("swiftrun.cluster",)),
    ("checks", ("swiftrun.checks",)),
    ("the outside world", ("swiftrun.cloud", "swiftrun.remote", "swiftrun.sync", "swiftrun.report")),
    ("what goes onto the nodes", ("swiftrun.node", "swiftrun.swiftconf")),
    ("project", ("swiftrun.project",)),
    ("ground", ("swiftrun.errors", "swiftrun.environ", "swiftrun.paths", "swiftrun.ui", "swiftrun")),
]

MAX_LINES = 600
# module path -> why it reads better whole than split
LONG_MODULES: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------
# the checker (a function of a source tree, so the self-checks below can feed it a made-up one)
# ------------------------------------------------------------------------------------------------

def modules(pkg: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under ``pkg`` (a package's name is its
    ``__init__``'s)."""
    out = {}
    for path in sorted(pkg.rglob("*.py")):
        parts = list(path.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (lazy imports included)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    named: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            named += [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                      for a in node.names]
        elif (is_pkg and isinstance(node, ast.Assign) and len(node.targets) == 1
              and getattr(node.targets[0], "id", "") == "_WHERE" and isinstance(node.value, ast.Dict)):
            named += [f"{name}.{v.value}" for v in node.value.values
                      if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    out = set()
    for target in named:
        while target and target not in known:      # `import a.b.c` names a.b.c, or a.b if c is
            target = target.rpartition(".")[0]     # a name in a.b; outside packages: nothing
        if target and target != name:
            out.add(target)
    return out


def graph(pkg: Path) -> dict[str, set[str]]:
    known = modules(pkg)
    return {name: imports(name, path, known) for name, path in known.items()}


def layer_of(name: str, layers=LAYERS) -> int:
    """The index in ``layers`` of the layer ``name`` belongs to (0 = top)."""
    best, rank = "", None
    for i, (_, members) in enumerate(layers):
        for member in members:
            # a folder holds its modules; the top package itself holds only its __init__
            inside = name.startswith(member + ".") and member.count(".") > 0
            if (name == member or inside) and len(member) > len(best):
                best, rank = member, i
    if rank is None:
        raise LookupError(f"{name} is in no layer: add its folder to LAYERS in {Path(__file__).name}")
    return rank


def upward(edges: dict[str, set[str]], layers=LAYERS) -> list[str]:
    found = []
    for src, targets in sorted(edges.items()):
        for dst in sorted(targets):
            s, d = layer_of(src, layers), layer_of(dst, layers)
            if d < s:
                found.append(f"{src} (layer {layers[s][0]!r}) imports {dst} (layer "
                             f"{layers[d][0]!r}, above it)")
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def own_facade(edges: dict[str, set[str]]) -> list[str]:
    """Modules that import an ``__init__`` of a package they are inside of. The top package's
    ``__init__`` is not a facade but a ground-floor module (``__version__``): it may be imported."""
    return [f"{src} imports {dst}, its own package's __init__: import the module that defines "
            "the name instead" for src, targets in sorted(edges.items()) for dst in sorted(targets)
            if src.startswith(dst + ".") and "." in dst]


def too_long(pkg: Path, allow: dict[str, str], limit: int = MAX_LINES) -> list[str]:
    found = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg.parent).as_posix()
        n = len(path.read_text().splitlines())
        if n > limit and rel not in allow:
            found.append(f"{rel}: {n} lines (over {limit}): split it by concern, or add it to "
                         "LONG_MODULES with the reason it reads better whole")
        elif rel in allow and n <= limit:
            found.append(f"{rel}: {n} lines, no longer over {limit}: drop it from LONG_MODULES")
    return found


# ------------------------------------------------------------------------------------------------
# the package
# ------------------------------------------------------------------------------------------------

EDGES = graph(PKG)


def test_every_module_has_a_layer():
    missing = []
    for name in sorted(EDGES):
        try:
            layer_of(name)
        except LookupError as exc:
            missing.append(str(exc))
    assert not missing, "\n".join(missing)


def test_no_module_imports_a_layer_above_it():
    bad = upward(EDGES)
    assert not bad, "upward imports (data flows one way: see docs/architecture.md):\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(EDGES)
    assert not found, "import cycles (lazy imports count):\n" + "\n".join(
        " <-> ".join(c) for c in found)
    bad = own_facade(EDGES)
    assert not bad, "\n".join(bad)


def test_no_module_is_too_long_to_have_one_concern():
    bad = too_long(PKG, LONG_MODULES)
    assert not bad, "\n".join(bad)


def test_the_graph_is_the_real_one():
    """The parser sees what the package really imports, lazy imports and facades included."""
    assert "swiftrun.checks.cloud" in EDGES["swiftrun.cluster.lifecycle"]      # lazy, in up()
    assert "swiftrun.sync.fetching" in EDGES["swiftrun.sync"]                   # a facade
    assert "swiftrun.swiftconf.layers" in EDGES["swiftrun.swiftconf"]           # a lazy facade
    assert "swiftrun.swiftconf.layers" in EDGES["swiftrun.swiftconf.cache"]     # from pkg import mod
    assert "swiftrun.node.layout" in EDGES["swiftrun.cloud.ec2"]
    assert layer_of("swiftrun") == layer_of("swiftrun.errors") == len(LAYERS) - 1
    assert layer_of("swiftrun.cli") == 0


# ------------------------------------------------------------------------------------------------
# the checker can fail: a made-up package with each fault in it
# ------------------------------------------------------------------------------------------------

FAKE_LAYERS = [("top", ("fake.top",)), ("mid", ("fake.mid",)), ("low", ("fake.low", "fake"))]


def fake_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fake"
    for rel, text in {"__init__.py": "", "top/__init__.py": "", "mid/__init__.py": "",
                      "low/__init__.py": "", **files}.items():
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return pkg


def test_checker_sees_a_lazy_upward_import(tmp_path):
    pkg = fake_package(tmp_path, {
        "top/cmd.py": "from fake.mid import work\n",
        "mid/work.py": "import os\n\ndef go():\n    from fake.top import cmd  # lazy, and upward\n",
    })
    bad = upward(graph(pkg), FAKE_LAYERS)
    assert bad == ["fake.mid.work (layer 'mid') imports fake.top.cmd (layer 'top', above it)"]


def test_checker_sees_a_relative_upward_import(tmp_path):
    pkg = fake_package(tmp_path, {"low/base.py": "from ..mid import work\n", "mid/work.py": ""})
    assert upward(graph(pkg), FAKE_LAYERS) == [
        "fake.low.base (layer 'low') imports fake.mid.work (layer 'mid', above it)"]


def test_checker_sees_a_cycle_within_a_layer(tmp_path):
    pkg = fake_package(tmp_path, {
        "low/a.py": "from fake.low.b import x\n",
        "low/b.py": "x = 1\n\ndef f():\n    import fake.low.c\n",
        "low/c.py": "from . import a\n",
        "low/d.py": "from fake.low import a\n",
    })
    edges = graph(pkg)
    assert not upward(edges, FAKE_LAYERS)
    assert cycles(edges) == [["fake.low.a", "fake.low.b", "fake.low.c"]]


def test_checker_sees_a_module_importing_its_own_facade(tmp_path):
    pkg = fake_package(tmp_path, {
        "low/__init__.py": "from fake.low.a import thing\n",
        "low/a.py": "thing = 1\n",
        "low/b.py": "from fake.low import thing\n",
    })
    assert own_facade(graph(pkg)) == [
        "fake.low.b imports fake.low, its own package's __init__: import the module that "
        "defines the name instead"]


def test_checker_sees_a_lazy_facade_table(tmp_path):
    pkg = fake_package(tmp_path, {
        "mid/__init__.py": "_WHERE = {'go': 'work'}\n",
        "mid/work.py": "from fake.mid import go\n",
    })
    edges = graph(pkg)
    assert edges["fake.mid"] == {"fake.mid.work"}
    assert cycles(edges) == [["fake.mid", "fake.mid.work"]]


def test_checker_sees_a_long_module_and_a_stale_allowance(tmp_path):
    pkg = fake_package(tmp_path, {"low/big.py": "x = 1\n" * 601, "low/small.py": "x = 1\n"})
    assert too_long(pkg, {"fake/low/small.py": "was long"}) == [
        "fake/low/big.py: 601 lines (over 600): split it by concern, or add it to LONG_MODULES "
        "with the reason it reads better whole",
        "fake/low/small.py: 1 lines, no longer over 600: drop it from LONG_MODULES"]


def test_checker_refuses_a_module_with_no_layer(tmp_path):
    with pytest.raises(LookupError, match="fake.elsewhere is in no layer"):
        layer_of("fake.elsewhere", FAKE_LAYERS[:2])
