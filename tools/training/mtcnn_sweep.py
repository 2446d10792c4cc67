"""Dev-part operating points of R-Net/O-Net pairs in one cascade run each: recall and false faces per threshold.

The runtime cascade's NMS drops a box when *any* better box overlaps it (boxes.nms_any_higher), so the boxes
kept after R-Net at threshold t are exactly those kept at a lower threshold with score > t, and O-Net scores
each crop on its own. One run at low thresholds (P-Net at the config's) therefore gives every (R-Net, O-Net)
threshold pair: filter by both scores, redo O-Net's NMS. Same figures as mtcnn_stages.py (IoU 0.3, faces
>= 40 px: recall per class; unmatched detections per 100 images, all and >= 40 px wide), for many pairs.

``--rnet A B``: R-Net score = the higher of the two nets' (box from that net): "either accepts it".
P-Net candidates are cached per part in .cache/mtcnn/pnet_<part>.npz (P-Net is always the stock one).
The stages are the runtime's own (FaceDetector.pnet_candidates / refine), run with the nets given here.

    .venv/bin/python tools/training/mtcnn_sweep.py --name stock --rnet models/mtcnn_rnet.tflite \\
        --onet models/mtcnn_onet.tflite
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

from mtcnn_common import CACHE, CLASSES, detector, rgb, scene_images  # noqa: E402
from evaluate import match  # noqa: E402
from mask_guard import boxes as bx  # noqa: E402
from mask_guard.faces import NMS_ONET, NMS_RNET, Net, normalize  # noqa: E402

LOW = 0.05  # lowest R-Net / O-Net threshold the grid can use
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def pnet_candidates(part: str) -> list[np.ndarray]:
    path = CACHE / f"pnet_{part}.npz"
    images = scene_images(part)
    if path.exists():
        with np.load(path) as d:
            return [d[f"c{i}"] for i in range(len(images))]
    det = detector("stock")
    out = []
    for _, p, _ in images:
        out.append(det.pnet_candidates(normalize(rgb(p)), float(det.cfg.thresholds[0])))
    np.savez(path, **{f"c{i}": c for i, c in enumerate(out)})
    return out


def cascade_rows(part: str, rnets: list[Path], onet: Path) -> list[np.ndarray]:
    """Per image: (N, 6) rows x1 y1 x2 y2 O-Net score, R-Net score, for every O-Net crop at LOW/LOW."""
    cands = pnet_candidates(part)
    rn = [Net(p, 1, 8) for p in rnets]
    on = Net(onet, 1, 8)
    det = detector("stock")
    out = []
    for (_, p, _), cand in zip(scene_images(part), cands):
        if not len(cand):
            out.append(np.zeros((0, 6)))
            continue
        norm = normalize(rgb(p))
        res = [det.refine("rnet", norm, cand, net) for net in rn]
        scores = np.stack([r[1] for r in res])
        best = scores.argmax(0)
        boxes = np.stack([r[0] for r in res])[best, np.arange(len(cand))]
        r = np.column_stack([boxes, scores.max(0)])
        r = r[r[:, 4] > LOW]
        r = r[bx.descending(r[:, 4])]
        r = r[bx.nms_any_higher(r[:, :4], NMS_RNET, "union")]
        if not len(r):
            out.append(np.zeros((0, 6)))
            continue
        r[:, :4] = bx.square(r[:, :4])
        boxes, o_scores, _ = det.refine("onet", norm, r, on)
        out.append(np.column_stack([boxes, o_scores, r[:, 4]]))
    return out


def figures(part: str, rows: list[np.ndarray], t2: float, t3: float, iou_thr: float = 0.3) -> dict:
    found = {c: [0, 0] for c in CLASSES}
    um = um40 = 0
    images = scene_images(part)
    for (_, _, gt), r in zip(images, rows):
        r = r[(r[:, 5] > t2) & (r[:, 4] > t3)]
        r = r[bx.descending(r[:, 4])]
        final = r[bx.nms_any_higher(r[:, :4], NMS_ONET, "min"), :4]
        g = np.array([b for _, b in gt], np.float64).reshape(-1, 4)
        m = match(g, final, iou_thr) if len(g) and len(final) else {}
        for i, (cls, box) in enumerate(gt):
            if box[2] - box[0] >= 40 and cls in found:
                found[cls][1] += 1
                found[cls][0] += i in m
        used = set(m.values())
        w = final[:, 2] - final[:, 0]
        um += sum(j not in used for j in range(len(final)))
        um40 += sum(j not in used and w[j] >= 40 for j in range(len(final)))
    n = len(images)
    return {"t2": t2, "t3": t3, **{c: round(100 * a / max(b, 1), 2) for c, (a, b) in found.items()},
            "unmatched": round(100 * um / n, 2), "unmatched_ge40": round(100 * um40 / n, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True)
    ap.add_argument("--rnet", type=Path, nargs="+", required=True, help="one R-Net, or two: either accepts")
    ap.add_argument("--onet", type=Path, required=True)
    ap.add_argument("--part", default="dev", choices=["train", "dev", "test"])
    ap.add_argument("--at", type=float, nargs=2, action="append", help="only these R-/O-Net thresholds")
    args = ap.parse_args(argv)
    rows = cascade_rows(args.part, args.rnet, args.onet)
    pairs = args.at or [(a, b) for a in GRID for b in GRID]
    res = [figures(args.part, rows, a, b) for a, b in pairs]
    out = CACHE / f"sweep_{args.part}_{args.name}.json"
    out.write_text(json.dumps({"rnet": [str(p) for p in args.rnet], "onet": str(args.onet), "rows": res}, indent=0))
    print("| R-Net | O-Net | masked | unmasked | badly worn | unmatched/100 | >= 40 px |")
    for f in res:
        print(f"| {f['t2']} | {f['t3']} | {f['with_mask']} | {f['without_mask']} | {f['with_incorrect_mask']} | "
              f"{f['unmatched']} | {f['unmatched_ge40']} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
