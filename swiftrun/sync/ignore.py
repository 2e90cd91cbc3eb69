"""Which files of a script directory are never uploaded.

Rules come from, in increasing precedence (the last matching pattern wins, as in git):

1. ``.gitignore`` in the root, then ``.gitignore`` files in subdirectories (deeper wins; loaded
   lazily when a path under that directory is first asked about, so ignored trees are never read);
2. ``.swiftignore`` in the root (swiftrun-specific, so it can re-include what git ignores);
3. ``extra`` patterns from the caller (``[sync] exclude``), relative to the root;
4. the always-excluded set, which nothing can negate: ``.swiftrun/``, ``.git/``, ``__pycache__/``
   anywhere and swift's run directories at the top level: ``run`` and three or more digits,
   nothing else (``run001/``, ``run1234/``; not ``run2024-inputs/``). They are outputs; fetching
   them back is sync.fetch's job.

Pattern syntax is gitignore's: ``#`` comments, blank lines, ``!`` negation, ``\\`` escapes, trailing
``/`` = directories only, a ``/`` at the start or in the middle anchors the pattern to the
directory of the file it came from, ``*`` / ``?`` / ``[...]`` do not cross ``/``, ``**`` does.
As in git, a path under an ignored directory is ignored whatever later rules say about it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

ALWAYS = (".swiftrun/", ".git/", "__pycache__/")
# swift's run directories: digits only, which a glob cannot say (run[0-9][0-9][0-9]* also took
# input directories such as run2024-inputs/ and silently never uploaded them).
RUN_DIRS = r"run[0-9]{3,}"


@dataclass(frozen=True)
class Rule:
    """One compiled pattern. ``base`` is the directory (posix, '' = root) it is relative to."""

    pattern: str
    regex: re.Pattern
    negate: bool
    dir_only: bool
    base: str

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1:]
        return self.regex.fullmatch(rel) is not None


def _glob_to_regex(glob: str) -> str:
    """Translate one gitignore glob (already stripped of !, anchors and trailing /) to a regex."""
    out: list[str] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                before_ok = i == 0 or glob[i - 1] == "/"
                after = glob[i + 2:i + 3]
                if before_ok and after == "/":      # '**/' : zero or more directories
                    out.append("(?:.*/)?")
                    i += 3
                    continue
                if before_ok and after == "":       # trailing '/**': everything inside
                    out.append(".*")
                    i += 2
                    continue
                out.append("[^/]*")                 # '**' elsewhere acts like '*'
                i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and glob[j] in "!^":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:                              # unterminated: a literal '['
                out.append(re.escape(c))
            else:
                body = glob[i + 1:j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("(?!/)[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
                continue
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def compile_pattern(line: str, base: str = "") -> Rule | None:
    """Compile one line of an ignore file; None for blanks and comments."""
    line = line.rstrip("\n").rstrip("\r")
    # trailing spaces are dropped unless escaped with a backslash
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        stripped += " "
    line = stripped
    if not line or line.startswith("#"):
        return None
    negate = False
    if line.startswith("!"):
        negate, line = True, line[1:]
    elif line.startswith("\\!") or line.startswith("\\#"):
        line = line[1:]
    dir_only = line.endswith("/") and not line.endswith("\\/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    regex = _glob_to_regex(line)
    if not anchored:
        regex = "(?:.*/)?" + regex       # a bare name matches at any depth
    return Rule(line, re.compile(regex, re.DOTALL), negate, dir_only, base)


def literal(path: str) -> str:
    """A gitignore pattern that matches exactly ``path`` (posix, relative), whatever characters
    its name holds: glob characters, backslash, ``!``, ``#`` and spaces (trailing ones
    included) are escaped."""
    return "".join("\\" + c if c in "*?[]\\!# " else c for c in path)


def compile_lines(lines: Iterable[str], base: str = "") -> list[Rule]:
    return [r for r in (compile_pattern(line, base) for line in lines) if r is not None]


def _read_rules(path: Path, base: str) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
        return []
    return compile_lines(text.splitlines(), base)


class IgnoreRules:
    """Answer ``ignored(rel_posix_path, is_dir)`` for paths relative to one root directory."""

    def __init__(self, root: Path | None, *, gitignore: list[Rule] = (), swiftignore: list[Rule] = (),
                 extra: list[Rule] = (), nested: bool = True):
        self.root = Path(root) if root is not None else None
        self._root_git = list(gitignore)
        self._swift = list(swiftignore)
        self._extra = list(extra)
        self._always = compile_lines(ALWAYS) + [
            Rule("/run<digits>/", re.compile(RUN_DIRS), False, True, "")]
        self._nested = nested and self.root is not None
        self._nested_cache: dict[str, list[Rule]] = {}
        self._dir_cache: dict[str, bool] = {}
        self._parent_cache: dict[str, list[Rule]] = {}
        self._child_cache: dict[tuple[str, bool], tuple[list[Rule], list[Rule]]] = {}

    @classmethod
    def from_dir(cls, root: Path | str, extra: Iterable[str] = (), *, nested: bool = True) -> "IgnoreRules":
        root = Path(root)
        return cls(root, gitignore=_read_rules(root / ".gitignore", ""),
                   swiftignore=_read_rules(root / ".swiftignore", ""),
                   extra=compile_lines(extra), nested=nested)

    @classmethod
    def from_patterns(cls, patterns: Iterable[str]) -> "IgnoreRules":
        """Rules from patterns alone (no files read); the always-excluded set still applies."""
        return cls(None, extra=compile_lines(patterns), nested=False)

    def _git_rules_for(self, parent: str) -> list[Rule]:
        """gitignore rules that apply to entries of directory ``parent`` (root first, deeper last)."""
        if not self._nested or not parent:
            return self._root_git
        cached = self._parent_cache.get(parent)
        if cached is not None:
            return cached
        rules = list(self._root_git)
        parts = parent.split("/")
        for depth in range(1, len(parts) + 1):
            d = "/".join(parts[:depth])
            if d not in self._nested_cache:
                self._nested_cache[d] = _read_rules(self.root / d / ".gitignore", d)
            rules.extend(self._nested_cache[d])
        self._parent_cache[parent] = rules
        return rules

    def _own(self, rel: str, is_dir: bool) -> bool:
        """The verdict for this path alone, ignoring its ancestors."""
        for rule in self._always:
            if rule.matches(rel, is_dir):
                return True
        parent = rel.rpartition("/")[0]
        verdict = False
        for rules in (self._git_rules_for(parent), self._swift, self._extra):
            for rule in rules:
                if rule.matches(rel, is_dir):
                    verdict = not rule.negate
        return verdict

    def _child_rules(self, parent: str, is_dir: bool) -> tuple[list[Rule], list[Rule]]:
        """(always-rules, other rules in precedence order) that can match an entry of directory
        ``parent`` of this kind: rules for directories only are dropped for files, and rules
        of other directories' .gitignore files for everything."""
        key = (parent, is_dir)
        cached = self._child_cache.get(key)
        if cached is None:
            inside = parent + "/"

            def fits(r: Rule) -> bool:
                return (is_dir or not r.dir_only) and (not r.base or inside.startswith(r.base + "/"))

            cached = self._child_cache[key] = (
                [r for r in self._always if fits(r)],
                [r for rules in (self._git_rules_for(parent), self._swift, self._extra)
                 for r in rules if fits(r)])
        return cached

    def child_check(self, parent: str, is_dir: bool):
        """For a walk that never enters an ignored directory: a function telling whether an
        entry (its path relative to the root) of directory ``parent`` (not ignored) is
        ignored, or None when no rule can match such an entry (nothing to ask)."""
        always, rules = self._child_rules(parent, is_dir)
        if not always and not rules:
            return None

        def check(rel: str) -> bool:
            for rule in always:
                if rule.matches(rel, is_dir):
                    return True
            verdict = False
            for rule in rules:
                if rule.matches(rel, is_dir):
                    verdict = not rule.negate
            return verdict

        if not is_dir:
            return check

        def check_dir(rel: str) -> bool:
            hit = self._dir_cache.get(rel)
            if hit is None:
                hit = self._dir_cache[rel] = check(rel)
            return hit

        return check_dir

    def ignored(self, rel: str, is_dir: bool) -> bool:
        """True if ``rel`` (posix, relative to the root) or any directory above it is ignored."""
        rel = rel.strip("/")
        if not rel or rel == ".":
            return False
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            d = "/".join(parts[:depth])
            hit = self._dir_cache.get(d)
            if hit is None:
                hit = self._dir_cache[d] = self._own(d, True)
            if hit:
                return True
        if is_dir:
            hit = self._dir_cache.get(rel)
            if hit is None:
                hit = self._dir_cache[rel] = self._own(rel, True)
            return hit
        return self._own(rel, False)


def compile_glob(pattern: str) -> re.Pattern:
    """A root-anchored glob (``output/*.out``, ``sorted.txt``, ``results/**``) as a regex.

    Used for ``[sync] outputs``: unlike ignore patterns these are always relative to the root.
    """
    return re.compile(_glob_to_regex(pattern.strip().strip("/")), re.DOTALL)


def glob_matches(regexes: Iterable[re.Pattern], rel: str) -> bool:
    """True if ``rel`` or one of its parent directories matches one of ``regexes``."""
    parts = rel.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(rx.fullmatch(c) for rx in regexes for c in candidates)
