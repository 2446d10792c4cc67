#!/usr/bin/env python3
"""List 'masked' training/validation faces that are really unmasked, so training skips them.

RMFD's with-mask scene photos also show unmasked people (and some chandrikadeb7 'with_mask' photos
show an unmasked face next to a masked one); MTCNN finds those faces too and the builder would
label them 'no mouth'. A first model scores every masked-labelled face; those with a mouth score
>= --threshold are written to .cache/mouth/exclude.json and dropped from training and from the
validation figures (kind 'excluded'). Look at the sheet it writes before trusting it.

    .venv/bin/python tools/training/mouth_clean.py --model models/mouth_nose_float32.tflite
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_common import CACHE, EXCLUDE  # noqa: E402

from mask_guard.config import MouthsConfig  # noqa: E402
from mask_guard.mouths import MouthDetector  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--sources", default="rmfd,chandrikadeb7")
    ap.add_argument("--sheet", default=str(CACHE / "excluded.jpg"))
    args = ap.parse_args()
    data = np.load(CACHE / "dataset.npz")
    rows = json.loads((CACHE / "dataset_meta.json").read_text())["rows"]
    srcs = args.sources.split(",")
    idx = np.array([i for i, r in enumerate(rows) if r["kind"] in ("none", "rmfd") and r["source"] in srcs])
    det = MouthDetector(MouthsConfig(), Path(args.model))
    crops = data["exact"][idx]
    s = np.concatenate([det.raw(crops[i:i + 64])[1].max(axis=1) for i in range(0, len(crops), 64)])
    bad = idx[s[:, 0] >= args.threshold]
    out = {"model": args.model, "threshold": args.threshold, "checked": int(len(idx)),
           "by_source": {src: int(sum(rows[i]["source"] == src for i in bad)) for src in srcs},
           "rows": [[rows[i]["key"], rows[i]["face"]] for i in bad]}
    EXCLUDE.write_text(json.dumps(out))
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}), f"excluded {len(bad)}")
    order = bad[np.argsort(-s[s[:, 0] >= args.threshold, 0])]
    tiles = [cv2.cvtColor(data["exact"][i], cv2.COLOR_RGB2BGR) for i in order[:120]]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 20)
    if tiles:
        cv2.imwrite(args.sheet, np.vstack([np.hstack(tiles[k:k + 20]) for k in range(0, len(tiles), 20)]))


if __name__ == "__main__":
    main()
