"""A cut: the picture became another picture from one frame to the next, so no track may continue.

A video edit (a montage, a clip spliced from several shots), or a camera knocked, turned or swapped, puts
other people where the previous people were. The tracker would hand the old ids to the new faces (same
place, same size) and with them their ballots: an unmasked man inheriting a masked woman's "masked" is
never alerted. At a cut every track ends (the pipeline's ``end_tracks``); people already counted stay
counted, and those in the new picture are new people.

What a cut looks like, and what it does not:

* the **structure** of most of the picture changes at once: a small grayscale copy is cut into
  ``GRID`` x ``GRID`` cells and each cell is compared with the same cell of the previous frame by
  normalised cross-correlation (its pattern, whatever its brightness or contrast);
* a **light change** (lamps, auto exposure, the sun) scales a cell's grey levels: the correlation stays
  near 1, so it is no cut; a textureless cell (a wall, the sky) says nothing either way and is left out;
* a **person** walking past, even close to the lens, changes the cells they cover, and they arrive over
  several frames: a cut also needs the previous pair of frames to have been as alike as frames of one
  shot are (``STEADY``), so a face filling the view while approaching, or a camera panning, is no cut.

Measured on real photos, not on clips (300 random pairs of unrelated scene photos from ../shared/data,
and 100 photos each against a changed copy of itself, 4 grey levels of sensor noise on each): unrelated
pairs score a median cell correlation below ``CUT`` in 98.0% of pairs (above 0.2 in 0.7%); the same photo
under noise, half or double the light, an exposure curve, a blur or a 6 px pan scores 0.71 or more in
99% of cases (0.95-1.0 for noise and light alone).
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .motion import sampled_gray, usable

GRID = 4  # cells per side
CELL = 12  # pixels per cell side in the copy (the copy is GRID * CELL square: aspect does not matter)
CUT = 0.1  # median cell correlation below this: the picture is another one (unrelated pictures: ~0)
STEADY = 0.8  # ... and the previous pair was at least this alike, as frames of one shot are (a cut is
# sudden; someone walking up to the lens blurs and shifts the picture over several frames, ~0.2-0.6)
DETAIL = 2.0  # px of the copy: what a blur of this size removes (gradients, shading) is not compared
FLAT = 1.5  # a cell whose detail varies less than this (std, grey levels) has no pattern to compare
MIN_CELLS = GRID * GRID // 4  # a frame with fewer patterned cells (dark, blank) is not judged


class CutDetector:
    """One ``check`` per processed frame, in frame order; ``True`` on the first frame after a cut."""

    def __init__(self):
        self._prev: Optional[tuple[np.ndarray, np.ndarray]] = None  # the previous frame's cells (see _cells)
        self._steady = True  # was the previous pair alike (or is there no pair yet)
        self.cuts = 0  # cuts seen (status, tests)

    def check(self, image: np.ndarray) -> bool:
        cur = _cells(image)
        if cur is None:
            return False
        prev, self._prev = self._prev, cur
        if prev is None:
            return False
        corr = _median_correlation(prev, cur)
        if corr is None:  # a dark or blank picture (a blackout, lights off): no judgement, and what follows
            self._steady = False  # it is no sudden change either (the same people may be there)
            return False
        cut = corr < CUT and self._steady
        self._steady = corr >= STEADY
        if cut:
            self.cuts += 1
        return cut


def _cells(image) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """The frame's small grayscale copy, cell by cell: (GRID*GRID, CELL*CELL) rows of zero mean and unit
    length (so a correlation is one dot product), and each cell's standard deviation."""
    if not usable(image) or min(image.shape[:2]) < GRID:
        return None
    side = GRID * CELL
    # Sample 2x the copy's size first (cheap on 720p), then average down: noise averages away.
    small = cv2.resize(sampled_gray(image, 2 * side, 2 * side), (side, side), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32)
    # Detail only: unrelated photos share their gradients (sky above, floor below), not their detail.
    small -= cv2.GaussianBlur(small, (0, 0), DETAIL)
    cells = small.reshape(GRID, CELL, GRID, CELL).transpose(0, 2, 1, 3).reshape(GRID * GRID, CELL * CELL)
    cells -= cells.mean(axis=1, keepdims=True)
    std = np.sqrt((cells * cells).mean(axis=1))
    return cells / (np.maximum(std, 1e-6)[:, None] * np.sqrt(CELL * CELL)), std


def _median_correlation(a, b) -> Optional[float]:
    """Median normalised cross-correlation of the patterned cells of two copies (None: too few)."""
    (na, sa), (nb, sb) = a, b
    fa, fb = sa < FLAT, sb < FLAT
    if GRID * GRID - int(fa.sum()) < MIN_CELLS or GRID * GRID - int(fb.sum()) < MIN_CELLS:
        return None  # one of them is no picture to compare (black, blank, out of focus)
    corr = (na * nb).sum(axis=1)
    # A cell flat in one frame and patterned in the other has changed (its correlation is noise).
    corr[fa ^ fb] = 0.0
    return float(np.median(corr[~(fa & fb)]))
