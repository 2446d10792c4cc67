"""What the below-face merge rule (``mask_guard.pipeline.under_a_face``, README "When it counts") does on scene photos.

Reads ``tools/evaluate.py --runner daemon --json`` outputs and applies the daemon's rule per image: a
detection that shows no mouth (verdict not ``no_mask``) and lies under a larger detection of the same
image is merged. Prints what it would merge: annotated faces (the cost: a person not counted) and unmatched
detections read as a mask (the phantoms it removes), one line each, so they can be looked at.

    .venv/bin/python tools/evaluate.py --part dev --runner daemon --json .cache/eval_dev.json
    .venv/bin/python tools/evaluate_merge.py .cache/eval_dev.json [.cache/eval_train.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mask_guard.pipeline import under_a_face  # noqa: E402


def merged(run: dict) -> list[dict]:
    """The detections of one set's daemon run that the rule merges, with what they were."""
    per = defaultdict(list)
    for f in run["faces"]:
        if f["found"]:
            per[f["image"]].append({"box": f["det_box"], "verdict": f["verdict"], "what": f["cls"], "image": f["image"]})
    for e in run["extras"]:
        per[e["image"]].append({"box": e["box"], "verdict": e["verdict"], "what": "unmatched", "image": e["image"]})
    out = []
    for dets in per.values():
        boxes = np.array([d["box"] for d in dets], np.float64).reshape(-1, 4)
        under = under_a_face(boxes, boxes, np.array([d["verdict"] == "no_mask" for d in dets]))
        out += [d for d, u in zip(dets, under) if u]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", type=Path, help="tools/evaluate.py --json outputs")
    args = ap.parse_args(argv)
    rows = []
    for path in args.json:
        data = json.loads(path.read_text())
        for name, s in data["sets"].items():
            rows += [{**d, "set": name, "part": data["part"]} for d in merged(s["daemon"])]
    cost = [r for r in rows if r["what"] != "unmatched"]
    phantoms = [r for r in rows if r["what"] == "unmatched" and r["verdict"] in ("mask", "mask_below_nose")]
    for r in rows:
        w = r["box"][2] - r["box"][0]
        print(f"{r['part']:5} {r['set']:13} {Path(r['image']).name:45} {r['what']:19} {r['verdict']:15} {w:4.0f} px")
    print(f"\nmerged: {len(cost)} annotated faces; {len(phantoms)} unmatched detections read as a mask; "
          f"{len(rows) - len(cost) - len(phantoms)} other unmatched")
    return 0


if __name__ == "__main__":
    sys.exit(main())
