"""The clock alert rules are judged by: the video's own for a file read frame by frame, else the wall clock.

A clip read in order (``source.realtime: false``) runs as fast as the machine allows: on a fast machine
10 s of video pass in 3 s, on a slow one in 30 s. Cooldowns, re-alert intervals, quiet hours and the
one-sound-at-a-time rule measured on the wall clock would then give different alerts on different
machines. So each frame's time is its time in the video (``Frame.meta["video_s"]``, set by
sources.py for files read in order) added to the moment the service started: the same clip gives the
same alerts everywhere, and quiet hours still mean the local time of day the clip would have played at.
Live cameras (and files played in real time) carry no video time: the wall clock, as ever.
"""
from __future__ import annotations

import time
from datetime import datetime
from typing import Optional

VIDEO_S = "video_s"  # the Frame.meta key sources.py sets for a file read in order: the time in the video (s)


class FrameClock:
    """``mono()`` (seconds, like time.monotonic) and ``now()`` (local datetime) of the frame being handled.

    ``tick(frame)`` once per frame, before its outcomes are applied (the daemon does).
    """

    def __init__(self, wall_start: Optional[float] = None, mono_start: Optional[float] = None):
        self._wall0 = time.time() if wall_start is None else wall_start  # the video's 0 s on the wall clock
        self._mono0 = time.monotonic() if mono_start is None else mono_start
        self._video: Optional[float] = None  # the current frame's video time; None: a live frame

    def tick(self, frame) -> None:
        v = getattr(frame, "meta", {}).get(VIDEO_S)
        self._video = None if v is None else float(v)

    @property
    def video(self) -> bool:
        """True while the frames come from a file read in order (times are the video's)."""
        return self._video is not None

    def mono(self) -> float:
        return time.monotonic() if self._video is None else self._mono0 + self._video

    def now(self) -> datetime:
        return datetime.now() if self._video is None else datetime.fromtimestamp(self._wall0 + self._video)
