"""The service: camera -> Pipeline -> Outcomes, with the systemd protocol and the control socket.

One frame loop in the main thread takes the newest frame only after the previous one is finished.
Signals are handled by a thread (signals.py) even while the main thread is inside a TFLite
``invoke()``: a SIGTERM always gets ``STOPPING=1`` and an exit within ``STOP_GRACE_S`` (counts
saved), mid-frame too.

Watchdog: ``WATCHDOG=1`` comes only from the frame loop: while frames arrive (the motion gate resting
or not), while waiting for a camera that never delivered yet (READY=1 says so), and while a lost camera
has been down less than ``service.camera_lost_restart_s``. A hung model or a camera lost for longer lets
systemd's watchdog restart the service. The camera/watchdog rules and usage figures live in health.py.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Optional

from . import __version__, health, logs
from .clock import FrameClock
from .config import Config
from .detections import Frame
from .notify import Notifier
from .preview import Preview
from .reload import reload_config
from .signals import SignalWatcher
from .status import snapshot_reply, status_line, status_report
from .tflite import ModelError

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_MODEL, EXIT_CONFIG = 0, 1, 66, 78
STOP_GRACE_S = 1.2  # after SIGTERM the loop gets this long before the process exits regardless
HARD_EXIT_S = 1.85  # ... and this long before it is ended without Python (exit code 1, tracebacks logged)
READ_TIMEOUT_S = 0.25  # the loop notices stop/reload requests at least this often
SAVE_EVERY_S = 5.0  # counts are written at most this often (and on exit)
SUMMARY_EVERY_S = 3600.0
MAX_FRAME_ERRORS = 100  # consecutive failing frames before the service gives up (systemd restarts it)


@dataclass
class RunOptions:
    """Command-line overrides of the config (they survive a reload)."""

    source: Optional[str] = None
    realtime: Optional[bool] = None
    loop: Optional[bool] = None
    max_frames: Optional[int] = None
    preview: bool = False
    log_level: Optional[str] = None


class Daemon:
    """``Daemon(cfg, opts).run()`` -> exit code. ``source`` replaces ``open_source(cfg.source)`` (tools, tests)."""

    def __init__(self, cfg: Config, opts: Optional[RunOptions] = None, source=None):
        self.opts = opts or RunOptions()
        self._given_source = source
        self.cfg = self._overrides(cfg)
        self.notifier = Notifier()
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.done_event = threading.Event()
        self.state_lock = threading.Lock()  # outcomes (alerter, counts) between the loop and the control thread
        self.state = "starting"
        self.started_at = time.monotonic()
        self.pipeline = self.outcomes = self.source = self.control = None
        self.frames = 0
        self.frame_errors = 0
        self.fps = 0.0
        self.frame_ms = 0.0
        self.last_frame_at: Optional[float] = None
        self.camera_down_since: Optional[float] = None
        self._latest: Optional[tuple] = None  # (Frame, FrameResult) for snapshots
        self._in_frame: Optional[int] = None  # frame index being processed, for the stop log line
        self._hour = health.Hour()
        self._usage = health.Usage()  # since the last status update: the detector's share, the CPU
        self.usage_pct = (0.0, 0.0)  # (% of frames detected, % of a core) of the last status interval
        self.detector = "starting"  # idle / active / always on (health.detector_state)
        self.clock = FrameClock()  # alert rules' time: a file's own clock when read in order (clock.py)
        self._fps_mark = (time.monotonic(), 0)
        self._next_status = self._next_save = 0.0
        self._preview: Optional[Preview] = None
        self._watchdog_given_up = False

    # --- configuration -------------------------------------------------------------------------

    def _overrides(self, cfg: Config) -> Config:
        o = self.opts
        if o.source is not None:
            cfg.source.uri = o.source
        if o.realtime is not None:
            cfg.source.realtime = o.realtime
        if o.loop is not None:
            cfg.source.loop = o.loop
        if o.log_level:
            cfg.service.log_level = o.log_level
        return cfg

    # --- signals (called from the signal thread) -----------------------------------------------

    def _reload_requested(self) -> None:
        log.info("SIGHUP: reloading the configuration")
        self.reload_event.set()

    def _stop_requested(self, why: str) -> None:
        where = f"during frame {self._in_frame}" if self._in_frame is not None else "between frames"
        # Backstop that needs no GIL (faulthandler's C thread): if even this thread cannot run in time,
        # because C code in the loop holds the GIL, the process still ends before the 2 s promise.
        faulthandler.dump_traceback_later(HARD_EXIT_S, exit=True)
        self.notifier.stopping()
        log.info("%s received (%s): stopping", why, where)
        self.state = "stopping"
        self.stop_event.set()
        if self.done_event.wait(STOP_GRACE_S):
            return
        # The loop is stuck (a long frame, a hung camera driver): save what we have and leave.
        log.warning("the frame loop did not stop within %.1f s; exiting now", STOP_GRACE_S)
        self._save_counts()  # Counts is thread-safe; the loop is stuck outside it (in the models or camera)
        for h in logging.getLogger().handlers:
            try:
                h.flush()
            except Exception:
                pass
        os._exit(EXIT_OK)

    # --- start-up ------------------------------------------------------------------------------

    def run(self) -> int:
        kind = logs.setup(self.cfg.service.log_level)
        signals = SignalWatcher(self._stop_requested, self._reload_requested)
        signals.install()
        try:
            return self._run(kind)
        finally:
            self.done_event.set()
            faulthandler.cancel_dump_traceback_later()  # stopped in time: disarm the backstop
            signals.restore()
            logs.teardown()

    def _run(self, log_kind: str) -> int:
        from .outcomes import Outcomes
        from .outputs import Outputs
        from .pipeline import Pipeline
        from .sources import SourceError, open_source

        cfg = self.cfg
        log.info("mask-guard %s starting (pid %d, config %s, logging to %s)", __version__, os.getpid(),
                 cfg.path or "built-in defaults", log_kind)
        self.notifier.status("loading models")
        t0 = time.monotonic()
        try:
            self.pipeline = Pipeline(cfg)
        except ModelError as exc:
            log.error("cannot load a model: %s", exc)
            self.notifier.status(f"failed: {exc}")
            return EXIT_MODEL
        log.info("models loaded in %.2f s", time.monotonic() - t0)
        self.outcomes = Outcomes(self._make_alerter(cfg), self._make_counts(cfg), Outputs(cfg, self.status))
        self._start_control(cfg)
        if self.stop_event.is_set():
            return self._shutdown(EXIT_OK)
        try:
            self.source = self._given_source or open_source(cfg.source)
        except SourceError as exc:
            log.error("cannot open the source: %s", exc)
            self.notifier.status(f"failed: {exc}")
            return self._shutdown(EXIT_CONFIG)
        log.info("source %s opened; waiting for the first frame", self.source.name)
        self.notifier.status(f"waiting for the first frame from {self.source.name}")
        if self.opts.preview:
            self._preview = Preview()
            self._preview.start()
        try:
            code = self._loop()
        except Exception:  # a bug outside the per-frame guard (reload, preview): save counts, let systemd restart
            log.exception("the frame loop failed")
            code = EXIT_ERROR
        return self._shutdown(code)

    def _make_alerter(self, cfg: Config):
        from .alerts import Alerter

        if not cfg.alerts.enabled:
            log.info("alerts disabled in the config")
            return None
        # a lamp, a command or MQTT carries the alert where there is no speaker
        silent_ok = bool(cfg.outputs.gpio_pin or cfg.alerts.command or cfg.mqtt.enabled)
        alerter = Alerter(cfg.alerts, clock=self.clock, silent_ok=silent_ok)
        player = alerter.player
        if player is not None and player.available:
            log.info("alert sound %s ready", player.path)
        return alerter  # an unavailable player has logged its one warning; detection goes on

    def _make_counts(self, cfg: Config):
        from .counts import Counts

        counts = Counts.from_config(cfg.counts)
        log.info("counts in %s", counts.path)
        return counts

    def _start_control(self, cfg: Config) -> None:
        from .control import ControlServer, default_socket_path

        server = ControlServer(default_socket_path(cfg), {"status": self._cmd_status, "snapshot": self._cmd_snapshot})
        try:
            server.start()
        except OSError as exc:
            log.warning("control socket unavailable (%s): status and snapshot will not answer", exc)
            return
        self.control = server

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> int:
        assert self.source is not None
        self.state = "waiting_for_camera"
        while not self.stop_event.is_set():
            if self.reload_event.is_set():
                self.reload_event.clear()
                reload_config(self)
            frame = self.source.read(timeout=READ_TIMEOUT_S)
            now = time.monotonic()
            if frame is None:
                if self.source.finished:
                    error = self.source.stats().get("last_error")
                    if error:  # the grabber died (driver, decoder): not an end of input, so systemd restarts us
                        log.error("source %s ended on an error after %d frames: %s", self.source.name,
                                  self.frames, error)
                        return EXIT_ERROR
                    log.info("end of input (%s) after %d frames", self.source.name, self.frames)
                    break
                health.no_frame(self, now)
                self._periodic(now)
                continue
            health.frame_arrived(self, now)
            if not self._process(frame):
                if self.frame_errors >= MAX_FRAME_ERRORS:
                    log.error("%d frames in a row failed; giving up (systemd restarts the service)",
                              self.frame_errors)
                    return EXIT_ERROR
                continue
            if not self.notifier.ready_sent:
                log.info("ready: first frame processed %.2f s after start", time.monotonic() - self.started_at)
                self.notifier.ready(self._status_text())
            self.notifier.watchdog()
            if self._preview is not None and self._preview.open and \
                    not self._preview.show(frame.image, self._latest[1], self.fps):
                log.info("preview closed (key): stopping")
                break
            self._periodic(now)
            if self.opts.max_frames and self.frames >= self.opts.max_frames:
                log.info("stopping after %d frames (--max-frames)", self.frames)
                break
        return EXIT_OK

    def _process(self, frame: Frame) -> bool:
        t0 = time.perf_counter()
        self._in_frame = frame.index
        try:
            result = self.pipeline.process(frame)
            self.clock.tick(frame)
            with self.state_lock:
                alerted = self.outcomes.apply(result)
        except Exception:
            self.frame_errors += 1
            self._hour.errors += 1
            if self.frame_errors == 1 or self.frame_errors % 50 == 0:
                log.exception("frame %d failed (%d in a row)", frame.index, self.frame_errors)
            return False
        finally:
            self._in_frame = None
        self.frame_errors = 0
        self.frames += 1
        self.frame_ms = 0.9 * self.frame_ms + 0.1 * (time.perf_counter() - t0) * 1e3 if self.frames > 1 \
            else (time.perf_counter() - t0) * 1e3
        self._latest = (frame, result)
        h = self._hour
        h.count(result.detected)
        self._usage.count(result.detected)
        self.detector = health.detector_state(result.why)
        h.people += len(result.new_people)
        h.masked += sum(c.new.value == "mask" for c in result.changes)
        h.unmasked += sum(c.new.value == "no_mask" for c in result.changes)
        h.alerts += len(alerted)
        return True

    def _periodic(self, now: float) -> None:
        if now >= self._next_status:
            self._next_status = now + self.cfg.service.status_interval_s
            t_mark, f_mark = self._fps_mark
            if now > t_mark:
                self.fps = (self.frames - f_mark) / (now - t_mark)
            self._fps_mark = (now, self.frames)
            self.usage_pct, self._usage = (self._usage.detected_pct, self._usage.cpu_pct(now)), health.Usage()
            text = self._status_text()
            self.notifier.status(text)
            log.debug("status: %s", text)
        if not self._next_save:
            self._next_save = now + SAVE_EVERY_S  # nothing worth writing before the first interval
        elif now >= self._next_save:
            self._next_save = now + SAVE_EVERY_S
            with self.state_lock:
                self._save_counts()
        if now - self._hour.start >= SUMMARY_EVERY_S:
            health.summary(self, now)

    # --- counts --------------------------------------------------------------------------------

    def today(self) -> dict:
        counts = getattr(self.outcomes, "counts", None)
        if counts is None:
            return {}
        try:
            return dict(counts.today())
        except Exception as exc:
            log.debug("counts unavailable: %s", exc)
            return {}

    def _save_counts(self) -> None:
        counts = getattr(self.outcomes, "counts", None)
        if counts is not None:
            counts.save()  # never raises: a full disk logs one warning and is tried again next time

    def _status_text(self) -> str:
        return status_line(self.fps, self.today(), health.camera_text(self), health.detector_text(self))

    # --- control socket handlers (control thread) ----------------------------------------------

    def status(self) -> dict:
        return status_report(self)

    def _cmd_status(self, req: dict):
        return status_report(self), None

    def _cmd_snapshot(self, req: dict):
        return snapshot_reply(self._latest, self.fps, raw=bool(req.get("raw")))

    # --- shutdown ------------------------------------------------------------------------------

    def _shutdown(self, code: int) -> int:
        t0 = time.monotonic()
        if not self.stop_event.is_set():
            self.notifier.stopping()
        self.state = "stopping"
        if self.source is not None:
            self.source.close()
        if self.control is not None:
            self.control.close()
        if self.outcomes is not None:
            with self.state_lock:
                self._save_counts()
            self.outcomes.close()  # the alerter; MQTT's last state and 'offline'; the GPIO pin off
        if self._preview is not None:
            self._preview.close()
        log.info("stopped after %d frames (%.1f s up, shutdown %.2f s), exit code %d", self.frames,
                 time.monotonic() - self.started_at, time.monotonic() - t0, code)
        return code
