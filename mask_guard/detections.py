"""The one value type that flows between stages (in the spirit of supervision's ``Detections``).

Boxes are float32 ``(N, 4)`` in ``x1, y1, x2, y2`` pixel coordinates of the image they were found in.
Optional per-box arrays ride along with the same first dimension, so filtering one filters all.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

import numpy as np


class Verdict(str, enum.Enum):
    """Per-frame call on one face, from the mouth/nose/mask scores."""

    NO_MASK = "no_mask"  # mouth visible
    MASK_BELOW_NOSE = "mask_below_nose"  # a mask seen, mouth covered, nose visible
    MASK = "mask"  # a mask seen, mouth covered
    UNSURE = "unsure"  # neither a mouth nor a mask seen, or a score between the thresholds: no vote


# MTCNN landmark order (same as the ``mtcnn`` package).
LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32 x1, y1, x2, y2
    scores: np.ndarray  # (N,) float32
    landmarks: Optional[np.ndarray] = None  # (N, 5, 2) float32, MTCNN order
    class_ids: Optional[np.ndarray] = None  # (N,) int32, for multi-class detectors
    embeddings: Optional[np.ndarray] = None  # (N, D) float32 appearance descriptors (appearance.py), for the tracker

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 5, 2)
        if self.class_ids is not None:
            self.class_ids = np.asarray(self.class_ids, dtype=np.int32).reshape(-1)
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
            if self.embeddings.ndim != 2:
                raise ValueError(f"Detections.embeddings must be (N, D), got shape {self.embeddings.shape}")
        n = len(self.boxes)
        for name in ("scores", "landmarks", "class_ids", "embeddings"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"Detections.{name} has {len(arr)} rows, boxes has {n}")

    @classmethod
    def empty(cls, with_landmarks: bool = False) -> "Detections":
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            landmarks=np.zeros((0, 5, 2), np.float32) if with_landmarks else None,
        )

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index) -> "Detections":
        """Row selection by int, slice, index array or boolean mask; always returns Detections."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            boxes=self.boxes[index],
            scores=self.scores[index],
            landmarks=None if self.landmarks is None else self.landmarks[index],
            class_ids=None if self.class_ids is None else self.class_ids[index],
            embeddings=None if self.embeddings is None else self.embeddings[index],
        )

    @property
    def widths(self) -> np.ndarray:
        return self.boxes[:, 2] - self.boxes[:, 0]

    @property
    def heights(self) -> np.ndarray:
        return self.boxes[:, 3] - self.boxes[:, 1]

    def finite(self) -> "Detections":
        """Drop rows with NaN/inf anywhere: a hostile frame must not poison the tracker."""
        ok = np.isfinite(self.boxes).all(axis=1) & np.isfinite(self.scores)
        if self.landmarks is not None:
            ok &= np.isfinite(self.landmarks).reshape(len(self), 10).all(axis=1)
        return self[ok]


@dataclass
class FaceResult:
    """One face in one frame, after the mouth model: what ``detect --json`` prints per face."""

    box: np.ndarray  # (4,) x1, y1, x2, y2 in frame pixels
    score: float
    landmarks: Optional[np.ndarray]  # (5, 2) or None
    mouth: float  # best mouth confidence in the crop (0 if none)
    nose: float  # best nose confidence in the crop (0 if none)
    verdict: Verdict
    mask: float = 0.0  # best mask confidence in the crop (0 if none)
    votes: bool = True  # False when outside the area, too small or not frontal
    track_id: Optional[int] = None

    def to_json(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "score": round(float(self.score), 4),
            "mouth": round(float(self.mouth), 4),
            "nose": round(float(self.nose), 4),
            "mask": round(float(self.mask), 4),
            "verdict": self.verdict.value,
        }


@dataclass
class Frame:
    """A camera frame: BGR uint8 (OpenCV order), its sequence number and capture time (monotonic s)."""

    image: np.ndarray
    index: int
    timestamp: float
    meta: dict = field(default_factory=dict)
