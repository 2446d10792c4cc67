#!/usr/bin/env python3
"""Pick ``mouths.mouth_on`` on the dev half of a scene set, to be reported on the test half.

Usage:
  python tools/evaluate.py --half dev --json .cache/mouth/eval_dev.json
  python tools/training/calibrate_mouth.py .cache/mouth/eval_dev.json [--fa40 2.0 --fa24 5.0]

Rule (fixed before looking at the test half): the lowest threshold on a 0.05 grid whose false alarms
on masked faces (a masked face found and scored mouth >= threshold) stay within the issue's targets,
<= 2 % for faces >= 40 px and <= 5 % for faces >= 24 px. Lower thresholds only raise recall, so the
lowest one that keeps the false-alarm budget is the recall-first choice. Face detection is unaffected
by the threshold, so rescoring the saved per-face mouth scores is exact.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def rates(faces: list[dict], t: float, min_w: float) -> tuple[float, float]:
    un = [f for f in faces if f["cls"] == "without_mask" and f["w"] >= min_w]
    ma = [f for f in faces if f["cls"] == "with_mask" and f["w"] >= min_w]
    hit = lambda f: f["found"] and f["mouth"] is not None and f["mouth"] >= t  # noqa: E731
    return 100 * sum(map(hit, un)) / max(len(un), 1), 100 * sum(map(hit, ma)) / max(len(ma), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("eval_json", help="tools/evaluate.py --json output (the dev half)")
    ap.add_argument("--fa40", type=float, default=2.0, help="false-alarm budget %% for faces >= 40 px")
    ap.add_argument("--fa24", type=float, default=5.0, help="false-alarm budget %% for faces >= 24 px")
    args = ap.parse_args()
    faces = json.loads(open(args.eval_json).read())["faces"]
    print("| mouth_on | alarm recall >=40 | false alarms >=40 | alarm recall >=24 | false alarms >=24 | within budget |")
    print("|---|---|---|---|---|---|")
    chosen = None
    for t in np.round(np.arange(0.80, 0.049, -0.05), 2):
        r40, fa40 = rates(faces, t, 40)
        r24, fa24 = rates(faces, t, 24)
        ok = fa40 <= args.fa40 and fa24 <= args.fa24
        print(f"| {t:.2f} | {r40:.1f}% | {fa40:.1f}% | {r24:.1f}% | {fa24:.1f}% | {'yes' if ok else 'no'} |")
        if ok:
            chosen = t
    print(f"\nchosen mouth_on: {chosen}" if chosen is not None else "\nno threshold meets the budget")


if __name__ == "__main__":
    main()
