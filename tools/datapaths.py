"""Where the face and scene data live, for every tool and test: one lookup."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """$MASK_GUARD_DATA, else ../shared/data next to the repository (the project's convention)."""
    return Path(os.environ.get("MASK_GUARD_DATA") or (ROOT.parent / "shared" / "data")).resolve()
