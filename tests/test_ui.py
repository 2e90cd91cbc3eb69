"""What a CI log shows of many nodes coming up: the headnode and failures one by one, the
workers as a tally, not a line per worker per change."""

from __future__ import annotations

import io

from swiftrun import ui as ui_mod
from swiftrun.ui import UI


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


def test_a_few_nodes_are_said_one_change_a_line():
    out = io.StringIO()
    ui = UI(stream=out)
    with ui.nodes_view("Waiting for nodes", count=3):
        ui.track("i-h", "headnode", "ready")
        for k in range(2):
            ui.track(f"i-{k}", "worker", "booting", "install")
            ui.track(f"i-{k}", "worker", "ready")
    lines = _lines(out)
    assert len(lines) == 5 and all("i-" in line for line in lines), lines


def test_many_workers_are_tallied_and_failures_still_named(monkeypatch):
    monkeypatch.setattr(ui_mod, "TALLY_EVERY", 3600.0)   # only the closing tally, here
    out = io.StringIO()
    ui = UI(stream=out)
    with ui.nodes_view("Bringing up", count=201):
        ui.track("i-head", "headnode", "running")
        for k in range(200):
            ui.track(f"i-{k:03d}", "worker", "pending")
        for k in range(200):
            ui.track(f"i-{k:03d}", "worker", "booting", "swift")
            if k == 7:
                ui.track(f"i-{k:03d}", "worker", "failed", "swift: no space left")
            else:
                ui.track(f"i-{k:03d}", "worker", "ready")
    lines = _lines(out)
    assert any("headnode i-head: running" in line for line in lines), lines
    assert any("worker i-007: failed: swift: no space left" in line for line in lines), lines
    assert "workers: 199 ready, 1 failed" in lines[-1], lines
    assert len(lines) == 3, lines
    ui._many = True     # a tally while boots are under way says where they are
    for k in range(3):
        ui.track(f"i-{k:03d}", "worker", "booting", "swift" if k else "disks")
    assert "3 booting (swift 2, disks 1)" in ui._tally()
    ui._many = False
    # the record for --json still holds every node
    assert len(ui.node_states()) == 201
    # outside the view, changes are lines again
    ui.track("i-000", "worker", "failed", "gone")
    assert "worker i-000: failed: gone" in _lines(out)[-1]


def test_the_tally_is_said_again_only_when_it_changed(monkeypatch):
    out = io.StringIO()
    ui = UI(stream=out)
    monkeypatch.setattr(ui_mod, "TALLY_EVERY", 3600.0)
    with ui.nodes_view("Checking nodes", count=50):
        for k in range(49):
            ui.track(f"i-{k}", "worker", "ready")
        ui._say_tally()
        ui._say_tally()         # nothing changed: nothing said
        ui.track("i-49", "worker", "ready")
    tallies = [line for line in _lines(out) if "workers:" in line]
    assert [t.split(" ", 1)[1].rsplit(" (", 1)[0] for t in tallies] == [
        "workers: 49 ready", "workers: 50 ready"], tallies
