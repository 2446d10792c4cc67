"""The ``mask-guard`` command line: detect's stable JSON lines, stats, status, snapshot without a service."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import appliance_helpers as h
from mask_guard import cli

ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mask_guard.cli", *args], capture_output=True, text=True,
                          cwd=str(ROOT), env=env, timeout=timeout)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    """Real faces in nested folders, plus files detect must skip or report."""
    h.need_data()
    root = tmp_path_factory.mktemp("images")
    faces = h.face_images(3)
    (root / "b" / "deeper").mkdir(parents=True)
    cv2.imwrite(str(root / "b" / "deeper" / "face2.png"), faces[1])
    cv2.imwrite(str(root / "a_face.jpg"), faces[0])
    cv2.imwrite(str(root / "b" / "face3.JPEG"), faces[2])
    scene = np.full((240, 320, 3), 90, np.uint8)
    scene[60:180, 100:220] = cv2.resize(faces[0], (120, 120))
    cv2.imwrite(str(root / "b" / "scene.bmp"), scene)
    (root / "b" / "notes.txt").write_text("not an image")  # skipped: not an image extension
    (root / "broken.jpg").write_bytes(b"\xff\xd8 truncated")  # reported as an error line
    return root


def test_detect_json_prints_exactly_one_line_per_image_in_sorted_recursive_order(image_tree):
    h.need_mouth_model()
    missing = image_tree / "missing.jpg"
    r = run_cli("detect", "--json", str(image_tree), str(missing))
    lines = r.stdout.splitlines()
    names = [json.loads(line)["image"] for line in lines]
    expected = sorted(str(p) for p in image_tree.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp"})
    assert names == expected + [str(missing)], r.stdout
    assert r.returncode == 1, "an unreadable image makes the exit code 1, after every image was done"
    by_name = {Path(n).name: json.loads(line) for n, line in zip(names, lines)}
    assert by_name["broken.jpg"] == {"image": str(image_tree / "broken.jpg"), "error": "not a readable image"}
    assert by_name["missing.jpg"]["error"] == "no such file"
    for name in ("a_face.jpg", "face2.png", "face3.JPEG", "scene.bmp"):
        rec = by_name[name]
        assert list(rec) == ["image", "width", "height", "ms", "faces"], rec
        assert rec["ms"] > 0 and len(rec["faces"]) >= 1, rec
        for f in rec["faces"]:
            assert list(f) == ["box", "score", "mouth", "nose", "mask", "verdict"]
            x1, y1, x2, y2 = f["box"]
            assert 0 <= x1 < x2 <= rec["width"] and 0 <= y1 < y2 <= rec["height"]
            assert 0 <= f["mouth"] <= 1 and 0 <= f["nose"] <= 1 and 0 <= f["mask"] <= 1 and f["score"] > 0.9
            assert f["verdict"] in {"no_mask", "mask_below_nose", "mask", "unsure"}
    scene = by_name["scene.bmp"]
    assert (scene["width"], scene["height"]) == (320, 240)
    (face,) = scene["faces"]
    assert face["box"][0] >= 80 and face["box"][2] <= 240, "the face is found where it was pasted"


def test_detect_loads_the_models_once_for_all_images(image_tree, monkeypatch, capsys):
    h.need_mouth_model()
    from mask_guard import pipeline

    made = []
    original = pipeline.Analyzer.__init__

    def counting_init(self, *a, **k):
        made.append(1)
        original(self, *a, **k)

    monkeypatch.setattr(pipeline.Analyzer, "__init__", counting_init)
    assert cli.main(["detect", "--json", str(image_tree / "a_face.jpg"), str(image_tree / "b")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 4 and made == [1]  # a_face + 3 under b/


def test_detect_without_json_prints_a_readable_summary(image_tree):
    h.need_mouth_model()
    r = run_cli("detect", str(image_tree / "a_face.jpg"), str(image_tree / "broken.jpg"))
    assert r.returncode == 1
    assert "a_face.jpg: 200x200, 1 face" in r.stdout
    assert "broken.jpg: ERROR not a readable image" in r.stdout
    assert "1 images, 1 faces" in r.stdout and "1 errors" in r.stdout
    assert not any(line.startswith("{") for line in r.stdout.splitlines())


def test_detect_with_a_missing_or_corrupt_model_exits_66_naming_the_file(tmp_path):
    img = tmp_path / "x.jpg"
    cv2.imwrite(str(img), np.zeros((64, 64, 3), np.uint8))
    gone = tmp_path / "gone.tflite"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mouths:\n  model: {gone}\n")
    r = run_cli("detect", "--json", "--config", str(cfg), str(img))
    assert r.returncode == 66 and r.stdout == ""
    assert f"model file not found: {gone}" in r.stderr
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(os.urandom(2048))
    cfg.write_text(f"mouths:\n  model: {bad}\n")
    r = run_cli("detect", "--config", str(cfg), str(img))
    assert r.returncode == 66 and str(bad) in r.stderr and "not a valid TFLite model" in r.stderr


def test_detect_with_an_invalid_config_exits_78_with_the_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("faces:\n  min_face_px: tiny\n")
    r = run_cli("detect", "--config", str(cfg), str(tmp_path))
    assert r.returncode == 78 and "faces.min_face_px: 'tiny' is str, expected an integer" in r.stderr


def test_status_without_a_service_exits_3_with_a_clear_message(tmp_path):
    sock = tmp_path / "none.sock"
    r = run_cli("status", "--socket", str(sock))
    assert r.returncode == 3
    assert "not running" in r.stderr and str(sock) in r.stderr
    stale = tmp_path / "stale.sock"  # a socket file left by a killed run: nobody listens
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    assert run_cli("status", "--json", "--socket", str(stale)).returncode == 3


def test_stats_reads_the_state_file_and_falls_back_to_its_backup(tmp_path, capsys):
    state = tmp_path / "counts.json"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"counts:\n  state_file: {state}\n")
    assert cli.main(["stats", "--config", str(cfg)]) == 0
    assert "no counts yet" in capsys.readouterr().out
    days = {"2024-05-03": {"people": 4, "masked": 3, "unmasked": 1, "alerts": 1},
            "2024-05-04": {"people": 2, "masked": 1, "unmasked": 0, "alerts": 0}}
    state.write_text(json.dumps({"version": 1, "days": days}))
    assert cli.main(["stats", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == {"state_file": str(state), "days": days}
    assert cli.main(["stats", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "2024-05-03         4         3         1         1" in out and "total              6" in out
    shutil.copy(state, str(state) + ".bak")
    state.write_text("{ torn write")  # a power cut mid-write: the backup answers
    assert cli.main(["stats", "--json", "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)["days"] == days
    assert state.read_text() == "{ torn write", "stats only reads: repairing is the service's job"


def test_snapshot_without_a_service_opens_the_source_itself(tmp_path):
    h.need_mouth_model()
    clip = h.write_clip(tmp_path / "clip.avi", h.make_frames(5))
    out = tmp_path / "snap.jpg"
    r = run_cli("snapshot", str(out), "--socket", str(tmp_path / "none.sock"), "--source", str(clip))
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (240, 320, 3)
    assert "1 faces" in r.stdout
    r = run_cli("snapshot", str(tmp_path / "x.jpg"), "--service-only", "--socket", str(tmp_path / "none.sock"))
    assert r.returncode == 3 and not (tmp_path / "x.jpg").exists()


def test_help_lists_every_command():
    r = run_cli("--help")
    for cmd in ("run", "check-config", "detect", "snapshot", "stats", "status"):
        assert cmd in r.stdout
    assert run_cli("frobnicate").returncode == 2
