"""The motion gate: is anything changing in front of the camera? If not, the face detector may rest.

An entrance is empty most of the day, and MTCNN on every frame of an empty scene keeps a core busy
for nothing. As in Frigate, a cheap change detector decides when the detector runs: each frame is
shrunk to a small grayscale copy (``motion.frame_height`` rows, every k-th pixel, then blurred: sensor
noise averages away, since neighbouring samples come from pixels far apart) and compared with a
running-average background.

* **motion**: at least ``motion.min_area`` of the copy differs from the background by more than
  ``motion.threshold`` grey levels.
* **slow light drift** (sun, clouds) is followed by the background itself, which forgets with a time
  constant of ``motion.learn_s`` (per second of frame time, so 5 fps and 30 fps mean the same).
* **a light change** (lights switched on or off, a lamp, the sun through a window, a camera's auto
  exposure): the frame is first matched to the background's *local* brightness (the ratio of the two
  copies' means over a window a sixth of the frame high), so a change of light, even over one part of
  the room, is not motion; a person is, because a person's outline and features are finer than that
  window.
* **a new scene** (the camera moved, a day/night switch): a change over ``motion.relearn_area`` of the
  frame or more, after the brightness matching, re-learns the background from this frame at once; the
  frame is reported as ``relearn`` (the detector looks once) instead of the gate staying "active"
  while a slow background catches up. A person filling the view is looked at all the same.

``MotionGate.check(image, t)`` -> ``MotionResult``. The policy on top (any live track, or
``motion.max_idle_s`` without a detection, also runs the detector) is the pipeline's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

from .config import MotionConfig

DARK = 2.0  # grey levels added to both local means of the ratio, so black areas keep a gain near 1 (8 was
# too much: after a big light step it biased dark areas, whose bright pixels then looked like motion)
MAX_GAIN = 4.0  # brightness matching never scales by more than this (or less than its inverse)


@dataclass
class MotionResult:
    moving: bool  # enough of the frame changed: something moves
    changed: float  # share of the small copy that changed (0..1), after brightness matching
    relearn: bool = False  # a global change: the background was re-learnt from this frame
    first: bool = False  # no background yet (the first frame)


class MotionGate:
    """Running-average background on a small grayscale copy; one ``check`` per frame, in frame order."""

    def __init__(self, cfg: MotionConfig):
        self.cfg = cfg
        self._bg: Optional[np.ndarray] = None  # float32 background, small copy size
        self._t: Optional[float] = None  # frame time of the previous check
        self.relearned = 0  # global light changes seen (status, tests)

    def small(self, image: np.ndarray) -> np.ndarray:
        """The blurred grayscale copy the gate compares, ``frame_height`` rows (float32)."""
        h, w = image.shape[:2]
        sh = min(self.cfg.frame_height, h)
        sw = max(1, round(w * sh / h))
        # the blur averages away the noise that sampling keeps
        return cv2.GaussianBlur(sampled_gray(image, sw, sh).astype(np.float32), (5, 5), 0)

    def check(self, image: np.ndarray, t: float) -> MotionResult:
        """Compare ``image`` (BGR or gray uint8) taken at frame time ``t`` (s) with the background."""
        if not usable(image):  # not a picture the gate can judge: let the detector (which rejects it) decide
            return MotionResult(moving=True, changed=1.0)
        cur = self.small(image)
        if self._bg is None or self._bg.shape != cur.shape:
            self._bg, self._t = cur, t
            return MotionResult(moving=True, changed=1.0, first=True)
        dt = t - self._t if self._t is not None else 0.0
        self._t = t
        # Match the local brightness: light (lamps, exposure, the sun) changes slowly across the frame.
        k = max(3, cur.shape[0] // 6) | 1
        gain = (cv2.blur(self._bg, (k, k)) + DARK) / (cv2.blur(cur, (k, k)) + DARK)
        np.clip(gain, 1.0 / MAX_GAIN, MAX_GAIN, out=gain)
        diff = cv2.absdiff(cur * gain, self._bg)
        changed = float(np.count_nonzero(diff > self.cfg.threshold)) / diff.size
        if changed >= self.cfg.relearn_area:
            self._bg = cur  # a new scene (lights on): start again from it instead of catching up slowly
            self.relearned += 1
            return MotionResult(moving=False, changed=changed, relearn=True)
        # Forget with time constant learn_s in frame time; a time jump (a new source) forgets all.
        alpha = 1.0 if dt < 0 else 1.0 - math.exp(-dt / self.cfg.learn_s)
        # The raw frame, not the matched one: the background follows the light, slowly.
        cv2.accumulateWeighted(cur, self._bg, alpha)
        return MotionResult(moving=changed >= self.cfg.min_area, changed=changed)


def sampled_gray(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """A ``w`` x ``h`` grayscale copy (uint8) of a ``usable`` frame, every k-th pixel.

    Sampling, not area averaging: 0.06 ms instead of 1.4 (640x480) and 3-8 ms (720p) here; callers blur or
    average the small copy. Colour first, then gray: 3 small channels, not 3 big ones."""
    small = cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)
    if small.ndim == 3:
        small = cv2.cvtColor(np.ascontiguousarray(small[:, :, :3]), cv2.COLOR_BGR2GRAY) \
            if small.shape[2] >= 3 else small[:, :, 0]
    return small


def usable(image) -> bool:
    """A frame the cheap whole-picture checks can judge (motion here, cuts in cuts.py)."""
    return isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim in (2, 3) \
        and min(image.shape[:2]) >= 2 and (image.ndim == 2 or image.shape[2] in (1, 3, 4))
