"""Augmentations for street and door cameras, on context crops, boxes carried along.

Input: a context crop (CTX_SIZE px, CTX_FACTOR x the daemon's crop, same centre) and its boxes as
x1y1x2y2 fractions of that crop (NaN row = no such object). Output: a daemon-sized crop
(INPUT_SIZE px) and boxes as fractions of it. Geometry (scale, shift, rotation, flip) stands in for
MTCNN's box jitter and head tilt; the rest for cameras: blur, small faces (downscale then upscale),
brightness/contrast/gamma, grey (IR door cameras), noise, JPEG artefacts, partial occlusion.
"""
from __future__ import annotations

import cv2
import numpy as np

from mouth_common import CTX_FACTOR


def _affine(rng, ctx: int, out: int, strong: bool, hard: bool = False) -> np.ndarray:
    """2x3 map from context-crop px to output px: out/2 + s k R Q (p - ctx/2) + t.

    k = out * CTX_FACTOR / ctx maps the context's central 1/CTX_FACTOR (the daemon's crop) onto the output.
    ``hard`` (the scene misses: turned and tilted heads, loose MTCNN boxes): rotation +-30 deg, box jitter
    +-10 % position and 0.8-1.25 scale, and Q = a horizontal squeeze of 0.65-1 (a head turned away, yaw).
    """
    k = out * CTX_FACTOR / ctx
    lo, hi, rot, sh = (0.8, 1.25, 30, 0.10) if hard else (0.85, 1.2, 20, 0.08)
    s = rng.uniform(lo, hi) if strong else 1.0
    ang = np.deg2rad(rng.uniform(-rot, rot)) if strong else 0.0
    t = rng.uniform(-sh, sh, 2) * out if strong else np.zeros(2)
    q = np.eye(2)
    if hard and rng.random() < 0.35:
        q[0, 0] = rng.uniform(0.65, 1.0)
    a = (s * k) * np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]]) @ q
    b = out / 2 + t - a @ np.array([ctx / 2, ctx / 2])
    return np.concatenate([a, b[:, None]], axis=1).astype(np.float64)


def _warp_boxes(boxes: np.ndarray, m: np.ndarray, ctx: int, out: int) -> np.ndarray:
    res = np.full_like(boxes, np.nan)
    sx, sy = float(np.hypot(m[0, 0], m[1, 0])), float(np.hypot(m[0, 1], m[1, 1]))  # axis scales (squeeze)
    for i, b in enumerate(boxes):
        if not np.isfinite(b).all():
            continue
        x1, y1, x2, y2 = b * ctx
        pts = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]], np.float64) @ m.T
        lo, hi = pts.min(0), pts.max(0)
        # the rotated corners' box overstates the object: meet the unrotated size half way
        c = (lo + hi) / 2
        half = 0.5 * (hi - lo) / 2 + 0.5 * np.array([sx * (x2 - x1), sy * (y2 - y1)]) / 2
        nb = np.concatenate([c - half, c + half]) / out
        cx, cy = (nb[0] + nb[2]) / 2, (nb[1] + nb[3]) / 2
        if 0.02 < cx < 0.98 and 0.02 < cy < 0.98:
            res[i] = np.clip(nb, 0.0, 1.0)
    return res


def augment(rng: np.random.Generator, ctx_img: np.ndarray, boxes: np.ndarray, out: int,
            strong: bool = True, hard: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One augmented crop; ``hard`` adds the scene-miss cases (see :func:`_affine`, :func:`_edge_occluder`)."""
    ctx = ctx_img.shape[0]
    m = _affine(rng, ctx, out, strong, hard)  # no jitter: the central 1/CTX_FACTOR of the context = the crop
    img = cv2.warpAffine(ctx_img, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    boxes = _warp_boxes(boxes, m, ctx, out)
    if not strong:
        return img, boxes
    if rng.random() < 0.5:  # mirror: swap nothing, mouths and noses are symmetric
        img = img[:, ::-1].copy()
        boxes = boxes[:, [2, 1, 0, 3]] * np.array([-1, 1, -1, 1]) + np.array([1, 0, 1, 0])
    if rng.random() < (0.55 if hard else 0.45):  # small faces: the daemon upsamples a 20-60 px face
        d = int(rng.uniform(10 if hard else 14, 60))
        img = cv2.resize(cv2.resize(img, (d, d), interpolation=cv2.INTER_AREA), (out, out),
                         interpolation=cv2.INTER_LINEAR)
    r = rng.random()
    if r < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 2.6 if hard else 1.8))
    elif r < 0.3:  # motion blur of a walking person
        k = int(rng.integers(3, 11 if hard else 8))
        ker = np.zeros((k, k), np.float32)
        ker[k // 2] = 1.0 / k
        ker = cv2.warpAffine(ker, cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1.0), (k, k))
        img = cv2.filter2D(img, -1, ker / max(ker.sum(), 1e-6))
    f = img.astype(np.float32)
    if rng.random() < 0.8:
        f = f * rng.uniform(0.55, 1.45) + rng.uniform(-45, 45)
    if rng.random() < 0.3:
        f = 255.0 * (np.clip(f, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.12:
        f[:] = f.mean(axis=2, keepdims=True)
    elif rng.random() < 0.3:
        f = f * rng.uniform(0.85, 1.15, 3)
    if rng.random() < 0.2:
        f = f + rng.normal(0, rng.uniform(2, 10), f.shape)
    img = np.clip(f, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:  # partial occlusion: a patch; an object mostly under it is no longer visible
        pw, ph = (rng.uniform(0.15, 0.45, 2) * out).astype(int)
        px, py = int(rng.uniform(0, out - pw)), int(rng.uniform(0, out - ph))
        if rng.random() < 0.5:
            img[py:py + ph, px:px + pw] = rng.integers(0, 256, 3)
        else:
            img[py:py + ph, px:px + pw] = rng.integers(0, 256, (ph, pw, 3))
        for i, b in enumerate(boxes):
            if np.isfinite(b).all():
                bx = b * out
                iw = max(0, min(bx[2], px + pw) - max(bx[0], px))
                ih = max(0, min(bx[3], py + ph) - max(bx[1], py))
                if iw * ih > 0.5 * max((bx[2] - bx[0]) * (bx[3] - bx[1]), 1e-6):
                    boxes[i] = np.nan
    if hard and rng.random() < 0.25:
        _edge_occluder(rng, img, boxes)
    if rng.random() < 0.4:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(15, 70))])
        if ok:
            img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    return img, boxes


def _edge_occluder(rng: np.random.Generator, img: np.ndarray, boxes: np.ndarray) -> None:
    """A hand, another head or a scarf edge over one side of the mouth: covers 15-45 % of the mouth
    box from its left, right or bottom edge, so the mouth stays visible and keeps its box (in place)."""
    b = boxes[0]  # class 0 = mouth
    if not np.isfinite(b).all():
        return
    n = img.shape[0]
    x1, y1, x2, y2 = b * n
    w, h = x2 - x1, y2 - y1
    f = rng.uniform(0.15, 0.45)
    side = rng.integers(3)
    if side == 0:  # from the left, reaching past the crop edge
        px0, px1, py0, py1 = x1 - rng.uniform(0.3, 1.5) * w, x1 + f * w, y1 - 0.6 * h, y2 + 0.8 * h
    elif side == 1:
        px0, px1, py0, py1 = x2 - f * w, x2 + rng.uniform(0.3, 1.5) * w, y1 - 0.6 * h, y2 + 0.8 * h
    else:  # from below (scarf or collar)
        px0, px1, py0, py1 = x1 - 0.5 * w, x2 + 0.5 * w, y2 - f * h, y2 + 2 * h
    px0, py0 = int(max(0, px0)), int(max(0, py0))
    px1, py1 = int(min(n, px1)), int(min(n, py1))
    if px1 <= px0 or py1 <= py0:
        return
    if rng.random() < 0.5:  # skin-like or a flat colour, with a soft shade so it is not a perfect block
        col = rng.uniform([60, 40, 30], [230, 190, 170]) if rng.random() < 0.5 else rng.uniform(0, 255, 3)
        patch = np.broadcast_to(col, (py1 - py0, px1 - px0, 3)).astype(np.float32)
        patch = patch * np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.0), px1 - px0)[None, :, None]
    else:
        patch = rng.integers(0, 256, (py1 - py0, px1 - px0, 3)).astype(np.float32)
    img[py0:py1, px0:px1] = np.clip(patch, 0, 255).astype(np.uint8)
