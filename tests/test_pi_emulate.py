"""tools/pi-emulate.sh, the arm64 emulation check (run by hand, not in CI): its scripts parse, its options
behave, and the comparison it reports from tells equal outputs from different ones."""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "pi-emulate.sh"
EMULATE = ROOT / "tools" / "emulate"
SCRIPTS = [TOOL, EMULATE / "boot-checks.sh", EMULATE / "system.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "warning", str(script)], check=True)


def test_help_names_every_stage_and_says_it_is_no_speed_test():
    out = subprocess.run(["bash", str(TOOL), "--help"], capture_output=True, text=True, check=True).stdout
    for stage in ("host", "rootfs", "install", "checks", "boot", "system"):
        assert f"\n  {stage} " in out, stage
    assert "says nothing about a Raspberry Pi's speed" in out


@pytest.mark.parametrize("args, message", [
    (["--bogus"], "unknown argument --bogus"),
    (["--stage", "nope"], "unknown stage nope"),
    (["--cache", str(ROOT / "cache")], "must be outside the repository"),
])
def test_bad_arguments_are_refused_before_anything_runs(args, message):
    run = subprocess.run(["bash", str(TOOL), *args], capture_output=True, text=True)
    assert run.returncode == 2
    assert message in run.stderr


def run_compare(tmp_path, mode, a, b):
    pa, pb = tmp_path / "a", tmp_path / "b"
    pa.write_text(a)
    pb.write_text(b)
    return subprocess.run([sys.executable, str(EMULATE / "compare.py"), mode, str(pa), str(pb)],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def models_report():
    pytest.importorskip("ai_edge_litert")
    out = subprocess.run([sys.executable, str(EMULATE / "check_models.py"), str(ROOT / "models")], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_every_model_loads_and_runs_here(models_report):
    tflites = sorted(p.name for p in (ROOT / "models").glob("*.tflite"))
    assert sorted(models_report["models"]) == tflites
    assert all("error" not in m and m["outputs"] for m in models_report["models"].values())
    assert set(models_report["loaders"].values()) == {"ok"}


def test_models_compare_equal_and_catch_a_changed_output(tmp_path, models_report):
    text = json.dumps(models_report)
    same = run_compare(tmp_path, "models", text, text)
    assert same.returncode == 0, same.stdout
    changed = copy.deepcopy(models_report)
    out = changed["models"]["mtcnn_onet.tflite"]["outputs"][0]
    out["values"][0] += 0.01
    diff = run_compare(tmp_path, "models", text, json.dumps(changed))
    assert diff.returncode == 1
    assert "mtcnn_onet.tflite" in diff.stdout


def test_detect_compare_ignores_timing_and_nothing_else(tmp_path):
    line = {"image": "1-a.jpg", "width": 640, "height": 360, "ms": 667.6,
            "faces": [{"box": [185.5, 67.7, 244.5, 132.7], "score": 0.9996, "verdict": "mask"}]}
    slower = dict(line, ms=51234.0)
    other = copy.deepcopy(line)
    other["faces"][0]["verdict"] = "no_mask"
    ok = run_compare(tmp_path, "detect", json.dumps(line) + "\n", json.dumps(slower) + "\n")
    assert ok.returncode == 0 and "identical to x86, timing aside" in ok.stdout
    bad = run_compare(tmp_path, "detect", json.dumps(line) + "\n", json.dumps(other) + "\n")
    assert bad.returncode == 1 and "0 of 1 images identical" in bad.stdout
