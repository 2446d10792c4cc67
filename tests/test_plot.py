"""``mask-guard stats --plot``: the chart is drawn from the counts file (its colours read back from the PNG),
every day of the range has its place, and a missing matplotlib is one clear message."""
from __future__ import annotations

import json
import sys
from datetime import date, timedelta

import cv2
import numpy as np
import pytest
from mask_guard import cli
from mask_guard.plot import day_range

GREEN, RED = (87, 139, 46), (79, 83, 217)  # BGR of the masked and unmasked bars


def counts_file(tmp_path, days: dict):
    state = tmp_path / "counts.json"
    state.write_text(json.dumps({"version": 1, "days": days}))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"counts:\n  state_file: {state}\n")
    return cfg


def pixels(img, bgr) -> int:
    return int(np.all(np.abs(img.astype(int) - bgr) <= 6, axis=2).sum())


def week(masked: int, unmasked: int) -> dict:
    today = date.today()
    return {(today - timedelta(days=i)).isoformat(): {"people": masked + unmasked + 1, "masked": masked,
                                                       "unmasked": unmasked, "alerts": unmasked}
            for i in range(7)}


def test_the_chart_shows_masked_and_unmasked_people_per_day(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # an optional dependency: .venv has it, the Bookworm runtime set not
    out = tmp_path / "week.png"
    assert cli.main(["stats", "--plot", str(out), "--days", "10", "--config", str(counts_file(tmp_path, week(6, 3)))]) == 0
    msg = capsys.readouterr().out
    assert msg.startswith(f"{out}: 10 days (") and "7 with counts" in msg
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (558, 900, 3)
    green, red = pixels(img, GREEN), pixels(img, RED)
    assert green > 0 and red > 0
    assert 1.3 < green / red < 3.0, (green, red)  # bar areas in proportion to 6 masked : 3 unmasked

    only_masked = tmp_path / "masked.png"
    cfg = counts_file(tmp_path, week(5, 0))
    assert cli.main(["stats", "--plot", str(only_masked), "--config", str(cfg)]) == 0
    img = cv2.imread(str(only_masked))
    assert pixels(img, GREEN) > 0 and pixels(img, RED) < red / 20  # (the legend's patch only)


def test_days_without_counts_keep_their_place():
    days = {"2026-03-01": {}, "2026-03-04": {}}
    span = day_range(days, 7, today=date(2026, 3, 2))
    assert span[0] == date(2026, 2, 26) and span[-1] == date(2026, 3, 4) and len(span) == 7


def test_without_matplotlib_one_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "x.png"
    assert cli.main(["stats", "--plot", str(out), "--config", str(counts_file(tmp_path, week(1, 1)))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mask-guard stats: stats --plot needs matplotlib") and "apt install python3-matplotlib" in err
    assert not out.exists()


def test_no_counts_yet_is_an_error_not_an_empty_chart(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"counts:\n  state_file: {tmp_path / 'none.json'}\n")
    assert cli.main(["stats", "--plot", str(tmp_path / "x.png"), "--config", str(cfg)]) == 1
    assert "no counts to plot yet" in capsys.readouterr().err
