"""Shared bits of the MTCNN tools: scene images of one split part with their VOC faces, the detector."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

TOOLS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOOLS))  # tools/: the one data lookup, THE splits, the VOC reader
import splits  # noqa: E402
from datapaths import data_dir  # noqa: E402
from evaluate import read_voc  # noqa: E402
from mask_guard.config import PROJECT_ROOT, FacesConfig  # noqa: E402
from mask_guard.faces import FaceDetector  # noqa: E402

CACHE = PROJECT_ROOT / ".cache" / "mtcnn"
MODELS = PROJECT_ROOT / "models"
CLASSES = ("with_mask", "without_mask", "with_incorrect_mask")
SIZES = (("all", 0), (">=24", 24), (">=40", 40))


def scene_images(part: str, sets: tuple[str, ...] = splits.SCENE_SETS) -> list[tuple[str, Path, list]]:
    """[(set, image path, [(class, box x1y1x2y2)])] of one split part, in a fixed order."""
    table = splits.parts()
    out = []
    for rel in sorted(n for n, p in table.items() if p == part):
        s = rel.split("/images/")[0]
        if s not in sets:
            continue
        img = data_dir() / rel
        xml = img.parent.parent / "annotations" / (img.stem + ".xml")
        if xml.exists():
            out.append((s, img, read_voc(xml)))
    return out


def rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def detector(weights: str = "stock", model_dir: Path = MODELS, **overrides) -> FaceDetector:
    """The runtime detector at the daemon's default config (one thread), with ``weights``' nets."""
    cfg = FacesConfig(num_threads=1)
    if hasattr(cfg, "weights"):
        cfg.weights = weights
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return FaceDetector(cfg, Path(model_dir))
