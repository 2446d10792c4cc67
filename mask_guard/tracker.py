"""Which face in this frame is which person: a Norfair-style tracker for face boxes (numpy only).

Per processed frame, ``Tracker.update`` predicts every track with a constant-velocity Kalman filter
(kalman.py), computes a box distance between predictions and detections, matches greedily by ascending
distance in a cascade (people seen in the previous frame, then people not seen lately, then candidates),
corrects the matched filters and ages the rest. A person not seen lately is also compared with where
they were last seen, so both "walked on through the blackout" and "stood still" (or a clip whose motion
pauses during black frames) find the same person again.

Life cycle, as in Norfair: a new object starts with ``hit_counter = 1``; each frame it is matched its
counter rises (to at most ``hit_counter_max``), each frame it is not it falls by one, and it dies below
zero. A new object is a *candidate* (``id is None``) whose counter rises by one per hit; once it exceeds
``initialization_delay``, i.e. after ``initialization_delay + 1`` hits, it becomes a person with an id
(only people are returned). A person's counter rises by two per frame seen (Norfair: one), so someone
seen for ``hit_counter_max / 2`` frames survives ``hit_counter_max`` frames unseen (a 1 s blackout), while
a flicker still dies almost at once. Ids count up from 1 and are never reused, not even after
``reset()``, so votes and alerts keyed by id can never be inherited by a stranger.

Re-identification (Norfair's ReID, kept simple): a person who dies is remembered for
``tracker.reid_frames`` frames. A new candidate that becomes a person where a remembered person was last
seen (centre within ``REID_SHIFT`` face sizes, or ``REID_SHIFT_ALIKE`` when the face crop's colours match
theirs, and size within ``REID_GROWTH``) takes that person's id back:
a dancer's face turned away for three seconds, someone bending to a bag, is one person, counted and
alerted once. Only then are the remembered ids reported in ``removed_ids``; ``reidentified`` lists the ids
taken back this frame, and of people found again after more than ``REACQUIRE_GAP`` frames unseen (the
caller softens their tally: after a gap the face may be a stranger's, e.g. after a cut or a blackout).

The box distance (``box_distance``), 0 (same box) .. 1 (unrelated)::

    e = sqrt( (|centre shift| / (Tc' * size))^2 + (g / Ts')^2 ),  distance = min(e, 1)
    g = sqrt(s_pred / s_det) - sqrt(s_det / s_pred)       (~ ln of the size ratio for modest changes)

``size`` is the geometric mean of the two face sizes (``s = sqrt(w * h)``); ``Tc' = sqrt(Tc^2 + σc^2)``
and ``Ts' = sqrt(Ts^2 + σs^2)`` widen the tolerances by the filter's own uncertainty (σc in face sizes,
σs relative to the inverse size): large for a candidate whose velocity is still unknown and for a person
not seen for a while, small for a person tracked right now; capped at 3 face sizes and 1, so a ghost
never claims the whole frame.

Appearance (appearance.py): when the detections carry ``embeddings`` (colour histograms of the face
crops), each person keeps a running average of theirs, and the greedy matching takes pairs in the order
of ``box distance + APP_WEIGHT * appearance distance``; which pairs may match at all is still decided by
the box distance and ``distance_threshold`` alone. So appearance only settles ambiguity, mostly two
people crossing: both boxes then fit both predictions, but not both colour sets. A crop that overlaps
another face is not learnt from (it shows both people).

Why not 1 - IoU: IoU is 0 for every pair that does not overlap, so a small face that moves more than its
own width between processed frames (30 px face, a few fps) could never be matched, and a face that
doubles in size while approaching scores IoU 0.25 even when perfectly centred. Measuring the shift in
face sizes and the growth as a ratio is scale-free (the same numbers hold for 30 px and 300 px faces),
tolerant of fast growth (the Kalman filter also predicts it, see kalman.py), and still tells a near
(big) face from a far (small) one passing in front of it, which IoU of nested boxes does poorly. With
Tc = 1 and Ts = 0.9 a well-tracked person's distance reads like 1 - IoU: the default threshold 0.8
accepts a shift of 0.8 face size or a 2x size change (not both).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .boxes import iou
from .config import TrackerConfig
from .detections import Detections
from .kalman import BoxKalman, cxcysr_to_xyxy, xyxy_to_cxcysr

log = logging.getLogger(__name__)

TC = 1.0  # centre tolerance, in face sizes, of a perfectly predicted track (distance 1 at this shift)
TS = 0.9  # size tolerance, ~natural-log units of the size ratio (distance 1 at 2.4x, 0.79 at 2x)
# The filter's uncertainty widens the tolerances by at most this much (face sizes; relative for the
# size), so a person coasting through a blackout is found again but a ghost never grabs the whole frame.
MAX_SIGMA_C = 3.0
MAX_SIGMA_S = 1.0
# A person's hit counter rises by this per frame seen (a candidate's by 1, so initialization_delay counts
# hits): someone seen for half a second bridges a one-second blackout.
PERSON_GAIN = 2
REACQUIRE_GAP = 10  # frames unseen after which a person found again is reported in ``reidentified`` too
REID_SHIFT = 1.5  # face sizes between where a person was lost and where the new face is
REID_GROWTH = 0.5  # |ln(size ratio)|: up to ~1.65x bigger or smaller
# ... or up to this many face sizes away when the colours match too (appearance distance <= REID_ALIKE,
# which ~10 % of two different people's crops reach on the real clips: the position still has to fit).
REID_SHIFT_ALIKE, REID_ALIKE = 3.0, 0.25
# Appearance's share in the matching order. Measured on the real clips (crowd_montage, street_crossing,
# faces >= 24 px): one person's crops 3 frames apart are 0.10-0.15 apart (median; 90 % below 0.17-0.24),
# two people in the same frame 0.39-0.46 (90 % above 0.27-0.34). At 0.5 a colour mismatch outweighs a
# box-distance advantage of ~0.15, the ambiguity of a crossing, but not a clearly better box.
APP_WEIGHT = 0.5
APP_RATE = 0.2  # how fast a person's appearance follows new crops (exponential average per match)


def box_distance(pred: np.ndarray, pred_std: np.ndarray, dets: np.ndarray) -> np.ndarray:
    """Distances (T, N) in 0..1 between predicted boxes and detections, both (.., 4) cx, cy, s, r.

    ``s`` is the face size sqrt(w * h); the aspect ``r`` is not compared (faces keep their shape, and
    MTCNN's box shape is noisy). ``pred_std`` (T, 4) is the predicted standard deviation of each
    coordinate (zeros for a plain, uncertainty-free comparison). See the module docstring for why.
    """
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 4)
    if not len(pred) or not len(dets):
        return np.ones((len(pred), len(dets)))
    std = np.asarray(pred_std, dtype=np.float64).reshape(-1, 4)
    s_t = np.maximum(pred[:, 2], 1e-3)[:, None]
    s_d = np.maximum(dets[:, 2], 1e-3)[None, :]
    ref = np.sqrt(s_t * s_d)
    # The track's uncertainty in face sizes, capped: a ghost must not grab the whole frame.
    sig_c = np.minimum(np.hypot(std[:, 0], std[:, 1])[:, None] / np.sqrt(2) / s_t, MAX_SIGMA_C)
    shift = np.hypot(dets[None, :, 0] - pred[:, None, 0], dets[None, :, 1] - pred[:, None, 1])
    centre = shift / (np.sqrt(TC ** 2 + sig_c ** 2) * ref)
    # Size on inverse sizes u = 1/s (proportional to distance), where the filter keeps its uncertainty:
    # (u_det - u_pred) / sqrt(u_pred * u_det) = sqrt(s_pred/s_det) - sqrt(s_det/s_pred) ~ ln(s_pred/s_det),
    # and the spread of u stays meaningful even when the predicted size runs away after a long coast.
    sig_u = std[:, 2:3] / s_t ** 2  # ds = du / u^2
    sig_s = np.minimum(sig_u * ref, MAX_SIGMA_S)  # relative to u_ref = 1 / ref
    growth = np.sqrt(s_t / s_d) - np.sqrt(s_d / s_t)
    size = growth / np.sqrt(TS ** 2 + sig_s ** 2)
    return np.minimum(np.hypot(centre, size), 1.0)


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hellinger distances (T, N) in 0..1 between histograms ``a`` (T, D) and ``b`` (N, D)."""
    bc = np.sqrt(np.maximum(a, 0.0)).astype(np.float64) @ np.sqrt(np.maximum(b, 0.0)).astype(np.float64).T
    return np.sqrt(np.clip(1.0 - bc, 0.0, 1.0))


def greedy_match(dist: np.ndarray, threshold: float, rows: np.ndarray, cols: np.ndarray,
                 order: Optional[np.ndarray] = None) -> list[tuple[int, int]]:
    """Pairs (row, col) among the allowed ``rows``/``cols``, each used once, with ``dist`` < threshold, taken
    by ascending ``order`` (default: ``dist`` itself)."""
    if not len(rows) or not len(cols):
        return []
    sub = dist[rows][:, cols]
    # pairs at or beyond the threshold may never match: they sort last, and the walk stops at the first
    key = np.where(sub < threshold, sub if order is None else order[rows][:, cols], np.inf)
    flat = np.argsort(key, axis=None, kind="stable")
    pairs, used_r, used_c = [], set(), set()
    for k in flat:
        i, j = divmod(int(k), sub.shape[1])
        if key[i, j] == np.inf:
            break
        if i in used_r or j in used_c:
            continue
        used_r.add(i)
        used_c.add(j)
        pairs.append((int(rows[i]), int(cols[j])))
        if len(used_r) == len(rows) or len(used_c) == len(cols):
            break
    return pairs


@dataclass(eq=False)
class TrackedObject:
    """One face followed across frames. Live object: the tracker updates it in place each frame."""

    id: Optional[int]  # None while a candidate (see initialization_delay)
    box: np.ndarray  # (4,) float x1, y1, x2, y2: the filter's estimate for the current frame
    detection_index: Optional[int]  # row in this frame's detections it matched, None when not seen
    hit_counter: int
    age: int  # frames since it was first seen (0 on that frame)
    last_seen_frame: int  # the tracker's frame number when it last matched a detection
    hits: int = 1  # frames it was matched, the first sighting included
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # d(cx, cy, size, ln aspect)/frame
    last_measurement: np.ndarray = field(default_factory=lambda: np.zeros(4), repr=False)  # cx, cy, s, r seen
    appearance: Optional[np.ndarray] = field(default=None, repr=False)  # running colour histogram (see above)

    @property
    def initialized(self) -> bool:
        return self.id is not None


def _finite_rows(dets: Detections) -> np.ndarray:
    """Indices of usable rows: everything finite (as ``Detections.finite``) and a positive size."""
    ok = np.isfinite(dets.boxes).all(axis=1) & np.isfinite(dets.scores)
    if dets.landmarks is not None:
        ok &= np.isfinite(dets.landmarks).reshape(len(dets), -1).all(axis=1)
    with np.errstate(invalid="ignore"):
        ok &= (dets.boxes[:, 2] > dets.boxes[:, 0]) & (dets.boxes[:, 3] > dets.boxes[:, 1])
    return np.flatnonzero(ok)


class Tracker:
    """Norfair-style tracker for face boxes. Call ``update`` once per processed frame, faces or not."""

    def __init__(self, cfg: TrackerConfig):
        self.cfg = cfg
        self.frame = 0  # frames processed (sum of periods)
        self.removed_ids: list[int] = []  # people gone for good in the last update (or reset): forget their votes
        self.reidentified: list[int] = []  # ids a new face took back in the last update (see ReID above)
        self._lost: list[tuple[TrackedObject, int]] = []  # (person, frame it died) remembered for ReID
        self._next_id = 1
        self._objects: list[TrackedObject] = []  # rows of self._kf, in the same order
        self._kf = BoxKalman()

    @property
    def tracked_objects(self) -> list[TrackedObject]:
        """Every live object, candidates (id None) included: for drawing and debugging."""
        return list(self._objects)

    @property
    def next_id(self) -> int:
        return self._next_id

    def reset(self) -> list[int]:
        """Forget every track (e.g. the camera was replaced). Ids keep counting up. Returns the ids dropped."""
        self.removed_ids = [o.id for o in self._objects if o.id is not None] + [o.id for o, _ in self._lost]
        self._objects = []
        self._lost = []
        self._kf = BoxKalman()
        return list(self.removed_ids)

    def update(self, detections: Optional[Detections], period: int = 1) -> list[TrackedObject]:
        """Match this frame's detections; returns the people (objects with an id), sorted by id.

        ``period``: frames elapsed since the previous call (> 1 when the caller skipped frames), so
        motion and the hit counters advance by the real time that passed. Rows with NaN/inf or an empty
        box are ignored; ``detection_index`` always refers to the rows of ``detections`` as given.
        """
        period = max(1, int(period))
        self.frame += period
        self.removed_ids = []
        self.reidentified = []
        keep_lost = [(o, f) for o, f in self._lost if self.frame - f <= self.cfg.reid_frames]
        self.removed_ids += [o.id for o, f in self._lost if self.frame - f > self.cfg.reid_frames]
        self._lost = keep_lost
        if detections is None:
            detections = Detections.empty()
        rows = _finite_rows(detections)
        z = xyxy_to_cxcysr(detections.boxes[rows])
        cfg = self.cfg
        # A candidate must be able to reach initialization_delay + 1 even with a smaller hit_counter_max.
        cand_max = max(cfg.hit_counter_max, cfg.initialization_delay + 1)

        self._kf.predict(period)
        std = self._kf.std()
        dist = box_distance(self._kf.boxes(), std, z)
        n_obj = len(self._objects)
        coasting = [i for i, o in enumerate(self._objects) if self.frame - o.last_seen_frame > period]
        if coasting and len(z):
            # A person unseen for a while may have walked on (the prediction) or stopped, e.g. a clip
            # whose motion pauses during a blackout: also accept detections right where they were last
            # seen (plain tolerance, no widening: standing still is a precise hypothesis).
            anchors = np.array([self._objects[i].last_measurement for i in coasting])
            still = box_distance(anchors, np.zeros_like(anchors), z)
            dist[coasting] = np.minimum(dist[coasting], still)
        # Matching cascade: people seen in the previous frame pick first, then people coasting, then
        # candidates. A person in view has the tightest prediction; a coasting one (wide tolerance) must
        # not take their face when two people cross, and a candidate (a flicker, a second box on the same
        # face) must never take a person's detection and leave the person coasting.
        coast = set(coasting)
        groups = (
            [i for i, o in enumerate(self._objects) if o.id is not None and i not in coast],
            [i for i, o in enumerate(self._objects) if o.id is not None and i in coast],
            [i for i, o in enumerate(self._objects) if o.id is None],
        )
        emb = None if detections.embeddings is None else detections.embeddings[rows]
        order = self._match_order(dist, emb)
        pairs: list[tuple[int, int]] = []
        free = np.arange(len(z), dtype=np.intp)
        for group in groups:
            if group and len(free):
                found = greedy_match(dist, cfg.distance_threshold, np.array(group, dtype=np.intp), free, order)
                pairs += found
                taken = {c for _, c in found}
                free = np.array([c for c in free if c not in taken], dtype=np.intp)

        matched = np.zeros(n_obj, dtype=bool)
        if pairs:
            tr = np.array([p[0] for p in pairs], dtype=np.intp)
            dc = np.array([p[1] for p in pairs], dtype=np.intp)
            self._kf.update(tr, z[dc])
            matched[tr] = True
        for o in self._objects:
            o.detection_index = None
            o.age += period
        for t, c in pairs:
            o = self._objects[t]
            if o.id is not None and self.frame - o.last_seen_frame > REACQUIRE_GAP:
                self.reidentified.append(o.id)  # found again after a gap: the face may be someone else's
            if o.id is not None:
                o.hit_counter = min(o.hit_counter + PERSON_GAIN * period, cfg.hit_counter_max)
            else:
                o.hit_counter = min(o.hit_counter + period, cand_max)
            o.hits += 1
            o.last_seen_frame = self.frame
            o.detection_index = int(rows[c])
            o.last_measurement = z[c]
        self._learn_appearance(pairs, emb, detections.boxes[rows])
        unmatched = np.flatnonzero(~matched)
        for t in unmatched:
            self._objects[t].hit_counter -= period

        alive = np.array([o.hit_counter >= 0 for o in self._objects], dtype=bool)
        if not alive.all():
            dead = [o for o, a in zip(self._objects, alive) if not a and o.id is not None]
            if cfg.reid_frames > 0:
                self._lost += [(o, self.frame) for o in dead]
            else:
                self.removed_ids += [o.id for o in dead]
            self._objects = [o for o, a in zip(self._objects, alive) if a]
            self._kf.keep(alive)
            if self.removed_ids:
                log.debug("people gone: %s", self.removed_ids)

        used = {c for _, c in pairs}
        new_cols = [c for c in range(len(z)) if c not in used]
        if new_cols:
            self._kf.add(z[new_cols])
            for c in new_cols:
                self._objects.append(TrackedObject(
                    id=None, box=np.zeros(4), detection_index=int(rows[c]), hit_counter=1, age=0,
                    last_seen_frame=self.frame, last_measurement=z[c],
                    appearance=None if emb is None else emb[c].copy(),
                ))

        boxes = cxcysr_to_xyxy(self._kf.boxes())
        out = []
        for o, box, vel in zip(self._objects, boxes, self._kf.velocity()):
            o.box = box
            o.velocity = vel
            if o.id is None and o.hit_counter > cfg.initialization_delay:
                back = self._reidentify(o)
                if back is not None:
                    o.id = back
                    self.reidentified.append(back)
                    log.debug("person %d back at %s", o.id, np.round(box, 1))
                else:
                    o.id = self._next_id
                    self._next_id += 1
                    log.debug("new person %d at %s", o.id, np.round(box, 1))
            if o.id is not None:
                out.append(o)
        out.sort(key=lambda o: o.id)
        return out

    def _match_order(self, dist: np.ndarray, emb: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """Box distance plus APP_WEIGHT x appearance distance where both sides have an appearance."""
        known = [i for i, o in enumerate(self._objects) if o.appearance is not None]
        if emb is None or not known or not len(emb):
            return None
        order = dist.copy()
        app = appearance_distance(np.stack([self._objects[i].appearance for i in known]), emb)
        order[known] += APP_WEIGHT * app
        return order

    def _learn_appearance(self, pairs: list[tuple[int, int]], emb: Optional[np.ndarray], boxes: np.ndarray) -> None:
        """Matched people's histograms follow their new crops, except crops overlapping another face."""
        if emb is None or not pairs:
            return
        overlap = iou(boxes, boxes, method="min") > 0.0
        np.fill_diagonal(overlap, False)
        for t, c in pairs:
            o = self._objects[t]
            if o.appearance is None:
                o.appearance = emb[c].copy()
            elif not overlap[c].any():
                o.appearance = (1.0 - APP_RATE) * o.appearance + APP_RATE * emb[c]

    def _reidentify(self, o: TrackedObject) -> Optional[int]:
        """The id of the remembered person ``o`` (a new person) is, if any; forgets them (see ReID)."""
        # ids are never reused, so no remembered person is also a live one
        alike = None
        if o.appearance is not None and self._lost:
            apps = [p.appearance if p.appearance is not None else np.zeros_like(o.appearance) for p, _ in self._lost]
            alike = appearance_distance(np.stack(apps), o.appearance[None])[:, 0] <= REID_ALIKE
        k = _reid_match(np.array([p.last_measurement for p, _ in self._lost]).reshape(-1, 4), o.last_measurement,
                        alike)
        if k is None:
            return None
        pid = self._lost[k][0].id
        self._lost = [(p, f) for p, f in self._lost if p.id != pid]
        return pid


def _reid_match(lost: np.ndarray, z: np.ndarray, alike: Optional[np.ndarray] = None) -> Optional[int]:
    """Row of ``lost`` (last measurements, cx cy s r) the measurement ``z`` re-identifies, or None.
    ``alike``: per row, the colours match (appearance), which allows a longer way from where they were lost."""
    if not len(lost):
        return None
    ref = np.sqrt(np.maximum(lost[:, 2], 1e-3) * max(z[2], 1e-3))
    shift = np.hypot(lost[:, 0] - z[0], lost[:, 1] - z[1]) / ref
    growth = np.abs(np.log(np.maximum(lost[:, 2], 1e-3) / max(z[2], 1e-3)))
    reach = REID_SHIFT if alike is None else np.where(alike, REID_SHIFT_ALIKE, REID_SHIFT)
    ok = (shift <= reach) & (growth <= REID_GROWTH)
    if not ok.any():
        return None
    score = np.where(ok, shift / REID_SHIFT + growth / REID_GROWTH, np.inf)
    return int(np.argmin(score))


def ids_by_detection(objects: Sequence[TrackedObject], n: int) -> list[Optional[int]]:
    """For each of this frame's ``n`` detections, the id of the person it was matched to (or None)."""
    ids: list[Optional[int]] = [None] * n
    for o in objects:
        if o.id is not None and o.detection_index is not None and o.detection_index < n:
            ids[o.detection_index] = o.id
    return ids
