"""Live cameras: a webcam or stream URL through OpenCV, the Pi camera through picamera2.

Both reopen a camera that fails with doubling backoff (``source.retry_initial_s`` ..
``source.retry_max_s``) and log one line per state change (lost / back), never one per attempt,
so an unplugged camera neither crash-loops the service nor floods the journal.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import re
import sys
import threading
import time
from typing import Iterator, Optional, Union

import cv2

from .config import SourceConfig
from .detections import Frame
from .source_base import FrameSource, SourceError, _describe, _ThreadedSource, normalize_image

log = logging.getLogger(__name__)

_FAILED_READS_LOST = 5  # consecutive failed reads before a live camera counts as lost
_PICAMERA_STALL_S = 5.0  # no frame from the Pi camera for this long: reopen it


@contextlib.contextmanager
def _quiet(when: bool) -> Iterator[None]:
    """Silence OpenCV's and picamera2's own per-attempt complaints while a camera is known down."""
    if not when:
        yield
        return
    cv_level, pc_log = cv2.getLogLevel(), logging.getLogger("picamera2")
    pc_level = pc_log.level
    cv2.setLogLevel(0)  # 0: silent
    pc_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        cv2.setLogLevel(cv_level)
        pc_log.setLevel(pc_level)


class _Backoff:
    """Reopen timing (doubling from ``initial`` to ``maximum``) and the one-line-per-state-change log."""

    def __init__(self, source: FrameSource, initial: float, maximum: float):
        self._src = source
        self.initial, self.maximum = initial, max(initial, maximum)
        self.up: Optional[bool] = None  # None: not opened yet
        self.delay = 0.0
        self._next_try = 0.0
        self._down_since = 0.0
        self._attempts_down = 0

    def wait_time(self) -> float:
        """Seconds until the next open attempt may be made (0: now)."""
        return max(0.0, self._next_try - time.monotonic())

    def failed(self, error: str) -> None:
        now = time.monotonic()
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        self._next_try = now + self.delay
        self._attempts_down += 1
        with self._src._stats_lock:
            self._src._stats.last_error = error
        if self.up is False:
            log.debug("%s: still down (%s); next try in %.2f s", self._src.name, error, self.delay)
            return
        what = "lost" if self.up else "cannot be opened"
        log.warning("camera %s %s: %s; retrying with backoff %g..%g s (quiet until it is back)",
                    self._src.name, what, error, self.initial, self.maximum)
        self.up, self._down_since, self._attempts_down = False, now, 1

    def succeeded(self, detail: str = "") -> None:
        if self.up is False:
            n = self._attempts_down
            log.info("camera %s back after %.1f s (%d attempt%s)%s", self._src.name,
                     time.monotonic() - self._down_since, n, "" if n == 1 else "s", detail)
            self._src._count(reconnects=1)
        elif self.up is None:
            log.info("camera %s opened%s", self._src.name, detail)
        self.up, self.delay, self._next_try = True, 0.0, 0.0


class OpenCVSource(_ThreadedSource):
    """A webcam index or stream URL through OpenCV; reopened with backoff when it fails."""

    def __init__(self, target: Union[int, str], cfg: SourceConfig, name: Optional[str] = None):
        super().__init__(name or (f"webcam:{target}" if isinstance(target, int) else _redact(str(target))))
        self._target = target
        self._cfg = cfg
        self._backoff = _Backoff(self, cfg.retry_initial_s, cfg.retry_max_s)
        self._start()

    def _open(self) -> "cv2.VideoCapture":
        if isinstance(self._target, int):
            # V4L2 explicitly on Linux: the default backend list also probes other APIs and logs about each.
            api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(self._target, api)
            if cap.isOpened():
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self._cfg.width)
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self._cfg.height)
                cap.set(cv2.CAP_PROP_FPS, self._cfg.fps)
                cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver's queue is a backlog too
        else:
            # Timeouts so a silent network camera cannot hang the grabber forever.
            cap = cv2.VideoCapture(self._target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10000, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 10000])
        if not cap.isOpened():
            cap.release()
            raise SourceError("open failed")
        return cap

    def _run(self) -> None:
        cap = None
        failed_reads = 0
        try:
            while not self._stop.is_set():
                if cap is None:
                    wait = self._backoff.wait_time()
                    if wait > 0:
                        self._stop.wait(wait)
                        continue
                    self._count(open_attempts=1)
                    try:
                        with _quiet(self._backoff.up is False):
                            cap = self._open()
                    except Exception as exc:
                        self._backoff.failed(str(exc))
                        continue
                    w, h = cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
                    self._backoff.succeeded(f" ({w:.0f}x{h:.0f})")
                    failed_reads = 0
                ok, image = cap.read()  # blocks until the camera's next frame: the natural pace
                if ok and image is not None:
                    failed_reads = 0
                    self._publish(image)
                    continue
                failed_reads += 1
                if failed_reads >= _FAILED_READS_LOST:
                    cap.release()
                    cap = None
                    self._backoff.failed(f"{failed_reads} reads in a row failed")
                else:
                    self._stop.wait(0.02)
        finally:
            if cap is not None:
                cap.release()

    @property
    def healthy(self) -> bool:
        return bool(self._backoff.up) and self._thread.is_alive()


def _redact(uri: str) -> str:
    """A stream URL for logs, without its password."""
    return re.sub(r"//([^:/@]+):[^@/]*@", r"//\1:***@", uri)


class PiCameraSource(FrameSource):
    """The Raspberry Pi camera through picamera2 (only importable on a Pi).

    No grabber thread: with ``buffer_count=2`` and picamera2's default ``queue=True`` the camera
    keeps only its latest completed request, and ``capture_arrays`` takes that one (or waits for
    the next), so every read gets the newest frame and each frame at most once. ``RGB888`` is laid
    out B, G, R in memory: already OpenCV's BGR. Not testable off a Pi (picamera2 needs libcamera).
    """

    def __init__(self, cfg: SourceConfig, camera_num: int = 0):
        super().__init__(f"picamera:{camera_num}")
        self._cfg, self._num = cfg, camera_num
        self._cam = None
        self._job = None  # a capture still waiting for its frame after a read timed out
        self._backoff = _Backoff(self, cfg.retry_initial_s, cfg.retry_max_s)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._index = -1
        self._last_sensor_ns: Optional[int] = None
        self._last_frame_at = time.monotonic()

    def _open(self):
        from picamera2 import Picamera2  # type: ignore

        cam = Picamera2(self._num)
        try:
            config = cam.create_preview_configuration(
                main={"size": (self._cfg.width, self._cfg.height), "format": "RGB888"},
                buffer_count=2, controls={"FrameRate": float(self._cfg.fps)})
            cam.configure(config)
            cam.start()
        except Exception:
            cam.close()
            raise
        return cam

    def _lose(self, error: str) -> None:
        cam, self._cam, self._job = self._cam, None, None
        if cam is not None:
            try:
                cam.close()
            except Exception as exc:
                log.debug("%s: close failed: %s", self.name, exc)
        self._backoff.failed(error)

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._closed.is_set():
                left = 3600.0 if deadline is None else deadline - time.monotonic()
                if self._cam is None:
                    wait = self._backoff.wait_time()
                    if wait > 0:
                        if left <= 0 or self._closed.wait(min(wait, left)):
                            return None
                        continue
                    self._count(open_attempts=1)
                    try:
                        with _quiet(self._backoff.up is False):
                            self._cam = self._open()
                    except Exception as exc:
                        self._backoff.failed(f"{type(exc).__name__}: {exc}")
                        continue
                    self._backoff.succeeded()
                    self._last_frame_at, self._last_sensor_ns = time.monotonic(), None
                # A capture that timed out stays queued in picamera2 and is waited for again next
                # time, rather than queueing one more per timeout. Waits come in slices so a
                # stalled camera is noticed even with timeout=None.
                try:
                    if self._job is None:
                        self._job = self._cam.capture_arrays(["main"], wait=False)
                    arrays, meta = self._job.get_result(timeout=max(0.0, min(left, 1.0)))
                    self._job = None
                except (TimeoutError, concurrent.futures.TimeoutError):
                    if time.monotonic() - self._last_frame_at > _PICAMERA_STALL_S:
                        self._lose(f"no frame for {_PICAMERA_STALL_S:.0f} s")
                    if deadline is not None and time.monotonic() >= deadline:
                        return None
                    continue
                except Exception as exc:
                    self._lose(f"{type(exc).__name__}: {exc}")
                    continue
                frame = self._frame(arrays[0], meta or {})
                if frame is not None:
                    return frame
        return None

    def _frame(self, array, meta: dict) -> Optional[Frame]:
        now = time.monotonic()
        self._last_frame_at = now
        # Sensor timestamps tell how many frames the camera made since the last one we took.
        sensor_ns, duration_us = meta.get("SensorTimestamp"), meta.get("FrameDuration")
        step = 1
        if self._last_sensor_ns is not None and sensor_ns and duration_us:
            step = max(1, round((sensor_ns - self._last_sensor_ns) / (duration_us * 1000.0)))
        self._last_sensor_ns = sensor_ns
        self._index += step
        img = normalize_image(array)
        if img is None:
            log.debug("%s: frame %d dropped: unusable image %s", self.name, self._index, _describe(array))
            self._count(grabbed=step, dropped=step - 1, rejected=1)
            return None
        self._count(grabbed=step, dropped=step - 1, delivered=1)
        return Frame(image=img, index=self._index, timestamp=now)

    @property
    def healthy(self) -> bool:
        return bool(self._backoff.up)

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._job = None
            if self._cam is not None:
                try:
                    self._cam.close()
                except Exception as exc:
                    log.debug("%s: close failed: %s", self.name, exc)
                self._cam = None


def picamera_present() -> bool:
    """True when picamera2 imports and libcamera lists at least one camera."""
    try:
        from picamera2 import Picamera2  # type: ignore

        return bool(Picamera2.global_camera_info())
    except Exception:
        return False
