"""mask_guard.mouths: the face crop, the verdict rule, and the shipped TFLite models on real faces.

Real images from the shared data folder ($MASK_GUARD_DATA, default ../shared/data); real models from
models/. Keras-vs-TFLite parity needs TensorFlow and lives in tools/training/export_mouth.py.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance_helpers import data_dir
from mask_guard.boxes import nms
from mask_guard.config import MouthsConfig, config_from_dict, resource_path
from mask_guard.detections import Detections, Verdict
from mask_guard.mouths import CROP_MARGIN, MouthDetector, crop_to_image, crop_window, face_crop, verdict
from mask_guard.tflite import ModelError

ROOT = Path(__file__).resolve().parent.parent
DATA = data_dir()
MODELS = ROOT / "models"
VARIANTS = ["mouth_nose.tflite", "mouth_nose_float32.tflite", "mouth_nose_int8.tflite"]

# A handful of real faces from the validation split (identities never trained on): unmasked UTKFace
# portraits of several ages, and masked chandrikadeb7 photos.
UNMASKED = ["faces/utkface/without_mask/101_0_0_20170112213500903.jpg.chip.jpg",
            "faces/utkface/without_mask/25_1_0_20170103175643807.jpg.chip.jpg",
            "faces/utkface/without_mask/30_0_0_20170117130636837.jpg.chip.jpg",
            "faces/utkface/without_mask/40_1_0_20170116232924702.jpg.chip.jpg"]
MASKED = ["faces/chandrikadeb7/with_mask/0129.jpg", "faces/chandrikadeb7/with_mask/0_0_3 copy 32.jpg",
          "faces/chandrikadeb7/with_mask/1_0_1 copy 6.jpg", "faces/chandrikadeb7/with_mask/black20.jpg"]


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (set MASK_GUARD_DATA to the shared data folder)")
    return path


def rgb(rel: str) -> np.ndarray:
    img = cv2.imread(str(need(DATA / rel)))
    assert img is not None, rel
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def faces_of():
    """The project's MTCNN, as the daemon runs it: the crops must come from its boxes."""
    from mask_guard.config import Config, models_dir
    from mask_guard.faces import FaceDetector

    cfg = Config()
    det = FaceDetector(cfg.faces, models_dir(cfg))

    def run(image: np.ndarray) -> Detections:
        d = det.detect(image)
        if len(d) == 0:  # tight portrait: give MTCNN a frame as the dataset builder does
            pad = image.shape[0] // 4
            d = det.detect(cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
            d.boxes -= pad
        assert len(d) >= 1
        return d[int(np.argmax(d.widths))]

    return run


def model(name: str) -> MouthDetector:
    return MouthDetector(MouthsConfig(), need(MODELS / name))


# --- crop ----------------------------------------------------------------------------------------

def test_face_crop_is_a_square_around_the_box_centre_with_the_margin():
    x0, y0, side = crop_window([100, 50, 140, 110])  # 40 x 60 box
    assert side == round(60 * CROP_MARGIN)
    assert abs((x0 + side / 2) - 120) <= 0.5 and abs((y0 + side / 2) - 80) <= 0.5


def test_face_crop_pads_outside_the_frame_with_black_and_keeps_inside_pixels():
    img = np.full((100, 100, 3), 200, np.uint8)
    crop = face_crop(img, [-20, -20, 20, 20], 50)  # box centred on the top-left corner
    assert crop.shape == (50, 50, 3) and crop.dtype == np.uint8
    assert crop[:20, :20].max() == 0  # outside: black
    assert crop[-5:, -5:].min() == 200  # inside: the image


def test_crop_to_image_inverts_the_crop_mapping():
    box = np.array([30.0, 40.0, 90.0, 120.0])
    x0, y0, side = crop_window(box)
    back = crop_to_image(np.array([[0, 0, 96, 96]]), box, 96)
    np.testing.assert_allclose(back[0], [x0, y0, x0 + side, y0 + side], atol=1e-4)


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.6, 0.9, 0.5]), 0.45)
    assert list(keep) == [1, 2]


# --- verdict -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mouth,nose,mask,expected", [
    (0.9, 0.0, 0.0, Verdict.NO_MASK),  # mouth seen: nose and mask do not matter
    (0.9, 0.9, 0.9, Verdict.NO_MASK),
    (0.0, 0.0, 0.9, Verdict.MASK),  # mouth hidden, a mask seen
    (0.0, 0.9, 0.9, Verdict.MASK_BELOW_NOSE),  # ... and the nose seen above it
    (0.0, 0.0, 0.0, Verdict.UNSURE),  # neither a mouth nor a mask: a false face, a chin -> no vote
    (0.0, 0.9, 0.0, Verdict.UNSURE),  # a nose alone is no evidence of a mask
    ("between", 0.0, 0.9, Verdict.UNSURE),  # mouth between off and on
])
def test_verdict_rule_table(mouth, nose, mask, expected):
    cfg = MouthsConfig()
    m = (cfg.mouth_off + cfg.mouth_on) / 2 if mouth == "between" else mouth
    if mouth == "between" and cfg.mouth_off == cfg.mouth_on:
        pytest.skip("no unsure band for the mouth in the defaults")
    assert verdict(m, nose, mask, cfg) is expected


def test_verdict_thresholds_are_inclusive_at_on_and_exclusive_at_off():
    cfg = MouthsConfig(mouth_on=0.6, mouth_off=0.3, nose_on=0.5, mask_on=0.4)
    assert verdict(0.6, 0.0, 0.9, cfg) is Verdict.NO_MASK
    assert verdict(0.3, 0.0, 0.9, cfg) is Verdict.UNSURE
    assert verdict(0.29, 0.5, 0.4, cfg) is Verdict.MASK_BELOW_NOSE
    assert verdict(0.29, 0.49, 0.4, cfg) is Verdict.MASK
    assert verdict(0.29, 0.0, 0.39, cfg) is Verdict.UNSURE


def test_default_thresholds_pass_the_config_cross_checks():
    cfg = config_from_dict({"mouths": {}})
    assert cfg.mouths.mouth_off <= cfg.mouths.mouth_on


# --- models --------------------------------------------------------------------------------------

def test_default_model_name_resolves_to_the_bundled_file():
    p = resource_path(MouthsConfig().model, "models")
    assert p == MODELS / "mouth_nose.tflite" and p.is_file()


@pytest.mark.parametrize("name", VARIANTS)
def test_model_loads_and_reports_its_input_size(name):
    det = model(name)
    assert det.input_size == 96
    assert det._in["dtype"] == (np.float32 if name == "mouth_nose_float32.tflite" else np.int8)


def test_default_model_is_the_int8_one():
    # int8 was chosen after measuring: same validation figures, ~3x faster per face (MODEL_CARD.md)
    assert (MODELS / "mouth_nose.tflite").read_bytes() == need(MODELS / "mouth_nose_int8.tflite").read_bytes()


def test_int8_model_is_full_integer():
    det = model("mouth_nose_int8.tflite")
    assert det._in["dtype"] == np.int8 and det._score_out["dtype"] == np.int8
    assert det._in["quantization"][0] > 0


def test_missing_or_corrupt_model_raises_model_error_naming_the_file(tmp_path):
    with pytest.raises(ModelError, match="nope.tflite"):
        MouthDetector(MouthsConfig(), tmp_path / "nope.tflite")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="bad.tflite"):
        MouthDetector(MouthsConfig(), bad)


@pytest.mark.parametrize("name", ["mouth_nose_float32.tflite", "mouth_nose_int8.tflite"])
def test_unmasked_faces_score_a_mouth_and_masked_faces_do_not(name, faces_of):
    det, cfg = model(name), MouthsConfig()
    for rel in UNMASKED:
        img = rgb(rel)
        s = det.score_faces(img, faces_of(img))
        assert s.shape == (1, 3)
        assert s[0, 0] >= cfg.mouth_on, f"{rel}: mouth {s[0, 0]:.2f}"
        assert s[0, 2] < cfg.mask_on, f"{rel}: mask {s[0, 2]:.2f} on a bare face"
    for rel in MASKED:
        img = rgb(rel)
        s = det.score_faces(img, faces_of(img))
        assert s[0, 0] < cfg.mouth_off, f"{rel}: mouth {s[0, 0]:.2f}"
        assert s[0, 2] >= cfg.mask_on, f"{rel}: mask {s[0, 2]:.2f}: a worn mask must be seen"


def test_detect_crop_finds_the_mouth_below_the_nose_on_a_real_face(faces_of):
    det = model("mouth_nose.tflite")
    img = rgb(UNMASKED[0])
    face = faces_of(img)
    d = det.detect_crop(face_crop(img, face.boxes[0], det.input_size))
    assert set(d.class_ids.tolist()) >= {0, 1}
    assert (d.boxes >= -2).all() and (d.boxes <= det.input_size + 2).all()  # crop pixels
    mouth = d.boxes[d.class_ids == 0][0]
    nose = d.boxes[d.class_ids == 1][0]
    assert (mouth[1] + mouth[3]) / 2 > (nose[1] + nose[3]) / 2  # image y grows downwards
    # ... and in frame pixels the mouth lies between MTCNN's mouth corners
    lm = face.landmarks[0]
    m_img = crop_to_image(mouth[None], face.boxes[0], det.input_size)[0]
    assert m_img[0] - 5 <= lm[3, 0] and lm[4, 0] <= m_img[2] + 5


def test_score_faces_batched_equals_one_by_one(faces_of):
    det = model("mouth_nose.tflite")
    imgs = [rgb(r) for r in (UNMASKED[0], MASKED[0])]
    # two faces side by side in one frame, one unmasked and one masked
    h = max(i.shape[0] for i in imgs)
    frame = np.hstack([cv2.copyMakeBorder(i, 0, h - i.shape[0], 0, 0, cv2.BORDER_CONSTANT) for i in imgs])
    f0, f1 = faces_of(imgs[0]), faces_of(imgs[1])
    f1.boxes += np.array([imgs[0].shape[1], 0, imgs[0].shape[1], 0], np.float32)
    both = Detections(np.concatenate([f0.boxes, f1.boxes]), np.concatenate([f0.scores, f1.scores]))
    batched = det.score_faces(frame, both)
    single = np.concatenate([det.score_faces(frame, both[i]) for i in range(2)])
    np.testing.assert_allclose(batched, single, atol=1e-6)
    assert batched[0, 0] > batched[1, 0]


def test_no_faces_gives_an_empty_score_table():
    det = model("mouth_nose.tflite")
    s = det.score_faces(np.zeros((50, 50, 3), np.uint8), Detections.empty())
    assert s.shape == (0, 3)


# --- flip test-time augmentation (mouths.flip_tta) ------------------------------------------------

@pytest.mark.parametrize("mode", ["mean", "max"])
def test_flip_tta_gives_the_same_verdicts_on_the_test_faces(mode, faces_of):
    plain = MouthDetector(MouthsConfig(flip_tta="off"), MODELS / "mouth_nose.tflite")
    cfg = MouthsConfig(flip_tta=mode)
    tta = MouthDetector(cfg, MODELS / "mouth_nose.tflite")
    for rel in UNMASKED + MASKED:
        img = rgb(rel)
        face = faces_of(img)
        want = Verdict.NO_MASK if rel in UNMASKED else Verdict.MASK
        assert verdict(*tta.score_faces(img, face)[0], cfg) is want, rel
        assert verdict(*plain.score_faces(img, face)[0], cfg) is want, rel


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_flip_tta_scores_are_symmetric_for_a_mirrored_crop_and_combine_both_views(mode, faces_of):
    plain = MouthDetector(MouthsConfig(flip_tta="off"), MODELS / "mouth_nose.tflite")
    tta = MouthDetector(MouthsConfig(flip_tta=mode), MODELS / "mouth_nose.tflite")
    img = rgb(UNMASKED[1])
    crop = face_crop(img, faces_of(img).boxes[0], tta.input_size)
    mirror = crop[:, ::-1]
    s, s_mirror = tta.score_crops(crop[None]), tta.score_crops(mirror[None])
    np.testing.assert_allclose(s, s_mirror, atol=1e-6)
    a, b = plain.score_crops(crop[None]), plain.score_crops(mirror[None])
    want = (a + b) / 2 if mode == "mean" else np.maximum(a, b)
    np.testing.assert_allclose(s, want, atol=1e-6)


def test_flip_tta_off_is_the_plain_score_and_bad_modes_are_refused(faces_of):
    from mask_guard.config import ConfigError

    assert MouthsConfig().flip_tta in ("off", "mean", "max")
    off = MouthDetector(MouthsConfig(flip_tta="off"), MODELS / "mouth_nose.tflite")
    img = rgb(MASKED[0])
    crop = face_crop(img, faces_of(img).boxes[0], off.input_size)
    np.testing.assert_allclose(off.score_crops(crop[None])[:, :off.num_classes], off.raw(crop[None])[1].max(axis=1),
                               atol=1e-6)
    assert off.score_crops(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 3)
    with pytest.raises(ConfigError, match="flip_tta"):
        config_from_dict({"mouths": {"flip_tta": "sometimes"}})


# --- held-out mask types: respirators and cloth are masks (positive evidence), bare faces are not ------

def _masktypes_test_part(label: str, n: int) -> list[str]:
    """The first ``n`` photos of one type in THE split's test part (tools/splits.py; never trained on)."""
    import csv
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import splits

    part = splits.masktypes_parts()
    with open(need(DATA / "faces" / "masktypes" / "manifest.csv")) as fh:
        rows = [r["file"] for r in csv.DictReader(fh) if r["label"] == label]
    return [f"faces/masktypes/{f}" for f in rows if part.get(f"faces/masktypes/{f}") == "test"][:n]


def _verdicts_of(photos: list[str], n: int) -> list[Verdict]:
    """Verdicts of the first ``n`` photos in which MTCNN finds a face (framed as tools/evaluate_faces.py does:
    a grey border of 40 %, since these are tight face pictures); the largest face is the photo's."""
    from mask_guard.config import Config, models_dir
    from mask_guard.faces import FaceDetector

    cfg = Config()
    finder, det = FaceDetector(cfg.faces, models_dir(cfg)), model("mouth_nose.tflite")
    calls = []
    for rel in photos:
        img = rgb(rel)
        pad = int(0.4 * max(img.shape[:2]))
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        d = finder.detect(img)
        if len(d) == 0:
            continue
        s = det.score_faces(img, d[int(np.argmax(d.widths))])[0]
        calls.append(verdict(float(s[0]), float(s[1]), float(s[2]), cfg.mouths))
        if len(calls) == n:
            break
    assert len(calls) == n, f"MTCNN found only {len(calls)} faces in {len(photos)} photos"
    return calls


@pytest.mark.parametrize("label", ["n95_kn95_respirator", "cloth_mask", "surgical_mask"])
def test_held_out_masks_of_every_type_are_seen_as_masks_and_not_scolded(label):
    calls = _verdicts_of(_masktypes_test_part(label, 60), 30)
    assert calls.count(Verdict.NO_MASK) <= 1, f"{label}: {calls.count(Verdict.NO_MASK)} of 30 called no_mask"
    masked = sum(c in (Verdict.MASK, Verdict.MASK_BELOW_NOSE) for c in calls)
    assert masked >= 27, f"{label}: a mask seen on only {masked} of 30"


def test_held_out_bare_faces_are_called_no_mask():
    calls = _verdicts_of(_masktypes_test_part("no_mask", 60), 30)
    assert calls.count(Verdict.NO_MASK) >= 29, f"only {calls.count(Verdict.NO_MASK)} of 30 bare faces called no_mask"
