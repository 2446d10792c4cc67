"""MTCNN face detector on TFLite: the ``mtcnn`` package's cascade in numpy + OpenCV, no TensorFlow.

The nets are the package's own weights (exported by tools/training/export_mtcnn.py; ``faces.weights: stock``,
the default ``masks`` swaps in R-/O-Net fine-tuned on masked faces); the algorithm mirrors mtcnn 1.0.0 step by
step so results match it (tests/test_faces.py checks that on real photos with the stock nets):

* input normalized to ``(rgb - 127.5) / 128`` *before* resizing; pyramid levels resized with
  area averaging (OpenCV INTER_AREA == TF ``resize(method="area")``), sizes truncated to int;
* pyramid scales ``12 / min_face_px * scale_factor ** k`` with the package's level count;
* P-Net boxes regressed per cell (cell 12, stride 2), NMS 0.5 per level, 0.7 across levels;
* R-Net / O-Net crops taken like ``tf.image.crop_and_resize`` (bilinear, zero outside the image,
  in normalized space), NMS 0.7 union after R-Net, 0.7 "min" after O-Net;
* NMS drops a box if *any* better box overlaps it (package semantics, see boxes.py);
* final boxes clipped to the image, landmarks not (package defaults).

Deliberate differences from the package (documented in the tests):

* pyramid levels smaller than P-Net can run on (< 11 px) are skipped. The package keeps them,
  TensorFlow raises, and it silently returns *no faces at all* (e.g. any 640x480 frame with
  min_face_size 24 or 40). Where the package returns faces, we run the same levels.
* frames whose longer side exceeds ``max_side`` (default 2048) are area-downscaled first, so an
  8000x8000 frame costs the same as a 2048x2048 one; boxes come back in input pixels.

Input: RGB uint8 ``(H, W, 3)``. Grayscale ``(H, W)`` / ``(H, W, 1)`` is expanded, RGBA drops alpha,
other dtypes are clipped to 0..255 (NaN -> 0). Anything else (empty, < 12 px, 5 channels, 4-D,
non-numeric) returns empty ``Detections`` with landmarks and logs at debug level.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from . import boxes as bx
from .config import FacesConfig
from .detections import Detections
from .tflite import ModelError, load_interpreter

log = logging.getLogger(__name__)

PNET, RNET, ONET = "mtcnn_pnet.tflite", "mtcnn_rnet.tflite", "mtcnn_onet.tflite"
# faces.weights -> (P-Net, R-Net, O-Net[, landmark O-Net]) files: the package's nets, or R-/O-Net fine-tuned on
# masked faces (tools/training/mtcnn_train.py; same architectures, same cascade). P-Net stays stock: it loses ~2%
# of masked faces, R-Net and O-Net ~20% (tools/training/mtcnn_stages.py). The fine-tuned O-Net's landmarks are
# worse (udacity68: 8.2% -> 9.9% of the eye distance), so the final faces' landmarks come from the stock O-Net,
# run once more on their O-Net input boxes only.
WEIGHTS = {
    "stock": (PNET, RNET, ONET),
    "masks": (PNET, "mtcnn_masks_rnet.tflite", "mtcnn_masks_onet.tflite", ONET),
}
CROP = {"rnet": 24, "onet": 48}  # input size of each refining stage
MIN_LEVEL_PX = 11  # smallest pyramid level P-Net runs on (one output cell); the package's limit too
NMS_PNET_LEVEL, NMS_PNET_ALL, NMS_RNET, NMS_ONET = 0.5, 0.7, 0.7, 0.7
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)  # R-/O-Net batch sizes with a cached interpreter
PNET_CACHE = 48  # P-Net interpreters kept (one per pyramid level size): ~2 frame sizes' worth


def pyramid_scales(width: int, height: int, min_face_px: int, scale_factor: float) -> list[float]:
    """The package's ``build_scale_pyramid``, minus levels too small for P-Net (see module doc)."""
    min_dim = min(width, height)
    if min_dim < MIN_LEVEL_PX:
        return []
    count = round(-((np.log(min_dim / 12) / np.log(scale_factor)) + 1))
    scales = (12 / min_face_px) * scale_factor ** np.arange(max(count, 0))
    return [float(s) for s in scales if int(height * s) >= MIN_LEVEL_PX and int(width * s) >= MIN_LEVEL_PX]


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """``tf.image.crop_and_resize`` for pixel boxes on one ``(H, W, C)`` float image -> ``(N, size, size, C)``.

    Like TF the box is normalized by (W, H) and mapped onto ``[0, W-1]``: sample i of a box lands at
    ``x1 / W * (W-1) + i * (x2 - x1) / W * (W-1) / (size-1)``; samples outside the image are 0.
    """
    h, w = image.shape[:2]
    n = len(boxes)
    t = np.arange(size, dtype=np.float64)

    def axis(lo, hi, length):
        lo, hi = lo / length, hi / length
        pos = lo[:, None] * (length - 1) + t[None, :] * ((hi - lo) * (length - 1) / (size - 1))[:, None]
        inside = (pos >= 0) & (pos <= length - 1)
        p = np.clip(pos, 0, length - 1)
        i0 = np.floor(p).astype(np.intp)
        i1 = np.ceil(p).astype(np.intp)
        return i0, i1, (p - i0).astype(np.float32), inside

    y0, y1, fy, in_y = axis(boxes[:, 1], boxes[:, 3], h)
    x0, x1, fx, in_x = axis(boxes[:, 0], boxes[:, 2], w)
    # Gathers on the flattened image with flat indices: about 2x faster than 2-D fancy indexing.
    flat = image.reshape(-1, image.shape[2])
    r0, r1 = (y0 * w)[:, :, None], (y1 * w)[:, :, None]
    c0, c1 = x0[:, None, :], x1[:, None, :]
    fx4 = fx[:, None, :, None]
    tl, tr = flat.take(r0 + c0, axis=0), flat.take(r0 + c1, axis=0)
    top = tl + (tr - tl) * fx4
    bl, br = flat.take(r1 + c0, axis=0), flat.take(r1 + c1, axis=0)
    bottom = bl + (br - bl) * fx4
    out = top + (bottom - top) * fy[:, :, None, None]
    out[~(in_y[:, :, None] & in_x[:, None, :])] = 0.0
    return out.reshape(n, size, size, image.shape[2]).astype(np.float32, copy=False)


def as_three_channels(image) -> np.ndarray | None:
    """A contiguous uint8 ``(H, W, 3)`` view/copy of a hostile input, or None when unusable.

    Channel order is kept (gray is repeated, a 4th channel dropped), so it serves RGB and BGR alike.
    """
    try:
        a = np.asarray(image)
    except Exception:  # noqa: BLE001 -- ragged lists and the like: nothing to detect in
        return None
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.ndim == 3 and a.shape[2] == 4:
        a = a[:, :, :3]  # RGBA/BGRA: alpha says nothing about faces
    if a.ndim != 3 or a.shape[2] != 3 or a.size == 0:
        return None
    if a.dtype != np.uint8:
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            return None
        a = np.clip(np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=255, neginf=0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def normalize(rgb: np.ndarray) -> np.ndarray:
    """The nets' input scaling, ``(rgb - 127.5) / 128`` in float32: the exact same values as the package."""
    return (rgb.astype(np.float32) - 127.5) * (1.0 / 128.0)


class Net:
    """One TFLite model with interpreters cached by input shape; outputs picked by their last dim."""

    def __init__(self, path: Path, num_threads: int, capacity: int):
        self.path, self.num_threads, self.capacity = path, num_threads, capacity
        self._cache: OrderedDict[tuple, object] = OrderedDict()
        probe = load_interpreter(path, num_threads, allocate=False)  # ModelError now, not mid-stream
        self._input = probe.get_input_details()[0]["index"]
        self._outputs = {int(d["shape_signature"][-1]): d["index"] for d in probe.get_output_details()}

    def output_index(self, last_dim: int) -> int:
        if last_dim not in self._outputs:
            raise ModelError(f"model file {self.path} has no output of width {last_dim}: not an MTCNN net")
        return self._outputs[last_dim]

    def run(self, x: np.ndarray, *widths: int) -> list[np.ndarray]:
        key = x.shape
        interp = self._cache.pop(key, None)
        if interp is None:
            interp = load_interpreter(self.path, self.num_threads, allocate=False)
            interp.resize_tensor_input(self._input, list(key), strict=False)
            interp.allocate_tensors()
        self._cache[key] = interp  # most recent last
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        interp.set_tensor(self._input, x)
        interp.invoke()
        return [interp.get_tensor(self.output_index(w)) for w in widths]

    def run_batched(self, x: np.ndarray, *widths: int) -> list[np.ndarray]:
        """Run N crops in bucket-sized batches (zero-padded), so few shapes ever get allocated."""
        parts = []
        for start in range(0, len(x), BATCH_BUCKETS[-1]):
            chunk = x[start:start + BATCH_BUCKETS[-1]]
            n = len(chunk)
            bucket = next(b for b in BATCH_BUCKETS if b >= n)
            if bucket > n:
                chunk = np.concatenate([chunk, np.zeros((bucket - n, *chunk.shape[1:]), np.float32)])
            parts.append([o[:n].copy() for o in self.run(chunk, *widths)])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(widths))]


class FaceDetector:
    """MTCNN faces with 5 landmarks. ``ModelError`` (naming the file) if a model is missing or corrupt.

    Not thread-safe (cached interpreters): use one detector per thread.
    """

    def __init__(self, cfg: FacesConfig, model_dir: Path, max_side: int = 2048):
        self.cfg = cfg
        self.max_side = max_side
        model_dir = Path(model_dir)
        threads = cfg.num_threads
        pnet, rnet, onet, *lm_onet = WEIGHTS[getattr(cfg, "weights", "stock")]
        self.pnet = Net(model_dir / pnet, threads, PNET_CACHE)
        self.rnet = Net(model_dir / rnet, threads, len(BATCH_BUCKETS))
        self.onet = Net(model_dir / onet, threads, len(BATCH_BUCKETS))
        self.landmark_net = Net(model_dir / lm_onet[0], threads, len(BATCH_BUCKETS)) if lm_onet else None
        for net, widths in ((self.pnet, (4, 2)), (self.rnet, (4, 2)), (self.onet, (4, 10, 2)),
                            (self.landmark_net, (4, 10, 2))):
            for w in widths if net is not None else ():
                net.output_index(w)

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Faces in ``image_rgb`` (RGB): boxes x1y1x2y2 in its pixels, scores, landmarks (N, 5, 2)."""
        rgb = as_three_channels(image_rgb)
        if rgb is None or min(rgb.shape[:2]) < 12:
            log.debug("detect: unusable frame %s, no faces", getattr(image_rgb, "shape", type(image_rgb)))
            return Detections.empty(with_landmarks=True)
        h, w = rgb.shape[:2]
        shrink = min(1.0, self.max_side / max(h, w))
        if shrink < 1.0:  # huge frame: detect on an area-downscaled copy, scale results back
            rgb = cv2.resize(rgb, (max(1, int(w * shrink)), max(1, int(h * shrink))), interpolation=cv2.INTER_AREA)
        found = self._cascade(rgb)
        if found is None:
            return Detections.empty(with_landmarks=True)
        boxes, scores, lms = found
        if shrink < 1.0:
            sx, sy = w / rgb.shape[1], h / rgb.shape[0]
            boxes = boxes * [sx, sy, sx, sy]
            lms = lms * [sx, sy]
        boxes = bx.clip(boxes, w, h)
        return Detections(boxes=boxes, scores=scores, landmarks=lms)

    def stages(self, image_rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Debug hook (tools/training/mtcnn_stages.py): the (N, 5) box+score candidates after each step.

        Keys: ``pnet`` (after P-Net and its NMS), ``rnet_pass`` / ``rnet`` (R-Net threshold passed,
        before / after its NMS), ``onet_pass`` / ``onet`` (the same for O-Net). Frames up to max_side only.
        """
        rgb = as_three_channels(image_rgb)
        trace: dict[str, np.ndarray] = {k: np.zeros((0, 5)) for k in ("pnet", "rnet_pass", "rnet", "onet_pass", "onet")}
        if rgb is not None and min(rgb.shape[:2]) >= 12 and max(rgb.shape[:2]) <= self.max_side:
            self._cascade(rgb, trace)
        return trace

    # --- the three stages (public for tools/training/mtcnn_sweep.py, which runs other nets in them) ---------

    def _cascade(self, rgb: np.ndarray, trace: dict | None = None):
        norm = normalize(rgb)
        t1, t2, t3 = (float(t) for t in self.cfg.thresholds)
        cand = self.pnet_candidates(norm, t1)  # (N, 5) x1 y1 x2 y2 score, squared
        if trace is not None:
            trace["pnet"] = cand
        if not len(cand):
            return None
        cand, again = self._rnet(norm, cand, t2, trace)
        if not len(cand):
            return None
        return self._onet(norm, cand, np.where(again, max(t3, self.cfg.second_look_onet), t3), trace)

    def pnet_candidates(self, norm: np.ndarray, threshold: float) -> np.ndarray:
        """P-Net over the pyramid of a ``normalize``d image, its NMS: (N, 5) squared boxes + scores."""
        h, w = norm.shape[:2]
        levels = []
        for scale in pyramid_scales(w, h, self.cfg.min_face_px, self.cfg.scale_factor):
            lw, lh = int(w * scale), int(h * scale)
            level = cv2.resize(norm, (lw, lh), interpolation=cv2.INTER_AREA)
            reg, cls = self.pnet.run(level[None], 4, 2)
            yy, xx = np.nonzero(cls[0, :, :, 1] > threshold)  # row-major like np.where in the package
            if not len(yy):
                continue
            r = reg[0, yy, xx].astype(np.float64)
            score = cls[0, yy, xx, 1].astype(np.float64)
            # Cell (y, x) sees input pixels [2x+1, 2x+12): package's strides=2, cell_size=12, w=h=11.
            x1, y1 = xx * 2 + 1.0, yy * 2 + 1.0
            x2, y2 = xx * 2 + 12.0, yy * 2 + 12.0
            b = np.stack([x1 + r[:, 0] * 11, y1 + r[:, 1] * 11, x2 + r[:, 2] * 11, y2 + r[:, 3] * 11], 1) / scale
            order = bx.descending(score)
            b, score = b[order], score[order]
            keep = bx.nms_any_higher(b, NMS_PNET_LEVEL, "union")
            levels.append(np.column_stack([b[keep], score[keep]]))
        if not levels:
            return np.zeros((0, 5))
        cand = np.concatenate(levels)
        cand = cand[bx.descending(cand[:, 4])]
        cand = cand[bx.nms_any_higher(cand[:, :4], NMS_PNET_ALL, "union")]
        cand[:, :4] = bx.square(cand[:, :4])
        return cand

    def refine(self, stage: str, norm: np.ndarray, cand: np.ndarray, net: Net | None = None):
        """One R-Net (``stage="rnet"``) or O-Net pass on candidate boxes, no threshold or NMS: boxes regressed
        (N, 4), face scores (N,), and for O-Net landmarks (N, 5, 2) (else None). ``net``: another net file."""
        net = net or getattr(self, stage)
        widths = (4, 2) if stage == "rnet" else (4, 10, 2)
        outs = net.run_batched(crop_and_resize(norm, cand[:, :4], CROP[stage]), *widths)
        b = cand[:, :4]
        w = (b[:, 2] - b[:, 0] + 1)[:, None]  # the package's "+1" sizes
        h = (b[:, 3] - b[:, 1] + 1)[:, None]
        boxes = b + outs[0].astype(np.float64) * np.hstack([w, h, w, h])
        if stage == "rnet":
            return boxes, outs[1][:, 1].astype(np.float64), None
        # Landmarks are relative to the O-Net input box (before its own regression).
        lm = outs[1]
        lms = np.stack([w * lm[:, 0:5] + b[:, 0:1] - 1, h * lm[:, 5:10] + b[:, 1:2] - 1], axis=2)
        return boxes, outs[2][:, 1].astype(np.float64), lms

    def _rnet(self, norm: np.ndarray, cand: np.ndarray, threshold: float, trace: dict | None = None):
        """R-Net, its threshold and NMS: (N, 5) squared boxes + scores, and which of them only the second look
        (faces.second_look_from) let through. Those go after every first-look box into NMS, so a second look
        adds faces and never displaces one the first look found."""
        boxes, scores, _ = self.refine("rnet", norm, cand)
        out = np.column_stack([boxes, scores, np.zeros(len(boxes))])
        band = (scores > self.cfg.second_look_from) & (scores <= threshold)
        if band.any():
            b2, s2, _ = self.refine("rnet", norm, bx.square(boxes[band]))
            ok = s2 > threshold
            out = np.vstack([out, np.column_stack([b2[ok], s2[ok], np.ones(int(ok.sum()))])])
        out = out[out[:, 4] > threshold]
        # First-look boxes first, each group by score (the package's tie order).
        out = np.concatenate([g[bx.descending(g[:, 4])] for g in (out[out[:, 5] == 0], out[out[:, 5] > 0])])
        if trace is not None:
            trace["rnet_pass"] = out[:, :5].copy()
        out = out[bx.nms_any_higher(out[:, :4], NMS_RNET, "union")]
        if trace is not None:
            trace["rnet"] = out[:, :5].copy()
        out[:, :4] = bx.square(out[:, :4])
        return out[:, :5], out[:, 5] > 0

    def _onet(self, norm: np.ndarray, cand: np.ndarray, threshold, trace: dict | None = None):
        """O-Net; ``threshold``: one for all candidates or one per candidate."""
        boxes, scores, lms = self.refine("onet", norm, cand)  # lms (N, 5, 2): eyes l/r, nose, mouth l/r
        ok = np.nonzero(scores > threshold)[0]
        ok = ok[bx.descending(scores[ok])]
        boxes, scores, lms = boxes[ok], scores[ok], lms[ok]
        keep = bx.nms_any_higher(boxes, NMS_ONET, "min")
        if trace is not None:
            trace["onet_pass"] = np.column_stack([boxes, scores])
            trace["onet"] = trace["onet_pass"][keep]
        if self.landmark_net is not None and len(keep):
            lms[keep] = self.refine("onet", norm, cand[ok[keep]], self.landmark_net)[2]
        return boxes[keep], scores[keep], lms[keep]
