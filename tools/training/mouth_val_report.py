#!/usr/bin/env python3
"""Validation figures of a shipped mouth/nose TFLite model on the held-out split, and threshold tuning.

Runs mask_guard.mouths.MouthDetector on the validation crops of .cache/mouth/dataset.npz (identities
and source images never seen in training; the evaluation scenes are not used here) and reports:
* face-level figures per source / label kind at the config's thresholds;
* a threshold sweep, and the mouth_on / mouth_off / nose_on it recommends on this split (--fa: largest
  allowed share of masked validation faces called no_mask); the shipped mouth_on, mouth_off and mask_on
  come from the scene dev parts instead (tools/training/calibrate_mouth.py);
* UTKFace subgroups (age band, gender, ethnicity from the note column): mouth recall per group;
* MTCNN's find rate per source (from the build step).

    .venv/bin/python tools/training/mouth_val_report.py [--model models/mouth_nose.tflite] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_common import load_meta, CACHE, MODELS  # noqa: E402

from mask_guard.config import MouthsConfig  # noqa: E402
from mask_guard.mouths import MouthDetector, verdict  # noqa: E402

AGE_BANDS = ((0, 12, "0-12"), (13, 19, "13-19"), (20, 39, "20-39"), (40, 59, "40-59"), (60, 200, "60+"))
GENDER = {"0": "male", "1": "female"}
RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}


def parse_note(note: str) -> dict:
    return dict(kv.split("=", 1) for kv in note.split(";") if "=" in kv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(MODELS / "mouth_nose.tflite"))
    ap.add_argument("--fa", type=float, default=0.05, help="allowed masked-face no_mask rate for mouth_on")
    ap.add_argument("--rule", choices=["youden", "recall"], default="youden",
                    help="mouth_on within the --fa budget: best recall - false positives (youden), or the "
                    "lowest threshold, i.e. the most alarm recall the budget allows (recall)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--degrade", action="store_true",
                    help="score camera-degraded copies of the validation crops (blur, small faces, JPEG, "
                         "light, tilt, box jitter: tools/training/mouth_augment.py, fixed seed) instead of clean ones")
    ap.add_argument("--hard", action="store_true", help="with --degrade: the stronger scene-miss augmentation "
                    "(turned/tilted heads, loose boxes, harder blur, occluders at the mouth edge)")
    ap.add_argument("--flip-tta", default="off", choices=["off", "mean", "max"], help="mouths.flip_tta to score with")
    args = ap.parse_args()

    data = np.load(CACHE / "dataset.npz")
    meta = load_meta()
    va = np.array([i for i, m in enumerate(meta) if m["split"] == "val"])
    rows = [meta[i] for i in va]
    crops = data["exact"][va]
    if args.degrade:
        from mouth_augment import augment

        rng = np.random.default_rng(12345)
        ctx, lab_ctx = data["ctx"], data["lab_ctx"]  # (an npz re-reads an array on every access)
        crops = np.empty_like(crops)
        for j, i in enumerate(va):
            crops[j], boxes = augment(rng, ctx[i], lab_ctx[i].copy(), crops.shape[1], hard=args.hard)
            lost_mouth = rows[j]["kind"] == "both" and not np.isfinite(boxes[0]).all()
            lost_nose = rows[j]["kind"] == "nose" and not np.isfinite(boxes[1]).all()
            if lost_mouth or lost_nose:  # occluded or pushed out of the crop: no longer that label
                rows[j] = dict(rows[j], kind="excluded")
    det = MouthDetector(MouthsConfig(flip_tta=args.flip_tta), Path(args.model))
    s = np.concatenate([det.score_crops(crops[i:i + 64]) for i in range(0, len(crops), 64)])
    kinds = np.array([r["kind"] for r in rows])
    src = np.array([r["source"] for r in rows])
    masked = (kinds == "none") | (kinds == "rmfd")
    unmasked, nose_out = kinds == "both", kinds == "nose"
    rep: dict = {"model": args.model, "val_faces": int(len(va)), "degraded": bool(args.degrade),
                 "hard": bool(args.hard), "flip_tta": args.flip_tta}

    # threshold sweep: recall on unmasked vs no_mask rate on masked (correct + below-nose)
    sweep = []
    for t in np.round(np.arange(0.05, 0.96, 0.025), 3):
        sweep.append({"t": float(t), "mouth_recall": float((s[unmasked, 0] >= t).mean()),
                      "fa_masked": float((s[masked, 0] >= t).mean()),
                      "fa_nose_out": float((s[nose_out, 0] >= t).mean()),
                      "nose_recall": float((s[unmasked | nose_out, 1] >= t).mean()),
                      "nose_fp_masked": float((s[masked, 1] >= t).mean())})
    rep["sweep"] = sweep
    # on = the sweep point with the best recall - false positives (Youden's J) among those within the
    # false-alarm budget (ties: the higher threshold); off = half of it (the unsure band)
    ok = [r for r in sweep if r["fa_masked"] <= args.fa + 1e-9] or sweep[-1:]
    if args.rule == "recall":
        mouth_on = min(r["t"] for r in ok if all(q["fa_masked"] <= args.fa + 1e-9 for q in sweep if q["t"] >= r["t"]))
    else:
        mouth_on = max(ok, key=lambda r: (round(r["mouth_recall"] - r["fa_masked"], 3), r["t"]))["t"]
    nose_on = max(sweep, key=lambda r: (round(r["nose_recall"] - r["nose_fp_masked"], 3), r["t"]))["t"]
    rep["recommended"] = {"mouth_on": mouth_on, "mouth_off": round(mouth_on / 2, 2), "nose_on": nose_on,
                          "basis": f"{'lowest threshold' if args.rule == 'recall' else 'max recall - false positives'}"
                          f" with <= {args.fa:.1%} of masked validation faces called no_mask; off = on / 2"}
    cfg = MouthsConfig()  # the figures below are at the shipped defaults (config.py)
    rep["shipped"] = {k: getattr(cfg, k) for k in ("mouth_on", "mouth_off", "nose_on", "mask_on")}
    calls = np.array([verdict(float(m), float(n), float(k), cfg).value for m, n, k in s[:, :3]])
    rep["at_shipped"] = {
        "mouth_recall_unmasked": float((s[unmasked, 0] >= cfg.mouth_on).mean()),
        "no_mask_on_masked": float((s[masked, 0] >= cfg.mouth_on).mean()),
        "no_mask_on_nose_out": float((s[nose_out, 0] >= cfg.mouth_on).mean()),
        "below_nose_on_nose_out": float((calls[nose_out] == "mask_below_nose").mean()),
        "mask_on_masked": float(np.isin(calls[masked], ["mask", "mask_below_nose"]).mean()),
    }
    by_src = {}
    for name in sorted(set(src)):
        for k in ("both", "nose", "none", "rmfd"):
            sel = (src == name) & (kinds == k)
            if sel.any():
                by_src[f"{name}:{k}"] = {"n": int(sel.sum()), "mouth>=on": round(float((s[sel, 0] >= cfg.mouth_on).mean()), 4),
                                         "nose>=on": round(float((s[sel, 1] >= cfg.nose_on).mean()), 4)}
    rep["by_source"] = by_src
    # UTKFace subgroups
    groups: dict = {}
    for r, sc in zip(rows, s):
        if r["source"] != "utkface" or r["kind"] != "both":
            continue
        n = parse_note(r["note"])
        age = int(n.get("age", -1))
        keys = [f"age {lab}" for lo, hi, lab in AGE_BANDS if lo <= age <= hi]
        keys += [f"gender {GENDER.get(n.get('gender'), '?')}", f"ethnicity {RACE.get(n.get('race'), '?')}"]
        for k in keys:
            groups.setdefault(k, []).append(sc[0] >= cfg.mouth_on)
    rep["utkface_subgroups_mouth_recall"] = {k: {"n": len(v), "recall": round(float(np.mean(v)), 4)}
                                             for k, v in sorted(groups.items())}
    found = CACHE / "mtcnn_found.json"
    if found.exists():
        rep["mtcnn_found"] = json.loads(found.read_text())
    # the worst validation errors, for a look
    order = np.argsort(-s[:, 0])
    rep["worst_masked"] = [{"key": rows[i]["key"], "mouth": round(float(s[i, 0]), 3)} for i in order
                           if masked[i]][:15]
    rep["worst_unmasked"] = [{"key": rows[i]["key"], "mouth": round(float(s[i, 0]), 3)} for i in order[::-1]
                             if unmasked[i]][:15]
    print(json.dumps({k: v for k, v in rep.items() if k != "sweep"}, indent=1))
    print("t     recall  fa_mask  fa_noseout  nose_rec  nose_fp")
    for r in sweep:
        print(f"{r['t']:.2f}  {r['mouth_recall']:.3f}   {r['fa_masked']:.3f}    {r['fa_nose_out']:.3f}      "
              f"{r['nose_recall']:.3f}     {r['nose_fp_masked']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1))


if __name__ == "__main__":
    main()
