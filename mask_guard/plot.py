"""``mask-guard stats --plot``: a chart of the per-day counts (matplotlib, an optional dependency).

Top: people per day as stacked bars (masked, unmasked, and those never decided), alerts as a line.
Bottom: the masked share of decided people. Every calendar day of the range has its place, so days
without counts (the appliance off, a holiday) show as gaps rather than vanish.
"""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Optional

INSTALL_HINT = "apt install python3-matplotlib (or pip install matplotlib)"


class PlotUnavailable(RuntimeError):
    """matplotlib is missing."""


def day_range(days: dict[str, dict], n_days: int, today: Optional[date] = None) -> list[date]:
    """The last ``n_days`` calendar days, ending today or at the last day with counts if that is later."""
    end = today or date.today()
    if days:
        end = max(end, max(date.fromisoformat(d) for d in days))
    return [end - timedelta(days=i) for i in range(n_days - 1, -1, -1)]


def plot_days(days: dict[str, dict], out: Path, n_days: int = 31, title: str = "mask-guard",
              today: Optional[date] = None) -> list[date]:
    """Write the chart as PNG (or any format matplotlib knows from the suffix); returns the days drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on the Pi
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(f"stats --plot needs matplotlib ({exc}): {INSTALL_HINT}") from exc
    span = day_range(days, n_days, today)
    rows = [days.get(d.isoformat(), {}) for d in span]
    masked = [r.get("masked", 0) for r in rows]
    unmasked = [r.get("unmasked", 0) for r in rows]
    other = [max(r.get("people", 0) - m - u, 0) for r, m, u in zip(rows, masked, unmasked)]
    alerts = [r.get("alerts", 0) if r else float("nan") for r in rows]  # no counts that day: a gap
    share = [100.0 * m / (m + u) if m + u else float("nan") for m, u in zip(masked, unmasked)]

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.2), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    top.bar(span, masked, color="#2e8b57", label="masked")
    top.bar(span, unmasked, bottom=masked, color="#d9534f", label="unmasked")
    top.bar(span, other, bottom=[m + u for m, u in zip(masked, unmasked)], color="#c8c8c8", label="not decided")
    top.plot(span, alerts, color="black", marker="o", markersize=3, linewidth=1.2, label="alerts")
    top.set_ylabel("people per day")
    top.legend(loc="upper left", ncol=4, fontsize=9, frameon=False)
    top.grid(axis="y", alpha=0.3)
    top.set_title(f"{title}: {span[0].isoformat()} to {span[-1].isoformat()}")
    bottom.plot(span, share, color="#2e8b57", marker="o", markersize=3)
    bottom.set_ylim(0, 100)
    bottom.set_ylabel("masked share (%)")
    bottom.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
    fig.autofmt_xdate()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return span
