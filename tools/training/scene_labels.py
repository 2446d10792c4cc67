"""Labels from the real scene photos for the mouth/nose/mask dataset (tools/training/build_mouth_dataset.py).

* :func:`scene_faces`: the annotated faces MTCNN found, with their class (the audited label fixes applied);
* :func:`mask_box`: the covering of a real masked face, from MTCNN's box and landmarks;
* :func:`negatives`: true non-faces, face-sized boxes touching no annotation and no detection, and
  :func:`below_faces`: the same on the neck and chest under a face.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

import splits  # tools/ (put on sys.path by mouth_common)
from datapaths import data_dir
from evaluate import match, read_voc  # the one VOC reader and matcher

from mask_guard.boxes import iou

PART_TO_SPLIT = {"train": "train", "dev": "val", "test": "test"}  # scene/masktypes parts -> dataset splits


def _label_fixes() -> dict:
    out: dict = {}
    with open(Path(__file__).resolve().parent / "ilc2021_label_fixes.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            box = [float(r[c]) for c in ("xmin", "ymin", "xmax", "ymax")]
            out.setdefault(("scenes/ilc2021", r["image"]), []).append((r["labelled"], box, r["corrected"]))
    return out


LABEL_FIXES = _label_fixes()
SCENE_KIND = {"without_mask": "both", "with_mask": "none", "with_incorrect_mask": "skip"}


def mask_box(box: np.ndarray, lm: np.ndarray, below_nose: bool = False) -> np.ndarray:
    """The covering over the lower face of a real masked face: from the nose bridge (or just under the nose)
    to under the chin, cheek to cheek, from MTCNN's box and 5 landmarks (axis-aligned)."""
    eye, nose, mc = (lm[0] + lm[1]) / 2, lm[2], (lm[3] + lm[4]) / 2
    d = max(float(mc[1] - eye[1]), 1.0)
    top = nose[1] + 0.35 * (mc[1] - nose[1]) if below_nose else eye[1] + 0.35 * d
    bot = max(float(box[3]), mc[1] + 0.6 * d)
    w = box[2] - box[0]
    return np.array([box[0] + 0.06 * w, top, box[2] - 0.06 * w, bot], np.float32)


def scene_faces(folder: str, key: str, faces: list[dict]) -> list[tuple[dict, str]]:
    """A scene's MTCNN faces with the annotated class they match (IoU >= 0.4, one to one). Detections that
    match no annotated face are left out: a look at them showed most are real faces the annotators skipped
    (crowds), so they cannot teach "nothing here"; see :func:`negatives` for true non-faces."""
    xml = data_dir() / folder / "annotations" / (Path(key).stem + ".xml")
    gt = read_voc(xml) if xml.exists() else []
    for k, (name, b) in enumerate(gt):  # the audited annotation errors (tools/training/ilc2021_label_fixes.csv)
        for fx in LABEL_FIXES.get((folder, Path(key).name), []):
            if fx[0] == name and np.abs(np.asarray(fx[1]) - b).max() <= 2.0:
                gt[k] = (fx[2], b)
    if not faces:
        return []
    det = np.array([f["box"] for f in faces], np.float32).reshape(-1, 4)
    gtb = np.array([b for _, b in gt], np.float32).reshape(-1, 4)
    out = []
    m = match(gtb, det, 0.4) if len(gt) else {}
    for gi, dj in m.items():
        kind = SCENE_KIND.get(gt[gi][0], "skip")
        if kind != "skip":
            out.append((faces[dj], kind))
    return out


def _scene_train_dev(recs: dict):
    """(key, record, part, annotated boxes, annotated + detected boxes) of each train/dev scene photo."""
    for key, rec in sorted(recs.items()):
        if not key.startswith("scenes/"):
            continue
        folder = "/".join(key.split("/")[:2])
        part = splits.parts().get(key)
        if part not in ("train", "dev"):
            continue
        xml = data_dir() / folder / "annotations" / (Path(key).stem + ".xml")
        gt = [b for _, b in read_voc(xml)] if xml.exists() else []
        taken = np.array(gt + [np.array(f["box"], np.float32) for f in rec["faces"]], np.float32).reshape(-1, 4)
        yield key, rec, part, gt, taken


def negatives(recs: dict, rng: np.random.Generator, per_image: int = 3) -> list[tuple[str, np.ndarray, str, str]]:
    """True non-faces (kind 'bg': no mouth, nose or mask): face-sized boxes in the scene photos of the train
    and dev parts that touch no annotated face and no MTCNN detection (walls, foliage, clothes, signs)."""
    out = []
    for key, rec, part, gt, taken in _scene_train_dev(recs):
        w, h = rec["w"], rec["h"]
        found = 0
        for _ in range(per_image * 4):
            side = float(rng.uniform(20, min(160, 0.5 * min(w, h))))
            x, y = float(rng.uniform(0, w - side)), float(rng.uniform(0, h - side))
            box = np.array([x, y, x + side * rng.uniform(0.8, 1.0), y + side], np.float32)
            if len(taken) and iou(box, taken, method="min").max() > 0.05:
                continue
            out.append((key, box, PART_TO_SPLIT[part], "non-face"))
            taken = np.concatenate([taken, box[None]])
            found += 1
            if found >= per_image:
                break
    return out + below_faces(recs, np.random.default_rng(BELOW_SEED))


BELOW_SEED = 20261202  # its own generator, so adding these left the other crops of the dataset unchanged


def below_faces(recs: dict, rng: np.random.Generator, per_image: int = 4) -> list[tuple[str, np.ndarray, str, str]]:
    """Non-faces of the kind MTCNN mistakes for faces under a real one: face-sized boxes on the neck,
    collar and chest (necklaces, prints, a scarf) below annotated faces >= 24 px of the train and dev parts.
    Box: 0.6-1.1 face widths, its top 0.35-1.0 face heights under the chin (so the crop's margin stays off the
    face), centre within 0.3 face widths of the face's; inside the photo, touching no annotation and no
    detection. A real clip had such a box decided a masked person (a phantom) from the model's mask score."""
    out = []
    for key, rec, part, gt, taken in _scene_train_dev(recs):
        found = 0
        for b in sorted(gt, key=lambda b: -(b[2] - b[0])):
            fw, fh = float(b[2] - b[0]), float(b[3] - b[1])
            if fw < 24:
                continue
            side = fw * rng.uniform(0.6, 1.1)
            cx = (b[0] + b[2]) / 2 + fw * rng.uniform(-0.3, 0.3)
            top = b[3] + fh * rng.uniform(0.35, 1.0)
            box = np.array([cx - side / 2, top, cx + side / 2, top + side * rng.uniform(1.0, 1.15)], np.float32)
            if box[0] < 0 or box[2] > rec["w"] or box[3] > rec["h"]:
                continue
            if len(taken) and iou(box, taken, method="min").max() > 0.05:
                continue
            out.append((key, box, PART_TO_SPLIT[part], "below-face"))
            taken = np.concatenate([taken, box[None]])
            found += 1
            if found >= per_image:
                break
    return out
