"""sd_notify: both senders (systemd-python and the built-in one) speak the real datagram protocol, and the
daemon tells systemd the truth: started and waiting when no camera is there yet, alive while its detector rests."""
from __future__ import annotations

import os
import time

import cv2
import pytest

import appliance_helpers as h
from mask_guard import control, notify


@pytest.fixture
def clean_env(monkeypatch):
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "MASK_GUARD_NOTIFY"):
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


@pytest.mark.parametrize("sender", ["systemd-python", "raw"])
@pytest.mark.parametrize("where", ["path", "abstract"])
def test_ready_status_watchdog_reloading_and_stopping_reach_the_socket(tmp_path, clean_env, sender, where):
    if sender == "systemd-python":
        pytest.importorskip("systemd.daemon")
    else:
        clean_env.setenv("MASK_GUARD_NOTIFY", "raw")
    addr = str(tmp_path / "n.sock") if where == "path" else f"@mg-notify-{os.getpid()}-{time.monotonic_ns()}"
    listener = h.NotifyListener(addr)
    try:
        clean_env.setenv("NOTIFY_SOCKET", addr)
        clean_env.setenv("WATCHDOG_USEC", "400000")
        n = notify.Notifier()
        assert n.enabled and n.watchdog_s == pytest.approx(0.4)
        n.ready("1.0 fps")
        n.watchdog()
        n.reloading()
        n.status("busy")
        n.stopping()
        listener.wait_for("STOPPING", "1", timeout=5)
        got = [m for _, m in listener.messages]
    finally:
        listener.close()
    assert got[0] == "READY=1\nSTATUS=1.0 fps"
    assert got[1] == "WATCHDOG=1"
    assert got[2].startswith("RELOADING=1\nMONOTONIC_USEC=")
    assert got[3:] == ["STATUS=busy", "STOPPING=1\nSTATUS=stopping"]


def test_watchdog_pings_are_rate_limited_to_a_quarter_of_the_interval(tmp_path, clean_env):
    listener = h.NotifyListener(tmp_path / "n.sock")
    try:
        clean_env.setenv("NOTIFY_SOCKET", listener.path)
        clean_env.setenv("WATCHDOG_USEC", "400000")
        n = notify.Notifier()
        t_end = time.monotonic() + 0.45
        while time.monotonic() < t_end:
            n.watchdog()  # a 1000 fps loop
            time.sleep(0.001)
        time.sleep(0.1)
        pings = listener.times("WATCHDOG", "1")
    finally:
        listener.close()
    assert 4 <= len(pings) <= 6, pings  # every 0.1 s


def test_nothing_is_sent_and_nothing_fails_without_systemd(clean_env):
    n = notify.Notifier()
    assert not n.enabled and n.watchdog_s is None
    n.ready("x")
    n.watchdog()
    n.stopping()
    assert notify.raw_notify("READY=1") is False
    assert notify.raw_notify("READY=1", "/nonexistent/socket") is False
    assert notify.raw_notify("READY=1", "vsock:2:1234") is False


def test_the_watchdog_belongs_to_the_pid_systemd_named(clean_env):
    clean_env.setenv("WATCHDOG_USEC", "30000000")
    assert notify.watchdog_interval() == 30.0
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    assert notify.watchdog_interval() == 30.0
    clean_env.setenv("WATCHDOG_PID", "1")
    assert notify.watchdog_interval() is None, "inherited from a parent service: not ours to feed"
    clean_env.setenv("WATCHDOG_PID", str(os.getpid()))
    clean_env.setenv("WATCHDOG_USEC", "garbage")
    assert notify.watchdog_interval() is None


# --- the daemon's side, on real runs --------------------------------------------------------------

def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:])]


def test_no_camera_at_start_is_a_started_service_waiting_for_it_with_the_watchdog_fed(tmp_path):
    """A Pi installed before its camera is plugged in: READY=1 with a STATUS saying so, the watchdog fed
    for far longer than its interval and than camera_lost_restart_s, one log line, and the camera picked
    up the moment it is plugged in. (WatchdogSec=0.8 s here through WATCHDOG_USEC, as systemd sets it.)"""
    h.need_mouth_model()
    from mjpeg_camera import MjpegCamera

    jpeg = cv2.imencode(".jpg", h.make_frames(1)[0])[1].tobytes()
    cam = MjpegCamera(lambda i: jpeg)
    cam.unplug()  # its port, with nothing listening: the camera is not there yet
    listener = h.NotifyListener(tmp_path / "notify.sock")
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path, source={"uri": cam.url, "retry_initial_s": 0.1,
                                                                 "retry_max_s": 0.4},
                         service={"camera_lost_restart_s": 1.5})
    env = h.daemon_env(tmp_path, listener, watchdog_s=0.8)
    env["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "probesize;32|analyzeduration;0"  # open the stream fast
    proc = h.start_daemon(["--config", str(cfg)], env, tmp_path / "log")
    try:
        t_ready = listener.wait_for("READY", "1", timeout=60)
        ready_status = [v for t, k, v in listener.fields() if k == "STATUS" and t == t_ready]
        assert ready_status and "waiting for camera" in ready_status[0] and "stream.mjpg" in ready_status[0]
        time.sleep(4.0)  # 5 watchdog intervals, and camera_lost_restart_s (1.5 s) more than twice over
        pings = [t for t in listener.times("WATCHDOG", "1") if t > t_ready - 1.0]
        assert pings and max(_gaps(pings) + [time.monotonic() - pings[-1]]) < 0.8, \
            "never a watchdog interval without a ping: systemd would kill a service that only waits"
        st, _ = control.request(tmp_path / "ctl.sock", "status")
        assert st["state"] == "waiting_for_camera" and st["camera"]["last_frame_age_s"] is None
        log = (tmp_path / "log").read_text()
        assert log.count("the service is up and waiting for it") == 1, log
        assert log.count("cannot be opened") == 1, "one line for the camera, not one per attempt"
        assert "no longer feeding the watchdog" not in log
        cam = cam.replug()  # plugged in
        t_plug = time.monotonic()
        h.wait_log(tmp_path / "log", "camera ok: first frame after", timeout=30, proc=proc)
        listener.wait_for("WATCHDOG", "1", timeout=5, after=t_plug)
        deadline = time.monotonic() + 10
        while not any("camera ok" in v for t, k, v in listener.fields() if k == "STATUS" and t > t_plug):
            assert time.monotonic() < deadline, "STATUS= never said the camera is ok"
            time.sleep(0.1)
        assert listener.times("READY", "1") == [t_ready], "READY=1 once: the unit was started already"
        assert not listener.has("STOPPING")
        elapsed = h.stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        cam.unplug()
        listener.close()
    assert proc.returncode == 0 and elapsed < 2.0


def test_an_idle_detector_still_feeds_the_watchdog_and_a_camera_that_stops_is_still_noticed(tmp_path):
    """An empty entrance (a real photo under sensor noise) from a network camera: the motion gate lets the
    detector rest, frames still arrive, so the watchdog is fed and STATUS= / status say idle; then the
    camera stops delivering: noticed by its frames, not by faces, and the watchdog stops as for any loss."""
    h.need_mouth_model()
    h.need_data()
    import clips
    from mjpeg_camera import MjpegCamera

    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in clips.benchmark_room(n_noise=40)[1.0]]
    cam = MjpegCamera(lambda i: jpegs[i % len(jpegs)])
    listener = h.NotifyListener(tmp_path / "notify.sock")
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path, source={"uri": cam.url, "retry_initial_s": 0.1,
                                                                 "retry_max_s": 0.3},
                         service={"camera_lost_restart_s": 1.5})
    env = h.daemon_env(tmp_path, listener, watchdog_s=0.8)
    env["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "probesize;32|analyzeduration;0"
    proc = h.start_daemon(["--config", str(cfg)], env, tmp_path / "log")
    try:
        t_ready = listener.wait_for("READY", "1", timeout=60)
        time.sleep(3.0)
        pings = [t for t in listener.times("WATCHDOG", "1") if t > t_ready]
        assert pings and max(_gaps(pings) + [time.monotonic() - pings[-1]]) < 0.8
        statuses = [v for t, k, v in listener.fields() if k == "STATUS" and t > t_ready + 1.0]
        assert statuses and all("camera ok; idle, detector on" in s and "% of a core" in s for s in statuses), statuses
        st, _ = control.request(tmp_path / "ctl.sock", "status")
        det = st["detector"]
        assert det["state"] == "idle" and det["motion_gate"] is True, det
        assert det["frames_detected_pct"] <= 50 and 0 <= det["cpu_pct"] < 100, det
        assert st["frames"] > 30, "frames flow (and are counted) while the detector rests"
        cam.unplug()
        t_cut = time.monotonic()
        log = h.wait_log(tmp_path / "log", "no longer feeding the watchdog", timeout=30, proc=proc)
        assert "camera: no frame for" in log and "lost:" in log
        st, _ = control.request(tmp_path / "ctl.sock", "status")
        assert st["state"] == "camera_lost"
        time.sleep(1.0)
        assert max(listener.times("WATCHDOG", "1")) < time.monotonic() - 0.9, "then systemd would restart it"
        assert max(listener.times("WATCHDOG", "1")) > t_cut, "fed for camera_lost_restart_s after the loss"
        h.stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        cam.unplug()
        listener.close()
