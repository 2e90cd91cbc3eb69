"""The manifest's journal: a save that changes a few entries appends a line instead of
rewriting the whole file, and every way that can go wrong reads back as a manifest that is
either exact or empty (an empty one costs one full upload, never a wrong deletion)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from swiftrun.sync import manifest as mf
from swiftrun.sync.manifest import Entry, Manifest


def big(n: int = 2000) -> Manifest:
    entries = {f"d{i // 100:02d}/f{i:04d}.txt": Entry("f", 100 + i, 1_700_000_000_000_000_000 + i, 0o644)
               for i in range(n)}
    entries.update({f"d{i:02d}": Entry("d", 0, 1_700_000_000_000_000_000, 0o755) for i in range(n // 100)})
    return Manifest("/home/ubuntu/p4", "id-0", entries)


def fresh_load(path: Path) -> Manifest:
    """What another process would read: no memory of this one's last save."""
    mf._ON_DISK.clear()
    return Manifest.load(path)


def test_a_small_change_is_one_journal_line_and_reads_back_exactly(tmp_path):
    path = tmp_path / "p4.json"
    big().save(path)
    base = path.stat()
    m = Manifest.load(path)
    m.entries["d00/f0001.txt"] = Entry("f", 7, 1_800_000_000_000_000_000, 0o600)
    del m.entries["d01/f0100.txt"]
    m.entries["new dir/new\nname"] = Entry("l", 0, 5, 0o777, "../d00/f0001.txt")
    m.sync_id = "id-1"
    m.save(path)
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (base.st_ino, base.st_mtime_ns)    # not rewritten
    log = Path(str(path) + ".log")
    assert log.stat().st_size < 600 and stat.S_IMODE(log.stat().st_mode) == 0o600
    back = fresh_load(path)
    assert back == m
    # a second small save in the same process appends again, still exact
    back.entries["d00/f0002.txt"] = Entry("f", 1, 2, 0o644)
    back.sync_id = "id-2"
    back.save(path)
    assert fresh_load(path) == back and log.read_bytes().count(b"\n") == 2


def test_a_line_cut_short_is_the_save_that_never_happened(tmp_path):
    path = tmp_path / "p4.json"
    big().save(path)
    m = Manifest.load(path)
    before = Manifest(m.remote_root, m.sync_id, dict(m.entries))
    m.entries["d00/f0001.txt"] = Entry("f", 9, 9, 0o644)
    m.sync_id = "id-1"
    m.save(path)
    log = Path(str(path) + ".log")
    log.write_bytes(log.read_bytes()[:-5])          # a crash in the middle of the append
    assert fresh_load(path) == before


def test_an_unsafe_or_malformed_line_empties_the_manifest(tmp_path):
    path = tmp_path / "p4.json"
    big().save(path)
    generation = json.loads(path.read_text())["generation"]
    log = Path(str(path) + ".log")
    for bad in ({"paths": "../escape", "types": "f", "sizes": [1], "mtimes": [1], "modes": [420],
                 "targets": [None], "drop": [], "sync_id": "x"},
                {"paths": "a", "types": "f", "sizes": ["1"], "mtimes": [1], "modes": [420],
                 "targets": [None], "drop": [], "sync_id": "x"}):
        log.write_text(json.dumps(dict(bad, generation=generation)) + "\n")
        assert fresh_load(path) == Manifest()
    log.write_text("{not json\n")
    assert fresh_load(path) == Manifest()


def test_a_long_journal_is_folded_into_a_new_generation_and_old_lines_are_ignored(tmp_path):
    path = tmp_path / "p4.json"
    big(200).save(path)
    m = Manifest.load(path)
    first = json.loads(path.read_text())["generation"]
    log = Path(str(path) + ".log")
    k = 0
    while json.loads(path.read_text())["generation"] == first:
        m.entries[f"x/{k:05d}"] = Entry("f", k, k, 0o644)
        m.sync_id = f"id-{k}"
        m.save(path)
        k += 1
        assert k < 2000, "the journal never folded"
    assert not log.exists() and fresh_load(path) == m
    # a journal of the old generation left behind by a crash after the rename is not replayed
    log.write_text(json.dumps({"generation": first, "paths": "ghost", "types": "f", "sizes": [1],
                               "mtimes": [1], "modes": [420], "targets": [None], "drop": [],
                               "sync_id": "old"}) + "\n")
    assert fresh_load(path) == m


def test_a_save_after_another_process_saved_writes_the_whole_state(tmp_path):
    path = tmp_path / "p4.json"
    big().save(path)
    mine = Manifest.load(path)
    other = Manifest.load(path)
    other.entries["theirs"] = Entry("f", 1, 1, 0o644)
    other.sync_id = "theirs"
    other.save(path)
    mf._ON_DISK[str(path)] = mf._ON_DISK[str(path)].__class__(
        **{**vars(mf._ON_DISK[str(path)]), "journal_bytes": 0})      # this process's stale view
    mine.entries["mine"] = Entry("f", 2, 2, 0o644)
    mine.sync_id = "mine"
    mine.save(path)
    assert fresh_load(path) == mine                 # last writer wins, whole: never a mix
    assert "theirs" not in fresh_load(path).entries


def test_a_manifest_written_before_the_journal_loads_and_then_journals(tmp_path):
    path = tmp_path / "p4.json"
    m = big(300)
    doc = dict(mf._columns(m.entries), version=mf.MANIFEST_VERSION, remote_root=m.remote_root,
               sync_id=m.sync_id)                   # no generation: an older swiftrun's file
    path.write_text(json.dumps(doc))
    loaded = Manifest.load(path)
    assert loaded == m
    loaded.sync_id = "id-1"
    loaded.save(path)                               # whole, with a generation from now on
    assert json.loads(path.read_text())["generation"] and fresh_load(path) == loaded
    os.unlink(path)
    assert fresh_load(path) == Manifest()


def test_a_save_that_changes_most_entries_writes_the_whole_file_once(tmp_path):
    # a fetch of a new run adds thousands of entries: encoding them as a journal line only to
    # find it too long was wasted work; past a quarter of the entries it goes whole at once
    path = tmp_path / "p4.json"
    big(400).save(path)
    first = json.loads(path.read_text())["generation"]
    m = Manifest.load(path)
    for k in range(300):
        m.entries[f"run001/out{k:04d}.dat"] = Entry("f", k, k, 0o644)
    m.save(path)
    assert json.loads(path.read_text())["generation"] != first
    assert not Path(str(path) + ".log").exists() and fresh_load(path) == m
