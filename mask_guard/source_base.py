"""What every frame source is: the ``FrameSource`` interface, the one-frame slot, the grabber thread.

The base of the sources: ``sources.py`` (files, iterators, ``open_source``) and ``cameras.py`` (live
cameras) both build on this module and import nothing from each other but in one direction
(sources -> cameras -> source_base), so there is no import circle.
"""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Optional

import cv2
import numpy as np

from .detections import Frame

log = logging.getLogger("mask_guard.sources")  # one logger name for all sources, as before the split

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
