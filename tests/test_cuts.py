"""Cuts: when the picture becomes another picture, every track ends; light, people and a moving camera
never make a cut.

The pictures are real: the empty shop entrance of the motion tests (``clips.room_photo``) and real street
and crowd scenes from ../shared/data, under fresh sensor noise every frame; the walk-through clips are
the ones the video tests play (real faces walking in, standing, turning away, a blackout, a light step).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

import appliance_helpers as h
import clips
from mask_guard.cuts import CutDetector

SCENES = ["scenes/macwin/images/000_1OA3ID.jpg", "scenes/macwin/images/-1x-1.jpg"]


@pytest.fixture(scope="module")
def pictures() -> list[np.ndarray]:
    d = h.need_data()
    room = clips.room_photo()
    out = [room]
    for rel in SCENES:
        img = cv2.imread(str(d / rel))
        assert img is not None, rel
        out.append(cv2.resize(img, (room.shape[1], room.shape[0])))
    return out


def noisy(img: np.ndarray, rng, gain: float = 1.0, sigma: float = 4.0) -> np.ndarray:
    return np.clip(img.astype(np.float32) * gain + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def cuts_in(frames) -> list[int]:
    det = CutDetector()
    return [i for i, f in enumerate(frames) if det.check(f)]


def test_a_change_of_picture_is_one_cut_on_its_first_frame(pictures):
    rng = np.random.default_rng(0)
    room, street, crowd = pictures
    frames = [noisy(room, rng) for _ in range(10)] + [noisy(street, rng) for _ in range(10)] \
        + [noisy(crowd, rng) for _ in range(10)]
    assert cuts_in(frames) == [10, 20]


@pytest.mark.parametrize("gain", [0.35, 0.6, 1.6, 2.5])
def test_lights_switched_on_or_off_are_no_cut(pictures, gain):
    rng = np.random.default_rng(1)
    room = pictures[0]
    frames = [noisy(room, rng) for _ in range(10)] + [noisy(room, rng, gain=gain) for _ in range(10)]
    assert cuts_in(frames) == []


def test_auto_exposure_and_a_colour_cast_are_no_cut(pictures):
    rng = np.random.default_rng(2)
    room = pictures[1]
    gamma = (255 * (room / 255.0) ** 0.5).astype(np.uint8)  # exposure curve, not a scale
    cast = np.clip(room.astype(np.float32) * np.array([1.3, 1.0, 0.7]), 0, 255).astype(np.uint8)
    frames = [noisy(room, rng)] * 5 + [noisy(gamma, rng)] * 5 + [noisy(cast, rng)] * 5
    assert cuts_in(frames) == []


def test_a_camera_panning_or_going_out_of_focus_is_no_cut(pictures):
    rng = np.random.default_rng(3)
    crowd = pictures[2]
    h_, w = crowd.shape[:2]
    pan = [noisy(np.roll(crowd, 6 * k, axis=1), rng) for k in range(20)]  # 6 px a frame
    blur = [noisy(cv2.GaussianBlur(crowd, (0, 0), s), rng) if s else noisy(crowd, rng) for s in (0, 0, 2, 4, 8, 8)]
    assert cuts_in(pan) == [] and cuts_in(blur) == []


def test_a_blackout_and_the_picture_coming_back_are_no_cut(pictures):
    rng = np.random.default_rng(4)
    room = pictures[0]
    black = np.zeros_like(room)
    frames = [noisy(room, rng) for _ in range(5)] + [noisy(black, rng, sigma=1.0) for _ in range(5)] \
        + [noisy(room, rng) for _ in range(5)]
    assert cuts_in(frames) == []


def test_someone_walking_up_to_the_lens_is_no_cut(pictures):
    """A face growing from a tenth to most of the frame in 8 frames (a fast walk at a few fps)."""
    rng = np.random.default_rng(5)
    room, _, crowd = pictures
    h_, w = room.shape[:2]
    face = crowd[h_ // 4: h_ // 4 + 60, w // 3: w // 3 + 60]  # a patch of real people
    frames = [noisy(room, rng) for _ in range(4)]
    for k in range(8):
        img = room.copy()
        s = int(60 + (h_ - 60) * k / 7)
        patch = cv2.resize(face, (s, s))
        x0 = max(0, w // 2 - s // 2)
        img[h_ - s:, x0:x0 + s] = patch[:, : w - x0]
        frames.append(noisy(img, rng))
    assert cuts_in(frames) == []


@pytest.mark.parametrize("name", ["approach_unmasked", "crossing", "turn_away", "blackout", "lighting_change"])
def test_the_walk_through_clips_have_no_cut(name):
    h.need_data()
    if not clips.INDEX_PATH.exists():
        pytest.skip(f"{clips.INDEX_PATH} missing: run tools/make_clips.py index")
    spec, pool = clips.build_spec(name)
    assert cuts_in(img for img, _ in clips.render(spec, pool)) == []


def test_frames_that_are_no_picture_are_never_judged():
    det = CutDetector()
    for img in [np.zeros((2, 2, 3), np.uint8), None, np.zeros((480, 640), np.float32),
                np.full((480, 640, 3), 128, np.uint8), np.zeros((480, 640, 3), np.uint8)]:
        assert det.check(img) is False
    assert det.cuts == 0
