"""The per-frame flow: faces -> mouths -> verdicts -> tracks -> votes -> decisions.

``Analyzer`` is the single-frame path (what ``mask-guard detect`` runs); ``Pipeline`` adds tracking
and votes. Neither plays sounds nor writes files: the daemon applies the decisions (see outcomes.py).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from .config import Config, models_dir, resource_path
from .detections import LEFT_EYE, NOSE, RIGHT_EYE, Detections, FaceResult, Frame
from .faces import FaceDetector, as_three_channels
from .mouths import MouthDetector, verdict
from .tracker import Tracker
from .votes import Decision, DecisionChange, VoteBook

log = logging.getLogger(__name__)


def to_rgb(image_bgr: np.ndarray) -> Optional[np.ndarray]:
    """BGR/gray/BGRA frame -> contiguous RGB uint8, or None for frames nothing can be found in."""
    bgr = as_three_channels(image_bgr)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def is_frontal(box: np.ndarray, landmarks: Optional[np.ndarray]) -> bool:
    """Both eyes visible: the eyes lie inside the box, apart, and the nose sits between them.

    MTCNN always places 5 points, so a profile shows up as the nose outside the eye span.
    """
    if landmarks is None:
        return True
    x1, y1, x2, y2 = box
    w = max(x2 - x1, 1e-6)
    le, re, nose = landmarks[LEFT_EYE], landmarks[RIGHT_EYE], landmarks[NOSE]
    eye_span = re[0] - le[0]
    if eye_span < 0.25 * w:
        return False
    inside = all(x1 <= p[0] <= x2 and y1 <= p[1] <= y2 for p in (le, re))
    margin = 0.1 * eye_span
    return inside and le[0] + margin <= nose[0] <= re[0] - margin


class Analyzer:
    """Faces and per-face verdicts in one image: the daemon's single-frame path."""

    def __init__(self, cfg: Config, faces: Optional[FaceDetector] = None, mouths: Optional[MouthDetector] = None):
        self.cfg = cfg
        self.faces = faces or FaceDetector(cfg.faces, models_dir(cfg))
        self.mouths = mouths or MouthDetector(cfg.mouths, resource_path(cfg.mouths.model, "models"))
        self.last_timings: dict[str, float] = {}

    def analyze(self, image_bgr: np.ndarray) -> list[FaceResult]:
        t0 = time.perf_counter()
        rgb = to_rgb(image_bgr)
        if rgb is None:
            self.last_timings = {"faces_ms": 0.0, "mouths_ms": 0.0}
            return []
        dets = self.faces.detect(rgb).finite()
        t1 = time.perf_counter()
        scores = self.mouths.score_faces(rgb, dets) if len(dets) else np.zeros((0, 2), np.float32)
        t2 = time.perf_counter()
        self.last_timings = {"faces_ms": (t1 - t0) * 1e3, "mouths_ms": (t2 - t1) * 1e3}
        out = []
        for i in range(len(dets)):
            mouth, nose = float(scores[i, 0]), float(scores[i, 1])
            out.append(FaceResult(
                box=dets.boxes[i], score=float(dets.scores[i]),
                landmarks=None if dets.landmarks is None else dets.landmarks[i],
                mouth=mouth, nose=nose, verdict=verdict(mouth, nose, self.cfg.mouths),
            ))
        return out

    def reconfigure(self, cfg: Config) -> None:
        """Take a reloaded config; models are reloaded only when their settings changed.

        Both models load before either is swapped in: a ``ModelError`` leaves the running ones untouched.
        """
        faces, mouths = self.faces, self.mouths
        if cfg.faces != self.cfg.faces or models_dir(cfg) != models_dir(self.cfg):
            faces = FaceDetector(cfg.faces, models_dir(cfg))
        if cfg.mouths.model != self.cfg.mouths.model or cfg.mouths.num_threads != self.cfg.mouths.num_threads:
            mouths = MouthDetector(cfg.mouths, resource_path(cfg.mouths.model, "models"))
        mouths.cfg = cfg.mouths
        self.faces, self.mouths, self.cfg = faces, mouths, cfg


@dataclass
class FrameResult:
    frame: Frame
    faces: list[FaceResult]
    new_people: list[int] = field(default_factory=list)  # track ids that became people this frame
    changes: list[DecisionChange] = field(default_factory=list)
    tallies: dict[int, tuple[int, int, Decision]] = field(default_factory=dict)  # id -> (tally, votes, decision)
    timings: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """Analyzer + tracker + votes. One ``process`` call per frame, in frame order."""

    def __init__(self, cfg: Config, analyzer: Optional[Analyzer] = None):
        self.cfg = cfg
        self.analyzer = analyzer or Analyzer(cfg)
        self.tracker = Tracker(cfg.tracker)
        self.votes = VoteBook(cfg.votes)
        self._known: set[int] = set()
        self._last_index: Optional[int] = None

    def eligible(self, face: FaceResult, shape: tuple[int, int]) -> bool:
        """The street-camera rules: inside the margins, big enough, frontal."""
        a = self.cfg.area
        h, w = shape
        x1, y1, x2, y2 = face.box
        cx, cy = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h
        if not (a.margin_left <= cx <= 1 - a.margin_right and a.margin_top <= cy <= 1 - a.margin_bottom):
            return False
        if x2 - x1 < a.min_face_px:
            return False
        return not a.frontal_only or is_frontal(face.box, face.landmarks)

    def process(self, frame: Frame) -> FrameResult:
        faces = self.analyzer.analyze(frame.image)
        timings = dict(self.analyzer.last_timings)
        t0 = time.perf_counter()
        shape = frame.image.shape[:2] if getattr(frame.image, "ndim", 0) >= 2 else (1, 1)
        for f in faces:
            f.votes = self.eligible(f, shape)
        dets = Detections(
            boxes=np.array([f.box for f in faces], np.float32).reshape(-1, 4),
            scores=np.array([f.score for f in faces], np.float32),
        )
        # Frames the source dropped while we were busy still count as time for the tracker, so
        # survival and motion mean the same on a slow Pi as here. Capped: a reopened camera restarts.
        period = 1 if self._last_index is None else min(max(frame.index - self._last_index, 1), 30)
        self._last_index = frame.index
        tracks = self.tracker.update(dets, period=period)
        result = FrameResult(frame=frame, faces=faces)
        for t in tracks:
            if t.id is None:
                continue
            if t.id not in self._known:
                self._known.add(t.id)
                result.new_people.append(t.id)
            if t.detection_index is not None:
                face = faces[t.detection_index]
                face.track_id = t.id
                change = self.votes.vote(t.id, face.verdict, face.votes)
                if change is not None:
                    result.changes.append(change)
            result.tallies[t.id] = (self.votes.tally(t.id), self.votes.count(t.id), self.votes.decision(t.id))
        removed = list(self.tracker.removed_ids)
        if removed:
            self.votes.forget(removed)
            self._known.difference_update(removed)
        timings["track_ms"] = (time.perf_counter() - t0) * 1e3
        timings["frame_ms"] = timings.get("faces_ms", 0) + timings.get("mouths_ms", 0) + timings["track_ms"]
        result.timings = timings
        return result

    def reconfigure(self, cfg: Config) -> None:
        """Thresholds and rules change live; tracks and votes always survive.

        Tracker and vote settings are read on every update, so they are swapped in place: a new
        ``Tracker`` would restart ids at 1 (a stranger inheriting a ballot and alert history), and a
        new ``VoteBook`` would decide people in view a second time (counted twice).
        """
        self.analyzer.reconfigure(cfg)
        self.tracker.cfg = cfg.tracker
        self.votes.cfg = cfg.votes
        self.cfg = cfg
