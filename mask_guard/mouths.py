"""Mouth, nose and mask detector on MTCNN face crops (Tiny-YOLO on TFLite) and the per-frame verdict.

The crop is part of the model's contract: the dataset builder (tools/training/build_mouth_dataset.py) and the
daemon both call :func:`face_crop`, so the detector sees at run time exactly what it was trained on.

Crop rule: a square centred on the MTCNN box centre, side = max(w, h) * ``CROP_MARGIN``, resized to
``size`` x ``size`` (INTER_AREA when shrinking, INTER_LINEAR when enlarging). Parts of the square outside
the frame are black (zeros), never edge-replicated, so a face at the frame edge looks like the
training faces cut from tight face photos. :func:`crop_window` gives the square in frame pixels, so
``x_frame = x0 + x_crop * side / size``.

The TFLite model takes ``(B, S, S, 3)`` RGB scaled to 0..1 (float32, or int8/uint8 with the tensor's
quantization parameters) and returns two tensors: boxes ``(B, N, 4)`` as centre-x, centre-y, width,
height in crop fractions, and scores ``(B, N, 3)`` = objectness * class probability for
[mouth, nose, mask]. All decoding except NMS happens inside the model, so this file stays numpy-only.
``mask`` is the covering over the lower face: the verdict needs positive evidence of a mask, so a crop
that shows neither a mouth nor a mask (a false face, a bowed head's chin) is ``unsure`` and never votes.
A legacy two-class model (mouth, nose) still loads; its mask score reads as 1 - mouth, the old rule.

``mouths.flip_tta`` (mean by default) scores every crop and its mirror image in one batch and averages
the two: on the camera-degraded validation split it gains about a point of mouth recall at equal
false alarms, for ~0.6 ms more per face (int8, one thread; MODEL_CARD.md).
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from .boxes import nms
from .config import MouthsConfig
from .detections import Detections, Verdict
from .tflite import ModelError, load_interpreter

log = logging.getLogger(__name__)

CROP_MARGIN = 1.25  # MTCNN boxes run brow to chin; the margin keeps a mask pulled onto the chin in view
MOUTH, NOSE, MASK = 0, 1, 2
CLASS_NAMES = ("mouth", "nose", "mask")


# --- the crop ------------------------------------------------------------------------------------

def crop_window(box, margin: float = CROP_MARGIN) -> tuple[int, int, int]:
    """(x0, y0, side) of the square crop for ``box`` (x1, y1, x2, y2) in frame pixels (integers)."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    side = max(x2 - x1, y2 - y1, 1.0) * margin
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    side_i = max(1, int(round(side)))
    return int(round(cx - side_i / 2.0)), int(round(cy - side_i / 2.0)), side_i


def face_crop(image_rgb: np.ndarray, box, size: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """THE face crop: ``(size, size, 3)`` uint8, black outside the frame (see the module docstring)."""
    h, w = image_rgb.shape[:2]
    x0, y0, side = crop_window(box, margin)
    out = np.zeros((side, side, 3), np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image_rgb[sy0:sy1, sx0:sx1, :3]
    if side == size:
        return out
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(out, (size, size), interpolation=interp)


def crop_to_image(boxes_crop: np.ndarray, face_box, size: int, margin: float = CROP_MARGIN) -> np.ndarray:
    """Map boxes in crop pixels (of a ``size`` crop of ``face_box``) back to frame pixels."""
    x0, y0, side = crop_window(face_box, margin)
    k = side / float(size)
    b = np.asarray(boxes_crop, np.float32).reshape(-1, 4) * k
    return b + np.array([x0, y0, x0, y0], np.float32)


# --- the verdict ---------------------------------------------------------------------------------

def verdict(mouth: float, nose: float, mask: float, cfg: MouthsConfig) -> Verdict:
    """Mouth seen -> no_mask; mouth hidden and a mask seen -> mask_below_nose (nose seen) or mask;
    anything else (no mouth and no mask seen, or a score between the thresholds) -> unsure."""
    if mouth >= cfg.mouth_on:
        return Verdict.NO_MASK
    if mouth < cfg.mouth_off and mask >= cfg.mask_on:
        return Verdict.MASK_BELOW_NOSE if nose >= cfg.nose_on else Verdict.MASK
    return Verdict.UNSURE


# --- the detector --------------------------------------------------------------------------------

class MouthDetector:
    """Tiny-YOLO mouth/nose detector; float32 and full-integer (int8/uint8) TFLite models alike."""

    def __init__(self, cfg: MouthsConfig, path: Path, score_threshold: float = 0.1, iou_threshold: float = 0.45):
        self.cfg = cfg
        self.path = Path(path)
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self._interp = load_interpreter(self.path, num_threads=cfg.num_threads, allocate=True)
        inp = self._interp.get_input_details()
        if len(inp) != 1 or len(inp[0]["shape"]) != 4 or inp[0]["shape"][1] != inp[0]["shape"][2]:
            raise ModelError(f"model file {self.path}: expected one square image input, got {inp}")
        self._in = inp[0]
        self.input_size = int(self._in["shape"][1])
        outs = self._interp.get_output_details()
        by_dim = {int(o["shape"][-1]): o for o in outs}
        classes = [d for d in by_dim if d in (2, 3)]
        if len(outs) != 2 or 4 not in by_dim or len(classes) != 1:
            raise ModelError(f"model file {self.path}: expected outputs boxes (.., 4) and scores (.., 3)")
        self.num_classes = classes[0]
        self._box_out, self._score_out = by_dim[4], by_dim[self.num_classes]
        self._batch = int(self._in["shape"][0])
        self._can_batch = True

    # quantization: q = x / scale + zero_point (input), x = (q - zero_point) * scale (outputs)
    def _to_input(self, crops: np.ndarray) -> np.ndarray:
        x = crops.astype(np.float32) * (1.0 / 255.0)
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return x
        scale, zero = self._in["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def _read(self, detail: dict) -> np.ndarray:
        y = self._interp.get_tensor(detail["index"])
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y

    def _resize(self, n: int) -> None:
        if n == self._batch:
            return
        shape = [n, self.input_size, self.input_size, 3]
        try:
            self._interp.resize_tensor_input(self._in["index"], shape)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError):
            # a model frozen with a fixed batch: go back to the shape it was, so the loop can run
            self._interp.resize_tensor_input(self._in["index"], [self._batch] + shape[1:])
            self._interp.allocate_tensors()
            raise
        self._batch = n

    def raw(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run crops ``(B, S, S, 3)`` uint8 RGB -> boxes (B, N, 4) cxcywh fractions, scores (B, N, C)."""
        crops = np.asarray(crops).reshape(-1, self.input_size, self.input_size, 3)
        if self._can_batch and len(crops) > 1:
            try:
                self._resize(len(crops))
                self._interp.set_tensor(self._in["index"], self._to_input(crops))
                self._interp.invoke()
                return self._read(self._box_out), self._read(self._score_out)
            except (ValueError, RuntimeError) as exc:  # a runtime without dynamic batch: loop instead
                log.debug("batched inference refused (%s); looping over crops", exc)
                self._can_batch = False
        self._resize(1)
        boxes, scores = [], []
        for c in crops:
            self._interp.set_tensor(self._in["index"], self._to_input(c[None]))
            self._interp.invoke()
            boxes.append(self._read(self._box_out))
            scores.append(self._read(self._score_out))
        if not boxes:
            return np.zeros((0, 1, 4), np.float32), np.zeros((0, 1, self.num_classes), np.float32)
        return np.concatenate(boxes), np.concatenate(scores)

    def detect_crop(self, crop: np.ndarray) -> Detections:
        """Mouths, noses, masks in one crop: boxes in crop pixels, class_ids 0=mouth 1=nose 2=mask, after NMS."""
        if crop.shape[:2] != (self.input_size, self.input_size):
            crop = cv2.resize(crop, (self.input_size, self.input_size), interpolation=cv2.INTER_AREA)
        b, s = self.raw(crop[None])
        b, s = b[0], s[0]
        xyxy = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1) * self.input_size
        out_boxes, out_scores, out_ids = [], [], []
        for cls in range(self.num_classes):
            sel = np.nonzero(s[:, cls] >= self.score_threshold)[0]
            if sel.size == 0:
                continue
            keep = sel[nms(xyxy[sel], s[sel, cls], self.iou_threshold)]
            out_boxes.append(xyxy[keep])
            out_scores.append(s[keep, cls])
            out_ids.append(np.full(len(keep), cls, np.int32))
        if not out_boxes:
            return Detections(np.zeros((0, 4)), np.zeros(0), class_ids=np.zeros(0, np.int32))
        return Detections(np.concatenate(out_boxes), np.concatenate(out_scores), class_ids=np.concatenate(out_ids))

    def crops(self, image_rgb: np.ndarray, faces: Detections) -> np.ndarray:
        """The model-size crops of every face, ``(N, S, S, 3)`` uint8."""
        if len(faces) == 0:
            return np.zeros((0, self.input_size, self.input_size, 3), np.uint8)
        return np.stack([face_crop(image_rgb, b, self.input_size) for b in faces.boxes])

    def score_crops(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 3)`` float32 [mouth, nose, mask] of model-size crops, with ``cfg.flip_tta`` applied.

        Flip TTA scores each crop and its mirror image in the same batch (mouths and noses are symmetric,
        the model's errors are not quite) and combines the two by mean or max."""
        crops = np.asarray(crops).reshape(-1, self.input_size, self.input_size, 3)
        n = len(crops)
        if n == 0:
            return np.zeros((0, 3), np.float32)
        mode = getattr(self.cfg, "flip_tta", "off")
        if mode != "off":
            crops = np.concatenate([crops, crops[:, :, ::-1]])
        # the best box's score survives NMS unchanged, so the per-class maximum is the answer
        s = self.raw(crops)[1].max(axis=1).astype(np.float32)
        if self.num_classes == 2:  # legacy model: no mouth found stood for a mask
            s = np.concatenate([s, 1.0 - s[:, :1]], axis=1)
        if mode == "mean":
            return (s[:n] + s[n:]) * np.float32(0.5)
        if mode == "max":
            return np.maximum(s[:n], s[n:])
        return s

    def score_faces(self, image_rgb: np.ndarray, faces: Detections) -> np.ndarray:
        """``(N, 3)`` float32: best [mouth, nose, mask] confidence per face (0 if none)."""
        if len(faces) == 0:
            return np.zeros((0, 3), np.float32)
        return self.score_crops(self.crops(image_rgb, faces))
