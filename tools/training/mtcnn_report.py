"""The other figures of the MTCNN model card, stock vs fine-tuned ("masks") weights, one run each:

* landmarks: udacity68 test split; the detected face that best overlaps the 68 points' box; error =
  mean distance of MTCNN's 5 points to the 68-point eye centres (36-41, 42-47), nose tip (30) and mouth
  corners (48, 54), as a share of the eye-centre distance; faces not found are counted apart;
* clips: detections over every --step-th frame of ../shared/data/videos/*.mp4 (no ground truth: counts);
* time: MTCNN per 640x480 frame (scene test images resized), both weights interleaved, 1 thread;
* rmfd: ``faces/rmfd/with_mask_scenes`` (1,000 real photos of masked people, no boxes, never used to train or
  tune MTCNN): the share of photos in which any face is found, each photo framed in a 20 % grey border
  (tools/evaluate_faces.py's ``framed``, which gives its tight face photos 40 %; these are scenes): a
  masked-face recall check on a source the nets never saw.

    .venv/bin/python tools/training/mtcnn_report.py [--model-dir models/] [--only landmarks clips time rmfd]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mtcnn_common import CACHE, MODELS, data_dir, detector, rgb, scene_images  # noqa: E402
from evaluate_faces import framed  # noqa: E402  (tools/ is on the path through mtcnn_common)
from mask_guard.boxes import iou  # noqa: E402

WEIGHTS = ("stock", "masks")


def landmark_targets(p: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points -> (5, 2) in MTCNN order (image-left eye first)."""
    return np.array([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def landmarks(dets: dict) -> dict:
    root = data_dir() / "landmarks" / "udacity68"
    rows = [r for r in csv.DictReader(open(root / "landmarks.csv")) if r["split"] == "test"]
    out = {}
    for w, det in dets.items():
        errs, missed = [], 0
        for r in rows:
            pts = np.array([[float(r[f"x{i}"]), float(r[f"y{i}"])] for i in range(68)])
            img = rgb(root / r["file"])
            d = det.detect(img)
            box = np.array([[*pts.min(0), *pts.max(0)]])
            if not len(d) or iou(box, d.boxes).max() < 0.3:
                missed += 1
                continue
            k = int(iou(box, d.boxes)[0].argmax())
            t = landmark_targets(pts)
            eye = np.linalg.norm(t[1] - t[0])
            errs.append(float(np.linalg.norm(d.landmarks[k] - t, axis=1).mean() / eye))
        out[w] = {"faces": len(rows), "found": len(errs), "missed": missed,
                  "mean_error_pct": round(100 * float(np.mean(errs)), 2),
                  "median_error_pct": round(100 * float(np.median(errs)), 2)}
        print(f"landmarks {w}: {out[w]}", flush=True)
    return out


def clips(dets: dict, step: int) -> dict:
    out = {}
    for path in sorted((data_dir() / "videos").glob("*.mp4")):
        cap = cv2.VideoCapture(str(path))
        counts = {w: [] for w in dets}
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % step == 0:
                img = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                for w, det in dets.items():
                    counts[w].append(len(det.detect(img)))
            i += 1
        out[path.name] = {w: {"frames": len(c), "detections": int(np.sum(c)), "frames_with_faces": int(np.sum(np.array(c) > 0)),
                              "max_per_frame": int(np.max(c)) if c else 0} for w, c in counts.items()}
        print(f"clip {path.name}: {out[path.name]}", flush=True)
    return out


def timing(dets: dict, n: int, repeats: int) -> dict:
    frames = [cv2.resize(rgb(p), (640, 480), interpolation=cv2.INTER_AREA) for _, p, _ in scene_images("test")[:n]]
    ms = {w: [] for w in dets}
    for f in frames[:3]:  # warm the interpreter caches
        for det in dets.values():
            det.detect(f)
    for _ in range(repeats):
        for f in frames:
            for w, det in dets.items():
                t = time.perf_counter()
                det.detect(f)
                ms[w].append((time.perf_counter() - t) * 1000)
    out = {w: {"median_ms": round(float(np.median(v)), 2), "mean_ms": round(float(np.mean(v)), 2)} for w, v in ms.items()}
    print(f"time per 640x480 frame (1 thread, {len(frames)} frames x {repeats}): {out}", flush=True)
    return out


def rmfd(dets: dict, step: int = 1) -> dict:
    """Per weights: RMFD photos (every ``step``-th) in which any face is found."""
    root = data_dir() / "faces" / "rmfd"
    files = [root / r["file"] for r in csv.DictReader(open(root / "manifest.csv"))][::step]
    found = {w: 0 for w in dets}
    for path in files:
        img = framed(rgb(path), pad=0.2)
        for w, det in dets.items():
            found[w] += len(det.detect(img)) > 0
    out = {w: {"photos": len(files), "with_a_face": n, "pct": round(100 * n / max(len(files), 1), 1)}
           for w, n in found.items()}
    print(f"rmfd (masked people, photos with a face found): {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", type=Path, default=MODELS)
    ap.add_argument("--only", nargs="+", default=["landmarks", "clips", "time", "rmfd"])
    ap.add_argument("--step", type=int, default=3, help="every Nth clip frame")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=CACHE / "report.json")
    args = ap.parse_args(argv)
    dets = {w: detector(w, args.model_dir) for w in WEIGHTS}
    out = {}
    if "landmarks" in args.only:
        out["landmarks"] = landmarks(dets)
    if "clips" in args.only:
        out["clips"] = clips(dets, args.step)
    if "time" in args.only:
        out["time"] = timing(dets, args.frames, args.repeats)
    if "rmfd" in args.only:
        out["rmfd"] = rmfd(dets)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
