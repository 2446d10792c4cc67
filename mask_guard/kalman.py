"""Constant-velocity Kalman filters for face boxes, all tracks at once (numpy only).

A box is measured as ``(cx, cy, s, r)``: centre (px), size ``s = sqrt(w * h)`` (px) and log aspect
``r = ln(w / h)``. The filter state replaces the size by its inverse ``u = 1 / s``, each coordinate with
a velocity per frame:

- ``u`` is proportional to the person's distance from the camera, so someone walking toward it at a
  steady pace is a *constant velocity* in ``u`` even though the face grows faster and faster (30 px to
  300 px, most of it in the last steps). Filtering ``s`` itself needs a large process noise to follow
  that acceleration, and the resulting noisy growth rate, carried through a 1 s blackout, shrinks a face
  to nothing or blows it up; in ``u`` the growth is predicted right and the noise can stay small.
- the aspect is nearly constant (a face keeps its shape) and is only averaged, as in SORT: filtering
  w and h separately lets detector noise give them opposite velocities, and a coasting face turns
  into a sliver.

As in Norfair's ``OptimizedKalmanFilter`` the coordinates are filtered independently: with a
constant-velocity model and a position-only measurement they never couple, so each one is a 2-state
filter whose covariance is three numbers (``pxx``, ``pxv``, ``pvv``). Keeping them as ``(T, 4)`` arrays
lets one numpy expression predict or correct every track at once. Noise is relative to the face size
(a 300 px face jitters by more pixels than a 30 px one), so one set of constants works from the far end
of a corridor to right under the camera.
"""
from __future__ import annotations

import numpy as np

# Per state coordinate (cx, cy, u, r): cx and cy in face sizes, u relative to itself, r in log units.
# Detector jitter: MTCNN boxes wobble by a few percent of the face size from frame to frame.
MEAS_STD = np.array([0.05, 0.05, 0.05, 0.08])
# Unmodelled acceleration per frame: walkers turn, speed up and slow down. Depth (u) gets little: a
# steady walk is constant velocity there, and a smooth depth speed is what carries a face's growth through
# a blackout (0.01 already lets detector noise shrink or balloon a face coasting for 25 frames). The aspect
# has almost none: it is a constant to average, not a motion to follow.
ACC_STD = np.array([0.03, 0.03, 0.002, 0.001])
# Velocity is unknown at the first sighting: up to about 1.5 face sizes per frame across (a small face
# crossing the frame at a few processed frames per second), a quarter of the distance per frame in depth.
INIT_VEL_STD = np.array([1.5, 1.5, 0.25, 0.0])
# A correction beyond this many standard deviations is a manoeuvre (stopped, turned back): the filter's
# covariance is inflated so it follows at once despite the small process noise above.
MANOEUVRE_SIGMA = 3.0
# Face sizes (px) are kept within these bounds so a coasting face never reaches zero or infinity.
MIN_SIZE, MAX_SIZE = 2.0, 1e5


def xyxy_to_cxcysr(boxes: np.ndarray) -> np.ndarray:
    """x1, y1, x2, y2 (positive width and height) -> cx, cy, sqrt(w * h), ln(w / h)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, np.sqrt(w * h), np.log(w / h)], axis=1)


def cxcysr_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    hw, hh = b[:, 2] * np.exp(b[:, 3] / 2) / 2, b[:, 2] * np.exp(-b[:, 3] / 2) / 2
    return np.stack([b[:, 0] - hw, b[:, 1] - hh, b[:, 0] + hw, b[:, 1] + hh], axis=1)


def _to_state(z: np.ndarray) -> np.ndarray:
    x = np.array(z, dtype=np.float64).reshape(-1, 4)
    x[:, 2] = 1.0 / np.clip(x[:, 2], MIN_SIZE, MAX_SIZE)
    return x


class BoxKalman:
    """A bank of constant-velocity filters, one row per tracked box (rows follow the caller's list).

    Boxes go in and come out as ``(cx, cy, s, r)``; the inverse size is internal.
    """

    def __init__(self) -> None:
        z = np.zeros((0, 4))
        self.x, self.v, self.pxx, self.pxv, self.pvv = z, z.copy(), z.copy(), z.copy(), z.copy()

    def __len__(self) -> int:
        return len(self.x)

    @staticmethod
    def _scale(x: np.ndarray) -> np.ndarray:
        """Units of each coordinate's noise, (T, 4): face size for cx, cy; u itself for u; 1 for r."""
        sc = np.ones((len(x), 4))
        sc[:, 0] = sc[:, 1] = 1.0 / x[:, 2]
        sc[:, 2] = x[:, 2]
        return sc

    def add(self, z: np.ndarray) -> None:
        """Start filters at measured boxes ``z`` (n, 4) cx, cy, s, r: position known, velocity not."""
        x = _to_state(z)
        sc = self._scale(x)
        self.x = np.concatenate([self.x, x])
        self.v = np.concatenate([self.v, np.zeros_like(x)])
        self.pxx = np.concatenate([self.pxx, (MEAS_STD * sc) ** 2])
        self.pxv = np.concatenate([self.pxv, np.zeros_like(x)])
        self.pvv = np.concatenate([self.pvv, (INIT_VEL_STD * sc) ** 2])

    def keep(self, mask: np.ndarray) -> None:
        """Drop the rows where ``mask`` is False (tracks that died)."""
        for name in ("x", "v", "pxx", "pxv", "pvv"):
            setattr(self, name, getattr(self, name)[mask])

    def predict(self, dt: float = 1.0) -> None:
        """Advance every filter by ``dt`` frames."""
        if not len(self):
            return
        q = (ACC_STD * self._scale(self.x)) ** 2  # white-noise acceleration, discretised over dt
        self.x = self.x + self.v * dt
        self.pxx = self.pxx + dt * (2 * self.pxv + dt * self.pvv) + q * dt ** 4 / 4
        self.pxv = self.pxv + dt * self.pvv + q * dt ** 3 / 2
        self.pvv = self.pvv + q * dt ** 2
        u = self.x[:, 2]
        out = (u < 1.0 / MAX_SIZE) | (u > 1.0 / MIN_SIZE)
        if out.any():
            # A coasting face that walked "through" the camera or shrank to nothing stops there.
            self.x[out, 2] = np.clip(u[out], 1.0 / MAX_SIZE, 1.0 / MIN_SIZE)
            self.v[out, 2] = 0.0

    def update(self, rows: np.ndarray, z: np.ndarray) -> None:
        """Correct the filters in ``rows`` with measured boxes ``z`` (len(rows), 4) cx, cy, s, r."""
        rows = np.asarray(rows, dtype=np.intp)
        if not len(rows):
            return
        zs = _to_state(z)
        r = (MEAS_STD * self._scale(zs)) ** 2
        pxx, pxv, pvv = self.pxx[rows], self.pxv[rows], self.pvv[rows]
        y = zs - self.x[rows]
        # Manoeuvre (see MANOEUVRE_SIGMA): scale that coordinate's covariance up until the innovation
        # is MANOEUVRE_SIGMA standard deviations, so the gain (and the velocity's share) grows with it.
        chi2 = y ** 2 / (pxx + r)
        inflate = np.maximum(chi2 / MANOEUVRE_SIGMA ** 2, 1.0)
        pxx, pxv, pvv = pxx * inflate, pxv * inflate, pvv * inflate
        s = pxx + r
        kx, kv = pxx / s, pxv / s
        self.x[rows] += kx * y
        self.v[rows] += kv * y
        self.pvv[rows] = pvv - kv * pxv
        self.pxv[rows] = (1 - kx) * pxv
        self.pxx[rows] = (1 - kx) * pxx

    def boxes(self) -> np.ndarray:
        """Estimated boxes (T, 4) cx, cy, s, r."""
        b = self.x.copy()
        b[:, 2] = 1.0 / b[:, 2]
        return b

    def std(self) -> np.ndarray:
        """Standard deviation of each estimated cx, cy, s, r (T, 4): how far a detection may stray."""
        sd = np.sqrt(self.pxx)
        sd[:, 2] /= self.x[:, 2] ** 2  # ds = du / u^2
        return sd

    def velocity(self) -> np.ndarray:
        """d(cx, cy, s, r)/frame (T, 4)."""
        v = self.v.copy()
        v[:, 2] = -v[:, 2] / self.x[:, 2] ** 2
        return v
