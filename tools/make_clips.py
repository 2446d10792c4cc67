"""Compose walk-through test clips from still face images, or (re)build the face index they use.

Usage:
  python tools/make_clips.py list
  python tools/make_clips.py make [NAME ...] [--seed 0] [--out DIR] [--data DIR] [--preview]
  python tools/make_clips.py index [--data DIR] [--out tools/clip_faces.json]   # needs the mtcnn package

``make`` writes ``NAME.avi`` (MJPG) and ``NAME.json`` (ground truth) into the clip cache
(default ``$XDG_CACHE_HOME/mask-guard/clips``, never inside the repository: the frames are made of
non-commercial images). ``--preview`` also writes a contact sheet ``NAME.preview.jpg`` next to them.

``index`` runs the reference ``mtcnn`` package (TensorFlow) once over the stills and stores, per
usable image, the face box and landmarks in ``tools/clip_faces.json`` (file names and numbers only, no
pixels). Clips are then composed without TensorFlow and without the detector under test. Run it
again when pointing the tools at other data.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clips  # noqa: E402  (tools/clips.py)

# How many stills of each pool the index examines (seeded sample; the index keeps the usable ones).
INDEX_SAMPLE = {"utkface": 260, "maskedfacenet": 289, "pairs": 300, "chandrikadeb7_with_mask": 350}


def _one_face(det, shape, min_w: float, min_conf: float, need_margin: float):
    """The single confident face of a still, or None when there are none, several, or it touches the edge."""
    faces = [d for d in det if d["confidence"] >= 0.5]
    if len(faces) != 1 or faces[0]["confidence"] < min_conf:
        return None
    x, y, w, h = faces[0]["box"]
    H, W = shape[:2]
    if w < min_w or x < need_margin * w or y < 0 or x + w > W - need_margin * w or y + h > H:
        return None
    kp = faces[0]["keypoints"]
    lms = [kp[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
    return {"box": [float(x), float(y), float(x + w), float(y + h)],
            "landmarks": [[float(a), float(b)] for a, b in lms],
            "confidence": round(float(faces[0]["confidence"]), 4)}


def build_index(data: Path, out: Path, seed: int = 0) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    from mtcnn import MTCNN

    det = MTCNN()
    rng = random.Random(seed)
    entries: list[dict] = []

    def detect(rel: str):
        img = cv2.imread(str(data / rel))
        if img is None:
            return None, None
        return det.detect_faces(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)), img.shape

    def add(rel: str, pool: str, source: str, min_conf: float, **extra):
        d, shape = detect(rel)
        if d is None:
            return None
        f = _one_face(d, shape, 60, min_conf, 0.0)
        if f is None:
            return None
        e = {"file": rel, "pool": pool, "source": source, "size": [shape[1], shape[0]], **f, **extra}
        entries.append(e)
        return e

    t0 = time.time()
    utk = sorted(p.name for p in (data / "faces/utkface/without_mask").glob("*.jpg"))
    for name in rng.sample(utk, min(INDEX_SAMPLE["utkface"], len(utk))):
        add(f"faces/utkface/without_mask/{name}", "unmasked", "utkface", 0.95)
    mfn = sorted(p.name for p in (data / "faces/maskedfacenet/correct_mask__mouth_covered").glob("*.jpg"))
    for name in mfn[: INDEX_SAMPLE["maskedfacenet"]]:
        add(f"faces/maskedfacenet/correct_mask__mouth_covered/{name}", "masked", "maskedfacenet", 0.9)
    cwm = sorted(p.name for p in (data / "faces/chandrikadeb7/with_mask").glob("*.jpg"))
    for name in rng.sample(cwm, min(INDEX_SAMPLE["chandrikadeb7_with_mask"], len(cwm))):
        add(f"faces/chandrikadeb7/with_mask/{name}", "masked", "chandrikadeb7", 0.95)
    print(f"singles done in {time.time() - t0:.0f}s", file=sys.stderr)

    # Pairs: prajnasb pasted a mask onto chandrikadeb7/without_mask/N.jpg to make prajnasb/with_mask/N-with-mask.jpg
    # (manifest note 'same_as_prajnasb_without_mask'). Same identity, same pixels above the mask: the ideal
    # "puts a mask on" person. Keep a pair only when the shapes agree and the upper face is unchanged.
    with open(data / "faces/chandrikadeb7/manifest.csv", newline="") as fh:
        linked = [r["file"] for r in csv.DictReader(fh) if "prajnasb" in (r.get("note") or "")]
    rng.shuffle(linked)
    n_pairs = 0
    for rel in linked:
        if n_pairs >= INDEX_SAMPLE["pairs"]:
            break
        num = Path(rel).stem
        masked_rel = f"faces/prajnasb/with_mask/{num}-with-mask.jpg"
        a, b = cv2.imread(str(data / "faces/chandrikadeb7" / rel)), cv2.imread(str(data / masked_rel))
        if a is None or b is None or a.shape != b.shape:
            continue
        n_pairs += 1
        d, shape = detect(f"faces/chandrikadeb7/{rel}")
        f = _one_face(d, shape, 60, 0.97, 0.0)
        if f is None:
            continue
        x1, y1, x2, y2 = (int(v) for v in f["box"])
        ym = int((f["landmarks"][0][1] + f["landmarks"][2][1]) / 2)  # between eyes and nose
        upper = np.abs(a[y1:ym, x1:x2].astype(int) - b[y1:ym, x1:x2].astype(int)).mean()
        lower = np.abs(a[ym:y2, x1:x2].astype(int) - b[ym:y2, x1:x2].astype(int)).mean()
        if upper > 6 or lower < 20:  # not the same photo, or no mask drawn over the mouth
            continue
        entries.append({"file": f"faces/chandrikadeb7/{rel}", "pool": "pair", "source": "chandrikadeb7+prajnasb",
                        "size": [shape[1], shape[0]], **f, "masked_file": masked_rel})
    counts = {p: sum(e["pool"] == p for e in entries) for p in ("unmasked", "masked", "pair")}
    index = {"version": 1, "detector": "mtcnn package 1.0.0 (defaults)", "seed": seed,
             "counts": counts, "faces": entries}
    out.write_text(json.dumps(index, indent=0))
    print(f"index: {counts} in {time.time() - t0:.0f}s -> {out}", file=sys.stderr)
    return index


import numpy as np  # noqa: E402  (used by build_index; after sys.path setup on purpose)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the clip scenarios")
    mk = sub.add_parser("make", help="render clips into the cache")
    mk.add_argument("names", nargs="*", help="scenarios (default: all)")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--out", type=Path, default=None, help="output folder (default: the clip cache)")
    mk.add_argument("--data", type=Path, default=None, help="data folder (default: $MASK_GUARD_DATA or ../shared/data)")
    mk.add_argument("--preview", action="store_true", help="also write a contact sheet per clip")
    ix = sub.add_parser("index", help="rebuild tools/clip_faces.json with the mtcnn package")
    ix.add_argument("--data", type=Path, default=None)
    ix.add_argument("--out", type=Path, default=clips.INDEX_PATH)
    ix.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    if a.cmd == "list":
        for name, fn in clips.SCENARIOS.items():
            print(f"{name:20s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    data = a.data or clips.data_dir()
    if not data.exists():
        print(f"data folder not found: {data} (set MASK_GUARD_DATA)", file=sys.stderr)
        return 2
    if a.cmd == "index":
        build_index(data, a.out, a.seed)
        return 0
    names = a.names or list(clips.SCENARIOS)
    for name in names:
        t0 = time.perf_counter()
        clip = clips.make_clip(name, seed=a.seed, out_dir=a.out, data=data)
        msg = f"{clip.video}  ({clip.truth['frames']} frames, {len(clip.truth['people'])} people, " \
              f"{time.perf_counter() - t0:.1f}s)"
        if a.preview:
            msg += f"  preview: {clips.contact_sheet(clip)}"
        print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
