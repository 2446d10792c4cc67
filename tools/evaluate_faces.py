#!/usr/bin/env python3
"""Verdicts by mask type on face photos, the daemon beside the peer: faces/masktypes and synthetic masks.

1. ``faces/masktypes`` (real photos by type: N95/KN95, cloth, surgical, worn incorrectly, none), the chosen
   part of THE split (tools/splits.py, default test). Each photo is a tight face picture, so it is framed
   in a grey border of 40 % of its size (as a face in a scene: MTCNN needs context) and the largest face
   found is the photo's face.
2. Synthetic masks (tools/training/mask_synth.py, fixed seed) worn correctly, by family (KN95, N95 with
   or without a valve, surgical in colours, cloth and patterned, gas respirators), on held-out identities:
   the ``no_mask`` photos of the same masktypes part (never trained on), placed from the landmarks MTCNN
   finds on the bare face.

3. ``faces/rmfd/with_mask_scenes`` (real photos of masked people, whole or half body, another source):
   the people the mouth model never trained on (its validation identities, ``build_mouth_dataset.group_and_split``),
   as they are (no border), with no boxes: the largest face found stands for the photo's person. It is
   not always that person (an unmasked bystander, an inset portrait, or the masked face not found), so
   "called no_mask" here is an upper bound on false alarms: look at the photos before reading it as one.

Per type it reports: found (a face detected), called no_mask (of all photos), and the verdict mix; for
``no_mask`` the first is the alarm rate. Both the daemon's single-frame path (mask_guard.pipeline.Analyzer
with the shipped config, or --config) and the AIZOOTech SSD peer (tools/peer_aizoo.py) run on the same
framed images.

    .venv/bin/python tools/evaluate_faces.py [--part test] [--config c.yaml] [--json out.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "training"))
import splits  # noqa: E402
from datapaths import data_dir  # noqa: E402
from peer_aizoo import AizooPeer  # noqa: E402

from mask_guard.config import load_config  # noqa: E402
from mask_guard.pipeline import Analyzer  # noqa: E402

PAD = 0.4
SYNTH_FAMILIES = ("kn95", "n95", "surgical", "cloth", "gas")


def framed(bgr: np.ndarray, pad: float = PAD) -> np.ndarray:
    p = int(pad * max(bgr.shape[:2]))
    return cv2.copyMakeBorder(bgr, p, p, p, p, cv2.BORDER_CONSTANT, value=(128, 128, 128))


def largest(faces: list):
    if not faces:
        return None
    return max(faces, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))


def daemon_faces(an: Analyzer, bgr: np.ndarray) -> list[dict]:
    out = []
    for r in an.analyze(bgr):
        d = r.to_json()
        d["landmarks"] = None if r.landmarks is None else r.landmarks.tolist()
        out.append(d)
    return out


def tally(rows: list[dict]) -> dict:
    n = len(rows)
    found = [r for r in rows if r is not None and r.get("verdict")]
    calls = {v: sum(1 for r in found if r["verdict"] == v) for v in ("no_mask", "mask_below_nose", "mask", "unsure")}
    return {"n": n, "found": round(len(found) / max(n, 1), 4), "no_mask": round(calls["no_mask"] / max(n, 1), 4),
            "no_mask_of_found": round(calls["no_mask"] / max(len(found), 1), 4), "calls": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="test", choices=["train", "dev", "test"])
    ap.add_argument("--config")
    ap.add_argument("--json")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from mask_synth import MaskSynth
    from build_mouth_dataset import group_and_split

    an = Analyzer(load_config(args.config) if args.config else load_config(None))
    peer = AizooPeer()
    synth = MaskSynth(data_dir() / "mask_templates")
    root = data_dir() / "faces" / "masktypes"
    part = splits.masktypes_parts()
    with open(root / "manifest.csv") as f:
        rows = [r for r in csv.DictReader(f) if part.get(f"faces/masktypes/{r['file']}") == args.part]
    res: dict[str, dict[str, list]] = {}
    rng = np.random.default_rng(args.seed)
    for r in rows:
        img = cv2.imread(str(root / r["file"]))
        if img is None or r["label"] not in ("n95_kn95_respirator", "cloth_mask", "surgical_mask",
                                             "mask_worn_incorrectly", "no_mask"):
            continue
        img = framed(img)
        ours = largest(daemon_faces(an, img))
        res.setdefault(r["label"], {"daemon": [], "aizoo": []})
        res[r["label"]]["daemon"].append(ours)
        res[r["label"]]["aizoo"].append(largest(peer.detect(img)))
        if r["label"] != "no_mask" or ours is None or ours["landmarks"] is None:
            continue
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        for fam in SYNTH_FAMILIES:
            got = synth.apply(rng, rgb, np.array(ours["landmarks"]), worn="correct", family=fam)
            if got is None:
                continue
            sbgr = cv2.cvtColor(got[0], cv2.COLOR_RGB2BGR)
            key = f"synthetic {fam}"
            res.setdefault(key, {"daemon": [], "aizoo": []})
            res[key]["daemon"].append(largest(daemon_faces(an, sbgr)))
            res[key]["aizoo"].append(largest(peer.detect(sbgr)))
    rmfd = data_dir() / "faces" / "rmfd"
    with open(rmfd / "manifest.csv") as f:
        held_out = [r for r in csv.DictReader(f) if group_and_split("faces/rmfd", r)[1] == "val"]
    for r in held_out:
        img = cv2.imread(str(rmfd / r["file"]))
        if img is None:
            continue
        got = res.setdefault("rmfd masked people (held out)", {"daemon": [], "aizoo": []})
        got["daemon"].append(largest(daemon_faces(an, img)))
        got["aizoo"].append(largest(peer.detect(img)))
    summary = {k: {runner: tally(v) for runner, v in by.items()} for k, by in res.items()}
    print(f"| type ({args.part} part) | n | ours: found | ours: called no_mask | peer: found | peer: called no_mask |")
    print("|---|---|---|---|---|---|")
    for k in sorted(summary):
        d, p = summary[k]["daemon"], summary[k]["aizoo"]
        print(f"| {k} | {d['n']} | {d['found']:.1%} | {d['no_mask']:.1%} | {p['found']:.1%} | {p['no_mask']:.1%} |")
    print("\nour verdict mix (no_mask/mask_below_nose/mask/unsure): "
          + "; ".join(f"{k} {'/'.join(str(v) for v in summary[k]['daemon']['calls'].values())}" for k in sorted(summary)))
    if args.json:
        Path(args.json).write_text(json.dumps({"part": args.part, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
