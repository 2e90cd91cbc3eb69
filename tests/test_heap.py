"""The cyclic collector is held off while a sync builds its tables, and always given back."""

from __future__ import annotations

import gc
import threading

import pytest

from swiftrun import sync
from swiftrun.errors import ConfigError
from swiftrun.sync import manifest, uploading
from swiftrun.sync.heap import paused_gc


@pytest.fixture(autouse=True)
def collector_on():
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_nested_uses_turn_it_back_on_only_at_the_outermost_exit():
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()       # the inner exit left the outer one's pause alone
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off():
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_an_exception_still_gives_it_back():
    @paused_gc()
    def boom():
        assert not gc.isenabled()
        raise ValueError("boom")

    with pytest.raises(ValueError):
        boom()
    assert gc.isenabled()


def test_a_thread_that_ends_first_does_not_end_another_threads_pause():
    inside, leave = threading.Event(), threading.Event()
    seen = []

    def other():
        with paused_gc():
            inside.set()
            leave.wait(10)
            seen.append(gc.isenabled())

    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(10)
    with paused_gc():
        pass                            # this thread's use ends while the other's goes on
    seen.append(gc.isenabled())
    leave.set()
    t.join(10)
    assert seen == [False, False] and gc.isenabled()


def test_upload_scans_with_the_collector_off_and_gives_it_back(tmp_path, monkeypatch):
    """``prepare`` (the scan and the manifest) runs paused; a bad input still restores it."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "a.txt").write_text("a")
    during = []
    real_scan = uploading.scan

    def spy(*args, **kwargs):
        during.append(gc.isenabled())
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(uploading, "scan", spy)
    prepared = sync.prepare(tmp_path / "proj", "/r", tmp_path / "state.json")
    assert during == [False] and gc.isenabled()
    assert "a.txt" in prepared.plan.send
    with pytest.raises(ConfigError, match="does not exist"):
        sync.upload(None, tmp_path / "missing", "/r", state_file=tmp_path / "state.json")
    assert gc.isenabled()


def test_manifest_tables_hold_no_cycles(tmp_path):
    """Why pausing is harmless: what a scan and a load build is freed by reference counting
    alone, so nothing waits for the collector once it is back."""
    root = tmp_path / "proj"
    for i in range(50):
        (root / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 5}" / f"f{i}").write_text(str(i))
    rules = uploading.IgnoreRules.from_dir(root)
    gc.collect()
    gc.disable()
    entries = manifest.scan(root, rules)
    m = manifest.Manifest("/r", "id", entries)
    m.save(tmp_path / "m.json")
    loaded = manifest.Manifest.load(tmp_path / "m.json")
    assert loaded.entries == entries
    del entries, m, loaded
    gc.enable()
    assert gc.collect() == 0
