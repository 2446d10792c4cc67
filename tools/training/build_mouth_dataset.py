#!/usr/bin/env python3
"""Build the mouth/nose training set from ../shared/data (or $MASK_GUARD_DATA / --data).

Two steps, both resumable and cached under .cache/mouth/ (never in git):

  detect  run MTCNN (the project's mask_guard.faces; the reference ``mtcnn`` package only as a
          stand-in while it is missing) on every face image -> faces_<backend>.jsonl
  build   pick the face, derive labels, cut crops with mask_guard.mouths.face_crop -> dataset.npz,
          and report how the automatic boxes agree with the 68-point landmarks (landmark_check.json)

Labels per source (the brief's rules): unmasked -> mouth + nose; correctly masked -> none;
MaskedFace-Net "nose uncovered" -> nose only; "mask on chin" -> mouth + nose. udacity68 faces use
their 68-point lip (48-59) and lower-nose (29-35) points; the others use MTCNN landmarks through
a rule fitted on udacity68's training identities. Splits are by identity / source image group.

To train on your own data, add rows to SOURCES (folder, label rule, grouping) and rerun both steps.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mouth_common import (CACHE, CTX_FACTOR, CTX_SIZE, INPUT_SIZE, FaceFinder, chandrikadeb7_group,  # noqa: E402
                          data_dir, split_of)

import splits  # noqa: E402  (tools/, put on sys.path by mouth_common)
from mask_synth import MaskSynth  # noqa: E402
from scene_labels import PART_TO_SPLIT, mask_box, negatives, scene_faces  # noqa: E402

from mask_guard.boxes import iou  # noqa: E402
from mask_guard.mouths import crop_window, face_crop  # noqa: E402

# (folder under data root, label kind) ; label kinds: both, none, nose, rmfd (all faces, none)
SOURCES = [
    ("faces/maskedfacenet", None),  # kind from the label column
    ("faces/chandrikadeb7", None),
    ("faces/prajnasb", None),
    ("landmarks/udacity68", "both"),
    ("faces/rmfd", "rmfd"),
    ("faces/utkface", "both"),
    ("faces/masktypes", None),
    # real scene photos (train and dev parts only): every annotated face that MTCNN finds
    ("scenes/ilc2021", "scene"),
    ("scenes/ilc2021_more", "scene"),
    ("scenes/macwin", "scene"),
]
KIND_BY_LABEL = {
    "with_mask": "none", "without_mask": "both",
    "correct_mask__mouth_covered": "none",
    "incorrect_chin_uncovered__mouth_covered": "none",
    "incorrect_nose_uncovered__mouth_covered": "nose",
    "incorrect_mask_on_chin__mouth_and_nose_visible": "both",
    # faces/masktypes: respirators, cloth and surgical masks are masks; "worn incorrectly" mixes nose-out
    # and mouth-out faces with no word which, so it is left out of training and reported on its own
    "n95_kn95_respirator": "none", "cloth_mask": "none", "surgical_mask": "none", "no_mask": "both",
    "mask_worn_incorrectly": "skip", "0": "skip",
}
MIN_SCORE = 0.85  # a face we give mouth/nose boxes must be a confident one; masked faces take any


def rows_of(folder: str) -> list[dict]:
    root = data_dir() / folder
    if folder.startswith("scenes/"):  # test parts are never read here
        table = splits.parts()
        return [{"file": f"images/{p.name}", "label": "scene", "note": table[f"{folder}/images/{p.name}"]}
                for p in sorted((root / "images").glob("*.jpg"))
                if table.get(f"{folder}/images/{p.name}") in ("train", "dev")]
    if folder == "landmarks/udacity68":
        with open(root / "landmarks.csv") as f:
            return [dict(r, label="without_mask", note=r["split"]) for r in csv.DictReader(f)]
    with open(root / "manifest.csv") as f:
        return list(csv.DictReader(f))


def group_and_split(folder: str, row: dict) -> tuple[str, str]:
    name, note = Path(row["file"]).name, row.get("note", "")
    if folder == "landmarks/udacity68":
        person = name.rsplit("_", 1)[0]
        return "udacity68:" + person, ("val" if row["split"] == "test" else "train")
    if folder.startswith("scenes/"):
        return f"{folder}:{name}", PART_TO_SPLIT[note]
    if folder == "faces/masktypes":
        return f"{folder}:{name}", PART_TO_SPLIT[splits.masktypes_parts()[f"{folder}/{row['file']}"]]
    if folder == "faces/prajnasb" or note.startswith("same_as_prajnasb"):
        return "prajnasb-sources", "train"  # synthetic masks on these very faces: one split
    if folder == "faces/chandrikadeb7":
        g = "chandrikadeb7:" + chandrikadeb7_group(name)
    elif folder == "faces/rmfd":
        g = "rmfd:" + note
    elif folder == "faces/maskedfacenet":
        g = "ffhq:" + name.split("_")[0]
    else:
        g = f"{folder}:{name}"  # UTKFace gives no identity: one group per photo
    return g, split_of(g)


# --- step 1: faces ---------------------------------------------------------------------------------

def detect(args) -> None:
    finder = FaceFinder(backend=args.backend)
    out = CACHE / f"faces_{finder.backend}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        with open(out) as f:
            done = {json.loads(line)["key"] for line in f if line.strip()}
    print(f"backend={finder.backend} out={out} already={len(done)}", flush=True)
    t0, n = time.time(), 0
    with open(out, "a") as fout:
        for folder, _ in SOURCES:
            rows = rows_of(folder)
            if args.limit:
                rows = rows[:args.limit]
            for row in rows:
                key = f"{folder}/{row['file']}"
                if key in done:
                    continue
                done.add(key)
                img = cv2.imread(str(data_dir() / key))
                if img is None:
                    continue
                rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
                dets, pad = finder.detect(rgb), 0
                if len(dets) == 0 and folder != "faces/rmfd" and not folder.startswith("scenes/"):
                    # tight face photos: MTCNN needs some frame around a face that fills the picture
                    pad = int(0.25 * max(rgb.shape[:2]))
                    dets = finder.detect(cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
                    if len(dets):
                        dets.boxes -= pad
                        dets.landmarks -= pad
                rec = {"key": key, "w": rgb.shape[1], "h": rgb.shape[0], "pad": pad, "faces": [
                    {"box": [round(float(v), 2) for v in b], "score": round(float(s), 4),
                     "lm": [[round(float(v), 2) for v in p] for p in lm]}
                    for b, s, lm in zip(dets.boxes, dets.scores, dets.landmarks)]}
                fout.write(json.dumps(rec) + "\n")
                n += 1
                if n % 200 == 0:
                    fout.flush()
                    print(f"{n} images {time.time() - t0:.0f}s ({key})", flush=True)
    print(f"done {n} images in {time.time() - t0:.0f}s", flush=True)


# --- step 2: labels --------------------------------------------------------------------------------

def box68(pts: np.ndarray, which: str) -> np.ndarray:
    """Mouth (outer lips 48-59) or lower nose (29-35: lower bridge, tip, nostrils) box, 8% margin."""
    idx = range(48, 60) if which == "mouth" else range(29, 36)
    p = pts[list(idx)]
    x1, y1 = p.min(0)
    x2, y2 = p.max(0)
    mx, my = 0.08 * (x2 - x1), 0.08 * (y2 - y1)
    return np.array([x1 - mx, y1 - my, x2 + mx, y2 + my], np.float32)


def lm_frame(lm: np.ndarray):
    """Anchor points and scale of MTCNN landmarks: mouth centre, nose, mouth width, eye-mouth distance."""
    eyes, nose, ml, mr = (lm[0] + lm[1]) / 2, lm[2], lm[3], lm[4]
    mc = (ml + mr) / 2
    return mc, nose, float(np.linalg.norm(mr - ml)), max(float(np.linalg.norm(mc - eyes)), 1.0)


def fit_rule(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    """Median offsets/ratios from MTCNN landmarks to the 68-point boxes (training identities only)."""
    m, n = [], []
    for lm, pts in pairs:
        mc, nose, wm, d = lm_frame(lm)
        bm, bn = box68(pts, "mouth"), box68(pts, "nose")
        m.append([((bm[0] + bm[2]) / 2 - mc[0]) / d, ((bm[1] + bm[3]) / 2 - mc[1]) / d,
                  (bm[2] - bm[0]) / max(wm, 1.0), (bm[3] - bm[1]) / d])
        n.append([((bn[0] + bn[2]) / 2 - nose[0]) / d, ((bn[1] + bn[3]) / 2 - nose[1]) / d,
                  (bn[2] - bn[0]) / d, (bn[3] - bn[1]) / d])
    med = lambda a: [round(float(v), 4) for v in np.median(np.array(a), 0)]  # noqa: E731
    return {"mouth": med(m), "nose": med(n)}


def rule_boxes(lm: np.ndarray, rule: dict) -> tuple[np.ndarray, np.ndarray]:
    mc, nose, wm, d = lm_frame(lm)
    ox, oy, kw, kh = rule["mouth"]
    cx, cy, w, h = mc[0] + ox * d, mc[1] + oy * d, kw * max(wm, 1.0), kh * d
    mouth = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
    ox, oy, kw, kh = rule["nose"]
    cx, cy, w, h = nose[0] + ox * d, nose[1] + oy * d, kw * d, kh * d
    return mouth, np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)


def pick_face(faces: list[dict], kind: str) -> list[dict]:
    if kind == "rmfd":
        return [f for f in faces if f["score"] >= MIN_SCORE and f["box"][2] - f["box"][0] >= 16]
    good = [f for f in faces if f["score"] >= (MIN_SCORE if kind != "none" else 0.0)]
    if not good:
        return []
    return [max(good, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]))]


def to_crop(box_img: np.ndarray, window: tuple[int, int, int]) -> np.ndarray:
    x0, y0, side = window
    return (box_img - np.array([x0, y0, x0, y0], np.float32)) / side


SYNTH_RATE = {"faces/utkface": 0.5, "faces/chandrikadeb7": 0.8, "landmarks/udacity68": 0.25,
              "faces/masktypes": 0.8, "scenes/ilc2021": 0.8, "scenes/ilc2021_more": 0.8, "scenes/macwin": 0.8}


def build(args) -> None:
    src = CACHE / f"faces_{args.backend}.jsonl"
    recs = {}
    with open(src) as f:
        for line in f:
            r = json.loads(line)
            recs[r["key"]] = r
    print(f"{len(recs)} detection records from {src}")
    meta_rows = {f"{folder}/{row['file']}": (folder, kind, row) for folder, kind in SOURCES for row in rows_of(folder)}
    # no training face may be a near-twin of an image we report on (dev/test parts)
    twins = splits.held_out_twins([k for k, (f, _, r) in meta_rows.items()
                                   if not f.startswith("scenes/") and group_and_split(f, r)[1] == "train"])
    for k in twins:
        del meta_rows[k]
    print(f"{len(twins)} training images dropped as near-twins of dev/test images", flush=True)

    # 1. fit the landmark rule on udacity68 training identities, check it on the test identities
    pairs = {"train": [], "val": []}
    for key, (folder, kind, row) in meta_rows.items():
        if folder != "landmarks/udacity68" or key not in recs:
            continue
        faces = pick_face(recs[key]["faces"], "both")
        if not faces:
            continue
        pts = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(68)], np.float32)
        pairs[group_and_split(folder, row)[1]].append((np.array(faces[0]["lm"], np.float32), pts))
    rule = fit_rule(pairs["train"])
    check = {"rule": rule, "backend": args.backend}
    for split, pr in pairs.items():
        ious = {"mouth": [], "nose": []}
        for lm, pts in pr:
            bm, bn = rule_boxes(lm, rule)
            ious["mouth"].append(float(iou(bm, box68(pts, "mouth"))[0, 0]))
            ious["nose"].append(float(iou(bn, box68(pts, "nose"))[0, 0]))
        check[split] = {k: {"n": len(v), "mean_iou": round(float(np.mean(v)), 3),
                            "median_iou": round(float(np.median(v)), 3),
                            "iou>=0.5": round(float(np.mean(np.array(v) >= 0.5)), 3),
                            "iou>=0.3": round(float(np.mean(np.array(v) >= 0.3)), 3)} for k, v in ious.items()}
    print(json.dumps(check, indent=1))
    (CACHE / "landmark_check.json").write_text(json.dumps(check, indent=1))

    # 2. crops and labels: [mouth, nose, mask] boxes per face (NaN row = not visible / not there)
    synth = MaskSynth(data_dir() / "mask_templates", prints=args.prints)
    rng = np.random.default_rng(args.seed)
    ctx, exact, lab_ctx, lab_exact, meta = [], [], [], [], []
    found = {}

    def emit(rgb, box, labels, key, fi, folder, row, kind, group, split, source=None, note=None):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        big = np.array([cx, cy, cx, cy]) + (box - np.array([cx, cy, cx, cy])) * CTX_FACTOR
        w_exact, w_ctx = crop_window(box), crop_window(big)
        exact.append(face_crop(rgb, box, INPUT_SIZE))
        ctx.append(face_crop(rgb, big, CTX_SIZE))
        le, lc = np.full((3, 4), np.nan, np.float32), np.full((3, 4), np.nan, np.float32)
        for ci, b in enumerate(labels):
            if b is not None:
                le[ci], lc[ci] = to_crop(b, w_exact), to_crop(b, w_ctx)
        lab_exact.append(le)
        lab_ctx.append(lc)
        meta.append({"key": key, "face": fi, "source": source or folder.split("/")[-1], "label": row["label"],
                     "kind": kind, "group": group, "split": split, "note": note if note is not None else row.get("note", ""),
                     "face_w": round(float(box[2] - box[0]), 1)})

    for key, (folder, kind0, row) in meta_rows.items():
        rec = recs.get(key)
        stat = found.setdefault(f"{folder}:{row['label']}", [0, 0])
        stat[1] += 1
        kind0 = kind0 or KIND_BY_LABEL.get(row["label"], "skip")
        if rec is None or kind0 == "skip":
            continue
        if kind0 == "scene":
            chosen = scene_faces(folder, key, rec["faces"])
        else:
            chosen = [(f, kind0) for f in pick_face(rec["faces"], kind0)]
        if not chosen:
            continue
        stat[0] += 1
        rgb = cv2.cvtColor(cv2.imread(str(data_dir() / key)), cv2.COLOR_BGR2RGB)
        group, split = group_and_split(folder, row)
        for fi, (face, kind) in enumerate(chosen):
            box = np.array(face["box"], np.float32)
            lm = np.array(face["lm"], np.float32)
            mouth = nose = mask = None
            if kind in ("both", "nose"):
                if folder == "landmarks/udacity68":
                    pts = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(68)], np.float32)
                    mouth, nose = box68(pts, "mouth"), box68(pts, "nose")
                else:
                    mouth, nose = rule_boxes(lm, rule)
                if kind == "nose":
                    mouth, mask = None, mask_box(box, lm, below_nose=True)
            elif kind in ("none", "rmfd"):
                mask = mask_box(box, lm)
            emit(rgb, box, (mouth, nose, mask), key, fi, folder, row, kind, group, split)
            # a synthetic mask on a real unmasked face (the same face's split, so identities stay apart)
            if kind == "both" and folder in SYNTH_RATE and rng.random() < SYNTH_RATE[folder]:
                got = synth.apply(rng, rgb, lm)
                if got is None:
                    continue
                srgb, sbox, worn, family = got
                m2, n2 = rule_boxes(lm, rule) if folder != "landmarks/udacity68" else (mouth, nose)
                labels = {"correct": (None, None, sbox), "below_nose": (None, n2, sbox), "chin": (m2, n2, None)}[worn]
                skind = {"correct": "none", "below_nose": "nose", "chin": "both"}[worn]
                emit(srgb, box, labels, key, fi, folder, row, skind, group, split, source="synth",
                     note=f"{family}:{worn}:{folder.split('/')[-1]}")
        if len(meta) % 1000 < 3:
            print(f"{len(meta)} crops", flush=True)
    rgb, read_key = None, None
    for key, box, split, note in sorted(negatives(recs, rng), key=lambda n: n[0]):  # read each scene once
        if key != read_key:
            rgb, read_key = cv2.cvtColor(cv2.imread(str(data_dir() / key)), cv2.COLOR_BGR2RGB), key
        folder = "/".join(key.split("/")[:2])
        emit(rgb, box, (None, None, None), key, 0, folder, {"label": "background"}, "bg", f"{folder}:{Path(key).name}",
             split, note=note)
    out = CACHE / "dataset.npz"
    np.savez(out, ctx=np.stack(ctx), exact=np.stack(exact), lab_ctx=np.stack(lab_ctx), lab_exact=np.stack(lab_exact))
    (CACHE / "dataset_meta.json").write_text(json.dumps({"backend": args.backend, "rule": rule, "rows": meta}))
    rate = {k: {"found": v[0], "images": v[1], "rate": round(v[0] / max(v[1], 1), 3)} for k, v in found.items()}
    (CACHE / "mtcnn_found.json").write_text(json.dumps(rate, indent=1))
    print(json.dumps(rate, indent=1))
    for split in ("train", "val"):
        sel = [m for m in meta if m["split"] == split]
        kinds = {k: sum(1 for m in sel if m["kind"] == k) for k in ("both", "nose", "none", "rmfd", "bg")}
        kinds["synth"] = sum(1 for m in sel if m["source"] == "synth")
        print(split, len(sel), kinds)
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["detect", "build"])
    ap.add_argument("--backend", default="auto", help="detect: auto|project|mtcnn; build: which faces_*.jsonl")
    ap.add_argument("--limit", type=int, default=0, help="detect: images per source (0 = all)")
    ap.add_argument("--seed", type=int, default=0, help="build: which faces get a synthetic mask, and how")
    ap.add_argument("--prints", type=float, default=0.0, help="build: share of light synthetic masks printed over "
                    "the mouth (mask_synth.MaskSynth; 0: the draws of the shipped dataset)")
    args = ap.parse_args()
    if args.step == "build" and args.backend == "auto":
        args.backend = "project" if (CACHE / "faces_project.jsonl").exists() else "mtcnn"
    detect(args) if args.step == "detect" else build(args)


if __name__ == "__main__":
    main()
