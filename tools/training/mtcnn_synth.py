"""Synthetic masks on unmasked faces for MTCNN training: a MaskTheFace template placed by 5 landmarks.

The templates (../shared/data/mask_templates, MIT, aqeelanwar/MaskTheFace) are RGBA mask pictures; we place
one on the lower face with an affine map from the template's corners to a box spanned by the eyes and the
mouth (the package's anchor points are not in the data folder, so this is our own rule): top edge between
the eyes and the nose tip (or just under the nose: a mask worn below the nose), bottom edge under the chin,
width about twice the eye distance, rotated with the eye line; left/right views when the nose is off centre.
"""
from __future__ import annotations


import cv2
import numpy as np

from mtcnn_common import data_dir


def load_templates() -> dict[str, list[np.ndarray]]:
    """{'frontal'|'left'|'right': [RGBA float32 templates]}."""
    out: dict[str, list[np.ndarray]] = {"frontal": [], "left": [], "right": []}
    for p in sorted((data_dir() / "mask_templates" / "templates").glob("*.png")):
        if p.stem.startswith("gas"):
            continue  # full gas masks: rare on the street, and they hide the eyes' surroundings too
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is None or img.ndim != 3 or img.shape[2] != 4:
            continue
        rgba = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA).astype(np.float32)
        view = "left" if p.stem.endswith("_left") else "right" if p.stem.endswith("_right") else "frontal"
        out[view].append(rgba)
    return out


def textures() -> list[np.ndarray]:
    out = []
    for p in sorted((data_dir() / "mask_templates" / "textures").rglob("*.jpg")):
        img = cv2.imread(str(p))
        if img is not None:
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32))
    return out


def put_mask(rgb: np.ndarray, lm: np.ndarray, templates: dict, tex: list, rng: np.random.Generator,
             below_nose: bool = False) -> np.ndarray:
    """``rgb`` (uint8) with a mask drawn over the face whose 5 landmarks (left eye, right eye, nose,
    mouth left, mouth right) are ``lm``."""
    le, re_, nose, ml, mr = lm.astype(np.float64)
    eye_c, mouth_c = (le + re_) / 2, (ml + mr) / 2
    d = np.linalg.norm(re_ - le)
    if d < 4:
        return rgb
    ex = (re_ - le) / d  # along the eye line
    ey = np.array([-ex[1], ex[0]])  # down the face
    drop = max(float(np.dot(mouth_c - eye_c, ey)), 0.6 * d)
    off = float(np.dot(nose - eye_c, ex)) / d  # nose left/right of the eye centre: head turned
    view = "left" if off < -0.15 else "right" if off > 0.15 else "frontal"
    pool = templates[view] or templates["frontal"]
    t = pool[int(rng.integers(len(pool)))].copy()
    if tex and rng.random() < 0.3:  # a patterned cloth mask
        tx = tex[int(rng.integers(len(tex)))]
        tx = cv2.resize(tx, (t.shape[1], t.shape[0]))
        t[:, :, :3] = tx * (0.4 + 0.6 * t[:, :, :3].mean(2, keepdims=True) / 255)
    t[:, :, :3] *= rng.uniform(0.6, 1.15)  # lighting
    top = (0.65 if below_nose else 0.28) * drop
    top = top * rng.uniform(0.9, 1.1)
    bottom = drop * rng.uniform(1.85, 2.2)
    half_w = d * rng.uniform(1.05, 1.3)
    centre = eye_c + ex * off * d * 0.5
    tl = centre - ex * half_w + ey * top
    tr = centre + ex * half_w + ey * top
    bl = centre - ex * half_w + ey * bottom
    h, w = t.shape[:2]
    m = cv2.getAffineTransform(np.float32([[0, 0], [w, 0], [0, h]]), np.float32([tl, tr, bl]))
    warped = cv2.warpAffine(t, m, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)
    a = warped[:, :, 3:4] / 255.0
    out = rgb.astype(np.float32) * (1 - a) + np.clip(warped[:, :, :3], 0, 255) * a
    return np.clip(out, 0, 255).astype(np.uint8)



def loose_mask(rgb: np.ndarray, centre: np.ndarray, width: float, templates: dict, tex: list,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``rgb`` with a mask template pasted at ``centre``, ``width`` px wide, tilted up to 35 degrees, no face
    behind it (a mask held in a hand, lying about): returns (image, the mask's box x1y1x2y2)."""
    views = [v for v in ("frontal", "left", "right") if templates[v]]
    pool = templates[views[int(rng.integers(len(views)))]]
    t = pool[int(rng.integers(len(pool)))].copy()
    if tex and rng.random() < 0.3:
        tx = cv2.resize(tex[int(rng.integers(len(tex)))], (t.shape[1], t.shape[0]))
        t[:, :, :3] = tx * (0.4 + 0.6 * t[:, :, :3].mean(2, keepdims=True) / 255)
    t[:, :, :3] *= rng.uniform(0.6, 1.15)
    h, w = t.shape[:2]
    s = width / w
    aspect = rng.uniform(0.8, 1.25)  # seen a little from above / below / folded
    a = np.deg2rad(rng.uniform(-35, 35))
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    lin = rot @ np.diag([s, s * aspect])
    m = np.hstack([lin, (np.asarray(centre, np.float64) - lin @ np.array([w / 2, h / 2]))[:, None]])
    warped = cv2.warpAffine(t, m, (rgb.shape[1], rgb.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)
    alpha = warped[:, :, 3:4] / 255.0
    out = rgb.astype(np.float32) * (1 - alpha) + np.clip(warped[:, :, :3], 0, 255) * alpha
    ys, xs = np.nonzero(alpha[:, :, 0] > 0.5)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], np.float64) if len(xs) else np.zeros(4)
    return np.clip(out, 0, 255).astype(np.uint8), box
