"""Frame sources: the newest camera frame, never a backlog.

Every source hands out a frame at most once and, when live, only the newest one: a slow pipeline
skips frames instead of falling behind (``Frame.index`` counts frames the source produced, so the
gaps show how many were skipped). Live cameras that fail are reopened with doubling backoff and
one log line per state change (lost / back), never a line per attempt.

Kinds (``open_source``): the Pi camera through picamera2 and a webcam index or stream URL through
OpenCV (both in cameras.py), a video file (in order when ``realtime`` is false, paced at its fps
and dropping frames when true), and ``IteratorSource`` / ``ArraySource`` for tests.

A file read in order carries its own clock: ``Frame.meta["video_s"]``, the frame's position in the
video (``CAP_PROP_POS_MSEC``; continued across loops), so time-based rules (alert cooldowns, the
motion gate's ``max_idle_s``) judge a clip by its own time, however fast the machine reads it.

Imports go one way: this module -> cameras.py -> source_base.py (the interface and the grabber thread).
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import threading
import time
from typing import Iterable, Iterator, Optional, Sequence

import cv2
import numpy as np

from .cameras import OpenCVSource, PiCameraSource, picamera_present
from .clock import VIDEO_S
from .config import SourceConfig
from .detections import Frame
from .source_base import (MIN_SIDE, FrameSource, SourceError, SourceStats, _describe, _LatestSlot,  # noqa: F401
                          _ThreadedSource, normalize_image)

log = logging.getLogger(__name__)

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
    """Every frame of an iterable, in order, pulled by ``read`` (no thread): evaluation and tests.

    ``timed``: the iterable yields ``(image, video_s)`` pairs, and each frame carries its video time
    in ``meta["video_s"]`` (a file's own clock, see the module docstring).
    """

    def __init__(self, frames: Iterable, name: str = "ordered", timed: bool = False):
        super().__init__(name)
        self._it: Iterator = iter(frames)
        self._timed = timed
        self._index = 0
        self._done = False
        self._lock = threading.Lock()

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        with self._lock:
            while not self._done:
                try:
                    item = next(self._it)
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
                image, meta = (item[0], {VIDEO_S: float(item[1])}) if self._timed else (item, {})
                img = normalize_image(image)
                if img is None:
                    log.debug("%s: frame %d dropped: unusable image %s", self.name, index, _describe(image))
                    self._count(grabbed=1, rejected=1)
                    continue
                self._count(grabbed=1, delivered=1)
                return Frame(image=img, index=index, timestamp=ts, meta=meta)
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


def _video_frames(cap: "cv2.VideoCapture", path: str, loop: bool, fps: float, timed: bool = False) -> Iterator:
    """Decoded frames of a video file; with ``loop``, again from the start at the end.

    ``timed``: ``(image, video_s)`` pairs. The time is the file's own (``CAP_PROP_POS_MSEC`` after the
    read: the decoded frame's timestamp), continued across loops; where a container reports none or
    goes backwards, one frame period (``fps``) after the previous frame.
    """
    period = 1.0 / fps
    offset, last = 0.0, -period  # offset: the length of the loops before this one
    try:
        while True:
            n = 0
            while True:
                ok, image = cap.read()
                if not ok:
                    break
                n += 1
                if timed:
                    t = offset + cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    last = t if t > last else last + period
                    yield image, last
                else:
                    yield image
            if not loop or n == 0:  # n == 0: an undecodable file must not spin forever
                return
            offset = last + period
            cap.release()
            cap = cv2.VideoCapture(path)  # reopening works for every container; seeking does not
    finally:
        cap.release()


def open_source(cfg: SourceConfig) -> FrameSource:
    """The frame source ``cfg.uri`` names; ``SourceError`` for a setup mistake (missing file...)."""
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
    if not (0 < fps <= 1000):  # some containers report 0 or nonsense
        fps = cfg.fps
    if not cfg.realtime:  # in order, on the file's own clock
        return OrderedSource(_video_frames(cap, path, cfg.loop, fps, timed=True), name=path, timed=True)
    return IteratorSource(_video_frames(cap, path, cfg.loop, fps), fps=fps, name=path)  # like a camera: wall clock
