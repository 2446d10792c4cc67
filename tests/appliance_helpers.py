"""Shared by the appliance tests (daemon, CLI, soak): real data, a small real clip, a NOTIFY_SOCKET listener.

Not a conftest.py on purpose: other test modules own theirs; these tests import this module by name.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
MOUTH_MODEL = ROOT / "models" / "mouth_nose.tflite"


sys.path.insert(0, str(ROOT / "tools"))
from datapaths import data_dir  # noqa: E402  -- the one lookup tests and tools share ($MASK_GUARD_DATA, else ../shared/data)


def need_data() -> Path:
    d = data_dir()
    if not (d / "faces" / "utkface" / "without_mask").is_dir():
        pytest.skip(f"face data not found at {d} (set MASK_GUARD_DATA)")
    return d


def need_mouth_model() -> Path:
    """The trained mouth/nose model; tests that run the full pipeline skip only while it does not exist yet.

    Looked up like the daemon does (``$MASK_GUARD_MODELS`` first, then models/).
    """
    from mask_guard.config import resource_path

    path = resource_path("mouth_nose.tflite", "models")
    if not path.exists():
        pytest.skip(f"{MOUTH_MODEL} does not exist yet (the mouth model is being trained)")
    return path


def face_images(n: int = 2) -> list[np.ndarray]:
    """A few real unmasked faces (UTKFace, 200x200), sorted by name so runs repeat."""
    folder = need_data() / "faces" / "utkface" / "without_mask"
    out = []
    for p in sorted(folder.glob("*.jpg"))[:40]:
        img = cv2.imread(str(p))
        if img is not None:
            out.append(img)
        if len(out) == n:
            break
    assert out, f"no readable face images in {folder}"
    return out


def make_frames(n_frames: int = 30, size: tuple[int, int] = (320, 240), face_px: int = 120) -> list[np.ndarray]:
    """A walk-through: one real face pasted on a gradient background, drifting left to right."""
    w, h = size
    face = cv2.resize(face_images(1)[0], (face_px, face_px), interpolation=cv2.INTER_AREA)
    bg = np.zeros((h, w, 3), np.uint8)
    bg[:] = np.linspace(40, 160, w, dtype=np.uint8)[None, :, None]
    frames = []
    for i in range(n_frames):
        img = bg.copy()
        x = int(10 + (w - face_px - 20) * i / max(n_frames - 1, 1))
        y = (h - face_px) // 2
        img[y:y + face_px, x:x + face_px] = face
        frames.append(img)
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    h, w = frames[0].shape[:2]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert vw.isOpened(), "OpenCV cannot write MJPG AVI here"
    for f in frames:
        vw.write(f)
    vw.release()
    return path


def alsa_null_env(tmp: Path) -> dict:
    """Sound through ALSA's null device: real simpleaudio playback, no speaker needed."""
    conf = tmp / "asoundrc"
    conf.write_text("pcm.!default { type null }\n")
    return {"ALSA_CONFIG_PATH": str(conf)}


class NotifyListener:
    """Binds a NOTIFY_SOCKET like systemd does and records every datagram (with its arrival time)."""

    def __init__(self, path):
        """``path``: a file system path, or ``@name`` for a Linux abstract socket (as systemd may pass)."""
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.path[1:] if self.path.startswith("@") else self.path)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if r:
                data = self.sock.recv(65536)
                with self._cond:
                    self.messages.append((time.monotonic(), data.decode()))
                    self._cond.notify_all()

    def fields(self) -> list[tuple[float, str, str]]:
        """(time, KEY, value) for every line of every message."""
        with self._cond:
            return list(self._fields())

    def _fields(self):
        for t, m in self.messages:
            for line in m.splitlines():
                k, _, v = line.partition("=")
                yield t, k, v

    def times(self, key: str, value: Optional[str] = None) -> list[float]:
        return [t for t, k, v in self.fields() if k == key and (value is None or v == value)]

    def has(self, key: str, value: Optional[str] = None) -> bool:
        return any(k == key and (value is None or v == value) for _, k, v in self.fields())

    def wait_for(self, key: str, value: Optional[str] = None, timeout: float = 30.0, after: float = 0.0) -> float:
        """Arrival time of the first KEY[=value] that arrived after ``after``; fails the test on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, k, v in self._fields():
                    if k == key and (value is None or v == value) and t > after:
                        return t
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {key}={value or '*'} within {timeout} s; got {self.messages}")
                self._cond.wait(left)

    def close(self) -> None:
        self._stop = True
        self._thread.join(1)
        self.sock.close()
        if not self.path.startswith("@"):
            Path(self.path).unlink(missing_ok=True)


def daemon_env(tmp: Path, notify: Optional[NotifyListener] = None, watchdog_s: Optional[float] = None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID",
                        "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "MASK_GUARD_CONFIG")}
    env.update(alsa_null_env(tmp))
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["XDG_RUNTIME_DIR"] = str(tmp)
    if notify is not None:
        env["NOTIFY_SOCKET"] = notify.path
    if watchdog_s is not None:
        env["WATCHDOG_USEC"] = str(int(watchdog_s * 1e6))
    return env


def start_daemon(args: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    fh = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mask_guard.cli", "run", *args], env=env, cwd=str(ROOT),
                            stdout=fh, stderr=subprocess.STDOUT)
    proc._log_fh = fh  # type: ignore[attr-defined]
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> float:
    """SIGTERM; returns the seconds until the process exited."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc._log_fh.close()  # type: ignore[attr-defined]
    return time.monotonic() - t0


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> int:
    try:
        rc = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc._log_fh.close()  # type: ignore[attr-defined]
    return rc


def wait_log(path: Path, text: str, timeout: float = 30.0, proc: Optional[subprocess.Popen] = None) -> str:
    """Poll a log file until ``text`` appears; returns the log. Fails early if ``proc`` exited."""
    deadline = time.monotonic() + timeout
    while True:
        log = path.read_text(errors="replace") if path.exists() else ""
        if text in log:
            return log
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {text!r} was logged:\n{log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not logged within {timeout} s:\n{log}")
        time.sleep(0.05)


def write_config(path: Path, tmp: Path, **sections: dict) -> Path:
    """A config for a test run: its own control socket and state file, fast status, plus ``sections``."""
    import yaml

    data = {"service": {"control_socket": str(tmp / "ctl.sock"), "status_interval_s": 0.5},
            "counts": {"state_file": str(tmp / "counts.json")}}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    path.write_text(yaml.safe_dump(data))
    return path
