"""Appearance: a colour histogram of the face crop, so the tracker can tell two crossing people apart.

Real faces: the same face a frame later (sensor noise, a few pixels of motion) must look much more alike
than two different people do.
"""
from __future__ import annotations

import cv2
import numpy as np

import appliance_helpers as h
from mask_guard import appearance
from mask_guard.tracker import appearance_distance

BOX = [40, 40, 160, 160]  # the face in a 200 x 200 UTKFace photo


def _faces(n: int = 20) -> list[np.ndarray]:
    d = h.need_data() / "faces" / "utkface" / "without_mask"
    return [cv2.imread(str(p)) for p in sorted(d.glob("*.jpg"))[:2 * n:2]]


def test_a_descriptor_is_a_normalised_histogram_and_none_off_the_frame():
    img = _faces(1)[0]
    d = appearance.descriptor(img, BOX)
    assert d.shape == (appearance.DIM,) and d.dtype == np.float32 and abs(d.sum() - 1) < 1e-5
    assert appearance.descriptor(img, [500, 500, 560, 560]) is None
    assert appearance.descriptor(img[:, :, 0], BOX) is None  # no colours: the tracker uses boxes alone


def test_the_same_face_a_frame_later_is_nearer_than_another_person():
    rng = np.random.default_rng(0)
    faces = _faces()
    now = np.stack([appearance.descriptor(f, BOX) for f in faces])
    later = []
    for f in faces:
        moved = np.roll(f, 3, axis=1).astype(np.float32) + rng.normal(0, 4, f.shape)
        later.append(appearance.descriptor(np.clip(moved, 0, 255).astype(np.uint8), BOX))
    d = appearance_distance(now, np.stack(later))
    same, other = np.diag(d), d[~np.eye(len(faces), dtype=bool)]
    assert np.median(same) < 0.1
    assert np.median(other) > 3 * np.median(same)
    assert np.mean(np.argmin(d, axis=1) == np.arange(len(faces))) >= 0.9
