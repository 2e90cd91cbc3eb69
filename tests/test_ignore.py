"""gitignore semantics of swiftrun.sync.ignore, on real directories (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swiftrun.sync.ignore import IgnoreRules, compile_glob, compile_pattern, glob_matches


def rules_from(tmp_path: Path, gitignore: str = "", swiftignore: str = "", extra=()) -> IgnoreRules:
    if gitignore:
        (tmp_path / ".gitignore").write_text(gitignore)
    if swiftignore:
        (tmp_path / ".swiftignore").write_text(swiftignore)
    return IgnoreRules.from_dir(tmp_path, extra)


def test_always_excluded(tmp_path):
    r = IgnoreRules.from_dir(tmp_path)
    assert r.ignored(".swiftrun", True)
    assert r.ignored(".swiftrun/runs/x.log", False)
    assert r.ignored(".git", True)
    assert r.ignored("sub/.git/config", False)
    assert r.ignored("lib/__pycache__", True)
    assert r.ignored("lib/__pycache__/m.cpython-311.pyc", False)
    assert r.ignored("run001", True)
    assert r.ignored("run123/x/y.log", False)
    # only swift run dirs at the top level, only directories, only three digits or more
    assert not r.ignored("sub/run001", True)
    assert not r.ignored("run001", False)
    assert not r.ignored("run01", True)
    assert not r.ignored("runner", True)
    assert not r.ignored("script.swift", False)


def test_always_excluded_cannot_be_negated(tmp_path):
    r = rules_from(tmp_path, swiftignore="!.git/\n!run001/\n", extra=["!__pycache__/"])
    assert r.ignored(".git", True)
    assert r.ignored("run001", True)
    assert r.ignored("__pycache__", True)


def test_globs_and_depth(tmp_path):
    r = rules_from(tmp_path, gitignore="*.o\nbuild\nlogs/*.log\n?.tmp\n[abc].dat\n")
    assert r.ignored("x.o", False)
    assert r.ignored("deep/er/x.o", False)            # no slash: any depth
    assert r.ignored("build", True) and r.ignored("src/build", False)
    assert r.ignored("build/out/file.c", False)        # under an ignored dir
    assert r.ignored("logs/a.log", False)
    assert not r.ignored("logs/sub/a.log", False)      # '*' does not cross '/'
    assert not r.ignored("sub/logs/a.log", False)      # a middle slash anchors
    assert r.ignored("x.tmp", False) and not r.ignored("xy.tmp", False)
    assert r.ignored("a.dat", False) and not r.ignored("d.dat", False)


def test_double_star(tmp_path):
    r = rules_from(tmp_path, gitignore="**/cache\ndata/**/*.bin\nout/**\n")
    assert r.ignored("cache", True) and r.ignored("a/b/cache", True)
    assert r.ignored("data/x.bin", False)              # '/**/' matches zero dirs
    assert r.ignored("data/a/b/x.bin", False)
    assert not r.ignored("other/x.bin", False)
    assert r.ignored("out/a/b", False)
    assert not r.ignored("out", True)                  # 'out/**' matches inside, not out itself


def test_anchored_and_dir_only(tmp_path):
    r = rules_from(tmp_path, gitignore="/top.txt\ntmp/\n")
    assert r.ignored("top.txt", False)
    assert not r.ignored("sub/top.txt", False)
    assert r.ignored("tmp", True) and r.ignored("a/tmp", True)
    assert r.ignored("tmp/x", False)
    assert not r.ignored("tmp", False)                 # a file named tmp stays


def test_negation_comments_blanks_escapes(tmp_path):
    r = rules_from(tmp_path, gitignore="# comment\n\n*.log\n!keep.log\n\\#hash\n\\!bang\ntrail\\ \n")
    assert r.ignored("a.log", False)
    assert not r.ignored("keep.log", False)
    assert not r.ignored("# comment", False)
    assert r.ignored("#hash", False)
    assert r.ignored("!bang", False)
    assert r.ignored("trail ", False) and not r.ignored("trail", False)


def test_cannot_reinclude_under_ignored_dir(tmp_path):
    r = rules_from(tmp_path, gitignore="big/\n!big/keep.txt\n")
    assert r.ignored("big/keep.txt", False)
    other = tmp_path / "other"
    other.mkdir()
    r2 = rules_from(other, gitignore="big/*\n!big/keep.txt\n")   # the dir itself is not ignored
    assert not r2.ignored("big/keep.txt", False)
    assert r2.ignored("big/other.txt", False)


def test_precedence_swiftignore_and_extra(tmp_path):
    r = rules_from(tmp_path, gitignore="*.dat\n", swiftignore="!needed.dat\nnotes/\n",
                   extra=["scratch/", "needed2.dat"])
    assert r.ignored("a.dat", False)
    assert not r.ignored("needed.dat", False)          # .swiftignore re-includes what git ignores
    assert r.ignored("notes", True)
    assert r.ignored("scratch/x", False)
    assert r.ignored("needed2.dat", False)
    r2 = rules_from(tmp_path, extra=["*.dat", "!b.dat"])
    assert r2.ignored("a.dat", False) and not r2.ignored("b.dat", False)


def test_nested_gitignore(tmp_path):
    (tmp_path / "sub" / "deep").mkdir(parents=True)
    (tmp_path / ".gitignore").write_text("*.tmp\n")
    (tmp_path / "sub" / ".gitignore").write_text("/local.txt\n!ok.tmp\n")
    r = IgnoreRules.from_dir(tmp_path)
    assert r.ignored("sub/local.txt", False)
    assert not r.ignored("local.txt", False)
    assert not r.ignored("sub/deep/local.txt", False)  # anchored to sub/
    assert r.ignored("a.tmp", False)
    assert not r.ignored("sub/ok.tmp", False)           # deeper file wins
    assert not r.ignored("sub/deep/ok.tmp", False)
    assert r.ignored("ok.tmp", False)


def test_char_class_negation(tmp_path):
    r = rules_from(tmp_path, gitignore="file[!0-9].txt\n")
    assert r.ignored("filea.txt", False)
    assert not r.ignored("file1.txt", False)


@pytest.mark.parametrize("line", ["", "   ", "# x", "!", "/"])
def test_nothing_patterns(line):
    assert compile_pattern(line) is None


def test_output_globs():
    rx = [compile_glob("output/*.out"), compile_glob("sorted.txt"), compile_glob("results/")]
    assert glob_matches(rx, "output/a.out")
    assert not glob_matches(rx, "output/sub/a.out")
    assert glob_matches(rx, "sorted.txt")
    assert not glob_matches(rx, "x/sorted.txt")         # outputs are anchored at the root
    assert glob_matches(rx, "results/a/b.txt")          # a matching dir brings its contents


def test_run_directories_are_run_and_digits_only():
    from swiftrun.sync.ignore import IgnoreRules

    r = IgnoreRules(None)
    assert r.ignored("run001", True) and r.ignored("run1234", True)
    # an input directory that only starts like one is uploaded
    assert not r.ignored("run2024-inputs", True) and not r.ignored("run001a", True)
    assert not r.ignored("run01", True)


def test_literal_patterns_match_only_that_name():
    from swiftrun.sync.ignore import compile_pattern, literal

    for name in ("my[prod].pem", "key.pem ", "a b/c*?.csv", "!x", "#y", "back\\slash"):
        rule = compile_pattern("/" + literal(name))
        assert rule.matches(name, False), name
        assert not rule.matches(name + "x", False) and not rule.matches("x" + name, False), name
