"""Walk-through clips for the video tests: where they come from and how the daemon is run on them.

Not a conftest.py on purpose (other modules own theirs): test modules import this by name. The clip maker
and the run harness live in tools/ (tools/clips.py, tools/latency.py) so the command-line tools and the tests
run the very same code.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import appliance_helpers as h  # noqa: E402
import clips  # noqa: E402
import latency  # noqa: E402

def need_clip_inputs() -> None:
    """Skip (with the reason) when the stills, the face index or the trained mouth model are missing."""
    h.need_data()
    if not clips.INDEX_PATH.exists():
        pytest.skip(f"{clips.INDEX_PATH} missing: run tools/make_clips.py index")


def need_mouth_model() -> None:
    """The model the daemon will load (resolved like the daemon does: $MASK_GUARD_MODELS, then models/)."""
    from mask_guard.config import resource_path

    path = resource_path("mouth_nose.tflite", "models")
    if not path.exists():
        pytest.skip(f"{path} does not exist yet (the mouth model is being trained)")


def clip_cache(tmp_path_factory) -> Path:
    """The user's clip cache (outside the repo; clips are keyed by scenario, seed and code version), or a
    fresh temporary folder with MASK_GUARD_CLIP_CACHE=0 (renders every clip anew)."""
    if os.environ.get("MASK_GUARD_CLIP_CACHE", "1") == "0":
        return tmp_path_factory.mktemp("clips")
    return clips.cache_dir()


class ClipRuns:
    """Runs the daemon once per clip per test session and hands the same result to every test asking."""

    def __init__(self, cache: Path, work: Path, seed: int = 0):
        self.cache, self.work, self.seed = cache, work, seed
        self._runs: dict[str, tuple] = {}

    def __call__(self, name: str):
        if name not in self._runs:
            clip = clips.make_clip(name, seed=self.seed, out_dir=self.cache)
            result = latency.run_on_clip(clip, self.work / name)
            assert result.returncode == 0, f"daemon exited {result.returncode} on {name}:\n{result.log[-3000:]}"
            self._runs[name] = (clip, result)
        return self._runs[name]
