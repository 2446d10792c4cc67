"""Training tools: a fresh checkout can fine-tune the shipped mouth model, and the mask synthesiser's
prints are an option that changes nothing while off."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "training"))
sys.path.insert(0, str(ROOT / "tools"))


def test_the_shipped_mouth_model_s_weights_are_recovered_from_its_float32_tflite(tmp_path):
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "training" / "recover_mouth.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    line = next(ln for ln in run.stdout.splitlines() if ln.startswith("max |score difference|"))
    assert float(line.split(":")[-1]) < 1e-4  # the Keras model computes what the .tflite computes
    assert (tmp_path / "best.weights.h5").stat().st_size > 100_000
    assert (tmp_path / "anchors.json").exists()


def _synth(prints: float):
    from datapaths import data_dir
    from mask_synth import MaskSynth

    templates = data_dir() / "mask_templates"
    if not templates.exists():
        pytest.skip(f"{templates} missing (set MASK_GUARD_DATA)")
    return MaskSynth(templates, prints=prints)


def test_a_print_is_a_visible_mark_where_the_mouth_is_under_the_mask():
    from mask_synth import MaskSynth

    for seed in range(20):
        white = np.zeros((60, 100, 4), np.uint8)
        white[..., :3], white[..., 3] = 245, 255
        printed = white.copy()
        MaskSynth._mouth_print(np.random.default_rng(seed), printed)
        diff = np.abs(printed[..., :3].astype(int) - white[..., :3].astype(int)).sum(axis=2)
        assert diff.max() > 30, seed
        ys, xs = np.nonzero(diff > 0)
        assert 0.25 < xs.mean() / 100 < 0.75 and 0.2 < ys.mean() / 60 < 0.75, seed


def test_prints_off_draws_no_print(monkeypatch):
    from mask_synth import FAMILIES, MaskSynth

    synth = _synth(0.0)

    def forbidden(*_):
        raise AssertionError("a print was drawn with prints=0")

    monkeypatch.setattr(MaskSynth, "_mouth_print", staticmethod(forbidden))
    for seed in range(30):
        for family in FAMILIES:
            tpl = synth._pick(np.random.default_rng(seed), family, 0.0)
            synth._colour(np.random.default_rng(seed), tpl, family)
    on = _synth(1.0)
    drawn = []
    monkeypatch.setattr(MaskSynth, "_mouth_print", staticmethod(lambda rng, rgba: drawn.append(1)))
    for seed in range(30):
        on._colour(np.random.default_rng(seed), on._pick(np.random.default_rng(seed), "surgical", 0.0), "surgical")
    assert drawn  # and with prints on, light surgical masks get them
