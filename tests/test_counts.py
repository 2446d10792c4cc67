"""Per-day counts: they survive restarts, power cuts and corrupt files, and stay consistent."""
from __future__ import annotations

import json
import logging
import os
from datetime import date, timedelta

import pytest

from mask_guard.config import CountsConfig
from mask_guard.counts import Counts, default_state_path
from mask_guard.detections import Verdict
from mask_guard.votes import Decision

DAY = date(2024, 5, 4)


class Clock:
    def __init__(self, day: date = DAY):
        self.day = day

    def __call__(self) -> date:
        return self.day


def fill(c: Counts) -> None:
    for _ in range(3):
        c.person_seen()
    c.decided("mask")
    c.decided(Verdict.NO_MASK)
    c.alert_played()


def test_counts_persist_across_instances(tmp_path):
    path = tmp_path / "state" / "counts.json"  # the folder is created on first save
    clock = Clock()
    c = Counts(path, keep_days=30, today=clock)
    fill(c)
    assert c.save()
    again = Counts(path, keep_days=30, today=clock)
    assert again.today() == {"people": 3, "masked": 1, "unmasked": 1, "alerts": 1}
    assert again.totals() == again.today()
    again.person_seen()
    again.save()
    assert Counts(path, today=clock).today()["people"] == 4


def test_state_file_holds_numbers_only(tmp_path):
    path = tmp_path / "counts.json"
    c = Counts(path, today=Clock())
    fill(c)
    c.save()
    data = json.loads(path.read_text())
    assert set(data) == {"version", "saved_at", "days"}
    assert data["days"] == {"2024-05-04": {"people": 3, "masked": 1, "unmasked": 1, "alerts": 1}}
    assert path.stat().st_size < 500


def test_save_is_atomic_and_keeps_the_previous_file_as_bak(tmp_path):
    path = tmp_path / "counts.json"
    c = Counts(path, today=Clock())
    c.person_seen()
    c.save()
    assert not c.backup.exists()  # nothing to back up on the first save
    c.person_seen()
    c.save()
    assert json.loads(c.backup.read_text())["days"]["2024-05-04"]["people"] == 1
    assert json.loads(path.read_text())["days"]["2024-05-04"]["people"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.json", "counts.json.bak"]  # no temp left


def test_save_writes_only_when_something_changed(tmp_path):
    path = tmp_path / "counts.json"
    c = Counts(path, today=Clock())
    c.person_seen()
    c.save()
    mtime = path.stat().st_mtime_ns
    os.utime(path, ns=(mtime - 10**9, mtime - 10**9))
    assert c.save()  # called every few seconds: no write (an SD card wears) when nothing changed
    assert path.stat().st_mtime_ns == mtime - 10**9
    assert not c.backup.exists()


def test_corrupt_file_loads_the_backup_with_one_warning(tmp_path, caplog):
    path = tmp_path / "counts.json"
    clock = Clock()
    c = Counts(path, today=clock)
    c.person_seen()
    c.save()
    c.person_seen()
    c.save()  # .bak: 1 person, main: 2 people
    path.write_bytes(b'{"days": {"2024-05-04": {"people": 2, "mas')  # a power cut mid-write
    caplog.set_level(logging.WARNING, logger="mask_guard.counts")
    c2 = Counts(path, today=clock)
    assert c2.today()["people"] == 1
    assert len(caplog.records) == 1 and "using the backup" in caplog.records[0].getMessage()
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b'{"days"')  # evidence kept
    # The next save must not rotate anything broken over the good backup.
    c2.person_seen()
    assert c2.save()
    assert json.loads(c2.backup.read_text())["days"]["2024-05-04"]["people"] == 1
    assert Counts(path, today=clock).today()["people"] == 2


@pytest.mark.parametrize("garbage", [b"", b"\xff\xfe\x00binary", b"[1, 2, 3]", b'{"days": {"x": {}}}',
                                     b'{"days": {"2024-05-04": {"people": -1}}}',
                                     b'{"days": {"2024-05-04": {"people": "3"}}}'])
def test_both_corrupt_starts_empty_and_keeps_both_files_aside(tmp_path, caplog, garbage):
    path = tmp_path / "counts.json"
    path.write_bytes(garbage)
    (tmp_path / "counts.json.bak").write_bytes(b"{not json")
    caplog.set_level(logging.WARNING, logger="mask_guard.counts")
    c = Counts(path, today=Clock())
    assert c.totals() == {"people": 0, "masked": 0, "unmasked": 0, "alerts": 0}
    assert len(caplog.records) == 1 and "starting from zero" in caplog.records[0].getMessage()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("counts.json.corrupt-") for n in names)
    assert any(n.startswith("counts.json.bak.corrupt-") for n in names)
    c.person_seen()
    assert c.save()
    assert Counts(path, today=Clock()).today()["people"] == 1


def test_unreadable_file_does_not_crash(tmp_path):
    path = tmp_path / "counts.json"
    path.mkdir()  # reading a directory fails with an OSError
    c = Counts(path, today=Clock())
    assert c.today()["people"] == 0


def test_missing_main_after_a_crash_between_renames_uses_the_backup(tmp_path):
    path = tmp_path / "counts.json"
    c = Counts(path, today=Clock())
    c.person_seen()
    c.save()
    c.person_seen()
    c.save()
    path.unlink()  # the moment between "main -> .bak" and "temp -> main"
    assert Counts(path, today=Clock()).today()["people"] == 1


def test_save_failure_is_reported_once_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    c = Counts(blocker / "counts.json", today=Clock())  # its folder cannot be created
    caplog.set_level(logging.WARNING, logger="mask_guard.counts")
    c.person_seen()
    assert c.save() is False
    c.person_seen()
    assert c.save() is False
    assert len(caplog.records) == 1


def test_decision_change_moves_the_person_between_counts():
    c = Counts("/nonexistent-dir/never-saved.json", today=Clock())
    c.person_seen()
    c.person_seen()
    c.decided("no_mask", None)
    c.decided("mask", None)
    assert c.today() == {"people": 2, "masked": 1, "unmasked": 1, "alerts": 0}
    c.decided("mask", "no_mask")  # the first one put the mask on
    assert c.today() == {"people": 2, "masked": 2, "unmasked": 0, "alerts": 0}
    c.decided(Decision.UNDECIDED, Verdict.MASK)  # votes fell back to undecided
    assert c.today() == {"people": 2, "masked": 1, "unmasked": 0, "alerts": 0}
    c.decided(Decision.NO_MASK.value, "undecided")  # what the daemon passes: the enum values
    assert c.today() == {"people": 2, "masked": 1, "unmasked": 1, "alerts": 0}
    c.decided("mask", "mask")  # no change, no count
    assert c.today()["masked"] == 1
    with pytest.raises(ValueError):
        c.decided("mask_below_nose")


def test_decision_change_after_midnight_keeps_days_consistent():
    clock = Clock()
    c = Counts("/nonexistent-dir/never-saved.json", today=clock)
    c.person_seen()
    c.decided("no_mask")
    clock.day = DAY + timedelta(days=1)
    c.decided("mask", "no_mask")  # still in front of the camera after midnight
    assert c.days() == [("2024-05-04", {"people": 1, "masked": 0, "unmasked": 1, "alerts": 0}),
                        ("2024-05-05", {"people": 1, "masked": 1, "unmasked": 0, "alerts": 0})]
    for _, d in c.days():
        assert d["masked"] + d["unmasked"] <= d["people"]


def test_old_days_are_pruned_on_save(tmp_path):
    clock = Clock()
    c = Counts(tmp_path / "counts.json", keep_days=3, today=clock)
    for i in range(5):
        clock.day = DAY + timedelta(days=i)
        c.person_seen()
    c.save()
    assert [d for d, _ in Counts(tmp_path / "counts.json", today=clock).days()] == \
        ["2024-05-06", "2024-05-07", "2024-05-08"]


def test_default_path_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/a:{tmp_path}/b")
    assert default_state_path(CountsConfig()) == tmp_path / "a" / "counts.json"
    assert default_state_path(CountsConfig(state_file="~/x.json")) == \
        default_state_path(CountsConfig(state_file=os.path.expanduser("~/x.json")))
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_state_path(CountsConfig()) == tmp_path / ".local/state/mask-guard/counts.json"
    c = Counts.from_config(CountsConfig(keep_days=7))
    assert c.path == tmp_path / ".local/state/mask-guard/counts.json" and c.keep_days == 7
