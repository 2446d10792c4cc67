"""Where MTCNN loses annotated faces: per class and face size, the share lost at each cascade step.

For every annotated face of the scene sets' chosen split part, the runtime cascade
(``FaceDetector.stages``, the daemon's default config) is followed step by step; a face "survives" a step
while some candidate after it overlaps the face with IoU >= --iou:

    P-Net (incl. its NMS) -> R-Net threshold -> R-Net NMS -> O-Net threshold -> O-Net NMS -> 1:1 match

The first step a face does not survive is where it was lost ("NMS" sums both NMS steps; "match": a final
box overlaps it but went to another face). Also: found (recall), unmatched detections per 100 images,
ms per image. Sizes are annotated box widths (all, >= 24, >= 40 px), as in tools/evaluate.py.

    .venv/bin/python tools/training/mtcnn_stages.py --part train --weights stock masks [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

from mtcnn_common import CACHE, CLASSES, MODELS, SIZES, detector, rgb, scene_images  # noqa: E402
from evaluate import match  # noqa: E402
from mask_guard.boxes import iou  # noqa: E402

STEPS = ("pnet", "rnet_pass", "rnet", "onet_pass", "onet")
LOSSES = ("P-Net", "R-Net", "NMS", "O-Net", "match")


def lost_at(gt: np.ndarray, trace: dict, final: np.ndarray, thr: float) -> list[str | None]:
    """Per annotated face: the step it was lost at, None when found."""
    alive = {k: (iou(gt, trace[k][:, :4]).max(1) >= thr) if len(trace[k]) else np.zeros(len(gt), bool)
             for k in STEPS}
    m = match(gt, final, thr)
    out = []
    for i in range(len(gt)):
        if i in m:
            out.append(None)
        elif not alive["pnet"][i]:
            out.append("P-Net")
        elif not alive["rnet_pass"][i]:
            out.append("R-Net")
        elif not alive["rnet"][i]:
            out.append("NMS")
        elif not alive["onet_pass"][i]:
            out.append("O-Net")
        elif not alive["onet"][i]:
            out.append("NMS")
        else:
            out.append("match")
    return out


def run(weights: str, model_dir: Path, part: str, thr: float, thresholds: list | None = None,
        scale_factor: float | None = None) -> dict:
    over = {"thresholds": thresholds} if thresholds else {}
    if scale_factor:
        over["scale_factor"] = scale_factor
    det = detector(weights, model_dir, **over)
    faces, per_set, ms = [], {}, []
    for s, path, gt in scene_images(part):
        img = rgb(path)
        t = time.perf_counter()
        trace = det.stages(img)
        ms.append((time.perf_counter() - t) * 1000)
        final = trace["onet"][:, :4]
        g = np.array([b for _, b in gt], np.float64).reshape(-1, 4)
        losses = lost_at(g, trace, final, thr) if len(g) else []
        for (cls, box), lost in zip(gt, losses):
            faces.append({"set": s, "cls": cls, "w": float(box[2] - box[0]), "lost": lost})
        matched = set(match(g, final, thr).values()) if len(g) else set()
        widths = final[:, 2] - final[:, 0]
        st = per_set.setdefault(s, {"images": 0, "unmatched": 0, "unmatched_ge40": 0, "detections": 0})
        st["images"] += 1
        st["detections"] += len(final)
        st["unmatched"] += sum(1 for j in range(len(final)) if j not in matched)
        st["unmatched_ge40"] += sum(1 for j in range(len(final)) if j not in matched and widths[j] >= 40)
    return {"weights": weights, "model_dir": str(model_dir), "part": part, "iou": thr, "faces": faces,
            "sets": per_set, "ms_median": float(np.median(ms)), "ms_mean": float(np.mean(ms))}


def table(res: dict, sets: list[str] | None = None) -> str:
    faces = [f for f in res["faces"] if sets is None or f["set"] in sets]
    rows = ["| class | size | faces | found | " + " | ".join(f"lost {k}" for k in LOSSES) + " |",
            "|---|---|---:|---:|" + "---:|" * len(LOSSES)]
    for cls in CLASSES:
        for label, w in SIZES:
            sel = [f for f in faces if f["cls"] == cls and f["w"] >= w]
            if not sel:
                continue
            n = len(sel)
            found = sum(f["lost"] is None for f in sel)
            lost = [sum(f["lost"] == k for f in sel) for k in LOSSES]
            rows.append(f"| {cls} | {label} | {n} | {100 * found / n:.1f}% | "
                        + " | ".join(f"{100 * v / n:.1f}%" for v in lost) + " |")
    st = [v for k, v in res["sets"].items() if sets is None or k in sets]
    imgs = sum(v["images"] for v in st)
    um = sum(v["unmatched"] for v in st)
    um40 = sum(v["unmatched_ge40"] for v in st)
    rows.append(f"\nimages {imgs}; unmatched detections per 100 images: {100 * um / max(imgs, 1):.1f} "
                f"(>= 40 px wide: {100 * um40 / max(imgs, 1):.1f})")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="train", choices=["train", "dev", "test"])
    ap.add_argument("--weights", nargs="+", default=["stock", "masks"], choices=["stock", "masks"])
    ap.add_argument("--model-dir", type=Path, default=MODELS, help="folder with the .tflite nets (default models/)")
    ap.add_argument("--iou", type=float, default=0.3)
    ap.add_argument("--per-set", action="store_true", help="also one table per scene set")
    ap.add_argument("--thresholds", type=float, nargs=3, help="P-/R-/O-Net thresholds (default: the config's)")
    ap.add_argument("--scale-factor", type=float, help="pyramid step (default: the config's)")
    ap.add_argument("--json", type=Path, help=f"also write the rows here (e.g. {CACHE}/stages.json)")
    args = ap.parse_args(argv)
    out = {}
    for w in args.weights:
        res = run(w, args.model_dir, args.part, args.iou, args.thresholds, args.scale_factor)
        out[w] = res
        print(f"\n## {w} weights, {args.part} part ({res['model_dir']}, thresholds {args.thresholds or 'default'}, "
              f"scale step {args.scale_factor or 'default'}): "
              f"{res['ms_median']:.1f} ms median per image (1 thread)\n")
        print(table(res))
        if args.per_set:
            for s in sorted(res["sets"]):
                print(f"\n### {s}\n")
                print(table(res, [s]))
        sys.stdout.flush()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
