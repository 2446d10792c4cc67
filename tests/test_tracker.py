"""Tracker specification: which face is which person, across motion, growth, crossings and gaps.

Scripted scenarios: boxes are generated along known paths with seeded detector-like jitter, so each
test states what a person did and what ids must come out.
"""
from __future__ import annotations

import numpy as np
import pytest

from mask_guard.config import TrackerConfig, config_from_dict
from mask_guard.detections import Detections
from mask_guard.tracker import Tracker, box_distance, ids_by_detection

JITTER = 0.03  # detector box jitter, fraction of the face size (MTCNN wobbles by a few percent)


def face(cx: float, cy: float, w: float, h: float | None = None) -> list[float]:
    h = w if h is None else h
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


class Scene:
    """Feeds scripted faces to a tracker, one frame at a time, and records who was who."""

    def __init__(self, cfg: TrackerConfig | None = None, jitter: float = JITTER, seed: int = 0):
        self.tracker = Tracker(cfg or TrackerConfig())
        self.rng = np.random.default_rng(seed)
        self.jitter = jitter
        self.frames: list[list] = []  # per frame: the people returned
        self.who: list[list] = []  # per frame: person id per detection row (None: no person)

    def step(self, *boxes, period: int = 1, looks=None):
        """One frame; ``looks``: an appearance histogram per box (the pipeline's colour histograms)."""
        b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        if len(b) and self.jitter:
            size = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[:, None]
            b = b + self.rng.normal(0.0, self.jitter, b.shape) * size
        dets = Detections(boxes=b, scores=np.ones(len(b)), embeddings=None if looks is None else np.array(looks))
        people = self.tracker.update(dets, period=period)
        self.frames.append(people)
        self.who.append(ids_by_detection(people, len(b)))
        return people

    def ids(self) -> set[int]:
        return {p.id for people in self.frames for p in people}

    def ids_of_row(self, row: int, start: int = 0) -> set:
        """Person ids given to detection ``row`` from frame ``start`` on (rows are stable in a script)."""
        return {w[row] for w in self.who[start:] if row < len(w)}


def test_defaults_bridge_a_one_second_blackout_at_25_fps():
    cfg = TrackerConfig()
    assert cfg.hit_counter_max >= 30, "a 1 s blackout (25 frames) plus detector misses around it must not kill a person"
    assert cfg.initialization_delay == 2
    assert 0 < cfg.distance_threshold < 1


# --- box distance ------------------------------------------------------------------------------

def cxcywh(*rows):
    """Square-ish test boxes as the filter's (cx, cy, size, log aspect) state."""
    b = np.array(rows, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], np.sqrt(b[:, 2] * b[:, 3]), np.log(b[:, 2] / b[:, 3])], axis=1)


def test_distance_is_zero_for_the_same_box_and_bounded_by_one():
    pred = cxcywh([100, 100, 40, 40])
    dets = cxcywh([100, 100, 40, 40], [130, 100, 40, 40], [1000, 1000, 40, 40], [100, 100, 400, 400])
    d = box_distance(pred, np.zeros((1, 4)), dets)[0]
    assert d[0] == pytest.approx(0.0)
    assert np.all((d >= 0) & (d <= 1))
    assert d[2] == 1.0 and d[3] == 1.0


def test_distance_is_scale_free_so_30px_and_300px_faces_behave_alike():
    small = box_distance(cxcywh([100, 100, 30, 30]), np.zeros((1, 4)), cxcywh([115, 100, 36, 36]))
    big = box_distance(cxcywh([1000, 1000, 300, 300]), np.zeros((1, 4)), cxcywh([1150, 1000, 360, 360]))
    assert small[0, 0] == pytest.approx(big[0, 0])


def test_distance_tolerates_a_face_doubling_in_size_but_not_a_far_face_behind_a_near_one():
    thr = TrackerConfig().distance_threshold
    zero = np.zeros((1, 4))
    grown = box_distance(cxcywh([200, 200, 50, 50]), zero, cxcywh([200, 200, 100, 100]))[0, 0]
    assert grown < thr, "an approaching face may double in size between processed frames"
    moved = box_distance(cxcywh([200, 200, 50, 50]), zero, cxcywh([225, 210, 75, 75]))[0, 0]
    assert moved < thr, "or grow by half and move by half its size"
    # IoU of these two concentric boxes is 0.25 (1 - IoU = 0.75): the log-ratio term is kinder to growth.
    far_behind_near = box_distance(cxcywh([200, 200, 40, 40]), zero, cxcywh([205, 210, 120, 120]))[0, 0]
    assert far_behind_near >= thr, "a 3x larger face on top of a small one is another person"


def test_distance_widens_with_the_tracks_uncertainty_up_to_a_cap():
    pred, det = cxcywh([100, 100, 40, 40]), cxcywh([160, 100, 40, 40])  # 1.5 face sizes away
    sure = box_distance(pred, np.zeros((1, 4)), det)[0, 0]
    unsure = box_distance(pred, np.full((1, 4), 80.0), det)[0, 0]  # 2 face sizes of uncertainty
    assert sure == 1.0 and unsure < 0.8
    lost = box_distance(pred, np.full((1, 4), 1e6), cxcywh([100 + 40 * 5, 100, 40, 40]))[0, 0]
    assert lost == 1.0, "even a long-lost track only searches a few face sizes around its prediction"


# --- ids and initialization delay -------------------------------------------------------------

@pytest.mark.parametrize("delay", [0, 1, 2, 5])
def test_a_new_face_gets_an_id_after_initialization_delay_plus_one_hits(delay):
    s = Scene(TrackerConfig(initialization_delay=delay), jitter=0.0)
    for i in range(delay + 3):
        people = s.step(face(100 + 3 * i, 100, 50))
        if i < delay:
            assert people == [] and s.tracker.tracked_objects[0].id is None
        else:
            assert [p.id for p in people] == [1] and people[0].detection_index == 0


def test_a_one_frame_false_detection_never_gets_an_id():
    s = Scene()
    for i in range(10):
        boxes = [face(100 + 4 * i, 200, 60)]
        if i == 4:
            boxes.append(face(500, 80, 40))  # a flicker on a poster, one frame only
        s.step(*boxes)
    assert s.ids() == {1}
    assert all(o.id is not None for o in s.tracker.tracked_objects), "the flicker's candidate died"


def test_detections_not_yet_people_have_no_id_and_are_not_returned():
    s = Scene(jitter=0.0)
    people = s.step(face(100, 100, 50))
    assert people == []
    assert s.who[-1] == [None]
    (cand,) = s.tracker.tracked_objects
    assert cand.id is None and cand.detection_index == 0 and not cand.initialized


def test_ids_increase_and_are_never_reused_even_after_reset():
    s = Scene(TrackerConfig(hit_counter_max=3, reid_frames=0))
    seen = []
    for start in (0, 40, 80):
        for i in range(8):
            people = s.step(face(100 + 5 * i, 100 + start, 50))
            seen += [p.id for p in people if p.id not in seen]
        for _ in range(10):  # long enough to die
            s.step()
    removed = s.tracker.reset()
    for i in range(5):
        people = s.step(face(300, 300, 50))
        seen += [p.id for p in people if p.id not in seen]
    assert removed == []
    assert seen == [1, 2, 3, 4]


def test_reset_drops_everyone_and_reports_their_ids():
    s = Scene()
    for i in range(5):
        s.step(face(100 + 5 * i, 100, 50), face(400, 300, 60))
    assert s.tracker.reset() == [1, 2]
    assert s.tracker.removed_ids == [1, 2]
    assert s.tracker.tracked_objects == [] and s.tracker.update(Detections.empty()) == []


# --- motion ---------------------------------------------------------------------------------------

def test_a_face_approaching_fast_30_to_200_px_in_15_frames_keeps_one_id():
    widths = 30 * (200 / 30) ** (np.arange(15) / 14)  # +14 % per frame
    s = Scene()
    for i, w in enumerate(widths):
        s.step(face(320 + 3 * i, 200 + 0.4 * w, w))  # drifts sideways, chin drops as it nears
    assert s.ids() == {1}
    assert all(w == [1] for w in s.who[2:]), "matched on every frame once a person"
    final = s.frames[-1][0].box
    # The filter expects steady walking (size ~ 1/distance); this made-up exponential growth is a bit
    # slower at the end, so the estimate may run a little ahead. What matters is the id.
    assert final[2] - final[0] == pytest.approx(200, rel=0.2)


def test_a_face_growing_30_to_300_px_walking_toward_the_camera_keeps_one_id():
    n = 40
    distance = np.linspace(10.0, 1.0, n)  # metres; apparent size ~ 1 / distance, fastest at the end
    s = Scene()
    for i, d in enumerate(distance):
        w = 300 / d
        s.step(face(300 + 60 / d, 150 + 100 / d, w, 1.2 * w))
    assert s.ids() == {1}
    assert all(w == [1] for w in s.who[2:])


def test_a_small_face_moving_more_than_its_width_per_frame_is_tracked():
    s = Scene()  # 30 px face, 40 px per processed frame: a walker at a few fps on a Pi
    for i in range(12):
        s.step(face(20 + 40 * i, 240, 30))
    assert s.ids() == {1}


@pytest.mark.parametrize("seed", range(5))
def test_two_people_crossing_keep_their_ids(seed):
    s = Scene(seed=seed)
    for i in range(40):
        s.step(face(100 + 8 * i, 240, 60), face(420 - 8 * i, 252, 60))  # pass each other at frame 20
    assert s.ids_of_row(0, start=2) == {1} and s.ids_of_row(1, start=2) == {2}


@pytest.mark.parametrize("seed", range(5))
def test_two_people_crossing_on_the_same_line_keep_their_ids_before_and_after(seed):
    s = Scene(seed=seed)
    for i in range(40):
        s.step(face(100 + 8 * i, 240, 60), face(420 - 8 * i, 240, 60))
    # At frame 20 the two boxes coincide (up to jitter): either assignment is right for that one frame.
    frames = [w for f, w in enumerate(s.who) if f >= 2 and f != 20]
    assert all(w == [1, 2] for w in frames)
    assert s.ids() == {1, 2}


def test_a_far_person_hidden_behind_a_near_one_keeps_their_id():
    s = Scene()
    for i in range(40):
        near, far = face(100 + 8 * i, 260, 100), face(420 - 5 * i, 230, 50)
        s.step(near) if 16 <= i < 24 else s.step(near, far)  # far face hidden while they overlap
    assert s.ids_of_row(0, start=2) == {1}
    assert s.ids_of_row(1, start=2) == {2}
    assert s.ids() == {1, 2}


def test_two_same_size_people_crossing_with_one_hidden_keep_their_ids():
    s = Scene()
    for i in range(40):
        a, b = face(100 + 3 * i, 240, 60), face(220 - 3 * i, 240, 60)  # meet at frame 20
        s.step(a) if 14 <= i < 26 else s.step(a, b)
    assert s.ids_of_row(0, start=2) == {1}
    assert s.ids_of_row(1, start=2) == {2}


def test_estimates_coast_on_velocity_while_a_face_is_not_seen():
    s = Scene(jitter=0.0)
    for i in range(10):
        s.step(face(100 + 10 * i, 200, 60))
    for _ in range(3):
        (p,) = s.step()
    assert p.detection_index is None
    assert (p.box[0] + p.box[2]) / 2 == pytest.approx(100 + 10 * 12, abs=3)


# --- gaps and blackouts --------------------------------------------------------------------------

def walk(i: int, row: int = 0) -> list[float]:
    return face(60 + 6 * i, 200 + 150 * row, 60 + 0.5 * i)


def test_a_person_missing_fewer_than_hit_counter_max_frames_keeps_the_id():
    cfg = TrackerConfig(hit_counter_max=15)
    s = Scene(cfg)
    for i in range(20):
        s.step(walk(i))
    for i in range(20, 20 + 14):
        s.step()
        assert s.tracker.removed_ids == []
    for i in range(34, 44):
        s.step(walk(i))
    assert s.ids() == {1}


def test_a_person_missing_longer_than_hit_counter_max_gets_a_new_id():
    cfg = TrackerConfig(hit_counter_max=15, reid_frames=0)
    s = Scene(cfg)
    for i in range(20):
        s.step(walk(i))
    removed_at = None
    for k in range(20):
        s.step()
        if s.tracker.removed_ids:
            assert s.tracker.removed_ids == [1] and removed_at is None
            removed_at = k + 1
    assert removed_at == 16, "survives hit_counter_max unseen frames, gone on the next"
    for i in range(40, 45):
        s.step(walk(i))
    assert s.ids() == {1, 2}
    assert s.who[-1] == [2]


def test_one_second_blackout_at_25_fps_keeps_everyone_with_default_settings():
    s = Scene()
    for i in range(20):  # 0.8 s in view
        s.step(walk(i, 0), walk(i, 1))
    for _ in range(25):  # black frames while they keep walking
        s.step()
    assert s.frames[-1] and {p.id for p in s.frames[-1]} == {1, 2}
    for i in range(45, 60):
        s.step(walk(i, 0), walk(i, 1))
    assert s.ids() == {1, 2}
    assert s.ids_of_row(0, start=45) == {1} and s.ids_of_row(1, start=45) == {2}


@pytest.mark.parametrize("seed", range(10))
def test_a_face_approaching_through_a_one_second_blackout_keeps_its_id(seed):
    # 10 m -> 1 m over 60 frames; black from frame 20 to 45 while the face grows 2.3x (43 -> 96 px).
    # The filter must carry the growth on, and detector noise must not make it shrink or balloon.
    s = Scene(jitter=0.05, seed=seed)
    for i, d in enumerate(np.linspace(10.0, 1.0, 60)):
        w = 300 / d
        s.step() if 20 <= i < 45 else s.step(face(300 + 60 / d, 150 + 100 / d, w, 1.2 * w))
    assert s.ids() == {1}
    assert all(w == [1] for w in s.who[45:])


def test_a_clip_whose_motion_pauses_during_the_blackout_keeps_the_id():
    s = Scene()
    for i in range(30):
        s.step(walk(i))
    for _ in range(25):  # black frames spliced in: the person resumes where they were last seen
        s.step()
    for i in range(30, 45):
        s.step(walk(i))
    assert s.ids() == {1}


def test_a_new_person_entering_after_someone_left_gets_a_new_id():
    s = Scene()
    for i in range(30):
        s.step(face(400 + 10 * i, 240, 60))  # walks out on the right (frame 640 wide)
    for i in range(10):
        s.step()
    for i in range(10):
        s.step(face(40 + 10 * i, 240, 60))  # someone else comes in on the left
    assert s.ids() == {1, 2}
    assert s.who[-1] == [2]


def test_period_advances_motion_and_counters_when_frames_were_skipped():
    s = Scene(TrackerConfig(hit_counter_max=15))
    for i in range(0, 60, 4):  # every 4th camera frame processed
        s.step(walk(i), period=4)
    assert s.ids() == {1}
    (p,) = s.tracker.tracked_objects
    counter = p.hit_counter
    s.step(period=4)
    assert p.hit_counter == counter - 4 and p.age == 60


def test_empty_frames_age_people_and_lower_their_counters():
    s = Scene()
    for i in range(10):
        s.step(walk(i))
    (p,) = s.frames[-1]
    before, seen = p.hit_counter, p.last_seen_frame
    s.step()
    assert p.hit_counter == before - 1 and p.age == 10 and p.last_seen_frame == seen
    s.tracker.update(None)
    assert p.hit_counter == before - 2


# --- hostile input --------------------------------------------------------------------------------

def test_nan_inf_and_empty_boxes_are_ignored_and_never_poison_the_filter():
    s = Scene(jitter=0.0)
    bad = [[np.nan, 1, 2, 3], [0, 0, np.inf, 10], [50, 50, 50, 90], [-np.inf] * 4]
    for i in range(12):
        good = face(100 + 5 * i, 200, 60)
        rows = bad[: i % 4] + [good] + bad[i % 4:]
        s.step(*rows)
    assert s.ids() == {1}
    for i, w in enumerate(s.who[2:], start=2):
        assert w[i % 4] == 1, "detection_index points at the good row of the detections as given"
        assert w.count(None) == 4
    (p,) = s.frames[-1]
    assert p.box == pytest.approx(face(155, 200, 60), abs=1.0)
    for o in s.tracker.tracked_objects:  # candidates included: no track was started from a bad row
        assert np.isfinite(o.box).all() and np.isfinite(o.velocity).all()


def test_a_frame_of_only_nan_boxes_ages_tracks_like_an_empty_frame():
    s = Scene(jitter=0.0)
    for i in range(5):
        s.step(face(100, 100, 50))
    (p,) = s.frames[-1]
    before = p.hit_counter
    dets = Detections(boxes=np.full((3, 4), np.nan), scores=np.ones(3))
    assert s.tracker.update(dets) == [p] and p.hit_counter == before - 1 and p.detection_index is None
    assert np.isfinite(p.box).all()


def test_tracker_settings_come_from_the_config_tree():
    cfg = config_from_dict({"tracker": {"hit_counter_max": 5, "initialization_delay": 0, "distance_threshold": 0.5,
                                        "reid_frames": 0}})
    s = Scene(cfg.tracker, jitter=0.0)
    assert [p.id for p in s.step(face(100, 100, 50))] == [1], "no initialization delay"
    s.step(face(100, 100, 50))
    s.step(face(100, 100, 50))
    assert s.tracker.tracked_objects[0].hit_counter == 5, "capped at hit_counter_max"
    for _ in range(5):
        s.step()
        assert s.tracker.removed_ids == []
    s.step()
    assert s.tracker.removed_ids == [1]


# --- re-identification: a face back where a person was lost is that person -------------------------

def test_a_face_back_where_a_person_was_lost_takes_their_id_back():
    s = Scene(TrackerConfig(hit_counter_max=10, reid_frames=90), jitter=0.0)
    for _ in range(10):
        s.step(face(300, 200, 60))
    for _ in range(40):  # turned away for 40 frames: dead after 10, remembered
        s.step()
        assert s.tracker.removed_ids == []
    for _ in range(5):
        people = s.step(face(320, 205, 64))  # back, a little to the side
    assert [p.id for p in people] == [1]
    assert s.ids() == {1}


def test_a_face_elsewhere_or_of_another_size_is_a_new_person():
    s = Scene(TrackerConfig(hit_counter_max=10, reid_frames=90), jitter=0.0)
    for _ in range(10):
        s.step(face(100, 200, 60))
    for _ in range(20):
        s.step()
    for _ in range(5):
        s.step(face(500, 200, 60), face(110, 200, 150))  # across the frame; in place but 2.5x bigger
    assert s.ids() == {1, 2, 3}


def test_a_remembered_person_is_forgotten_after_reid_frames():
    s = Scene(TrackerConfig(hit_counter_max=5, reid_frames=30), jitter=0.0)
    for _ in range(10):
        s.step(face(300, 200, 60))
    gone = None
    for k in range(60):
        s.step()
        if s.tracker.removed_ids:
            gone = k + 1
            assert s.tracker.removed_ids == [1]
    assert gone is not None and 30 < gone <= 40  # died after ~6 frames, remembered 30 more
    for _ in range(5):
        s.step(face(300, 200, 60))
    assert s.ids() == {1, 2}


def look(*bins: int) -> np.ndarray:
    """A colour histogram (appearance.py's 64 bins) with its mass split evenly over ``bins``."""
    h = np.zeros(64, np.float32)
    h[list(bins)] = 1.0 / len(bins)
    return h


RED_SHIRT, BLUE_MASK = look(5, 20), look(22, 40)


def _cross_hidden(s: Scene, with_looks: bool) -> Scene:
    """A (60 px, walking right fast) and B (63 px, walking left) cross while both are hidden for 8 frames
    (a third person in front of both): the predictions after the gap fit either face about as well."""
    for i in range(45):
        a, b = face(100 + 11.8 * (i + 1), 240, 60), face(534 - 9.7 * (i + 1), 246, 63)
        if 11 <= i < 19:
            s.step()
        else:
            s.step(a, b, looks=[RED_SHIRT, BLUE_MASK] if with_looks else None)
    return s


def test_two_people_crossing_hidden_keep_their_ids_by_their_colours():
    s = _cross_hidden(Scene(seed=274), with_looks=True)
    both = [w for w in s.who[2:] if len(w) == 2]
    assert both and all(w == [1, 2] for w in both)


def test_without_colours_the_same_crossing_swaps_the_two_people():
    # the reason for appearance: boxes alone cannot tell these two apart after the gap
    s = _cross_hidden(Scene(seed=274), with_looks=False)
    assert len({tuple(w) for w in s.who[2:] if len(w) == 2 and None not in w}) > 1


def test_colours_never_let_a_face_match_beyond_the_box_rule():
    s = Scene(jitter=0.0)
    for _ in range(5):
        s.step(face(100, 200, 60), looks=[RED_SHIRT])
    for _ in range(3):  # the same colours far away (3 face sizes): another person, not person 1
        s.step(face(100, 200, 60), face(400, 200, 60), looks=[BLUE_MASK, RED_SHIRT])
    assert s.who[-1] == [1, 2]


def _lost_and_back(lost_x: float, back_x: float, back_look: np.ndarray) -> list[int]:
    """A red-shirted person at ``lost_x`` turns away for 40 frames; a face comes back at ``back_x``."""
    s = Scene(TrackerConfig(hit_counter_max=10, reid_frames=90), jitter=0.0)
    for _ in range(10):
        s.step(face(lost_x, 200, 60), looks=[RED_SHIRT])
    for _ in range(40):
        s.step()
    for _ in range(5):
        people = s.step(face(back_x, 200, 60), looks=[back_look])
    return [p.id for p in people]


@pytest.mark.parametrize("colours, same", [(True, True), (False, False)])
def test_a_face_back_two_face_sizes_away_is_the_same_person_only_if_its_colours_match(colours, same):
    # a dancer turns away and turns back 2.5 face sizes further on: too far for the position rule alone
    assert (_lost_and_back(300, 450, RED_SHIRT if colours else BLUE_MASK) == [1]) is same


def test_a_face_far_away_is_a_new_person_even_with_the_same_colours():
    assert _lost_and_back(100, 500, RED_SHIRT) == [2]  # 6.7 face sizes away
