"""tools/evaluate_video.py: how counted people are matched to the hand-written truth of the real clips.

The scoring must not credit the appliance for a person it did not follow: a masked passer-by crossing the
frame while the camera follows one unmasked dancer is a passer-by, not the dancer counted twice; a box on a
chest below a face is a phantom, not the person above it.
"""
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"
sys.path.insert(0, str(TOOLS))
import evaluate_video as ev  # noqa: E402

FPS, W, H = 10.0, 400.0, 400.0


def _events(tracks: dict[int, list[tuple[float, float, float]]], counted: dict[int, float], alerted=()) -> list[dict]:
    """Per-frame events as tools/latency.py writes them, from {track: [(t, cx, cy) as shares]}."""
    frames = sorted({round(t * FPS) for pts in tracks.values() for t, _, _ in pts})
    out = []
    for f in frames:
        faces = [[tid, (cx - 0.05) * W, (cy - 0.05) * H, (cx + 0.05) * W, (cy + 0.05) * H, "mask", True, 0.1, 0.1]
                 for tid, pts in tracks.items() for t, cx, cy in pts if round(t * FPS) == f]
        out.append({"frame": f, "faces": faces, "new": [tid for tid, t in counted.items() if round(t * FPS) == f],
                    "alerted": [tid for tid, t in alerted if round(t * FPS) == f], "changes": []})
    return out


TRUTH = {"appearances": [
    {"id": "dancer", "from_s": 0.0, "to_s": 10.0, "x": [0.0, 1.0], "must": True, "unmasked": True, "alert": "must",
     "at": [[0.0, 0.3, 0.3], [10.0, 0.7, 0.3]]},
    {"id": "passers-by", "from_s": 0.0, "to_s": 10.0, "x": [0.0, 1.0], "must": False, "unmasked": False, "many": True},
]}


def _walk(t0, t1, x0, x1, y):
    n = int((t1 - t0) * FPS)
    return [(t0 + i / FPS, x0 + (x1 - x0) * i / max(n - 1, 1), y) for i in range(n)]


def test_a_track_that_follows_the_keyframes_is_that_person():
    ev_ = _events({1: _walk(0, 10, 0.3, 0.7, 0.31)}, {1: 0.5}, alerted=[(1, 0.5)])
    r = ev.score_clip("c", TRUTH, ev_, FPS, W, H)
    assert r["people"]["1"]["truth"] == "dancer"
    assert r["alerts_per_must_person"] == {"dancer": 1} and r["ok"]


def test_a_passer_by_in_the_persons_time_and_x_range_is_not_that_person():
    # crosses the frame 0.4 below the dancer's face: same time, same x range, another person
    ev_ = _events({1: _walk(0, 10, 0.3, 0.7, 0.3), 2: _walk(4, 6, 0.9, 0.1, 0.7)}, {1: 0.5, 2: 4.5},
                  alerted=[(1, 0.5)])
    r = ev.score_clip("c", TRUTH, ev_, FPS, W, H)
    assert r["people"]["2"]["truth"] == "passers-by"
    assert r["must_counted_twice"] == [] and r["ok"]


def test_a_second_track_on_the_person_is_a_double_count():
    ev_ = _events({1: _walk(0, 5, 0.3, 0.5, 0.3), 2: _walk(5.5, 10, 0.52, 0.7, 0.3)}, {1: 0.5, 2: 6.0},
                  alerted=[(1, 0.5)])
    r = ev.score_clip("c", TRUTH, ev_, FPS, W, H)
    assert r["must_counted_twice"] == ["dancer"] and not r["ok"]


def test_a_box_below_a_keyframed_face_with_no_other_entry_is_a_phantom():
    truth = {"appearances": [TRUTH["appearances"][0]]}
    ev_ = _events({1: _walk(0, 10, 0.3, 0.7, 0.3), 2: _walk(2, 4, 0.4, 0.45, 0.55)}, {1: 0.5, 2: 3.0})
    r = ev.score_clip("c", truth, ev_, FPS, W, H)
    assert r["people"]["2"]["truth"] is None and r["phantoms"] == 1 and not r["ok"]


def test_keyframes_interpolate_and_hold_at_the_ends():
    a = {"at": [[2.0, 0.2, 0.4], [4.0, 0.6, 0.2]]}
    assert ev.keyframe_at(a, 3.0) == pytest.approx((0.4, 0.3))
    assert ev.keyframe_at(a, 0.0) == (0.2, 0.4) and ev.keyframe_at(a, 9.0) == (0.6, 0.2)


def test_the_clip_truth_is_well_formed():
    clips = json.loads((TOOLS / "video_truth.json").read_text())["clips"]
    assert set(clips) == {"kf94_tutorial.mp4", "street_crossing.mp4", "crowd_montage.mp4"}
    for name, clip in clips.items():
        ids = [a["id"] for a in clip["appearances"]]
        assert len(ids) == len(set(ids)), name
        for a in clip["appearances"]:
            assert a["from_s"] < a["to_s"] and 0 <= a["x"][0] < a["x"][1] <= 1, (name, a["id"])
            if a.get("alert"):
                assert a["unmasked"], (name, a["id"])
            ts = [k[0] for k in a.get("at", [])]
            assert ts == sorted(ts), (name, a["id"])
            for t, x, y in a.get("at", []):
                assert a["from_s"] - 0.5 <= t <= a["to_s"] + 0.5 and 0 <= x <= 1 and 0 <= y <= 1, (name, a["id"], t)
