"""Logging: readable stderr lines by hand; priorities journald understands under systemd."""
from __future__ import annotations

import io
import logging
import os

import pytest

from mask_guard import logs


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    level = root.level
    yield
    logs.teardown()
    root.setLevel(level)


def test_interactive_runs_get_time_level_and_logger_on_stderr(monkeypatch):
    for k in ("JOURNAL_STREAM", "INVOCATION_ID"):
        monkeypatch.delenv(k, raising=False)
    buf = io.StringIO()
    assert logs.setup("INFO", stream=buf) == "stderr"
    logging.getLogger("mask_guard.daemon").info("camera ok")
    logging.getLogger("mask_guard.daemon").debug("hidden")
    line = buf.getvalue().strip()
    assert line.endswith("INFO    mask_guard.daemon: camera ok") and "hidden" not in buf.getvalue()


def test_under_systemd_without_the_journal_binding_lines_carry_syslog_priorities(monkeypatch):
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    monkeypatch.setattr(logs, "JOURNAL_SOCKET", "/nonexistent/journal/socket")  # no journald here
    buf = io.StringIO()
    assert logs.setup("DEBUG", stream=buf) == "stderr-prefixed"
    log = logging.getLogger("mask_guard.alerts")
    log.error("no sound card")
    log.warning("ALERT: person 3 without a mask")
    log.info("decided")
    log.debug("detail")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("frame 7 failed")
    lines = buf.getvalue().splitlines()
    assert lines[:4] == ["<3>mask_guard.alerts: no sound card", "<4>mask_guard.alerts: ALERT: person 3 without a mask",
                         "<6>mask_guard.alerts: decided", "<7>mask_guard.alerts: detail"]
    assert all(line.startswith("<3>") for line in lines[4:]) and "ValueError: boom" in lines[-1]


@pytest.mark.skipif(not os.path.exists(logs.JOURNAL_SOCKET), reason="no journald on this machine")
def test_under_systemd_with_journald_the_journal_handler_is_used(monkeypatch):
    pytest.importorskip("systemd.journal")
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    assert logs.setup("INFO") == "journal"
    handler = [h for h in logging.getLogger().handlers if getattr(h, "_mask_guard", False)][0]
    assert type(handler).__name__ == "JournalHandler"


def test_setup_twice_keeps_one_handler_and_third_party_chatter_stays_at_warning(monkeypatch):
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    logs.setup("INFO")
    logs.setup("DEBUG")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_mask_guard", False)]
    assert len(ours) == 1
    assert logging.getLogger("picamera2").level == logging.WARNING
