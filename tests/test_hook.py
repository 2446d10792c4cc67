"""``alerts.command``: real programs (sh, sleep) run at each alert, with the alert in their environment, never
holding up the caller, killed (with their children) after the timeout, their failures logged."""
from __future__ import annotations

import logging
import time
from datetime import datetime

import pytest
from mask_guard.config import ConfigError, config_from_dict
from mask_guard.hook import QUEUE, AlertHook
from mask_guard.outputs import Outputs


def hook(command: str, timeout_s: float = 10.0) -> AlertHook:
    return AlertHook(config_from_dict({"alerts": {"command": command, "command_timeout_s": timeout_s}}).alerts)


def wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_command_gets_the_person_and_the_time_in_its_environment(tmp_path):
    out = tmp_path / "env.txt"
    cfg = config_from_dict({"alerts": {"command": f"sh -c 'echo \"$MASK_GUARD_EVENT $MASK_GUARD_PERSON "
                                                  f"$MASK_GUARD_FRAME $MASK_GUARD_TIME $0\" >> {out}' 'two words'"}})
    outputs = Outputs(cfg)
    outputs.alert(7, 123)
    outputs.alert(9, 130)
    wait(lambda: out.exists() and len(out.read_text().splitlines()) == 2)
    outputs.close()
    first, second = [line.split(" ", 4) for line in out.read_text().splitlines()]
    assert first[:3] == ["alert", "7", "123"] and second[:3] == ["alert", "9", "130"]
    assert first[4] == "two words"  # the line is split like a shell would
    t = datetime.fromisoformat(first[3])
    assert t.utcoffset() is not None and abs((t - datetime.now().astimezone()).total_seconds()) < 30
    assert outputs.status()["alert_command"] == "off"  # closed


def test_a_slow_command_never_holds_up_the_alert():
    h = hook("sleep 3")
    t = time.perf_counter()
    for i in range(5):
        h.alert({"person": i})
    assert time.perf_counter() - t < 0.05
    h.close()


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    pids = tmp_path / "pids"
    h = hook(f"sh -c 'sleep 30 & echo $$ $! > {pids}; wait'", timeout_s=0.5)
    t0 = time.monotonic()
    h.alert({"person": 4})
    wait(lambda: h.failures == 1)
    assert time.monotonic() - t0 < 5
    for pid in map(int, pids.read_text().split()):  # the shell and its sleep are both gone (or zombies
        assert not alive(pid), pid                   # waiting for an init that does not reap them)
    (msg,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert msg == "alerts.command: still running after 0.5 s for person 4: killed"
    h.close()


def test_a_failing_command_is_logged_with_its_exit_code_and_error_output(caplog):
    caplog.set_level(logging.INFO)
    h = hook("sh -c 'echo first >&2; echo the relay is unplugged >&2; exit 3'")
    h.alert({"person": 5})
    wait(lambda: h.failures == 1)
    (msg,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert msg == "alerts.command: exited 3 for person 5: the relay is unplugged"
    assert "last error: exited 3" in h.status()
    h.close()


def test_a_missing_program_warns_at_start_and_each_alert_logs_the_failure(caplog):
    caplog.set_level(logging.INFO)
    h = hook("/nonexistent/buzzer --loud")
    h.alert({"person": 1})
    wait(lambda: h.failures == 1)
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert msgs[0].startswith("alerts.command: '/nonexistent/buzzer' not found")
    assert msgs[1] == "alerts.command: '/nonexistent/buzzer' cannot start for person 1: No such file or directory"
    h.close()


def test_alerts_beyond_the_waiting_bound_are_dropped_with_a_warning(caplog):
    caplog.set_level(logging.INFO)
    h = hook("sleep 2")
    for i in range(QUEUE + 5):
        h.alert({"person": i})
    assert 4 <= h.dropped <= 5  # one may already be running
    assert any("runs already waiting" in r.getMessage() for r in caplog.records)
    h.close()


def test_config_refuses_a_command_that_cannot_be_split():
    with pytest.raises(ConfigError) as e:
        config_from_dict({"alerts": {"command": "notify 'unclosed"}})
    assert e.value.errors == ["alerts.command: \"notify 'unclosed\" cannot be split into arguments: No closing quotation"]
