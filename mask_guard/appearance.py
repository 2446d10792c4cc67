"""What a face looks like, coarsely: a colour histogram the tracker uses to tell two people apart.

When two people cross (one walks in front of the other, both are lost for a few frames behind each
other) their predicted boxes overlap and box distances alone can swap them, and with them their votes.
The face crop's colours (hair, skin, mask, the background just around the head) usually differ between
two people and change slowly for one person, so the tracker orders candidate pairs by box distance plus
a share of this appearance distance (tracker.py); which pairs may match at all stays the box rule.

The descriptor: the square crop the mouth model uses (mouths.crop_window, so hair and chin are in),
sampled to 16 x 16, in CIE Lab; a 4 x 4 x 4 joint histogram over L, a, b, L1-normalised. The tracker
compares two with the Hellinger distance (tracker.appearance_distance), 0 (same colours) .. 1 (none in
common). Within a shot, where the light is the same from frame to frame, one person's crops stay ~0.1
apart and two people's ~0.4 (measured on the real clips, tracker.py). About 0.3 ms per face here.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .mouths import crop_window

SIDE = 16  # pixels per side of the sampled crop
BINS = 4  # per Lab channel
DIM = BINS ** 3


def descriptor(image_bgr: np.ndarray, box) -> Optional[np.ndarray]:
    """(DIM,) float32 histogram of the face crop, or None when the crop lies outside the frame."""
    if getattr(image_bgr, "ndim", 0) != 3 or image_bgr.shape[2] < 3:
        return None
    h, w = image_bgr.shape[:2]
    x0, y0, side = crop_window(box)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 - sx0 < 2 or sy1 - sy0 < 2:
        return None
    crop = cv2.resize(np.ascontiguousarray(image_bgr[sy0:sy1, sx0:sx1, :3]), (SIDE, SIDE),
                      interpolation=cv2.INTER_AREA)
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.int32)  # 8-bit Lab: 0..255 each
    q = np.minimum(lab * BINS // 256, BINS - 1)
    hist = np.bincount((q[:, 0] * BINS + q[:, 1]) * BINS + q[:, 2], minlength=DIM).astype(np.float32)
    return hist / hist.sum()

