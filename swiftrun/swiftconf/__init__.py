"""swift.conf: rendered from layers for each run, checked against Swift 0.96's keys first.

- ``layers``: the site template, swiftrun's values, ``[swift] conf`` and the user's swift.conf,
  merged (``render``), and checked layer by layer (``render_checked``);
- ``schema``: Swift 0.96's keys and value types, and ``check``;
- ``hocon``: parsing, merging and writing HOCON with keys kept whole;
- ``cache``: checked renders kept by a digest of every input, so a warm run skips pyhocon;
- ``scripts``: which apps of a SwiftScript name their files literally (a staging = direct trap).

Callers import the names below from here. The package imports a module only when one of its
names is first asked for: pyhocon takes a third of a second to import, and ``cache`` exists so
that a run whose inputs did not change never pays it. The modules of this package import each
other, never this facade.
"""

from __future__ import annotations

# name -> the module of this package that defines it
_WHERE = {
    "checked_text": "cache",
    "Raw": "hocon", "as_dict": "hocon", "parse_hocon": "hocon", "to_hocon": "hocon",
    "Layer": "layers", "Rendered": "layers", "render": "layers", "render_checked": "layers",
    "template_names": "layers",
    "EXECUTION_TYPES": "schema", "SCHEMA": "schema", "STAGING_VALUES": "schema", "check": "schema",
    "script_uses_literal_filenames": "scripts",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
