"""Synthetic masks on real unmasked faces: the masks people really wear, placed from MTCNN's 5 landmarks.

Templates and textures: ../shared/data/mask_templates (MaskTheFace's, MIT): KN95, N95, surgical (white, blue,
green), cloth, gas; frontal, left and right views; fabric textures. Our own placement (no MaskTheFace code):

* the face frame: eye centre E, eye distance de, "right" r along the eye line, "down" u across it, and
  D = the eye-to-mouth distance along u;
* how it is worn: ``correct`` (nose bridge to under the chin: mask), ``below_nose`` (from between the nostrils
  and the lip: mask + nose visible), ``chin`` (under the lower lip: mouth and nose visible, no mask);
* the template's alpha box is mapped by an affine onto that band (width 1.9-2.4 de, centred on the mouth);
  a turned head (nose off the eye axis) takes the matching side view;
* looks: surgical in its colours and any hue; cloth with a fabric texture; KN95/N95 white or coloured
  (orange, yellow, black, blue, pink, grey), N95 with or without a drawn exhalation valve; shading and
  brightness follow the face so a mask never glows in a dark photo; the alpha edge is feathered.

Returns the new image and the mask's box (alpha > 0.5) in image pixels; the caller writes the labels.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

FAMILIES = {  # family -> template stems (frontal first); weights say how often each is drawn
    "kn95": (["KN95", "KN95_left", "KN95_right"], 0.24),
    "n95": (["N95", "N95_left", "N95_right"], 0.20),
    "surgical": (["surgical", "surgical_blue", "surgical_green", "surgical_left", "surgical_right",
                  "surgical_blue_left", "surgical_blue_right", "surgical_green_left", "surgical_green_right"], 0.28),
    "cloth": (["cloth", "cloth_left", "cloth_right"], 0.22),
    "gas": (["gas", "gas_left", "gas_right"], 0.06),
}
RESPIRATOR_COLOURS = [(255, 140, 30), (250, 215, 40), (35, 35, 38), (40, 80, 190), (240, 150, 190), (150, 150, 150),
                      (245, 245, 245)]  # RGB: orange, yellow, black, blue, pink, grey, white
WORN = (("correct", 0.68), ("below_nose", 0.20), ("chin", 0.12))
SKIN_SHARE = 0.2  # cloth and surgical masks coloured like the wearer's skin (nude, beige, pale pink)
PASTEL_SHARE = 0.35  # textured cloth masks whose print is washed out towards white or pink


def _skin(image: np.ndarray, eye: np.ndarray, nose: np.ndarray, de: float) -> np.ndarray | None:
    """The wearer's skin colour (RGB): the median of the cheek band between the eyes and the nose tip."""
    c = (eye + nose) / 2
    r = max(1, int(0.25 * de))
    patch = image[max(0, int(c[1]) - r):int(c[1]) + r, max(0, int(c[0] - de / 2)):int(c[0] + de / 2)]
    if patch.size == 0:
        return None
    return np.median(patch.reshape(-1, patch.shape[-1])[:, :3], axis=0).astype(np.float32)


PRINT_COLOURS = [(200, 30, 45), (230, 90, 130), (150, 20, 30), (120, 60, 40), (30, 30, 30), (240, 150, 170),
                 (60, 70, 160)]  # RGB: red, pink, dark red, brown, black, pale pink, blue


class MaskSynth:
    """``prints``: the share of light masks that get a print over the mouth (lips, a smile, a stain, a
    logo): the mouth detector must read a mark on a mask as the mask, not as a mouth (real false alarms:
    a white mask with a faint red print, pink printed cloth). 0 keeps every other draw as it was."""

    def __init__(self, root: Path, prints: float = 0.0):
        self.prints = prints
        self.templates: dict[str, np.ndarray] = {}
        for p in sorted((root / "templates").glob("*.png")):
            im = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
            if im is None or im.ndim != 3 or im.shape[2] != 4:
                continue
            rgba = cv2.cvtColor(im, cv2.COLOR_BGRA2RGBA)
            ys, xs = np.nonzero(rgba[..., 3] > 128)
            self.templates[p.stem] = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        self.textures = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
                         for p in sorted((root / "textures").rglob("*.*")) if cv2.imread(str(p)) is not None]
        if not self.templates:
            raise FileNotFoundError(f"no mask templates under {root}/templates")

    # --- looks -------------------------------------------------------------------------------------
    def _pick(self, rng, family: str, yaw: float) -> np.ndarray:
        stems = [s for s in FAMILIES[family][0] if s in self.templates]
        side = "left" if yaw > 0.12 else ("right" if yaw < -0.12 else "")
        pool = [s for s in stems if s.endswith(side)] if side else [s for s in stems if not s.endswith(("left", "right"))]
        return self.templates[str(rng.choice(pool or stems))].copy()

    def _colour(self, rng, rgba: np.ndarray, family: str, skin: np.ndarray | None = None) -> np.ndarray:
        rgb = rgba[..., :3].astype(np.float32)
        lum = rgb.mean(axis=2, keepdims=True) / max(float(rgb.mean()), 1.0)  # the template's own shading
        if family in ("cloth", "surgical") and skin is not None and rng.random() < SKIN_SHARE:
            # Nude, beige, peach and pale pink masks: close to the wearer's own skin, which the mouth
            # detector must not read as a bare chin (seen on real dev photos: floral pink cloth, pink surgical).
            col = np.clip(skin * rng.uniform(0.95, 1.35) + rng.uniform(-12, 28, 3) * np.array([1.0, 0.3, 0.6]), 0, 255)
            rgb = np.clip(lum * col, 0, 255)
            if family == "cloth" and self.textures and rng.random() < 0.5:  # a faint print on it
                rgb = np.clip(rgb * (0.8 + 0.2 * self._texture(rng, rgb.shape[:2]) / 255.0), 0, 255)
        elif family in ("kn95", "n95") and rng.random() < 0.55:
            col = np.array(RESPIRATOR_COLOURS[rng.integers(len(RESPIRATOR_COLOURS))], np.float32)
            rgb = np.clip(lum * col * rng.uniform(0.85, 1.05), 0, 255)
        elif family == "surgical" and rng.random() < 0.5:
            hsv = cv2.cvtColor(rgba[..., :3], cv2.COLOR_RGB2HSV).astype(np.float32)
            hsv[..., 0] = rng.uniform(0, 180)
            hsv[..., 1] = np.clip(hsv[..., 1] + rng.uniform(30, 150), 0, 255)
            rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
            if rng.random() < 0.2:  # black surgical masks are common
                rgb = lum * rng.uniform(25, 60)
        elif family == "cloth" and self.textures and rng.random() < 0.8:
            tex = self._texture(rng, rgb.shape[:2])
            if rng.random() < PASTEL_SHARE:  # washed-out prints (pastel florals) are common and low-contrast
                tex = tex * (1 - (a := rng.uniform(0.3, 0.7))) + a * np.array([255.0, rng.uniform(215, 255), 235.0])
            rgb = np.clip(tex * np.clip(lum, 0.5, 1.3), 0, 255)
        elif family == "cloth" and rng.random() < 0.7:
            rgb = np.clip(lum * rng.uniform(20, 250, 3), 0, 255)
        out = rgba.copy()
        out[..., :3] = rgb.astype(np.uint8)
        if family == "n95" and rng.random() < 0.45:
            self._valve(rng, out)
        opaque = out[..., 3] > 128
        if (self.prints > 0 and family != "gas" and opaque.any() and out[..., :3][opaque].mean() > 150
                and rng.random() < self.prints):
            self._mouth_print(rng, out)
        return out

    @staticmethod
    def _mouth_print(rng, rgba: np.ndarray) -> None:
        """A mark where the mouth is under the mask: printed lips or a smile, a lipstick smudge or stain,
        or a small logo of strokes; faint to strong, sometimes blurred by the fabric."""
        h, w = rgba.shape[:2]
        cx, cy = w * rng.uniform(0.4, 0.6), h * rng.uniform(0.38, 0.58)
        layer = np.zeros((h, w), np.float32)
        kind = rng.integers(3)
        if kind == 0:  # lips or a smile
            ax, ay = w * rng.uniform(0.1, 0.22), h * rng.uniform(0.03, 0.09)
            if rng.random() < 0.6:
                cv2.ellipse(layer, (int(cx), int(cy - ay / 2)), (int(ax), max(1, int(ay))), 0, 180, 360, 1.0, -1)
                cv2.ellipse(layer, (int(cx), int(cy)), (int(ax), max(1, int(ay * 1.3))), 0, 0, 180, 1.0, -1)
            else:
                cv2.ellipse(layer, (int(cx), int(cy)), (int(ax), max(1, int(ay * 1.5))), 0, 10, 170, 1.0,
                            max(1, int(h * 0.03)))
        elif kind == 1:  # a smudge or stain: soft blobs
            for _ in range(rng.integers(1, 4)):
                r = max(1, int(w * rng.uniform(0.04, 0.12)))
                cv2.circle(layer, (int(cx + rng.normal(0, w * 0.06)), int(cy + rng.normal(0, h * 0.05))), r, 1.0, -1)
            layer = cv2.GaussianBlur(layer, (0, 0), max(1.0, w * 0.03))
        else:  # a logo or lettering: a few strokes
            for _ in range(rng.integers(2, 6)):
                x0, y0 = cx + rng.normal(0, w * 0.08), cy + rng.normal(0, h * 0.04)
                x1, y1 = x0 + rng.normal(0, w * 0.08), y0 + rng.normal(0, h * 0.03)
                cv2.line(layer, (int(x0), int(y0)), (int(x1), int(y1)), 1.0, max(1, int(h * rng.uniform(0.015, 0.04))))
        if rng.random() < 0.5:
            layer = cv2.GaussianBlur(layer, (0, 0), max(0.5, w * 0.01))
        col = np.array(PRINT_COLOURS[rng.integers(len(PRINT_COLOURS))], np.float32)
        a = (layer * rng.uniform(0.25, 0.9))[..., None] * (rgba[..., 3:4] > 0)
        rgba[..., :3] = np.clip(rgba[..., :3] * (1 - a) + col * a, 0, 255).astype(np.uint8)

    def _texture(self, rng, shape: tuple[int, int]) -> np.ndarray:
        """A random fabric texture, scaled and tiled to ``shape`` (float32 RGB)."""
        tex = self.textures[rng.integers(len(self.textures))]
        h, w = shape
        k = rng.uniform(0.4, 1.2) * max(h, w) / max(tex.shape[:2])
        tex = cv2.resize(tex, None, fx=max(k, 0.05), fy=max(k, 0.05))
        reps = (int(np.ceil(h / tex.shape[0])) + 1, int(np.ceil(w / tex.shape[1])) + 1, 1)
        return np.tile(tex, reps)[:h, :w].astype(np.float32)

    @staticmethod
    def _valve(rng, rgba: np.ndarray) -> None:
        """An exhalation valve: a round or square boss left or right of centre, a darker rim."""
        h, w = rgba.shape[:2]
        cx = int(w * (0.5 + rng.choice([-1, 1]) * rng.uniform(0.12, 0.22)))
        cy = int(h * rng.uniform(0.5, 0.65))
        r = max(2, int(min(w, h) * rng.uniform(0.09, 0.14)))
        col = tuple(int(v) for v in (rng.uniform(20, 240, 3) if rng.random() < 0.5 else np.full(3, rng.uniform(30, 230))))
        if rng.random() < 0.6:
            cv2.circle(rgba, (cx, cy), r, col + (255,), -1, cv2.LINE_AA)
            cv2.circle(rgba, (cx, cy), r, (40, 40, 40, 255), max(1, r // 6), cv2.LINE_AA)
        else:
            cv2.rectangle(rgba, (cx - r, cy - r), (cx + r, cy + r), col + (255,), -1)
            cv2.rectangle(rgba, (cx - r, cy - r), (cx + r, cy + r), (40, 40, 40, 255), max(1, r // 6))

    # --- placement ---------------------------------------------------------------------------------
    def apply(self, rng, image: np.ndarray, lm: np.ndarray, worn: str | None = None, family: str | None = None):
        """(image with a mask, mask box x1y1x2y2 in image px or None, worn, family). ``lm``: MTCNN's 5 points."""
        lm = np.asarray(lm, np.float64)
        le, re_, nose, ml, mr = lm
        eye = (le + re_) / 2
        de = float(np.linalg.norm(re_ - le))
        if de < 4:
            return None
        r = (re_ - le) / de
        u = np.array([-r[1], r[0]])
        mc = (ml + mr) / 2
        big_d = float((mc - eye) @ u)
        if big_d < 0.5 * de * 0.5:
            return None
        dn = float((nose - eye) @ u)
        yaw = float((nose - eye) @ r) / de
        if worn is None:
            worn = WORN[rng.choice(len(WORN), p=[p for _, p in WORN])][0]
        if family is None:
            fams = list(FAMILIES)
            p = np.array([FAMILIES[f][1] for f in fams])
            family = fams[rng.choice(len(fams), p=p / p.sum())]
        if worn == "correct":
            top, bot = rng.uniform(0.25, 0.45) * big_d, rng.uniform(1.65, 1.9) * big_d
        elif worn == "below_nose":
            top = dn + rng.uniform(0.3, 0.55) * (big_d - dn)
            bot = rng.uniform(1.65, 1.9) * big_d
        else:  # chin: under the lower lip
            top, bot = big_d + rng.uniform(0.22, 0.35) * big_d, rng.uniform(1.75, 2.0) * big_d
        width = rng.uniform(1.9, 2.4) * de
        centre = eye + float((mc - eye) @ r) * r + yaw * 0.25 * de * r
        tl, tr, bl = (centre - width / 2 * r + top * u, centre + width / 2 * r + top * u,
                      centre - width / 2 * r + bot * u)
        # lighting: the mask takes the face's brightness and a soft left-right gradient
        face = image[max(0, int(eye[1] - de)):int(mc[1] + de), max(0, int(eye[0] - de)):int(eye[0] + de)]
        bright = float(np.clip((face.mean() if face.size else 128.0) / 140.0, 0.3, 1.15)) * rng.uniform(0.85, 1.1)
        skin = _skin(image, eye, nose, de)
        tpl = self._colour(rng, self._pick(rng, family, yaw), family, None if skin is None else skin / bright)
        th, tw = tpl.shape[:2]
        m = cv2.getAffineTransform(np.float32([[0, 0], [tw, 0], [0, th]]), np.float32([tl, tr, bl]))
        h, w = image.shape[:2]
        warped = cv2.warpAffine(tpl, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
        alpha = warped[..., 3].astype(np.float32) / 255.0
        if alpha.max() < 0.5:
            return None
        alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.6, de / 60))[..., None]
        ys, xs = np.nonzero(alpha[..., 0] > 0.5)
        if len(xs) == 0:  # a mask too small to survive the feathering
            return None
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
        grad = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(0.8, 1.0), w, dtype=np.float32)[None, :, None]
        mask_rgb = warped[..., :3].astype(np.float32) * bright * grad
        out = image.astype(np.float32) * (1 - alpha) + mask_rgb * alpha
        return np.clip(out, 0, 255).astype(np.uint8), box, worn, family
