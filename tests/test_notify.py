"""sd_notify: both senders (systemd-python and the built-in one) speak the real datagram protocol."""
from __future__ import annotations

import os
import time

import pytest

import appliance_helpers as h
from mask_guard import notify


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
