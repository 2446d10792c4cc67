"""The daemon on real runs: the systemd notify protocol, signals, the control socket, and faults.

Each test starts ``mask-guard run`` as systemd would (its own NOTIFY_SOCKET bound by the test, WATCHDOG_USEC
set) on a small clip composed of real face photos, and reads what systemd would read.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import date, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from mjpeg_camera import MjpegCamera

import appliance_helpers as h
from mask_guard import control


@pytest.fixture
def notify(tmp_path):
    listener = h.NotifyListener(tmp_path / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture
def clip(tmp_path) -> Path:
    return h.write_clip(tmp_path / "walk.avi", h.make_frames(40))


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory) -> Path:
    """Two 8000x8000 frames with a face: seconds of work each, so a SIGTERM lands mid-frame."""
    h.need_data()
    big = np.zeros((8000, 8000, 3), np.uint8)
    big[3000:5000, 3000:5000] = cv2.resize(h.face_images(1)[0], (2000, 2000))
    return h.write_clip(tmp_path_factory.mktemp("big") / "big.avi", [big, big], fps=2)


def status(tmp_path: Path) -> dict:
    reply, _ = control.request(tmp_path / "ctl.sock", "status")
    return reply


# --- the protocol on a normal run ---------------------------------------------------------------

def test_ready_after_the_first_frame_then_watchdog_and_status_then_stopping_on_sigterm(tmp_path, notify, clip):
    h.need_mouth_model()
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path)
    t0 = time.monotonic()
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--loop"],
                          h.daemon_env(tmp_path, notify, watchdog_s=2.0), tmp_path / "log")
    try:
        t_ready = notify.wait_for("READY", "1", timeout=60)
        log = h.wait_log(tmp_path / "log", "ready: first frame processed", proc=proc)
        assert "camera ok: first frame" in log and log.index("camera ok") < log.index("ready: first frame")
        notify.wait_for("WATCHDOG", "1", timeout=5)
        time.sleep(1.6)
        assert len(notify.times("WATCHDOG", "1")) >= 3, "pinged at least every WatchdogSec/4 = 0.5 s"
        statuses = [v for _, k, v in notify.fields() if k == "STATUS"]
        assert statuses[0] == "loading models"
        assert any("fps; today" in s and "camera ok" in s for s in statuses), statuses
        assert not notify.has("STOPPING")
        elapsed = h.stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    t_stop = notify.wait_for("STOPPING", "1", timeout=1)
    assert t_stop > t_ready
    assert elapsed < 2.0, f"exit took {elapsed:.2f} s after SIGTERM"
    log = (tmp_path / "log").read_text()
    assert "SIGTERM received" in log and "stopped after" in log and "Traceback" not in log
    assert json.loads((tmp_path / "counts.json").read_text())["days"], "counts saved on exit"
    assert not (tmp_path / "ctl.sock").exists(), "the control socket is removed on exit"
    print(f"start to READY {t_ready - t0:.2f} s, SIGTERM to exit {elapsed:.2f} s")


def test_status_and_snapshot_answer_over_the_control_socket_while_running(tmp_path, notify, clip):
    h.need_mouth_model()
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path)
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--loop"],
                          h.daemon_env(tmp_path, notify), tmp_path / "log")
    try:
        notify.wait_for("READY", "1", timeout=60)
        time.sleep(0.6)
        st = status(tmp_path)
        assert st["ok"] and st["state"] == "running" and st["pid"] == proc.pid
        assert st["frames"] > 0 and st["fps"] > 0 and st["camera"]["ok"] and st["camera"]["source"] == str(clip)
        assert set(st["today"]) == {"people", "masked", "unmasked", "alerts"}
        assert st["audio"] == "ok", "ALSA's null device plays for real"
        reply, jpeg = control.request(tmp_path / "ctl.sock", "snapshot")
        assert reply["ok"] and reply["content_type"] == "image/jpeg" and reply["length"] == len(jpeg)
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (240, 320, 3) and (reply["width"], reply["height"]) == (320, 240)
        raw_reply, raw = control.request(tmp_path / "ctl.sock", "snapshot", raw=True)
        raw_img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        assert raw_img.shape == img.shape
        # the CLI front-ends: status text, --json, snapshot to a file
        env = h.daemon_env(tmp_path)
        r = _cli(env, "status", "--socket", str(tmp_path / "ctl.sock"))
        assert r.returncode == 0 and "running" in r.stdout and "camera: ok" in r.stdout, r.stdout + r.stderr
        r = _cli(env, "status", "--json", "--config", str(cfg))
        assert r.returncode == 0 and json.loads(r.stdout)["state"] == "running"
        out = tmp_path / "snap.jpg"
        r = _cli(env, "snapshot", str(out), "--config", str(cfg))
        assert r.returncode == 0 and "from the service" in r.stdout
        assert cv2.imread(str(out)).shape == (240, 320, 3)
        bad, _ = control.request(tmp_path / "ctl.sock", "reboot")
        assert not bad["ok"] and "unknown command" in bad["error"]
        assert proc.poll() is None
    finally:
        h.stop(proc)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert not [f for f in files if f.endswith((".jpg", ".png")) and f != "snap.jpg"], "the service writes no images"


def _cli(env, *args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "mask_guard.cli", *args], capture_output=True, text=True,
                          env=env, cwd=str(h.ROOT), timeout=60)


# --- signals ------------------------------------------------------------------------------------

def test_sigterm_during_a_long_frame_sends_stopping_and_exits_within_2_s(tmp_path, notify, big_clip):
    h.need_mouth_model()
    # the smallest faces MTCNN allows: a deep pyramid, ~3 s per 8000x8000 frame here (the grace is 1.2 s)
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path, faces={"min_face_px": 12})
    # only a backup: the recovered counts are dirty, and the first periodic save is 5 s away,
    # so counts.json appears only if the exit path saves
    recovered = {"version": 1, "days": {date.today().isoformat(): {"people": 3, "masked": 2, "unmasked": 1,
                                                                   "alerts": 1}}}
    (tmp_path / "counts.json.bak").write_text(json.dumps(recovered))
    proc = h.start_daemon(["--config", str(cfg), "--source", str(big_clip), "--loop", "--no-realtime"],
                          h.daemon_env(tmp_path, notify, watchdog_s=30), tmp_path / "log")
    try:
        notify.wait_for("READY", "1", timeout=90)  # one 8000x8000 frame done; the next is in progress
        time.sleep(0.3)
        elapsed = h.stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "log").read_text()
    assert "SIGTERM received" in log, log
    assert notify.has("STOPPING", "1")
    assert proc.returncode == 0
    assert elapsed < 2.0, f"exit took {elapsed:.2f} s after SIGTERM"
    print(f"SIGTERM mid-frame to exit {elapsed:.2f} s")
    # Whether this frame outlasted the 1.2 s grace (forced exit) depends on the machine's load; both
    # paths must save the counts and meet the 2 s bound above.
    saved = json.loads((tmp_path / "counts.json").read_text())["days"]
    assert saved[date.today().isoformat()]["people"] >= 3, "counts saved on exit, forced or not"


def test_sighup_with_an_invalid_config_keeps_the_running_one_and_a_valid_one_is_applied(tmp_path, notify, clip):
    h.need_mouth_model()
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path)
    good = cfg.read_text()
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--loop"],
                          h.daemon_env(tmp_path, notify), tmp_path / "log")
    try:
        t_ready = notify.wait_for("READY", "1", timeout=60)
        cfg.write_text(good + "source:\n  width: wide\nbogus: 1\n")
        proc.send_signal(1)  # SIGHUP
        t_reload = notify.wait_for("RELOADING", "1", timeout=10, after=t_ready)
        notify.wait_for("READY", "1", timeout=10, after=t_reload)
        log = h.wait_log(tmp_path / "log", "keeping the running configuration", proc=proc)
        assert "source.width: 'wide' is str, expected an integer" in log and "bogus: unknown key" in log
        frames = status(tmp_path)["frames"]
        time.sleep(0.5)
        assert status(tmp_path)["frames"] > frames and proc.poll() is None, "still detecting"
        monotonic = [v for _, k, v in notify.fields() if k == "MONOTONIC_USEC"]
        assert monotonic and int(monotonic[0]) > 0, "RELOADING=1 carries MONOTONIC_USEC"
        cfg.write_text(h.write_config(tmp_path / "c2.yaml", tmp_path, votes={"decide_after": 5}).read_text())
        proc.send_signal(1)
        log = h.wait_log(tmp_path / "log", "(changed: votes)", proc=proc)
        assert log.count("reloaded ") == 1
    finally:
        h.stop(proc)
    assert proc.returncode == 0


# --- faults -------------------------------------------------------------------------------------

def test_a_camera_missing_at_start_is_retried_ready_and_waiting_with_the_watchdog_fed(tmp_path):
    """Also the built-in sender on an abstract NOTIFY_SOCKET, as systemd may hand out. A camera that never
    delivered does not fail the unit (camera_lost_restart_s is for cameras lost mid-run); test_notify.py
    plugs the camera in later."""
    h.need_mouth_model()
    listener = h.NotifyListener(f"@mask-guard-test-{time.monotonic_ns()}")
    try:
        cfg = h.write_config(tmp_path / "c.yaml", tmp_path,
                             source={"uri": "9", "retry_initial_s": 0.1, "retry_max_s": 0.4},
                             service={"camera_lost_restart_s": 1.5})
        env = h.daemon_env(tmp_path, listener, watchdog_s=0.8)
        env["MASK_GUARD_NOTIFY"] = "raw"
        proc = h.start_daemon(["--config", str(cfg)], env, tmp_path / "log")
        try:
            t_ready = listener.wait_for("READY", "1", timeout=60)
            h.wait_log(tmp_path / "log", "the service is up and waiting for it", timeout=10, proc=proc)
            time.sleep(2.5)  # past camera_lost_restart_s
            pings = listener.times("WATCHDOG", "1")
            assert pings and max(pings) > time.monotonic() - 0.8, "still fed: waiting is not hanging"
            assert max(pings) - t_ready > 1.5 + 0.5, "fed beyond camera_lost_restart_s"
            log = (tmp_path / "log").read_text()
            assert log.count("cannot be opened") == 1, "one log line for the camera, not one per attempt"
            assert "no longer feeding the watchdog" not in log
            statuses = [v for _, k, v in listener.fields() if k == "STATUS"]
            assert any("waiting for the first frame" in s for s in statuses), statuses
            assert any("waiting for camera webcam:9" in s for s in statuses), statuses
            elapsed = h.stop(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0 and elapsed < 2.0
        assert listener.has("STOPPING", "1")
    finally:
        listener.close()


def test_a_camera_lost_mid_run_is_retried_and_picked_up_again_with_the_watchdog_fed_within_bounds(tmp_path, notify):
    h.need_mouth_model()
    jpegs = [cv2.imencode(".jpg", f)[1].tobytes() for f in h.make_frames(20)]
    srv = MjpegCamera(lambda i: jpegs[i % len(jpegs)])
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path,
                         source={"uri": srv.url, "retry_initial_s": 0.1,
                                 "retry_max_s": 0.3},
                         service={"camera_lost_restart_s": 2.0})
    env = h.daemon_env(tmp_path, notify, watchdog_s=0.8)
    env["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "probesize;32|analyzeduration;0"  # open the stream fast
    proc = h.start_daemon(["--config", str(cfg)], env, tmp_path / "log")
    try:
        notify.wait_for("READY", "1", timeout=60)
        time.sleep(0.5)
        srv.unplug()
        t_cut = time.monotonic()
        h.wait_log(tmp_path / "log", "no longer feeding the watchdog", timeout=30, proc=proc)
        time.sleep(0.8)
        pings_down = [t for t in notify.times("WATCHDOG", "1") if t > t_cut]
        assert pings_down, "the watchdog is fed while the camera is down for less than camera_lost_restart_s"
        assert max(pings_down) < time.monotonic() - 0.7, "then the pings stop"
        assert status(tmp_path)["state"] == "camera_lost"
        srv = srv.replug()  # plugged back in
        log = h.wait_log(tmp_path / "log", "frames flowing again", timeout=30, proc=proc)
        t_back = time.monotonic()
        notify.wait_for("WATCHDOG", "1", timeout=5, after=t_back - 0.5)
        assert status(tmp_path)["camera"]["reconnects"] == 1
        assert log.count("stream.mjpg lost:") == 1 and log.count("back after") == 1, log
        elapsed = h.stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        srv.unplug()
    assert proc.returncode == 0 and elapsed < 2.0


def test_a_missing_or_corrupt_model_exits_66_with_a_message_naming_the_file(tmp_path, notify):
    missing = tmp_path / "nope.tflite"
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path, mouths={"model": str(missing)})
    proc = h.start_daemon(["--config", str(cfg), "--source", "0"], h.daemon_env(tmp_path, notify), tmp_path / "log")
    assert h.finish(proc) == 66
    log = (tmp_path / "log").read_text()
    assert f"model file not found: {missing}" in log and "Traceback" not in log
    assert not notify.has("READY")
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 4096)
    h.write_config(cfg, tmp_path, mouths={"model": str(corrupt)})
    proc = h.start_daemon(["--config", str(cfg), "--source", "0"], h.daemon_env(tmp_path, notify), tmp_path / "log2")
    assert h.finish(proc) == 66
    assert f"model file {corrupt} is not a valid TFLite model" in (tmp_path / "log2").read_text()


def test_preview_without_a_display_says_so_once_and_runs_on(tmp_path, clip):
    h.need_mouth_model()
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path)
    env = h.daemon_env(tmp_path)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--no-realtime", "--max-frames", "5",
                           "--preview"], env, tmp_path / "log")
    assert h.finish(proc) == 0
    log = (tmp_path / "log").read_text()
    assert log.count("--preview needs a display") == 1 and "stopping after 5 frames" in log


def test_an_invalid_config_at_start_exits_78_listing_every_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("source:\n  fps: fast\nalerts:\n  cooldown_s: -1\nextra: 1\n")
    proc = h.start_daemon(["--config", str(cfg)], h.daemon_env(tmp_path), tmp_path / "log")
    assert h.finish(proc) == 78
    log = (tmp_path / "log").read_text()
    for key in ("source.fps", "alerts.cooldown_s", "extra"):
        assert f"  {key}: " in log, log


def test_a_missing_sound_card_logs_one_warning_and_detection_goes_on(tmp_path, notify, clip):
    h.need_mouth_model()
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path, alerts={"cooldown_s": 0, "realert_s": 0})
    env = h.daemon_env(tmp_path, notify)
    asound = tmp_path / "no-card.conf"
    asound.write_text("pcm.!default { type hw card 7 }\nctl.!default { type hw card 7 }\n")  # no such card
    env["ALSA_CONFIG_PATH"] = str(asound)
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--no-realtime", "--loop",
                           "--max-frames", "60"], env, tmp_path / "log")
    assert h.finish(proc) == 0
    log = (tmp_path / "log").read_text()
    assert "decided no_mask" in log, "the clip shows an unmasked face: someone must be alerted\n" + log
    assert log.count("sound unavailable") == 1, log
    assert "stopping after 60 frames" in log and "Traceback" not in log
    assert notify.has("READY", "1")


def test_a_corrupt_state_file_restarts_the_counts_from_the_backup(tmp_path, notify, clip):
    h.need_mouth_model()
    state = tmp_path / "counts.json"
    today, earlier = date.today().isoformat(), (date.today() - timedelta(days=10)).isoformat()
    backup = {"version": 1, "days": {today: {"people": 7, "masked": 5, "unmasked": 2, "alerts": 2},
                                     earlier: {"people": 1, "masked": 1, "unmasked": 0, "alerts": 0}}}
    (tmp_path / "counts.json.bak").write_text(json.dumps(backup))
    state.write_text('{"version": 1, "days": {"' + today + '": {"peo')  # torn by a power cut
    cfg = h.write_config(tmp_path / "c.yaml", tmp_path)
    proc = h.start_daemon(["--config", str(cfg), "--source", str(clip), "--no-realtime"],
                          h.daemon_env(tmp_path, notify), tmp_path / "log")
    assert h.finish(proc) == 0, "runs to the end of the clip"
    log = (tmp_path / "log").read_text()
    assert "using the backup" in log and "end of input" in log and "Traceback" not in log
    days = json.loads(state.read_text())["days"]
    assert days[earlier] == backup["days"][earlier]
    assert days[today]["people"] >= 7 and days[today]["masked"] >= 5
    assert list(tmp_path.glob("counts.json.corrupt-*")), "the torn file is kept aside, not deleted"
    assert notify.has("STOPPING", "1"), "a normal end says STOPPING=1 too"


def test_hostile_frames_and_nan_boxes_do_not_stop_the_loop(tmp_path, caplog):
    """In-process with an ordered source: every frame reaches the loop, in order."""
    h.need_mouth_model()
    from mask_guard.config import load_config
    from mask_guard.daemon import Daemon, RunOptions
    from mask_guard.detections import Detections
    from mask_guard.sources import OrderedSource

    good = h.make_frames(6)
    gray = cv2.cvtColor(good[1], cv2.COLOR_BGR2GRAY)
    huge = np.zeros((8000, 8000, 3), np.uint8)
    huge[3000:3400, 3000:3400] = cv2.resize(good[2][60:180, 100:220], (400, 400))
    empty_corridor = np.full((240, 320, 3), 128, np.uint8)  # no face at all: the most common frame
    frames = [good[0], np.zeros((0, 0, 3), np.uint8), gray, np.zeros((1, 1, 3), np.uint8), huge,
              np.dstack([good[3], np.full(good[3].shape[:2], 255, np.uint8)]), None,
              np.full((240, 320, 3), np.nan, np.float32), empty_corridor, good[4], good[5]]
    cfg = load_config(h.write_config(tmp_path / "c.yaml", tmp_path, alerts={"enabled": False}))
    caplog.set_level(logging.INFO, logger="mask_guard")
    daemon = Daemon(cfg, RunOptions(), source=OrderedSource(iter(frames), name="hostile"))
    assert daemon.run() == 0
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if " failed (" in m], messages
    assert daemon.frames == 7, "good, gray, 8000x8000, BGRA, empty and two good frames processed; the rest dropped"
    assert daemon.source.stats()["rejected"] == 4
    # NaN boxes from a broken detector: the tracker drops them and the next real frame still works
    tracker = daemon.pipeline.tracker
    bad = Detections(np.array([[np.nan, 10, 50, 50], [10, 10, np.inf, 50], [100, 60, 220, 180]], np.float32),
                     np.array([0.9, np.nan, 0.99], np.float32))
    for _ in range(3):
        objs = tracker.update(bad)
    assert objs and all(np.isfinite(o.box).all() for o in objs)
    assert all(o.detection_index in (None, 2) for o in objs), "only the finite row can match"
    from mask_guard.detections import Frame

    result = daemon.pipeline.process(Frame(good[0], 99, time.monotonic()))
    assert len(result.faces) == 1


def test_the_soak_tool_reports_memory_growth_of_a_real_run(tmp_path, clip):
    h.need_mouth_model()
    import subprocess
    import sys

    r = subprocess.run([sys.executable, str(h.ROOT / "tools" / "soak.py"), "--clip", str(clip), "--frames", "120",
                        "--every", "0.3", "--warmup", "20", "--json"], capture_output=True, text=True, timeout=300,
                       env=h.daemon_env(tmp_path), cwd=str(h.ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout.splitlines()[-1])
    assert report["exit_code"] == 0 and report["frames"] == 120 and report["errors_logged"] == 0
    for key in ("rss_after_warmup_mb", "rss_end_mb", "growth_mb", "growth_mb_per_1000_frames", "fds_start_end"):
        assert key in report, report
    assert 20 < report["rss_end_mb"] < 2000


def test_a_grabber_that_dies_on_an_error_exits_non_zero_so_systemd_restarts_the_service(tmp_path, caplog):
    """A camera driver or decoder exception ends the source: that is a failure (Restart=on-failure), not
    an end of input (exit 0 would leave the appliance stopped for good)."""
    h.need_mouth_model()
    from mask_guard.config import load_config
    from mask_guard.daemon import EXIT_ERROR, Daemon, RunOptions
    from mask_guard.sources import IteratorSource

    def frames():
        yield from h.make_frames(3)
        raise RuntimeError("driver hiccup")

    cfg = load_config(h.write_config(tmp_path / "c.yaml", tmp_path, alerts={"enabled": False}))
    caplog.set_level(logging.INFO, logger="mask_guard")
    daemon = Daemon(cfg, RunOptions(), source=IteratorSource(frames(), fps=10, name="dying"))
    assert daemon.run() == EXIT_ERROR
    messages = [r.getMessage() for r in caplog.records]
    assert any("ended on an error" in m and "driver hiccup" in m for m in messages), messages
    assert not any("end of input" in m for m in messages)
