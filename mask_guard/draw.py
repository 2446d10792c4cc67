"""Annotated frames for the preview window and snapshots: boxes coloured by decision, id and votes above heads."""
from __future__ import annotations

import cv2
import numpy as np

from .detections import Verdict
from .pipeline import FrameResult
from .votes import Decision

# BGR
_DECISION_COLOURS = {
    Decision.MASK: (60, 180, 60),
    Decision.NO_MASK: (40, 40, 230),
    Decision.UNDECIDED: (180, 180, 180),
}
_VERDICT_COLOURS = {
    Verdict.MASK: (60, 180, 60),
    Verdict.NO_MASK: (40, 40, 230),
    Verdict.MASK_BELOW_NOSE: (0, 165, 255),
    Verdict.UNSURE: (180, 180, 180),
}


def _label(img: np.ndarray, text: str, x: int, y: int, colour: tuple) -> None:
    scale = max(0.4, min(img.shape[1] / 1280, 1.2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = max(th + base + 2, y)
    x = max(0, min(x, img.shape[1] - tw - 4))  # keep labels of faces at the edge readable
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 4, y), colour, -1)
    cv2.putText(img, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def annotate(image_bgr: np.ndarray, result: FrameResult, fps: float | None = None) -> np.ndarray:
    """A copy of the frame with every face; tracked faces show 'id #votes decision', others their verdict."""
    img = np.ascontiguousarray(image_bgr.copy())
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    for face in result.faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        if face.track_id is not None and face.track_id in result.tallies:
            tally, n, decision = result.tallies[face.track_id]
            colour = _DECISION_COLOURS[decision]
            text = f"#{face.track_id} {tally:+d}/{n} {decision.value}"
        else:
            colour = _VERDICT_COLOURS[face.verdict]
            text = face.verdict.value
        thickness = 2 if face.votes else 1  # thin box: this face does not vote (margin, size, profile)
        cv2.rectangle(img, (x1, y1), (x2, y2), colour, thickness)
        _label(img, text, x1, y1 - 2, colour)
        _label(img, f"m{face.mouth:.2f} n{face.nose:.2f} k{face.mask:.2f}", x1, y2 + 16, colour)
    status = f"frame {result.frame.index}  faces {len(result.faces)}"
    if fps is not None:
        status += f"  {fps:.1f} fps"
    _label(img, status, 4, 20, (50, 50, 50))
    return img
