"""The per-frame flow: faces -> mouths -> verdicts -> tracks -> votes -> decisions.

``Analyzer`` is the single-frame path (what ``mask-guard detect`` runs); ``Pipeline`` adds tracking
and votes. Neither plays sounds nor writes files: the daemon applies the decisions (see outcomes.py).

When it counts: a track becomes a *person* (``new_people``; people, masked, unmasked, in view) only when
its votes first decide it, i.e. after ``votes.decide_after`` confident verdicts. A false face shows
neither a mouth nor a mask, so it is ``unsure``, never votes and is never counted. A face box lying
mostly inside a larger face box (this frame's, or a tracked face's) is a part of that face, such as
the lower half of a bowed head: it is merged into it (no track, no vote), never a second person; so is
a narrower box under a face (its neck or chest) unless it shows a mouth.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from . import appearance
from .boxes import area, iou
from .clock import VIDEO_S
from .config import Config, models_dir, resource_path
from .cuts import CutDetector
from .detections import LEFT_EYE, NOSE, RIGHT_EYE, Detections, FaceResult, Frame, Verdict
from .faces import FaceDetector, as_three_channels
from .motion import MotionGate
from .mouths import MouthDetector, verdict
from .tracker import Tracker
from .votes import Decision, DecisionChange, VoteBook

log = logging.getLogger(__name__)

INNER_OVERLAP = 0.7  # this share of a face box inside another face box ...
INNER_AREA = 0.6  # ... that is at least 1 / this larger: a part of that face, not a second face
# MTCNN's box on a neck, collar or chest: narrower than the face above it, centred under it, its top
# between the face's middle and one face height under its chin. Merged only when it shows no mouth, so
# no alert is ever suppressed; measured on the train/dev scene photos: 7 such boxes read as a mask
# against 1 real face (an unmasked man under a false box on a shop front, read as mask below nose)
BELOW_WIDTH = 0.75  # ... at most this share of the face's width


def under_a_face(boxes: np.ndarray, faces: np.ndarray, shows_mouth: np.ndarray) -> np.ndarray:
    """(N,): box n shows no mouth and lies under one of ``faces`` the way MTCNN's box on a neck or chest
    does (see BELOW_WIDTH), so it is a part of that person. ``shows_mouth``: (N,) verdict is no_mask."""
    bw, fw, fh = boxes[:, 2] - boxes[:, 0], faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1]
    dx = np.abs((boxes[:, 0] + boxes[:, 2])[:, None] - (faces[:, 0] + faces[:, 2])[None, :]) / 2
    top = boxes[:, 1][:, None]
    below = ((bw[:, None] < BELOW_WIDTH * fw[None, :]) & (dx <= fw[None, :] / 2)
             & (top >= (faces[:, 1] + faces[:, 3])[None, :] / 2) & (top <= (faces[:, 3] + fh)[None, :]))
    return below.any(axis=1) & ~np.asarray(shows_mouth, bool)


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

    def analyze(self, image_bgr: np.ndarray, fit: Optional[tuple[int, int]] = None) -> list[FaceResult]:
        """Faces with verdicts; ``fit`` (w, h): a larger frame is searched for faces at that size (see
        ``detect_fitted``), the mouths on the full-size frame. Boxes are always in ``image_bgr``'s pixels."""
        t0 = time.perf_counter()
        rgb = to_rgb(image_bgr)
        if rgb is None:
            self.last_timings = {"faces_ms": 0.0, "mouths_ms": 0.0}
            return []
        dets = self.detect_fitted(rgb, fit)
        t1 = time.perf_counter()
        scores = self.mouths.score_faces(rgb, dets) if len(dets) else np.zeros((0, 3), np.float32)
        t2 = time.perf_counter()
        self.last_timings = {"faces_ms": (t1 - t0) * 1e3, "mouths_ms": (t2 - t1) * 1e3}
        out = []
        for i in range(len(dets)):
            mouth, nose, mask = (float(v) for v in scores[i, :3])
            out.append(FaceResult(
                box=dets.boxes[i], score=float(dets.scores[i]),
                landmarks=None if dets.landmarks is None else dets.landmarks[i],
                mouth=mouth, nose=nose, mask=mask, verdict=verdict(mouth, nose, mask, self.cfg.mouths),
            ))
        return out

    def detect_fitted(self, rgb: np.ndarray, fit: Optional[tuple[int, int]] = None) -> Detections:
        """MTCNN faces in frame pixels. A frame larger than ``fit`` is area-downscaled once to fit it:
        a 720p webcam costs what the configured 640x480 costs, and faces it could only find at full size
        are smaller than the detector is configured to look for in a 640x480 view anyway."""
        h, w = rgb.shape[:2]
        s = 1.0 if fit is None else min(1.0, fit[0] / w, fit[1] / h)
        if s >= 1.0:
            return self.faces.detect(rgb).finite()
        small = cv2.resize(rgb, (max(12, round(w * s)), max(12, round(h * s))), interpolation=cv2.INTER_AREA)
        d = self.faces.detect(small).finite()
        sx, sy = w / small.shape[1], h / small.shape[0]
        lms = None if d.landmarks is None else d.landmarks * np.array([sx, sy], np.float32)
        return Detections(boxes=d.boxes * np.array([sx, sy, sx, sy], np.float32), scores=d.scores, landmarks=lms)

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
    new_people: list[int] = field(default_factory=list)  # track ids first decided this frame (counted people)
    changes: list[DecisionChange] = field(default_factory=list)
    tallies: dict[int, tuple[int, int, Decision]] = field(default_factory=dict)  # id -> (tally, votes, decision)
    timings: dict[str, float] = field(default_factory=dict)
    detected: bool = True  # False: the motion gate let the face detector rest (no faces were looked for)
    why: str = "off"  # why it ran: motion, track, idle_check, first, relearn; off: no gate; "": it rested
    cut: bool = False  # a cut before this frame ended every track (cuts.py)

    @property
    def people_in_view(self) -> int:
        """Decided people in view (undecided tracks are not people yet; see the module docstring)."""
        return sum(1 for _, _, d in self.tallies.values() if d is not Decision.UNDECIDED)


class Pipeline:
    """Analyzer + tracker + votes. One ``process`` call per frame, in frame order."""

    def __init__(self, cfg: Config, analyzer: Optional[Analyzer] = None):
        self.cfg = cfg
        self.analyzer = analyzer or Analyzer(cfg)
        self.tracker = Tracker(cfg.tracker)
        self.votes = VoteBook(cfg.votes)
        self._known: set[int] = set()
        self._last_index: Optional[int] = None
        self.gate = MotionGate(cfg.motion)
        self.cuts = CutDetector()
        self._last_detect_t: Optional[float] = None  # frame time of the last detection (the gate's max_idle_s)

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

    def _why_detect(self, frame: Frame) -> str:
        """Why the face detector runs on this frame, "" when it may rest (motion.py has the gate itself).

        It runs on motion, while any track lives (candidates too: a face found once is confirmed or
        dropped), on a new background, and at least every ``motion.max_idle_s`` of frame time."""
        if not self.cfg.motion.enabled:
            return "off"
        t = frame.meta.get(VIDEO_S, frame.timestamp)  # a file's own clock when it has one
        m = self.gate.check(frame.image, t)
        live = bool(self.tracker.tracked_objects)
        why = "first" if m.first else "relearn" if m.relearn else "motion" if m.moving else "track" if live else ""
        last = self._last_detect_t
        if not why and (last is None or not 0 <= t - last < self.cfg.motion.max_idle_s):
            why = "idle_check"
        if why:
            self._last_detect_t = t
        return why

    def process(self, frame: Frame) -> FrameResult:
        t_gate = time.perf_counter()
        why = self._why_detect(frame)
        motion_ms = (time.perf_counter() - t_gate) * 1e3
        if why:
            faces = self.analyzer.analyze(frame.image, fit=(self.cfg.source.width, self.cfg.source.height))
            timings = dict(self.analyzer.last_timings)
        else:  # nothing moves, nobody tracked: the tracker still steps (below), so time passes for it
            faces, timings = [], {"faces_ms": 0.0, "mouths_ms": 0.0}
        timings["motion_ms"] = motion_ms
        t0 = time.perf_counter()
        shape = frame.image.shape[:2] if getattr(frame.image, "ndim", 0) >= 2 else (1, 1)
        for f in faces:
            f.votes = self.eligible(f, shape)
        keep = self._outer_faces(faces)
        dets = Detections(
            boxes=np.array([faces[i].box for i in keep], np.float32).reshape(-1, 4),
            scores=np.array([faces[i].score for i in keep], np.float32),
            embeddings=self._appearance(frame.image, [faces[i].box for i in keep]),
        )
        # Frames the source dropped while we were busy still count as time for the tracker, so
        # survival and motion mean the same on a slow Pi as here. Capped: a reopened camera restarts.
        period = 1 if self._last_index is None else min(max(frame.index - self._last_index, 1), 30)
        self._last_index = frame.index
        cut = self.cuts.check(frame.image) and self.cfg.tracker.end_at_cut
        if cut:
            self.end_tracks("a cut")
        tracks = self.tracker.update(dets, period=period)
        result = FrameResult(frame=frame, faces=faces, detected=bool(why), why=why, cut=cut)
        for tid in self.tracker.reidentified:  # the same person back (or a look-alike): new evidence may overturn
            self.votes.soften(tid)
        for t in tracks:
            if t.id is None:
                continue
            if t.detection_index is not None:
                face = faces[keep[t.detection_index]]
                face.track_id = t.id
                change = self.votes.vote(t.id, face.verdict, face.votes)
                if change is not None:
                    result.changes.append(change)
            if t.id not in self._known and self.votes.decision(t.id) is not Decision.UNDECIDED:
                self._known.add(t.id)
                result.new_people.append(t.id)
            result.tallies[t.id] = (self.votes.tally(t.id), self.votes.count(t.id), self.votes.decision(t.id))
        self._forget(self.tracker.removed_ids)
        timings["track_ms"] = (time.perf_counter() - t0) * 1e3
        timings["frame_ms"] = timings.get("faces_ms", 0) + timings.get("mouths_ms", 0) + timings["track_ms"] + motion_ms
        result.timings = timings
        return result

    def _appearance(self, image: np.ndarray, boxes: list) -> Optional[np.ndarray]:
        """The faces' colour histograms for the tracker (appearance.py); None when off or unreadable."""
        if not self.cfg.tracker.appearance or not boxes:
            return None
        hists = [appearance.descriptor(image, b) for b in boxes]
        if any(h is None for h in hists):  # an unreadable frame or crop: match on boxes alone this frame
            return None
        return np.stack(hists)

    def end_tracks(self, why: str) -> None:
        """Every person leaves at once (a cut, see cuts.py): counted people stay counted, votes go."""
        removed = self.tracker.reset()
        if removed:
            log.info("%s: %d tracks ended", why, len(removed))
        self._forget(removed)

    def _forget(self, removed: list[int]) -> None:
        """People the tracker dropped for good: their votes go (they were counted when decided)."""
        if removed:
            self.votes.forget(removed)
            self._known.difference_update(removed)

    def _outer_faces(self, faces: list[FaceResult]) -> list[int]:
        """Indices of the faces that may be people: not mostly inside a larger face box of this frame or of
        a tracked person (their last estimate), nor under one showing no mouth (``under_a_face``). The others are
        merged: they keep no track and cast no vote."""
        if not faces:
            return []
        boxes = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        # people matched in the previous frame only: a coasting track's predicted box can run away
        others = [o.box for o in self.tracker.tracked_objects if o.id is not None and o.detection_index is not None]
        big = np.concatenate([boxes, np.array(others, np.float64).reshape(-1, 4)])
        inside = iou(boxes, big, method="min") >= INNER_OVERLAP
        smaller = area(boxes)[:, None] < INNER_AREA * area(big)[None, :]
        shows_mouth = np.array([f.verdict is Verdict.NO_MASK for f in faces])
        inner = (inside & smaller).any(axis=1) | under_a_face(boxes, big, shows_mouth)
        for i in np.nonzero(inner)[0]:
            faces[i].votes = False
        return [i for i in range(len(faces)) if not inner[i]]

    def reconfigure(self, cfg: Config) -> None:
        """Thresholds and rules change live; tracks and votes always survive.

        Tracker and vote settings are read on every update, so they are swapped in place: a new
        ``Tracker`` would restart ids at 1 (a stranger inheriting a ballot and alert history), and a
        new ``VoteBook`` would decide people in view a second time (counted twice).
        """
        self.analyzer.reconfigure(cfg)
        self.gate.cfg = cfg.motion  # the background survives too: a reload is not a new scene
        self.tracker.cfg = cfg.tracker
        self.votes.cfg = cfg.votes
        self.cfg = cfg
