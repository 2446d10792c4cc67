"""Tracks, votes and alerts on scripted face sequences: one alert per unmasked person, none for
masked people, counts that match, and the street-camera voting rules.

The faces come from a script (boxes and verdicts per frame) instead of the models, so every
frame's input is known; tracker, votes, alert policy, sound player (ALSA null device) and counts
are the real ones.
"""
from __future__ import annotations

import time
import wave
from datetime import datetime

import numpy as np
import pytest
from mask_guard.alerts import Alerter, SoundPlayer
from mask_guard.config import config_from_dict
from mask_guard.counts import Counts
from mask_guard.detections import FaceResult, Frame, Verdict
from mask_guard.outcomes import Outcomes
from mask_guard.pipeline import Pipeline, is_frontal
from mask_guard.tflite import ModelError
from mask_guard.votes import Decision

FPS = 15.0
W, H = 640, 480


def face(cx: float, cy: float, size: float, verdict: Verdict, frontal: bool = True) -> FaceResult:
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    s = size
    nose_x = cx if frontal else cx + 0.45 * s  # a profile: the nose outside the eye span
    lms = np.array([[cx - 0.2 * s, cy - 0.1 * s], [cx + 0.2 * s, cy - 0.1 * s], [nose_x, cy + 0.05 * s],
                    [cx - 0.15 * s, cy + 0.25 * s], [cx + 0.15 * s, cy + 0.25 * s]], np.float32)
    return FaceResult(box=box, score=0.99, landmarks=lms, mouth=0.0, nose=0.0, verdict=verdict)


class ScriptedAnalyzer:
    """Stands in for MTCNN + mouth model: frame i yields script[i]."""

    def __init__(self, script: list[list[FaceResult]]):
        self.script = script
        self.last_timings = {}

    def analyze(self, image, fit=None) -> list[FaceResult]:
        i = int(image[0, 0, 0]) | int(image[0, 0, 1]) << 8  # the frame index is painted into the frame
        return [FaceResult(**{**f.__dict__}) for f in self.script[i]] if i < len(self.script) else []

    def reconfigure(self, cfg) -> None:
        pass


def walk(start: int, frames: int, verdicts, x0: float, x1: float, s0: float = 40, s1: float = 200, y: float = 240):
    """A person walking toward the camera: moves from x0 to x1 and grows from s0 to s1 px."""
    out = {}
    for k in range(frames):
        t = k / max(frames - 1, 1)
        v = verdicts(k) if callable(verdicts) else verdicts
        out[start + k] = face(x0 + (x1 - x0) * t, y, s0 + (s1 - s0) * t, v)
    return out


def script_of(n: int, *people: dict) -> list[list[FaceResult]]:
    return [[p[i] for p in people if i in p] for i in range(n)]


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def short_chime(path) -> str:
    """A 50 ms chime: the script runs faster than real time, and the real ALSA playback of the
    2.8 s alert would still be busy (one alert at a time) when the next one is due."""
    t = np.arange(int(0.05 * 22050)) / 22050
    pcm = (np.sin(2 * np.pi * 880 * t) * 12000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(22050), w.writeframes(pcm.tobytes())
    return str(path)


def run(script, tmp_path, reload_at=None, picture=None, **cfg_sections):
    """Run the script; ``reload_at=(frame, sections)`` reconfigures the pipeline before that frame (SIGHUP);
    ``picture(i)``: what frame i shows (default black: no picture, so never a cut)."""
    alerts_cfg = {"cooldown_s": 2.0, "realert_s": 600.0, "sound": short_chime(tmp_path / "chime.wav")}
    alerts_cfg.update(cfg_sections.pop("alerts", {}))
    # The script's faces have no pixels, so nothing moves for the motion gate (test_motion.py tests it).
    cfg_sections.setdefault("motion", {"enabled": False})
    cfg = config_from_dict({"alerts": alerts_cfg, **cfg_sections})
    clock = Clock()
    player = SoundPlayer(cfg.alerts.sound, clock=clock)
    alerter = Alerter(cfg.alerts, player=player, now=lambda: datetime(2026, 11, 21, 12, 0), mono=clock)
    counts = Counts(tmp_path / "counts.json", keep_days=30)
    pipe = Pipeline(cfg, analyzer=ScriptedAnalyzer(script))
    outcomes = Outcomes(alerter, counts)
    alerts, decisions = [], {}
    for i in range(len(script)):
        if reload_at is not None and i == reload_at[0]:
            pipe.reconfigure(config_from_dict({"alerts": alerts_cfg, **cfg_sections, **reload_at[1]}))
        img = np.zeros((H, W, 3), np.uint8) if picture is None else picture(i).copy()
        img[0, 0, 0], img[0, 0, 1] = i & 0xFF, i >> 8
        clock.t = 1000.0 + i / FPS
        time.sleep(0.005)  # let real playback of the short chime keep pace with the script
        res = pipe.process(Frame(img, i, clock.t))
        for ch in res.changes:
            decisions[ch.track_id] = ch.new
        alerts += [(i, tid) for tid in outcomes.apply(res)]
    return alerts, decisions, counts.totals(), pipe


def test_one_alert_per_unmasked_person_and_none_for_masked(tmp_path):
    unmasked_a = walk(0, 40, Verdict.NO_MASK, 100, 300)
    masked = walk(10, 40, Verdict.MASK, 550, 400)
    # a second unmasked person, at the same time as the first: the global cooldown delays, never drops, her alert
    unmasked_b = walk(12, 30, lambda k: Verdict.UNSURE if k % 4 == 0 else Verdict.NO_MASK, 320, 480, y=300)
    alerts, decisions, totals, _ = run(script_of(80, unmasked_a, masked, unmasked_b), tmp_path)
    assert sorted(decisions.values()) == sorted([Decision.NO_MASK, Decision.NO_MASK, Decision.MASK])
    unmasked_ids = {tid for tid, d in decisions.items() if d is Decision.NO_MASK}
    assert sorted(tid for _, tid in alerts) == sorted(unmasked_ids)  # exactly one each
    frames = [i for i, _ in alerts]
    assert frames[1] - frames[0] >= 2.0 * FPS  # cooldown_s between alerts
    assert totals["people"] == 3 and totals["masked"] == 1 and totals["unmasked"] == 2
    assert totals["alerts"] == 2


def test_decision_waits_for_three_votes_and_unsure_frames_do_not_vote(tmp_path):
    verdicts = [Verdict.UNSURE] * 6 + [Verdict.NO_MASK] * 10
    person = walk(0, len(verdicts), lambda k: verdicts[k], 100, 200)
    alerts, decisions, _, pipe = run(script_of(20, person), tmp_path)
    assert list(decisions.values()) == [Decision.NO_MASK]
    # init delay 2 frames (id from frame 2); unsure frames 0-5 cast nothing; votes at 6, 7, 8 -> decided at 8
    assert [i for i, _ in alerts] == [8]


def test_a_person_who_puts_the_mask_on_turns_masked_without_a_second_alert(tmp_path):
    verdicts = [Verdict.NO_MASK] * 8 + [Verdict.MASK] * 40
    person = walk(0, len(verdicts), lambda k: verdicts[k], 100, 300)
    alerts, decisions, totals, _ = run(script_of(50, person), tmp_path)
    assert len(alerts) == 1
    assert list(decisions.values()) == [Decision.MASK]  # the tally crossed back over zero
    assert totals["people"] == 1 and totals["masked"] == 1 and totals["unmasked"] == 0


def test_faces_in_the_margins_too_small_or_in_profile_do_not_vote(tmp_path):
    in_margin = walk(0, 30, Verdict.NO_MASK, 20, 40, s0=60, s1=60)  # centre within the left 10 %
    tiny = walk(0, 30, Verdict.NO_MASK, 300, 320, s0=20, s1=24, y=100)
    profile = {i: face(500, 300, 120, Verdict.NO_MASK, frontal=False) for i in range(30)}
    alerts, decisions, totals, _ = run(script_of(30, in_margin, tiny, profile), tmp_path,
                                       area={"margin_left": 0.1, "min_face_px": 32, "frontal_only": True})
    assert alerts == [] and decisions == {}
    assert totals["people"] == 0  # tracked, but never decided: not people (README, "When it counts")


def test_a_person_still_there_after_the_realert_interval_is_reminded_again(tmp_path):
    person = walk(0, 200, Verdict.NO_MASK, 200, 260, s0=100, s1=110)
    alerts, _, _, _ = run(script_of(200, person), tmp_path, alerts={"cooldown_s": 0, "realert_s": 5.0})
    frames = [i for i, _ in alerts]
    assert len(frames) == 3 and all(b - a >= 5.0 * FPS for a, b in zip(frames, frames[1:]))


def test_a_reload_changing_tracker_and_vote_settings_keeps_people_their_ids_and_the_counts(tmp_path):
    unmasked = walk(0, 40, Verdict.NO_MASK, 100, 300)  # decided and alerted before the reload
    masked = walk(30, 20, Verdict.MASK, 550, 450)  # arrives after it
    alerts, decisions, totals, _ = run(script_of(50, unmasked, masked), tmp_path,
                                       reload_at=(20, {"tracker": {"hit_counter_max": 30}, "votes": {"decide_after": 4}}))
    assert sorted(decisions.values()) == [Decision.MASK, Decision.NO_MASK]  # two ids: no stranger inherits one
    assert len(alerts) == 1
    assert totals["people"] == 2 and totals["unmasked"] == 1 and totals["masked"] == 1 and totals["alerts"] == 1


def test_a_reload_naming_a_missing_model_changes_nothing_in_the_running_pipeline(tmp_path):
    pipe = Pipeline(config_from_dict({}))  # the real models
    before = (pipe.analyzer.faces, pipe.analyzer.mouths, pipe.analyzer.cfg, pipe.cfg, pipe.tracker.cfg)
    bad = config_from_dict({"faces": {"min_face_px": 40}, "mouths": {"model": str(tmp_path / "gone.tflite")},
                            "tracker": {"hit_counter_max": 7}})
    with pytest.raises(ModelError, match="gone.tflite"):
        pipe.reconfigure(bad)
    assert (pipe.analyzer.faces, pipe.analyzer.mouths, pipe.analyzer.cfg, pipe.cfg, pipe.tracker.cfg) == before


def test_frontal_rule_reads_the_eyes_and_nose():
    assert is_frontal(*_box_lms(face(100, 100, 80, Verdict.MASK)))
    assert not is_frontal(*_box_lms(face(100, 100, 80, Verdict.MASK, frontal=False)))


def _box_lms(f: FaceResult):
    return f.box, f.landmarks


# --- when it counts (README): people are decided tracks ------------------------------------------

def test_a_false_face_that_shows_neither_mouth_nor_mask_is_tracked_but_never_a_person(tmp_path):
    phantom = walk(0, 60, Verdict.UNSURE, 300, 310, s0=60, s1=60)  # foliage: found every frame, never a mouth or mask
    alerts, decisions, totals, pipe = run(script_of(60, phantom), tmp_path)
    assert alerts == [] and decisions == {}
    assert totals["people"] == 0 and totals["masked"] == 0
    assert any(t.id is not None for t in pipe.tracker.tracked_objects)  # it was a track, just not a person


def test_a_person_is_counted_once_when_first_decided_not_when_first_seen(tmp_path):
    person = walk(0, 40, lambda k: Verdict.UNSURE if k < 10 else Verdict.MASK, 100, 200)
    script = script_of(40, person)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _, decisions, totals, _ = run(script[:10], tmp_path / "a")
    assert totals["people"] == 0  # ten frames in view, nothing confident yet
    _, decisions, totals, _ = run(script, tmp_path / "b")
    assert totals["people"] == 1 and totals["masked"] == 1 and list(decisions.values()) == [Decision.MASK]


def test_a_second_box_on_the_lower_half_of_a_face_merges_into_that_person(tmp_path):
    head = walk(0, 40, Verdict.MASK, 300, 320, s0=120, s1=120)
    # MTCNN's second box on a bowed head: the chin and mouth area, inside the face box, every other frame
    chin = {i: face(f.box[0] / 2 + f.box[2] / 2, f.box[1] * 0.25 + f.box[3] * 0.75, 55, Verdict.MASK)
            for i, f in head.items() if i % 2 == 0}
    alerts, decisions, totals, _ = run(script_of(40, head, chin), tmp_path)
    assert totals["people"] == 1 and totals["masked"] == 1
    assert len(decisions) == 1


def test_a_box_on_the_chest_under_a_face_that_shows_no_mouth_merges_into_that_person(tmp_path):
    # crowd_montage: MTCNN's box on a bald man's chest, 0.62 of his face's width, its top at his chin
    head = walk(0, 40, Verdict.NO_MASK, 300, 300, s0=90, s1=90, y=200)
    chest = walk(0, 40, Verdict.MASK, 310, 310, s0=56, s1=56, y=200 + 45 + 30)
    alerts, decisions, totals, _ = run(script_of(40, head, chest), tmp_path)
    assert totals["people"] == 1 and totals["unmasked"] == 1 and totals["masked"] == 0
    assert len(alerts) == 1 and len(decisions) == 1


def test_a_face_under_a_face_that_shows_a_mouth_is_a_person_of_its_own(tmp_path):
    # a child held in front of an adult: never merged while a mouth shows, so no alert is ever suppressed
    adult = walk(0, 40, Verdict.MASK, 300, 300, s0=100, s1=100, y=150)
    child = walk(0, 40, Verdict.NO_MASK, 300, 300, s0=60, s1=60, y=150 + 50 + 35)
    alerts, decisions, totals, _ = run(script_of(40, adult, child), tmp_path)
    assert totals["people"] == 2 and totals["unmasked"] == 1 and totals["masked"] == 1
    assert len(alerts) == 1


def test_a_smaller_face_beside_or_far_below_a_face_is_a_person_of_its_own(tmp_path):
    adult = walk(0, 40, Verdict.MASK, 300, 300, s0=100, s1=100, y=150)
    beside = walk(0, 40, Verdict.MASK, 420, 420, s0=60, s1=60, y=230)  # centred off the adult's span
    far = walk(0, 40, Verdict.MASK, 300, 300, s0=60, s1=60, y=150 + 50 + 100 + 40)  # top > a face height under
    alerts, decisions, totals, _ = run(script_of(40, adult, beside, far), tmp_path)
    assert totals["people"] == 3 and totals["masked"] == 3


def test_two_people_side_by_side_are_two_people(tmp_path):
    a = walk(0, 30, Verdict.MASK, 150, 160, s0=100, s1=100)
    b = walk(0, 30, Verdict.NO_MASK, 450, 460, s0=90, s1=90)
    alerts, decisions, totals, _ = run(script_of(30, a, b), tmp_path)
    assert totals["people"] == 2 and totals["masked"] == 1 and totals["unmasked"] == 1
    assert len(alerts) == 1


def test_an_unmasked_person_who_turns_away_for_two_seconds_is_one_person_with_one_alert(tmp_path):
    before = walk(0, 20, Verdict.NO_MASK, 300, 310, s0=90, s1=90)
    after = walk(20 + int(2 * FPS), 20, Verdict.NO_MASK, 312, 320, s0=92, s1=92)  # face gone 2 s, then back
    n = 40 + int(2 * FPS)
    alerts, decisions, totals, _ = run(script_of(n, before, after), tmp_path, alerts={"cooldown_s": 0})
    assert totals["people"] == 1 and totals["unmasked"] == 1
    assert len(alerts) == 1


def test_a_masked_person_replaced_in_place_by_an_unmasked_one_is_still_alerted(tmp_path):
    masked = walk(0, 60, Verdict.MASK, 300, 300, s0=90, s1=90)  # a long-tracked masked person leaves ...
    bare = walk(60 + 50, 30, Verdict.NO_MASK, 300, 300, s0=90, s1=90)  # ... someone unmasked stands there later
    alerts, decisions, _, _ = run(script_of(140, masked, bare), tmp_path, alerts={"cooldown_s": 0})
    assert len(alerts) == 1  # the re-identified ballot is softened: a few confident votes overturn it


def test_a_face_found_again_after_a_gap_is_re_decided_by_a_few_votes(tmp_path):
    masked = walk(0, 60, Verdict.MASK, 300, 300, s0=90, s1=90)
    bare = walk(60 + 20, 30, Verdict.NO_MASK, 300, 300, s0=90, s1=90)  # 20 frames unseen: the same track coasts
    alerts, decisions, _, _ = run(script_of(110, masked, bare), tmp_path, alerts={"cooldown_s": 0})
    assert len(alerts) == 1 and alerts[0][0] <= 80 + 8  # not after ~60 votes against a capped tally


@pytest.mark.parametrize("end_at_cut,alerted", [(True, 1), (False, 0)])
def test_after_a_cut_the_face_in_the_same_place_is_a_new_person(tmp_path, end_at_cut, alerted):
    """A montage: a masked woman in one shot, an unmasked man where she was in the next. Without the cut
    rule he inherits her 60 "masked" votes and is never alerted."""
    import cv2

    import appliance_helpers as h
    import clips

    d = h.need_data()
    shot1 = cv2.resize(clips.room_photo(), (W, H))
    shot2 = cv2.resize(cv2.imread(str(d / "scenes/macwin/images/000_1OA3ID.jpg")), (W, H))
    masked = walk(0, 60, Verdict.MASK, 300, 300, s0=90, s1=90)
    bare = walk(60, 30, Verdict.NO_MASK, 300, 300, s0=90, s1=90)  # the very next frame, the same box
    alerts, _, totals, pipe = run(script_of(90, masked, bare), tmp_path, picture=lambda i: shot1 if i < 60 else shot2,
                                  alerts={"cooldown_s": 0}, tracker={"end_at_cut": end_at_cut})
    assert len(alerts) == alerted
    assert pipe.cuts.cuts == 1
    if end_at_cut:
        assert totals["people"] == 2 and totals["masked"] == 1 and totals["unmasked"] == 1
