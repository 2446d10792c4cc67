"""The developer's preview window: annotated frames in a real X window (Xvfb), closed with 'q'."""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import cv2
import pytest

import appliance_helpers as h

needs_x = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                             reason="Xvfb and xdotool are needed (apt install xvfb xdotool)")


def _gui_opencv() -> bool:
    info = cv2.getBuildInformation()
    gui = info[info.find("GUI:"):].splitlines()[0] if "GUI:" in info else ""
    return bool(gui) and "NONE" not in gui


@pytest.fixture
def display():
    """A private X server; its display number comes back through -displayfd."""
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as fh:
        number = fh.readline().strip()
    try:
        yield f":{number}"
    finally:
        xvfb.terminate()
        xvfb.wait(10)


@needs_x
@pytest.mark.skipif(not _gui_opencv(), reason="this OpenCV is headless (the dev setup installs opencv-python)")
def test_preview_window_shows_the_annotated_frames_and_q_closes_it(tmp_path, display):
    h.need_mouth_model()
    clip = h.write_clip(tmp_path / "walk.avi", h.make_frames(40))
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path)
    env = dict(h.daemon_env(tmp_path), DISPLAY=display)
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--loop", "--preview"], env, tmp_path / "log")
    try:
        found = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name", "mask-guard"],
                               env=env, capture_output=True, text=True, timeout=60)
        window = found.stdout.split()[0]
        geometry = subprocess.run(["xdotool", "getwindowgeometry", window], env=env, capture_output=True,
                                  text=True, timeout=10).stdout
        assert "Geometry:" in geometry
        h.wait_log(tmp_path / "log", "ready: first frame processed", timeout=60, proc=proc)
        time.sleep(0.5)
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, check=True, timeout=10)
        assert h.finish(proc, timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "log").read_text()
    assert "preview closed (key): stopping" in log, log
