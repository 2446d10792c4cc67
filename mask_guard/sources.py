"""Frame sources: the newest camera frame, never a backlog.

Every source hands out a frame at most once and, when live, only the newest one: a slow pipeline
skips frames instead of falling behind (``Frame.index`` counts frames the source produced, so the
gaps show how many were skipped). Live cameras that fail are reopened with doubling backoff and
one log line per state change (lost / back), never a line per attempt.

Kinds (``open_source``): the Pi camera through picamera2 and a webcam index or stream URL through
OpenCV (both in cameras.py), a video file (in order when ``realtime`` is false, paced at its fps
and dropping frames when true), and ``IteratorSource`` / ``ArraySource`` for tests.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np

from .config import SourceConfig
from .detections import Frame

log = logging.getLogger(__name__)

MIN_SIDE = 16  # px; smaller frames cannot hold a face MTCNN finds (its smallest is 12 px)


class SourceError(RuntimeError):
    """A source that cannot work at all (missing file, picamera2 not installed): a setup mistake."""


def normalize_image(image) -> Optional[np.ndarray]:
    """A contiguous BGR uint8 (H, W, 3) image, or None for a frame that cannot be used.

    Cameras and files hand out odd frames (empty, 1x1, gray, BGRA, 16-bit); they must not reach MTCNN.
    """
    if not isinstance(image, np.ndarray) or image.size == 0:
        return None
    if image.dtype == np.uint16:  # 16-bit sensors/PNGs: keep the high byte
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    elif image.ndim != 3 or image.shape[2] != 3:
        return None
    if min(image.shape[:2]) < MIN_SIDE:
        return None
    return np.ascontiguousarray(image)


@dataclass
class SourceStats:
    grabbed: int = 0  # frames the source produced (hostile ones included)
    delivered: int = 0  # frames handed to read()
    dropped: int = 0  # frames replaced by a newer one before anybody read them
    rejected: int = 0  # hostile frames thrown away by normalize_image
    open_attempts: int = 0
    reconnects: int = 0  # successful opens after a failure
    last_error: str = ""


class FrameSource(ABC):
    """``read(timeout)`` -> the newest frame not handed out before, or None (timeout, end, closed)."""

    def __init__(self, name: str):
        self.name = name
        self._stats = SourceStats()
        self._stats_lock = threading.Lock()

    @abstractmethod
    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """Block until a frame not handed out before is there; None after ``timeout`` s or at the end."""

    def close(self) -> None:
        """Release the device; read() returns None afterwards."""

    @property
    def healthy(self) -> bool:
        """True while frames can come (camera open, file not finished)."""
        return True

    @property
    def finished(self) -> bool:
        """True when a finite source (a file, an iterator) has handed out its last frame."""
        return False

    def stats(self) -> dict:
        with self._stats_lock:
            d = asdict(self._stats)
        d.update(name=self.name, healthy=self.healthy)
        return d

    def _count(self, **deltas: int) -> None:
        with self._stats_lock:
            for k, v in deltas.items():
                setattr(self._stats, k, getattr(self._stats, k) + v)

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class _LatestSlot:
    """One frame deep: ``put`` replaces an unread frame (a drop), ``take`` hands each frame out once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Optional[Frame] = None
        self._done = False

    def put(self, frame: Frame) -> bool:
        """Store ``frame``; True when it replaced a frame nobody read."""
        with self._cond:
            dropped = self._frame is not None
            self._frame = frame
            self._cond.notify_all()
            return dropped

    def finish(self) -> None:
        with self._cond:
            self._done = True
            self._cond.notify_all()

    def take(self, timeout: Optional[float]) -> Optional[Frame]:
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._done, timeout)
            frame, self._frame = self._frame, None
            return frame

    @property
    def exhausted(self) -> bool:
        with self._cond:
            return self._done and self._frame is None


class _ThreadedSource(FrameSource):
    """A grabber thread publishes into a one-frame slot; ``read`` takes the newest frame."""

    def __init__(self, name: str):
        super().__init__(name)
        self._slot = _LatestSlot()
        self._stop = threading.Event()
        self._index = 0
        self._thread = threading.Thread(target=self._main, name=f"grab:{name}", daemon=True)

    def _start(self) -> None:
        self._thread.start()

    @abstractmethod
    def _run(self) -> None:
        """Grab until ``self._stop`` is set or the source ends, calling ``_publish`` per frame."""

    def _main(self) -> None:
        try:
            self._run()
        except Exception as exc:  # a bug or a decoder crash: end this source, never the process
            log.exception("frame source %s stopped", self.name)
            with self._stats_lock:
                self._stats.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._slot.finish()

    def _publish(self, image, timestamp: Optional[float] = None) -> None:
        timestamp = time.monotonic() if timestamp is None else timestamp
        index, self._index = self._index, self._index + 1
        img = normalize_image(image)  # here, in the grabber thread, off the pipeline's time
        if img is None:
            log.debug("%s: frame %d dropped: unusable image %s", self.name, index, _describe(image))
            self._count(grabbed=1, rejected=1)
            return
        dropped = self._slot.put(Frame(image=img, index=index, timestamp=timestamp))
        self._count(grabbed=1, dropped=int(dropped))

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        frame = self._slot.take(timeout)
        if frame is not None:
            self._count(delivered=1)
        return frame

    @property
    def finished(self) -> bool:
        return self._slot.exhausted

    def close(self) -> None:
        self._stop.set()
        self._slot.finish()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)


def _describe(image) -> str:
    if isinstance(image, np.ndarray):
        return f"shape={image.shape} dtype={image.dtype}"
    return type(image).__name__


class IteratorSource(_ThreadedSource):
    """Frames from any iterable, produced at ``fps`` in a thread; a slow reader skips frames.

    Behaves like a camera (tests, paced video files). ``finished`` once the iterable is exhausted
    and the last frame was read.
    """

    def __init__(self, frames: Iterable, fps: float, name: str = "iterator"):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        super().__init__(name)
        self.fps = float(fps)
        self._frames = frames
        self._start()

    def _run(self) -> None:
        period = 1.0 / self.fps
        it = iter(self._frames)
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    image = next(it)  # decode before waiting, so the publish time is the frame's time
                except StopIteration:
                    return
                delay = next_t - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                self._publish(image)
                next_t += period
                if time.monotonic() - next_t > period:  # fell behind (slow decode): no catch-up burst
                    next_t = time.monotonic()
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator releases its VideoCapture here, in the thread that ran it


class ArraySource(IteratorSource):
    """Images from a list at ``fps``, optionally repeated forever."""

    def __init__(self, images: Sequence[np.ndarray], fps: float, loop: bool = False, name: str = "arrays"):
        frames = itertools.cycle(images) if loop and len(images) else iter(images)
        super().__init__(frames, fps=fps, name=name)


class OrderedSource(FrameSource):
    """Every frame of an iterable, in order, pulled by ``read`` (no thread): evaluation and tests."""

    def __init__(self, frames: Iterable, name: str = "ordered"):
        super().__init__(name)
        self._it: Iterator = iter(frames)
        self._index = 0
        self._done = False
        self._lock = threading.Lock()

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        with self._lock:
            while not self._done:
                try:
                    image = next(self._it)
                except StopIteration:
                    self._done = True
                    break
                except Exception as exc:  # a broken file ends the source, it does not kill the caller
                    log.warning("%s: reading failed: %s", self.name, exc)
                    with self._stats_lock:
                        self._stats.last_error = str(exc)
                    self._done = True
                    break
                index, self._index = self._index, self._index + 1
                ts = time.monotonic()
                img = normalize_image(image)
                if img is None:
                    log.debug("%s: frame %d dropped: unusable image %s", self.name, index, _describe(image))
                    self._count(grabbed=1, rejected=1)
                    continue
                self._count(grabbed=1, delivered=1)
                return Frame(image=img, index=index, timestamp=ts)
            return None

    @property
    def healthy(self) -> bool:
        return not self._done

    @property
    def finished(self) -> bool:
        return self._done

    def close(self) -> None:
        with self._lock:
            self._done = True
            close = getattr(self._it, "close", None)
            if close is not None:
                close()


def _video_frames(cap: "cv2.VideoCapture", path: str, loop: bool) -> Iterator[np.ndarray]:
    """Decoded frames of a video file; with ``loop``, again from the start at the end."""
    try:
        while True:
            n = 0
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                n += 1
                yield image
            if not loop or n == 0:  # n == 0: an undecodable file must not spin forever
                return
            cap.release()
            cap = cv2.VideoCapture(path)  # reopening works for every container; seeking does not
    finally:
        cap.release()


def open_source(cfg: SourceConfig) -> FrameSource:
    """The frame source ``cfg.uri`` names; ``SourceError`` for a setup mistake (missing file...)."""
    from .cameras import OpenCVSource, PiCameraSource, picamera_present  # cameras.py builds on this module

    uri = cfg.uri.strip()
    if uri == "auto":
        uri = "picamera" if picamera_present() else "0"
        log.info("source auto: using %s", "the Pi camera" if uri == "picamera" else "webcam 0")
    m = re.fullmatch(r"picamera(?::(\d+))?", uri)
    if m:
        try:
            import picamera2  # type: ignore  # noqa: F401
        except Exception as exc:
            raise SourceError(f"source.uri {uri!r}: picamera2 does not import ({exc}); on a Pi: "
                              "apt install python3-picamera2, and a venv made with --system-site-packages") from exc
        return PiCameraSource(cfg, int(m.group(1) or 0))
    if re.fullmatch(r"\d+", uri):
        return OpenCVSource(int(uri), cfg)
    if re.match(r"^[a-z][a-z0-9+.-]*://", uri, re.I):
        return OpenCVSource(uri, cfg)
    path = os.path.expanduser(uri)
    if not os.path.isfile(path):
        raise SourceError(f"source.uri {uri!r}: not a camera index, URL or existing video file")
    cap = cv2.VideoCapture(path)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"source.uri {uri!r}: OpenCV cannot decode this video file")
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = _video_frames(cap, path, cfg.loop)
    if not cfg.realtime:
        return OrderedSource(frames, name=path)
    if not (0 < fps <= 1000):  # some containers report 0 or nonsense
        fps = cfg.fps
    return IteratorSource(frames, fps=fps, name=path)
