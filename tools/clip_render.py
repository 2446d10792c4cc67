"""Drawing for the walk-through clips (tools/clips.py): the corridor, the pasted faces, the people, the camera.

A ``Spec`` (one clip: its ``Person``s with their keyframed walks and the camera effects) is rendered frame by
frame by ``render``: a procedural corridor with no faces (or a real photo of an empty entrance, which the
``SpriteSource`` provides), each person a still face pasted with a feathered elliptical alpha over a plain
torso, far-to-near so nearer people occlude, then the room's lighting (lights switched off and on), flicker,
defocus, motion blur, a stream blackout and sensor noise. Everything is deterministic from the spec's name and seed. The ground-truth
rows (face box, state, mask) come out of the same drawing step as the pixels, so they cannot drift apart.

Where the stills come from (the face index, the data folder, seeded picks) is tools/clips.py's business: the
renderer only asks a ``SpriteSource`` for a prepared sprite.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Iterator, Optional, Protocol

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480


# --- scene ----------------------------------------------------------------------------------------

def corridor(rng: np.random.Generator, w: int = WIDTH, h: int = HEIGHT) -> np.ndarray:
    """A corridor seen from its end: walls, floor with perspective lines, a door, posters; BGR uint8, no faces."""
    img = np.zeros((h, w, 3), np.float32)
    wall = rng.uniform(90, 200, 3)
    floor = rng.uniform(40, 120, 3)
    vy = int(h * rng.uniform(0.38, 0.48))  # horizon
    yy = np.linspace(0, 1, h)[:, None, None]
    img[:] = wall * (0.85 + 0.25 * yy)
    fl = np.zeros((h, w), bool)
    fl[vy + int(h * 0.12):] = True
    img[fl] = floor
    vx = w // 2
    for k in range(-6, 7):  # floor tiles converge to the vanishing point
        x = int(vx + k * w * 0.25)
        cv2.line(img, (vx, vy), (x, h), (floor * 0.7).tolist(), 2, cv2.LINE_AA)
    for y in np.geomspace(vy + h * 0.13, h, 7):
        cv2.line(img, (0, int(y)), (w, int(y)), (floor * 0.75).tolist(), 1, cv2.LINE_AA)
    dx = int(rng.uniform(0.35, 0.55) * w)
    cv2.rectangle(img, (dx, vy - int(h * 0.15)), (dx + int(w * 0.09), vy + int(h * 0.12)),
                  rng.uniform(30, 110, 3).tolist(), -1)
    for _ in range(int(rng.integers(2, 5))):  # posters: flat colours with stripes
        x0, y0 = int(rng.uniform(0, w * 0.9)), int(rng.uniform(h * 0.05, h * 0.45))
        pw, ph = int(rng.uniform(30, 90)), int(rng.uniform(30, 80))
        col = rng.uniform(20, 240, 3)
        cv2.rectangle(img, (x0, y0), (x0 + pw, y0 + ph), col.tolist(), -1)
        for s in range(y0 + 6, y0 + ph, 9):
            cv2.line(img, (x0 + 4, s), (x0 + pw - 4, s), (col * 0.6).tolist(), 2)
    low = cv2.resize(rng.normal(0, 12, (h // 16, w // 16, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img += low + rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(cv2.GaussianBlur(img, (0, 0), 1.0), 0, 255).astype(np.uint8)


@dataclass
class Sprite:
    """A face still prepared for pasting: padded crop, feathered alpha, the face box in crop pixels."""

    image: np.ndarray  # float32 BGR
    alpha: np.ndarray  # float32 0..1
    box: np.ndarray  # face box x1 y1 x2 y2 in crop pixels
    hair: np.ndarray  # BGR colour for the back of the head


def make_sprite(img: np.ndarray, box) -> Sprite:
    x1, y1, x2, y2 = (float(v) for v in box)
    fw, fh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.08 * fh  # hair above the MTCNN box
    side = int(2.4 * max(fw, fh))
    ox, oy = int(cx - side / 2), int(cy - side / 2)
    pad = side
    big = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = big[oy + pad: oy + pad + side, ox + pad: ox + pad + side].astype(np.float32)
    alpha = np.zeros((side, side), np.float32)
    c = (side / 2, side / 2)
    cv2.ellipse(alpha, (int(c[0]), int(c[1])), (int(0.62 * fw), int(0.66 * fh)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.07 * fw)
    top = crop[int(side / 2 - 0.6 * fh): int(side / 2 - 0.35 * fh), int(side / 2 - 0.3 * fw): int(side / 2 + 0.3 * fw)]
    hair = top.reshape(-1, 3).mean(0) * 0.6 if top.size else np.array([40.0, 40.0, 50.0])
    return Sprite(crop, alpha, np.array([x1 - ox, y1 - oy, x2 - ox, y2 - oy], np.float32), hair.astype(np.float32))


def paste(canvas: np.ndarray, img: np.ndarray, alpha: np.ndarray, x: int, y: int) -> None:
    """Alpha-blend img (float32) onto canvas (float32) with its top-left at (x, y), clipped to the canvas."""
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    xa, ya, xb, yb = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if xa >= xb or ya >= yb:
        return
    a = alpha[ya - y: yb - y, xa - x: xb - x, None]
    canvas[ya:yb, xa:xb] = canvas[ya:yb, xa:xb] * (1 - a) + img[ya - y: yb - y, xa - x: xb - x] * a


# --- people and their walks -----------------------------------------------------------------------

@dataclass
class Person:
    """One person: which still(s), where the face is per frame (keyframes), and what happens on the way."""

    pid: int
    face: dict  # index entry
    masked: bool  # at the start
    keys: list  # [(frame, cx, cy, face_w)], interpolated linearly in (cx, cy, 1/face_w): approach speed is physical
    mask_on_at: Optional[int] = None  # frame where the mask goes on (pairs only); 4-frame cross-fade centred here
    turn: Optional[tuple] = None  # (start, end) frames of a head turn away and back
    shirt: tuple = (90, 60, 40)

    @property
    def first(self) -> int:
        return self.keys[0][0]

    @property
    def last(self) -> int:
        return self.keys[-1][0]

    def at(self, f: int) -> tuple[float, float, float]:
        ks = self.keys
        for (f0, x0, y0, w0), (f1, x1, y1, w1) in zip(ks, ks[1:]):
            if f0 <= f <= f1:
                s = 0.0 if f1 == f0 else (f - f0) / (f1 - f0)
                return x0 + s * (x1 - x0), y0 + s * (y1 - y0), 1.0 / ((1 - s) / w0 + s / w1)
        raise ValueError(f"frame {f} outside person {self.pid}'s walk")

    def squeeze(self, f: int) -> float:
        """Head yaw as a width factor: 1 frontal, ->0.15 at profile, 0 = back of the head."""
        if self.turn is None or not (self.turn[0] <= f < self.turn[1]):
            return 1.0
        s, e = self.turn
        ramp = max(2, (e - s) // 4)
        if f < s + ramp:
            return max(0.15, math.cos((f - s + 1) / ramp * math.pi / 2))
        if f >= e - ramp:
            return max(0.15, math.cos((e - f) / ramp * math.pi / 2))
        return 0.0

    def mask_mix(self, f: int) -> float:
        """0 = unmasked still, 1 = masked still."""
        if self.mask_on_at is None:
            return 1.0 if self.masked else 0.0
        return float(np.clip((f - self.mask_on_at + 2) / 4.0, 0.0, 1.0))


@dataclass
class Spec:
    name: str
    seed: int
    people: list
    frames: int
    fps: float = 15.0
    blackout: Optional[tuple] = None  # (start, end) frames of a black stream
    noise: float = 2.0  # sensor noise sigma (grey levels)
    blur: float = 0.0  # defocus sigma (px)
    motion_blur: int = 0  # horizontal motion blur kernel length (px)
    flicker: float = 0.0  # brightness jitter (fraction)
    jpeg: int = 90  # MJPG quality in the .avi
    width: int = WIDTH
    height: int = HEIGHT
    background: str = "corridor"  # or a name the SpriteSource knows (``room``: a real empty entrance)
    light: Optional[list] = None  # [(frame, gain)]: the room's light, linear between keys (a step: two keys)

    def gain(self, f: int) -> float:
        """The room's brightness at frame ``f`` (1.0: as drawn), from the ``light`` keyframes."""
        if not self.light:
            return 1.0
        frames, gains = zip(*self.light)
        return float(np.interp(f, frames, gains))


class SpriteSource(Protocol):
    """What ``render`` needs from a face pool: a prepared sprite per still (``clips.FacePool`` is one)."""

    def sprite(self, rel: str, box) -> Sprite: ...

    def background(self, name: str, w: int, h: int) -> np.ndarray:
        """A ``w`` x ``h`` BGR scene without faces, by name (only for specs that name one)."""
        ...


# --- rendering ------------------------------------------------------------------------------------

def render(spec: Spec, pool: SpriteSource) -> Iterator[tuple[np.ndarray, list[dict]]]:
    """Yield (frame BGR uint8, [per-person truth rows present in the scene]) for every frame."""
    rng = np.random.default_rng(zlib.crc32(f"{spec.name}:{spec.seed}:render".encode()))
    scene = corridor(rng, spec.width, spec.height) if spec.background == "corridor" else \
        pool.background(spec.background, spec.width, spec.height)
    bg = scene.astype(np.float32)
    people = sorted(spec.people, key=lambda p: p.keys[0][3])  # small (far) first: near people occlude
    for f in range(spec.frames):
        canvas = bg.copy()
        rows = []
        # draw far-to-near each frame: the wider face is nearer the camera
        here = [p for p in people if p.first <= f <= p.last]
        here.sort(key=lambda p: p.at(f)[2])
        owner = np.zeros(canvas.shape[:2], np.int16)  # who is drawn on top where: occlusion ground truth
        for p in here:
            rows.append(_draw_person(canvas, p, f, pool, spec, owner))
        for r in rows:
            x1, y1, x2, y2 = (int(round(v)) for v in r["box"])
            region = owner[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)]
            covered = float(((region != r["id"]) & (region != 0)).mean()) if region.size else 0.0
            if covered > 0.3 and r["state"] in ("frontal", "turned"):
                r["state"] = "occluded"
        if spec.light:
            canvas *= spec.gain(f)  # people and room alike: it is the room's light
        if spec.flicker:
            canvas *= 1.0 + rng.uniform(-spec.flicker, spec.flicker)
        if spec.blur:
            canvas = cv2.GaussianBlur(canvas, (0, 0), spec.blur)
        if spec.motion_blur > 1:
            k = np.zeros((1, spec.motion_blur), np.float32) + 1.0 / spec.motion_blur
            canvas = cv2.filter2D(canvas, -1, k)
        black = spec.blackout is not None and spec.blackout[0] <= f < spec.blackout[1]
        if black:
            canvas[:] = 0  # the stream went black; people keep walking meanwhile
            for r in rows:
                r["state"] = "blackout"
        canvas += rng.normal(0, spec.noise, canvas.shape).astype(np.float32)
        yield np.clip(canvas, 0, 255).astype(np.uint8), rows


def _draw_person(canvas: np.ndarray, p: Person, f: int, pool: SpriteSource, spec: Spec, owner: np.ndarray) -> dict:
    cx, cy, fw = p.at(f)
    e = p.face
    base = pool.sprite(e["file"], e["box"])
    mix = p.mask_mix(f)
    if mix > 0 and e["pool"] == "pair":
        masked = pool.sprite(e["masked_file"], e["box"])
        img = base.image * (1 - mix) + masked.image * mix
    else:
        img = base.image
    sbox = base.box
    scale = fw / float(sbox[2] - sbox[0])
    sq = p.squeeze(f)
    side = base.alpha.shape[0]
    n = max(4, int(round(side * scale)))
    fh = fw * float(sbox[3] - sbox[1]) / float(sbox[2] - sbox[0])
    # torso first (a plain shape: the tracker only sees faces, the torso only makes the scene less artificial)
    shirt_c = (int(cx), int(cy + 1.9 * fh))
    cv2.ellipse(canvas, shirt_c, (int(1.25 * fw), int(1.1 * fh)), 0, 0, 360, [float(v) for v in p.shirt], -1, cv2.LINE_AA)
    cv2.ellipse(owner, shirt_c, (int(1.25 * fw), int(1.1 * fh)), 0, 0, 360, p.pid, -1)
    cv2.ellipse(owner, (int(cx), int(cy - 0.08 * fh)), (max(1, int(0.62 * fw * max(sq, 0.3))), int(0.66 * fh)),
                0, 0, 360, p.pid, -1)
    cv2.rectangle(canvas, (int(cx - 0.22 * fw), int(cy + 0.4 * fh)), (int(cx + 0.22 * fw), int(cy + 0.95 * fh)),
                  [float(v) for v in 0.8 * base.image[side // 2, side // 2]], -1)
    if sq > 0:
        nw = max(2, int(round(n * sq)))
        a = cv2.resize(base.alpha, (nw, n), interpolation=cv2.INTER_AREA)
        im = cv2.resize(img, (nw, n), interpolation=cv2.INTER_AREA)
        x0 = int(round(cx - (sbox[0] + sbox[2]) / 2 * scale * sq))
        y0 = int(round(cy - (sbox[1] + sbox[3]) / 2 * scale))
        paste(canvas, im, a, x0, y0)
        box = [x0 + sbox[0] * scale * sq, y0 + sbox[1] * scale, x0 + sbox[2] * scale * sq, y0 + sbox[3] * scale]
        state = "frontal" if sq >= 0.7 else "turned"
    else:  # back of the head: hair-coloured textured ellipse, no face
        a = np.zeros((n, n), np.float32)
        cv2.ellipse(a, (n // 2, n // 2), (int(0.62 * fw), int(0.7 * fh)), 0, 0, 360, 1.0, -1, cv2.LINE_AA)
        a = cv2.GaussianBlur(a, (0, 0), max(0.5, 0.05 * fw))
        rs = np.random.default_rng(p.pid)
        tex = cv2.resize(rs.normal(0, 14, (8, 8, 1)).astype(np.float32), (n, n))[..., None]
        im = np.broadcast_to(base.hair, (n, n, 3)) + tex
        x0, y0 = int(cx - n / 2), int(cy - 0.08 * fh - n / 2)
        paste(canvas, im, a, x0, y0)
        box = [cx - fw / 2, cy - fh / 2, cx + fw / 2, cy + fh / 2]
        state = "away"
    inside = box[0] >= 0 and box[1] >= 0 and box[2] <= spec.width and box[3] <= spec.height
    if box[2] <= 0 or box[0] >= spec.width or box[3] <= 0 or box[1] >= spec.height:
        state = "offscreen"
    return {"id": p.pid, "box": [round(float(v), 1) for v in box], "state": state, "inside": bool(inside),
            "masked": bool(mix >= 0.5)}
