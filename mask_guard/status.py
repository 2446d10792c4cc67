"""What ``mask-guard status`` and ``snapshot`` get from the running service (built in the control thread).

Both read the daemon's state without locks: each value is one attribute read (atomic in CPython),
``Counts`` is thread-safe, and the latest (frame, result) pair is replaced, never modified.
"""
from __future__ import annotations

import os
import time
from datetime import datetime
from typing import Optional

from . import __version__


def status_report(d) -> dict:
    """The JSON the control socket answers to ``status`` (``d``: the running ``Daemon``)."""
    now = time.monotonic()
    src = d.source.stats() if d.source is not None else {}
    la = getattr(d.outcomes, "last_alert", None)
    last_alert = None
    if la:
        ago = now - la["timestamp"]
        last_alert = {"track_id": la["track_id"], "frame": la["frame"], "ago_s": round(ago, 1),
                      "time": datetime.fromtimestamp(time.time() - ago).isoformat(timespec="seconds")}
    latest = d._latest
    alerter = getattr(d.outcomes, "alerter", None)
    player = getattr(alerter, "player", None)
    audio = "disabled" if alerter is None else "no player" if player is None else \
        "ok" if player.available else f"unavailable: {player.error}"
    return {
        "ok": True, "version": __version__, "pid": os.getpid(), "state": d.state,
        "uptime_s": round(now - d.started_at, 1), "config": d.cfg.path,
        "fps": round(d.fps, 2), "frame_ms": round(d.frame_ms, 1), "frames": d.frames,
        "camera": {
            "source": src.get("name"), "ok": d.state == "running", "frames": src.get("delivered", 0),
            "last_frame_age_s": None if d.last_frame_at is None else round(now - d.last_frame_at, 2),
            "reconnects": src.get("reconnects", 0), "dropped": src.get("dropped", 0),
            "rejected": src.get("rejected", 0), "last_error": src.get("last_error", ""),
            "down_s": None if d.camera_down_since is None else round(now - d.camera_down_since, 1),
        },
        # The motion gate's effect: idle/active, and what the detector and the whole process cost lately.
        "detector": {"state": d.detector, "motion_gate": d.cfg.motion.enabled,
                     "frames_detected_pct": round(d.usage_pct[0], 1), "cpu_pct": round(d.usage_pct[1], 1),
                     "interval_s": d.cfg.service.status_interval_s},
        "today": d.today(),
        "people_in_view": 0 if latest is None else latest[1].people_in_view,  # decided people (README)
        "last_alert": last_alert, "audio": audio, "rss_mb": round(rss_mb(), 1),
        "outputs": getattr(d.outcomes, "status", dict)(),  # MQTT, GPIO, alert command (never a password)
    }


def status_line(fps: float, today: dict, camera: str, detector: str = "") -> str:
    """The ``STATUS=`` text systemctl status shows; ``detector``: health.detector_text."""
    return (f"{fps:.1f} fps; today {today.get('people', 0)} people, {today.get('masked', 0)} masked, "
            f"{today.get('unmasked', 0)} unmasked, {today.get('alerts', 0)} alerts; {camera}"
            + (f"; {detector}" if detector else ""))


def snapshot_reply(latest: Optional[tuple], fps: float, raw: bool = False, quality: int = 90):
    """(reply, JPEG bytes) of the latest frame, annotated unless ``raw``. Made only when asked; never stored."""
    import cv2

    if latest is None:
        return {"ok": False, "error": "no frame processed yet (camera not delivering?)"}, None
    frame, result = latest
    if raw:
        image = frame.image
    else:
        from .draw import annotate

        image = annotate(frame.image, result, fps=fps)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return {"ok": False, "error": "JPEG encoding failed"}, None
    h, w = image.shape[:2]
    return {"ok": True, "content_type": "image/jpeg", "width": w, "height": h, "frame": frame.index,
            "age_s": round(time.monotonic() - frame.timestamp, 2)}, buf.tobytes()


def rss_mb() -> float:
    """This process's resident memory in MB (soak runs watch it grow, or not)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0
