"""How the service is doing: the camera, the systemd watchdog, the detector's work and the CPU it costs.

The daemon's frame loop calls ``frame_arrived`` / ``no_frame`` (they read and set the daemon's
``last_frame_at``, ``camera_down_since``, ``state``) and counts every frame in a ``Usage``; STATUS=,
``mask-guard status`` and the hourly journal line report from these.

The behaviour towards systemd (stated once; README, deploy/README.md and the unit's comments agree):

* **A camera missing at start** does not fail the unit. Once no frame has come for ``STALL_S`` the
  service says ``READY=1`` with ``STATUS=... waiting for camera <name> (<why>)``, keeps reopening it
  with doubling backoff (``source.retry_initial_s`` .. ``source.retry_max_s``) and keeps feeding the
  watchdog for as long as it waits: a Pi installed before its camera is plugged in is a running
  service that starts detecting the moment the camera delivers. One log line when the wait starts,
  one when the camera comes (the sources add one per camera state change, never one per attempt).
* **A camera lost after it delivered** is fed to the watchdog for ``service.camera_lost_restart_s``,
  then not, so systemd restarts the service (a fresh camera stack); if the camera is still missing
  then, the new process waits for it as above.
* Frames that arrive feed the watchdog whether or not the motion gate lets the detector run: an idle
  detector is not a hung one, and a camera that stops delivering is noticed by its frames, not by faces.
"""
from __future__ import annotations

import logging
import time

log = logging.getLogger("mask_guard.daemon")  # the daemon's lines, from the daemon's logger

STALL_S = 5.0  # no frame for this long: the camera counts as not delivering (and a waiting service is READY)


class Usage:
    """Frames seen, frames the face detector ran on, and this process's CPU time, since ``start``."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self._cpu0 = time.process_time()  # all threads: grabber, TFLite pools, the loop
        self.frames = self.detected = 0

    def count(self, detected: bool) -> None:
        self.frames += 1
        self.detected += int(detected)

    @property
    def detected_pct(self) -> float:
        return 100.0 * self.detected / self.frames if self.frames else 0.0

    def cpu_pct(self, now: float) -> float:
        """CPU time per wall time since ``start``, in % of one core (200 % = both cores of a Pi 4 pair)."""
        return 100.0 * (time.process_time() - self._cpu0) / max(now - self.start, 1e-9)


class Hour(Usage):
    """What happened since the last hourly summary."""

    def __init__(self) -> None:
        super().__init__()
        self.people = self.masked = self.unmasked = self.alerts = self.errors = 0
        self.camera_down_s = 0.0


def detector_state(why: str) -> str:
    """``active`` while something moves or someone is tracked, ``idle`` while the gate lets the detector
    rest (its checks every max_idle_s included), ``always on`` without the gate."""
    return "always on" if why == "off" else "active" if why in ("motion", "track", "first") else "idle"


def detector_text(d) -> str:
    """``idle, detector on 3% of frames, CPU 4% of a core`` (the last status interval); "" before a frame."""
    if not d.frames:
        return ""
    return f"{d.detector}, detector on {d.usage_pct[0]:.0f}% of frames, CPU {d.usage_pct[1]:.0f}% of a core"


def camera_text(d) -> str:
    if d.last_frame_at is None:
        err = d.source.stats().get("last_error") if d.source is not None else ""
        name = d.source.name if d.source is not None else "the camera"
        return f"waiting for camera {name}" + (f" ({err})" if err else "")
    return "camera LOST" if d.camera_down_since is not None else "camera ok"


def frame_arrived(d, now: float) -> None:
    if d.camera_down_since is not None:
        down = now - d.camera_down_since
        d._hour.camera_down_s += now - max(d.camera_down_since, d._hour.start)
        if d.last_frame_at is None:
            log.info("camera ok: first frame after %.1f s of waiting for it", now - d.started_at)
        else:
            log.info("camera: frames flowing again after %.1f s", down)
        d.camera_down_since = None
    elif d.last_frame_at is None:
        log.info("camera ok: first frame after %.2f s", now - d.started_at)
    d.last_frame_at = now
    d.state = "running"


def no_frame(d, now: float) -> None:
    """No frame this time: note a stalled camera; say READY while waiting for one; feed the watchdog
    while waiting for a first frame, and after a loss only within ``service.camera_lost_restart_s``."""
    never = d.last_frame_at is None
    since = d.started_at if never else d.last_frame_at
    stall = min(STALL_S, d.cfg.service.camera_lost_restart_s / 2)
    if now - since >= stall and d.camera_down_since is None:
        d.camera_down_since = since
        st = d.source.stats()
        why = f" ({st['last_error']})" if st.get("last_error") else ""
        if never:
            src = d.cfg.source
            log.warning("camera: no frame for %.0f s from %s%s; the service is up and waiting for it "
                        "(retrying every %g..%g s)", now - since, d.source.name, why, src.retry_initial_s,
                        src.retry_max_s)
            d.state = "waiting_for_camera"
        else:
            log.warning("camera: no frame for %.0f s from %s%s", now - since, d.source.name, why)
            d.state = "camera_lost"
        if not d.notifier.ready_sent:  # systemd (and the installer) see a started service that waits
            d.notifier.ready(d._status_text())
    if never or now - since < d.cfg.service.camera_lost_restart_s:
        d.notifier.watchdog()
        d._watchdog_given_up = False
    elif not d._watchdog_given_up:
        d._watchdog_given_up = True
        log.error("camera: no frame for %.0f s; no longer feeding the watchdog so systemd restarts "
                  "the service", now - since)


def summary(d, now: float) -> None:
    """The hourly journal line; then a new hour (a camera still down counts into it from its start)."""
    h = d._hour
    down = h.camera_down_s + (now - max(d.camera_down_since, h.start) if d.camera_down_since else 0.0)
    log.info("last hour: %d people, %d decided masked, %d unmasked, %d alerts; %d frames (%.1f fps), "
             "detector on %.0f%% of them, CPU %.0f%% of a core; camera down %.0f s, %d failed frames",
             h.people, h.masked, h.unmasked, h.alerts, h.frames, h.frames / max(now - h.start, 1e-9),
             h.detected_pct, h.cpu_pct(now), down, h.errors)
    d._hour = Hour()
