"""The published JSON Schemas of the --json documents (docs/schemas/<command>.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


def schema_path(command: str) -> Path:
    """`image build` -> docs/schemas/image-build.schema.json."""
    return SCHEMA_DIR / f"{command.replace(' ', '-')}.schema.json"


def load_schema(command: str) -> dict:
    return json.loads(schema_path(command).read_text())


def validate(command: str, doc) -> None:
    """Fail with every violation (path and message) when ``doc`` does not fit the schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(
        load_schema(command), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors]
        raise AssertionError(f"`swiftrun {command} --json` does not fit "
                             f"{schema_path(command).name}:\n" + "\n".join(lines)
                             + "\ndocument:\n" + json.dumps(doc, indent=2)[:6000])
