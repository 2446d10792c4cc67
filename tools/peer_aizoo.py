#!/usr/bin/env python3
"""Our own runner of the AIZOOTech FaceMaskDetection SSD (the peer in ../shared/peers/aizoo, MIT).

Pre- and post-processing as its authors describe them (the peer's README, in our code): the whole image
resized to 260 x 260 RGB / 255; 5972 anchors on 33/17/9/5/3 maps; decoding with variances 0.1/0.2;
score = max class score >= 0.5; one greedy NMS at IoU 0.4 over both classes; class 0 mask, 1 no mask.
Prints the same JSON lines as ``mask-guard detect --json`` (verdict ``no_mask`` or ``mask``), so
tools/evaluate.py scores it exactly like the daemon.

    .venv/bin/python tools/peer_aizoo.py IMAGE... [--model ../shared/peers/aizoo/face_mask_detection.tflite]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datapaths import ROOT  # noqa: E402

from mask_guard.boxes import nms  # noqa: E402
from mask_guard.tflite import load_interpreter  # noqa: E402

MODEL = ROOT.parent / "shared" / "peers" / "aizoo" / "face_mask_detection.tflite"
MAPS = (33, 17, 9, 5, 3)
SIZES = ((0.04, 0.056), (0.08, 0.11), (0.16, 0.22), (0.32, 0.45), (0.64, 0.72))
RATIOS = (1.0, 0.62, 0.42)
VARIANCES = (0.1, 0.1, 0.2, 0.2)


def anchors() -> np.ndarray:
    """(5972, 4) cx, cy, w, h in image fractions, in the model's output order."""
    out = []
    for g, sizes in zip(MAPS, SIZES):
        shapes = [(s, 1.0) for s in sizes] + [(sizes[0], r) for r in RATIOS[1:]]
        for i in range(g):
            for j in range(g):
                cx, cy = (j + 0.5) / g, (i + 0.5) / g
                for s, r in shapes:
                    out.append((cx, cy, s * np.sqrt(r), s / np.sqrt(r)))
    return np.array(out, np.float32)


class AizooPeer:
    def __init__(self, model: Path = MODEL, score: float = 0.5, iou: float = 0.4):
        self.interp = load_interpreter(model, num_threads=1, allocate=True)
        self.inp = self.interp.get_input_details()[0]
        outs = self.interp.get_output_details()
        self.box_out = next(o for o in outs if o["shape"][-1] == 4)
        self.cls_out = next(o for o in outs if o["shape"][-1] == 2)
        self.anchors = anchors()
        if len(self.anchors) != int(self.box_out["shape"][1]):
            raise SystemExit(f"{model}: {self.box_out['shape'][1]} outputs, expected {len(self.anchors)} anchors")
        self.score, self.iou = score, iou

    def detect(self, bgr: np.ndarray) -> list[dict]:
        h, w = bgr.shape[:2]
        x = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (260, 260)).astype(np.float32)[None] / 255.0
        self.interp.set_tensor(self.inp["index"], x)
        self.interp.invoke()
        loc = self.interp.get_tensor(self.box_out["index"])[0]
        cls = self.interp.get_tensor(self.cls_out["index"])[0]
        a = self.anchors
        cxy = loc[:, :2] * np.array(VARIANCES[:2]) * a[:, 2:] + a[:, :2]
        wh = np.exp(loc[:, 2:] * np.array(VARIANCES[2:])) * a[:, 2:]
        boxes = np.concatenate([cxy - wh / 2, cxy + wh / 2], 1) * np.array([w, h, w, h], np.float32)
        conf, label = cls.max(1), cls.argmax(1)
        sel = np.nonzero(conf >= self.score)[0]
        keep = sel[nms(boxes[sel], conf[sel], self.iou)] if len(sel) else sel
        return [{"box": [round(float(v), 1) for v in np.clip(boxes[k], 0, [w, h, w, h])],
                 "score": round(float(conf[k]), 4), "mouth": round(float(cls[k, 1]), 4), "nose": 0.0,
                 "mask": round(float(cls[k, 0]), 4), "verdict": "no_mask" if label[k] == 1 else "mask"}
                for k in keep]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+")
    ap.add_argument("--model", default=str(MODEL))
    args = ap.parse_args()
    peer = AizooPeer(Path(args.model))
    for p in args.images:
        img = cv2.imread(p)
        if img is None:
            print(json.dumps({"image": p, "error": "unreadable"}))
            continue
        t0 = time.perf_counter()
        faces = peer.detect(img)
        print(json.dumps({"image": p, "width": img.shape[1], "height": img.shape[0],
                          "ms": round((time.perf_counter() - t0) * 1e3, 1), "faces": faces}), flush=True)


if __name__ == "__main__":
    main()
