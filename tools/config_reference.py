#!/usr/bin/env python3
"""Print the configuration reference as a Markdown table (README's table is this output)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mask_guard.config import reference  # noqa: E402


def table() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for key, default, doc in reference():
        shown = f"`{default!r}`" if not isinstance(default, str) else f"`\"{default}\"`"
        lines.append(f"| `{key}` | {shown} | {doc.replace('|', '/')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
