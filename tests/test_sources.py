"""Frame sources: newest frame only, every frame once, files in order, cameras that come and go."""
from __future__ import annotations

import itertools
import logging
import os
import threading
import time

import cv2
import numpy as np
import pytest
from mjpeg_camera import MjpegCamera

from mask_guard.config import SourceConfig
from mask_guard.sources import (ArraySource, IteratorSource, OrderedSource, SourceError, normalize_image,
                                open_source)

H, W = 48, 64


def numbered(i: int) -> np.ndarray:
    """A frame whose pixels say which frame it is (i % 256)."""
    return np.full((H, W, 3), i % 256, np.uint8)


def counting_frames():
    return (numbered(i) for i in itertools.count())


def write_clip(path, n: int, fps: float = 25.0) -> None:
    """A real MJPG AVI whose frame i has gray level 5 * i (JPEG keeps means within a few levels)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((H, W, 3), 5 * i, np.uint8))
    writer.release()


# --- newest frame, never a backlog ---------------------------------------------------------------

def test_slow_consumer_always_gets_the_newest_frame_and_no_backlog():
    src = IteratorSource(counting_frames(), fps=200, name="fast")
    try:
        got = []
        for _ in range(15):
            frame = src.read(timeout=2.0)
            assert frame is not None
            newest = src.stats()["grabbed"] - 1
            lag = time.monotonic() - frame.timestamp
            got.append((frame.index, newest, lag))
            assert int(frame.image[0, 0, 0]) == frame.index % 256  # the image is that frame's image
            time.sleep(0.05)  # a pipeline slower than the camera
    finally:
        src.close()
    indices = [g[0] for g in got]
    gaps = np.diff(indices)
    assert (gaps > 0).all(), f"indices must strictly increase: {indices}"
    # 200 fps and 50 ms per frame: about 10 frames skipped per read (fewer when the CPU is busy).
    assert (gaps > 1).mean() >= 0.8 and np.median(gaps) >= 5, f"frames were not skipped: {indices}"
    # A backlog would grow by ~10 frames per read; a thread switch between read() and stats() or a
    # busy CPU may let the grabber add a few frames. Margins allow for that, not for a queue.
    behind = [newest - index for index, newest, _ in got]
    lags = [lag for _, _, lag in got]
    assert max(behind) <= 5, f"frames handed out while newer ones were there: {behind}"
    assert np.median(lags) < 0.02 and max(lags) < 0.2, f"frame age at read (s): {lags}"
    assert src.stats()["dropped"] > 0


def test_after_a_long_pause_the_next_frame_is_fresh_not_queued():
    src = IteratorSource(counting_frames(), fps=100, name="pause")
    try:
        first = src.read(timeout=2.0)
        time.sleep(0.5)  # a very slow frame (e.g. many faces)
        second = src.read(timeout=2.0)
        assert second.index - first.index >= 25  # ~50 produced meanwhile; only the newest is kept
        assert time.monotonic() - second.timestamp < 0.05
        third = src.read(timeout=2.0)
        assert third.index > second.index
    finally:
        src.close()


def test_fast_consumer_never_gets_the_same_frame_twice():
    src = IteratorSource(counting_frames(), fps=10, name="slow")
    try:
        frames, empty = [], 0
        for _ in range(6):
            frames.append(src.read(timeout=2.0))
            empty += src.read(timeout=0.001) is None  # 1 ms after a frame at 10 fps: wait, not repeat
    finally:
        src.close()
    indices = [f.index for f in frames]
    assert (np.diff(indices) >= 1).all(), indices  # never the same frame twice
    assert (np.diff(indices) == 1).mean() >= 0.6, indices  # a reader faster than the source misses none
    assert empty >= 5
    assert len({id(f.image) for f in frames}) == 6


def test_iterator_source_ends_and_reports_finished():
    src = ArraySource([numbered(i) for i in range(3)], fps=100)
    got = []
    deadline = time.monotonic() + 5
    while not src.finished and time.monotonic() < deadline:
        f = src.read(timeout=1.0)
        if f is not None:
            got.append(f.index)
    assert src.finished and got and got[-1] == 2
    assert src.read(timeout=0.5) is None
    src.close()


def test_close_unblocks_a_waiting_reader_and_stops_the_grabber_thread():
    src = IteratorSource(counting_frames(), fps=0.5, name="closing")  # next frame 2 s away
    assert src.read(timeout=2.0).index == 0
    result = {}
    reader = threading.Thread(target=lambda: result.setdefault("frame", src.read(timeout=None)))
    reader.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    src.close()
    reader.join(1.0)
    assert not reader.is_alive() and result["frame"] is None
    assert time.monotonic() - t0 < 1.0
    assert "grab:closing" not in [t.name for t in threading.enumerate()]
    assert src.read(timeout=0.0) is None


# --- video files ------------------------------------------------------------------------------

def test_video_file_not_realtime_reads_every_frame_in_order(tmp_path):
    clip = tmp_path / "clip.avi"
    write_clip(clip, 40)
    src = open_source(SourceConfig(uri=str(clip), realtime=False))
    assert isinstance(src, OrderedSource)
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
        time.sleep(0.002)  # a slow consumer must not lose frames here
    assert [f.index for f in frames] == list(range(40))
    means = np.array([f.image.mean() for f in frames])
    assert np.abs(means - 5 * np.arange(40)).max() < 4
    assert all(f.image.shape == (H, W, 3) and f.image.dtype == np.uint8 for f in frames)
    assert src.finished and src.read() is None
    src.close()


def test_video_file_loops_when_asked(tmp_path):
    clip = tmp_path / "clip.avi"
    write_clip(clip, 10)
    with open_source(SourceConfig(uri=str(clip), realtime=False, loop=True)) as src:
        frames = [src.read() for _ in range(25)]
    assert [f.index for f in frames] == list(range(25))
    means = np.array([f.image.mean() for f in frames])
    assert np.abs(means - 5 * (np.arange(25) % 10)).max() < 4


def test_a_file_read_in_order_carries_its_own_clock_across_loops(tmp_path):
    """Frame i of a 25 fps file is at i / 25 s of video time, whenever it is read; a loop continues the
    clock (rules like the alert cooldown must never see time run backwards)."""
    clip = tmp_path / "clip.avi"
    write_clip(clip, 10, fps=25.0)
    with open_source(SourceConfig(uri=str(clip), realtime=False, loop=True)) as src:
        frames = []
        for _ in range(25):
            frames.append(src.read())
            time.sleep(0.003)  # however slowly it is read
    assert np.allclose([f.meta["video_s"] for f in frames], np.arange(25) / 25.0, atol=1e-6)
    once = open_source(SourceConfig(uri=str(clip), realtime=False))
    assert once.read().meta["video_s"] == 0.0
    once.close()
    live = open_source(SourceConfig(uri=str(clip), realtime=True))  # played like a camera: the wall clock
    try:
        f = live.read(timeout=3.0)
        assert f is not None and "video_s" not in f.meta
    finally:
        live.close()


def test_sources_and_cameras_import_one_way_and_the_package_has_no_import_circle():
    import ast
    from pathlib import Path

    pkg = Path(__file__).resolve().parent.parent / "mask_guard"
    graph = {}
    for path in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[path.stem] = {d.split(".")[0] for d in deps}
    assert "sources" not in graph["cameras"] and "cameras" in graph["sources"]
    assert not ({"sources", "cameras"} & graph["source_base"])

    def cycle_from(node, stack):
        for dep in sorted(graph.get(node, ())):
            if dep in stack:
                return stack[stack.index(dep):] + [dep]
            found = cycle_from(dep, stack + [dep])
            if found:
                return found
        return None

    cycles = [c for c in (cycle_from(m, [m]) for m in sorted(graph)) if c]
    assert not cycles, f"import circles (lazy imports inside functions count too): {cycles[0]}"


def test_video_file_realtime_is_paced_at_its_fps_and_drops_for_a_slow_consumer(tmp_path):
    clip = tmp_path / "clip.avi"
    write_clip(clip, 40, fps=25.0)
    src = open_source(SourceConfig(uri=str(clip), realtime=True))
    frames = []
    while not src.finished:
        f = src.read(timeout=3.0)
        if f is not None:
            frames.append(f)
            time.sleep(0.2)  # 5 frames of the clip per read
    src.close()
    indices = [f.index for f in frames]
    assert len(frames) < 20 and (np.diff(indices) > 1).any(), indices
    # Paced like a camera: the file's frames come at 25 fps, not as fast as they decode.
    span = frames[-1].timestamp - frames[0].timestamp
    assert span >= 0.8 * (indices[-1] - indices[0]) / 25.0
    assert src.stats()["dropped"] > 0


def test_missing_video_file_is_a_clear_setup_error(tmp_path):
    with pytest.raises(SourceError, match="not a camera index, URL or existing video file"):
        open_source(SourceConfig(uri=str(tmp_path / "nope.mp4")))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(SourceError, match="cannot decode"):
        open_source(SourceConfig(uri=str(bad)))


def test_picamera_without_picamera2_is_a_clear_error_and_auto_falls_back_to_webcam_0():
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 imports here (a Pi): this test is for machines without it")
    except Exception:
        pass
    with pytest.raises(SourceError, match="picamera2"):
        open_source(SourceConfig(uri="picamera"))
    src = open_source(SourceConfig(uri="auto", retry_initial_s=5, retry_max_s=5))
    try:
        assert src.name == "webcam:0"
    finally:
        src.close()


# --- cameras that are missing or come and go ---------------------------------------------------

def test_missing_webcam_is_retried_with_doubling_backoff_and_one_log_line(caplog):
    index = 37
    if os.path.exists(f"/dev/video{index}"):
        pytest.skip(f"/dev/video{index} exists here")
    caplog.set_level(logging.DEBUG, logger="mask_guard")
    src = open_source(SourceConfig(uri=str(index), retry_initial_s=0.05, retry_max_s=0.4))
    try:
        t0 = time.monotonic()
        assert src.read(timeout=1.5) is None  # no exception, just nothing while the camera is down
        assert time.monotonic() - t0 >= 1.4
        assert not src.healthy
        stats = src.stats()
    finally:
        src.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("mask_guard")]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "cannot be opened" in warnings[0].getMessage()
    # Waits double: 0.05, 0.1, 0.2, 0.4, 0.4 ... (a fixed 0.05 s retry would make ~30 attempts).
    waits = [float(r.getMessage().split("next try in ")[1].split(" s")[0])
             for r in caplog.records if "still down" in r.getMessage()]
    assert waits[:3] == [0.1, 0.2, 0.4] and set(waits[3:]) <= {0.4}, waits
    assert 4 <= stats["open_attempts"] <= 8, stats
    assert stats["last_error"] and stats["reconnects"] == 0


def _wait_for(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_network_camera_that_drops_out_is_reopened_with_one_lost_and_one_back_line(caplog, monkeypatch):
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "probesize;32|analyzeduration;0")  # open fast
    caplog.set_level(logging.INFO, logger="mask_guard")
    srv = MjpegCamera(lambda i: cv2.imencode(".jpg", numbered(i))[1].tobytes(), period=0.02)
    src = open_source(SourceConfig(uri=srv.url, retry_initial_s=0.05,
                                   retry_max_s=0.2))
    try:
        before = [src.read(timeout=10.0) for _ in range(3)]
        assert all(f is not None for f in before) and src.healthy
        srv.unplug()  # the camera goes away
        assert _wait_for(lambda: not src.healthy, 10.0)
        time.sleep(0.6)  # several failed reopen attempts
        src.read(timeout=0.0)  # drain a frame grabbed just before the cut, if any
        t0 = time.monotonic()
        assert src.read(timeout=0.3) is None  # down: read times out, no exception
        assert time.monotonic() - t0 >= 0.29
        srv = srv.replug()  # and comes back
        after = src.read(timeout=10.0)
        assert after is not None and src.healthy
        assert after.index > before[-1].index
        stats = src.stats()
    finally:
        src.close()
        srv.unplug()
    messages = [r.getMessage() for r in caplog.records if r.name == "mask_guard.cameras"]
    assert sum("lost" in m for m in messages) == 1, messages
    assert sum(" back after " in m for m in messages) == 1, messages
    assert [r for r in caplog.records if r.levelno >= logging.WARNING and "lost" not in r.getMessage()] == []
    assert stats["reconnects"] == 1 and stats["open_attempts"] >= 3


# --- hostile frames -----------------------------------------------------------------------------

def _hostile():
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    bgra = np.dstack([np.full((H, W), c, np.uint8) for c in (10, 20, 30, 255)])
    return [
        np.zeros((0, 0, 3), np.uint8),  # empty
        np.zeros((1, 1, 3), np.uint8),  # 1x1
        gray,  # grayscale
        bgra,  # 4 channels
        gray[:, :, None],  # (H, W, 1)
        np.zeros((H, W, 3), np.float32),  # wrong dtype
        None,  # a failed decode
        np.zeros((H, W, 2), np.uint8),  # nonsense channel count
        (np.ones((H, W, 3), np.uint16) * 0x4000),  # 16-bit
        numbered(7)[:, ::2],  # non-contiguous view
    ]


def test_hostile_frames_are_normalized_to_bgr_or_dropped(caplog):
    caplog.set_level(logging.DEBUG, logger="mask_guard.sources")
    src = OrderedSource(_hostile(), name="hostile")
    got = []
    while (f := src.read()) is not None:
        got.append(f)
    assert [f.index for f in got] == [2, 3, 4, 8, 9]  # indices keep counting over dropped frames
    for f in got:
        assert f.image.dtype == np.uint8 and f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.flags["C_CONTIGUOUS"]
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    assert (got[0].image == gray[:, :, None]).all()  # gray copied to B, G and R
    assert got[1].image[0, 0].tolist() == [10, 20, 30]  # alpha removed, order kept
    assert (got[3].image == 0x40).all()
    assert got[4].image.shape == (H, W // 2, 3)
    assert src.stats()["rejected"] == 5
    assert sum("unusable image" in r.getMessage() for r in caplog.records) == 5


def test_hostile_frames_in_a_live_source_do_not_stop_it():
    src = ArraySource(_hostile() + [numbered(1)], fps=200)
    got = []
    deadline = time.monotonic() + 5
    while not src.finished and time.monotonic() < deadline:
        f = src.read(timeout=1.0)
        if f is not None:
            got.append(f)
    src.close()
    assert got and got[-1].index == 10 and (got[-1].image == 1).all()
    assert src.stats()["rejected"] == 5


def test_normalize_image_rejects_tiny_frames():
    assert normalize_image(np.zeros((15, 640, 3), np.uint8)) is None
    assert normalize_image(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16, 3)
    assert normalize_image("not an image") is None
