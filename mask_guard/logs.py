"""Logging set-up: journald with real priorities under systemd, plain stderr lines elsewhere.

Under systemd (``JOURNAL_STREAM`` or ``INVOCATION_ID`` set) the records go through systemd-python's
``JournalHandler`` (priority, logger name, code location as journal fields). Without the binding, or
without a journald socket, stderr lines carry ``<N>`` syslog prefixes, which journald turns into
priorities too (``SyslogLevelPrefix=yes`` is the default). Interactive runs get readable stderr lines.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional, TextIO

JOURNAL_SOCKET = "/run/systemd/journal/socket"
IDENTIFIER = "mask-guard"


def under_systemd() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))


class SyslogPrefixFormatter(logging.Formatter):
    """``<3>message``: sd-daemon(3) level prefixes for stderr that journald reads."""

    _PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prio = next((p for lvl, p in sorted(self._PRIORITY.items(), reverse=True) if record.levelno >= lvl), 7)
        # every line of a multi-line message (tracebacks) keeps the record's priority
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest's capture swaps it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _journal_handler() -> Optional[logging.Handler]:
    if not os.path.exists(JOURNAL_SOCKET):
        return None
    try:
        from systemd.journal import JournalHandler  # type: ignore
    except ImportError:
        return None
    return JournalHandler(SYSLOG_IDENTIFIER=IDENTIFIER)


def setup(level: str | int = "INFO", stream: Optional[TextIO] = None, journal: Optional[bool] = None) -> str:
    """Configure the root logger once more (idempotent); returns 'journal', 'stderr-prefixed' or 'stderr'."""
    teardown()
    root = logging.getLogger()
    if journal is None:
        journal = under_systemd()
    handler: Optional[logging.Handler] = _journal_handler() if journal else None
    if handler is not None:
        handler.setFormatter(logging.Formatter("%(message)s"))
        kind = "journal"
    elif journal:
        handler = logging.StreamHandler(stream) if stream else _StderrHandler()
        handler.setFormatter(SyslogPrefixFormatter("%(name)s: %(message)s"))  # journald adds the time
        kind = "stderr-prefixed"
    else:
        handler = logging.StreamHandler(stream) if stream else _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
        kind = "stderr"
    handler._mask_guard = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    set_level(level)
    return kind


def teardown() -> None:
    """Remove the handler ``setup`` added (in-process runs: tests, tools)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_mask_guard", False):
            root.removeHandler(h)
            try:
                h.flush()
            except (OSError, ValueError):
                pass


def set_level(level: str | int) -> None:
    """Our loggers at ``level``; third-party libraries stay at WARNING so DEBUG stays readable."""
    if isinstance(level, str):
        level = logging.getLevelName(level.upper())
        if not isinstance(level, int):
            level = logging.INFO
    logging.getLogger().setLevel(level)
    for noisy in ("PIL", "matplotlib", "picamera2", "urllib3"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
