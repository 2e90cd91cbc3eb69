"""What swiftrun reads in a SwiftScript: which apps name their files literally.

With ``staging = "direct"`` that is a trap (the doctor's staging check, checks/local.py).
"""

from __future__ import annotations

import re

_APP_RE = re.compile(r"\bapp\s*\(([^)]*)\)\s*([A-Za-z_]\w*)\s*\(([^)]*)\)\s*\{(.*?)\}", re.S)
_NON_FILE_TYPES = {"int", "string", "float", "boolean", "bool"}


def script_uses_literal_filenames(script_text: str) -> list[str]:
    """Apps whose command line names a file literally (``"unsorted.txt"``) instead of ``filename(x)``.

    With ``staging: direct`` jobs run in their own directory with absolute paths, so such an app
    fails (``sort: cannot read: unsorted.txt``). Heuristic: a quoted argument that looks like a file
    name (has an extension or a slash, is not an option), or a file input the command never uses.
    """
    # drop comments, keep string literals (which may contain '#' or '//')
    text = re.sub(r'"(?:[^"\\\n]|\\.)*"|/\*.*?\*/|//[^\n]*|#[^\n]*',
                  lambda m: m.group(0) if m.group(0).startswith('"') else " ", script_text, flags=re.S)
    flagged: list[str] = []
    for match in _APP_RE.finditer(text):
        outs, name, params, body = match.groups()
        strings = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
        literal = any(_looks_like_file(s) for s in strings)
        body_code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)
        for param in params.split(","):
            parts = param.replace("[", " [").split()
            if len(parts) < 2 or parts[0] in _NON_FILE_TYPES:
                continue
            pname = parts[1].rstrip("[]")
            if not re.search(r"\b" + re.escape(pname) + r"\b", body_code):
                literal = True
        if literal and name not in flagged:
            flagged.append(name)
    return flagged


def _looks_like_file(s: str) -> bool:
    if not s or s.startswith("-") or " " in s or re.fullmatch(r"[\d.eE+-]+", s):
        return False   # options and numbers ("0.5") are not file names
    return bool(re.fullmatch(r"[\w.+-]*[\w-]\.[A-Za-z0-9]{1,8}", s) or re.fullmatch(r"[\w.+-]*/[\w./+-]+", s))
