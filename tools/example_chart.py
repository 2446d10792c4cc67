"""Make tools/stats-example.png, the chart README shows: ``mask-guard stats --plot``'s drawing on SYNTHETIC counts.

The counts are made up here (seeded, so the picture repeats): four weeks of an office door, quieter at the
weekend, a closed Monday (no counts), the masked share drifting up. No appliance counted them.

  python tools/example_chart.py [OUT.png]
"""
from __future__ import annotations

import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mask_guard.plot import plot_days  # noqa: E402  -- what `mask-guard stats --plot` draws with

END = date(2026, 11, 27)  # fixed, so the picture does not change with the day it is made


def synthetic_days(seed: int = 7, n: int = 28) -> dict:
    rng = np.random.default_rng(seed)
    days = {}
    for i in range(n):
        d = END - timedelta(days=n - 1 - i)
        if d == END - timedelta(days=11):
            continue  # closed: no counts at all
        people = int(rng.poisson(14 if d.weekday() >= 5 else 55))
        share = min(0.55 + 0.012 * i + rng.normal(0, 0.05), 0.97)
        undecided = int(rng.binomial(people, 0.06))
        masked = int(rng.binomial(people - undecided, share))
        unmasked = people - undecided - masked
        alerts = unmasked - int(rng.binomial(unmasked, 0.1))  # some during quiet hours or the cooldown
        days[d.isoformat()] = {"people": people, "masked": masked, "unmasked": unmasked, "alerts": alerts}
    return days


def main(argv=None) -> int:
    out = Path((argv or sys.argv[1:] or [str(ROOT / "tools" / "stats-example.png")])[0])
    days = synthetic_days()
    span = plot_days(days, out, 28, title="mask-guard (synthetic example counts)", today=END)
    print(f"{out}: {len(span)} days, {len(days)} with (synthetic) counts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
