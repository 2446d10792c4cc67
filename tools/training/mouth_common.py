"""Shared bits of the mouth/nose tools: data paths, the face detector used to build data, splits."""
from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/: the one data lookup
from datapaths import data_dir  # noqa: E402,F401
from mask_guard.config import FacesConfig, PROJECT_ROOT
from mask_guard.detections import Detections

CACHE = PROJECT_ROOT / ".cache" / "mouth"
MODELS = PROJECT_ROOT / "models"
INPUT_SIZE = 96  # model input (px); crops are cut at this size by mask_guard.mouths.face_crop
CTX_FACTOR = 1.5  # training crops keep this much extra context so geometric augmentation has real pixels
CTX_SIZE = int(round(INPUT_SIZE * CTX_FACTOR))
VAL_PERCENT = 15


def split_of(group: str) -> str:
    """Deterministic train/val split of an identity/source group (never random per image)."""
    h = int(hashlib.sha1(group.encode()).hexdigest()[:8], 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def chandrikadeb7_group(name: str) -> str:
    """Identity key: '0_0_chenxiang_0005.jpg' -> 'chenxiang'; 'x copy 3.jpg' / 'x (2).jpg' -> 'x'."""
    stem = Path(name).stem
    m = re.match(r"^\d+_\d+_([A-Za-z]+)_\d+", stem)
    if m:
        return "name:" + m.group(1).lower()
    stem = re.sub(r"\s*(copy\s*\d*|\(\d+\))\s*$", "", stem)
    return "img:" + stem


class FaceFinder:
    """The project's MTCNN (mask_guard.faces) when present, else the reference ``mtcnn`` package.

    Both run the same network weights with the same thresholds, minimum size and pyramid step.
    """

    def __init__(self, cfg: FacesConfig | None = None, backend: str = "auto"):
        self.cfg = cfg or FacesConfig()
        self.backend = backend
        if backend in ("auto", "project"):
            try:
                from mask_guard.config import Config, models_dir
                from mask_guard.faces import FaceDetector

                full = Config()
                full.faces = self.cfg
                self._det = FaceDetector(self.cfg, models_dir(full))
                self.backend = "project"
                return
            except Exception:  # noqa: BLE001 - faces.py not there yet: fall back when allowed
                if backend == "project":
                    raise
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        from mtcnn import MTCNN

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self._det = MTCNN()
        self.backend = "mtcnn"

    def detect(self, image_rgb: np.ndarray) -> Detections:
        if self.backend == "project":
            return self._det.detect(image_rgb)
        c = self.cfg
        res = self._det.detect_faces(
            image_rgb, min_face_size=c.min_face_px, scale_factor=c.scale_factor, threshold_pnet=c.thresholds[0],
            threshold_rnet=c.thresholds[1], threshold_onet=c.thresholds[2])
        if not res:
            return Detections.empty(with_landmarks=True)
        boxes, scores, lms = [], [], []
        for r in res:
            x, y, w, h = r["box"]
            boxes.append([x, y, x + w, y + h])
            scores.append(r["confidence"])
            k = r["keypoints"]
            lms.append([k["left_eye"], k["right_eye"], k["nose"], k["mouth_left"], k["mouth_right"]])
        return Detections(np.array(boxes), np.array(scores), landmarks=np.array(lms, np.float32))


EXCLUDE = CACHE / "exclude.json"


def load_meta() -> list[dict]:
    """Dataset rows; rows listed in exclude.json (tools/training/mouth_clean.py) get kind 'excluded'."""
    import json

    rows = json.loads((CACHE / "dataset_meta.json").read_text())["rows"]
    if EXCLUDE.exists():
        drop = {(k, f) for k, f in json.loads(EXCLUDE.read_text())["rows"]}
        for r in rows:
            if (r["key"], r["face"]) in drop:
                r["kind"] = "excluded"
    return rows
