"""``alerts.command``: a program run at each alert (a door buzzer script, a chat message, a log line).

The line is split like a shell would (``shlex``) and run without a shell, with the alert in its
environment: MASK_GUARD_EVENT=alert, MASK_GUARD_PERSON (the track id), MASK_GUARD_TIME (ISO 8601 with
the UTC offset), MASK_GUARD_FRAME. Runs happen one after another in a worker thread of their own, so
the frame loop never waits; a run still going after ``alerts.command_timeout_s`` is killed with its
process group. A failure (not found, non-zero exit, timeout) is logged with the end of its stderr.
Alerts arriving while ``QUEUE`` runs are waiting are dropped, with a warning: a hung command must not
pile up work.
"""
from __future__ import annotations

import logging
import os
import queue
import shlex
import shutil
import signal
import subprocess
import threading
from typing import Optional

from .config import AlertsConfig

log = logging.getLogger(__name__)

QUEUE = 16


def command_env(event: dict) -> dict:
    return {**os.environ, "MASK_GUARD_EVENT": str(event.get("type", "alert")),
            "MASK_GUARD_PERSON": str(event.get("person", "")), "MASK_GUARD_TIME": str(event.get("time", "")),
            "MASK_GUARD_FRAME": str(event.get("frame", ""))}


class AlertHook:
    def __init__(self, cfg: AlertsConfig):
        self.cfg = cfg
        self.argv = shlex.split(cfg.command)  # validated by the config already
        self.runs = self.failures = self.dropped = 0
        self.error = ""
        self._q: queue.Queue = queue.Queue(QUEUE)
        self._current: Optional[subprocess.Popen] = None
        self._closing = False
        exe = self.argv[0] if self.argv else ""
        if not exe or not (shutil.which(exe) or os.path.exists(exe)):
            self.error = f"{exe!r} not found"
            log.warning("alerts.command: %s (PATH=%s); each alert will log the failure",
                        self.error, os.environ.get("PATH", ""))
        self._thread = threading.Thread(target=self._worker, name="alert-command", daemon=True)
        self._thread.start()

    def alert(self, event: dict) -> None:
        """Queue one run; returns at once."""
        try:
            self._q.put_nowait(event)
        except queue.Full:
            self.dropped += 1
            log.warning("alerts.command: %d runs already waiting; not running it for person %s",
                        QUEUE, event.get("person"))

    def _worker(self) -> None:
        while True:
            event = self._q.get()
            if event is None or self._closing:
                return
            self._run(event)

    def _run(self, event: dict) -> None:
        who = f"person {event.get('person')}"
        try:
            proc = subprocess.Popen(self.argv, env=command_env(event), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            self._failed(f"{self.argv[0]!r} cannot start for {who}: {exc.strerror or exc}")
            return
        self._current = proc
        try:
            _, err = proc.communicate(timeout=self.cfg.command_timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            try:
                _, err = proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:  # a grandchild that left the group holds stderr open
                err = b""
            self._failed(f"still running after {self.cfg.command_timeout_s:g} s for {who}: killed"
                         + _tail(err))
            return
        finally:
            self._current = None
        self.runs += 1
        if self._closing:
            log.debug("alerts.command for %s ended at shutdown (%s)", who, proc.returncode)
        elif proc.returncode != 0:
            self._failed(f"exited {proc.returncode} for {who}" + _tail(err))
        else:
            self.error = ""
            log.debug("alerts.command ran for %s", who)

    def _failed(self, why: str) -> None:
        self.failures += 1
        self.error = why
        log.warning("alerts.command: %s", why)

    def status(self) -> str:
        return f"{self.runs} runs, {self.failures} failed" + (f", last error: {self.error}" if self.error else "")

    def close(self, timeout: float = 0.3) -> None:
        """Stop taking alerts; a command still running gets ``timeout`` seconds, then is killed."""
        self._closing = True
        try:
            self._q.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout)
        proc = self._current
        if proc is not None and proc.poll() is None:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the command's own children too (start_new_session)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _tail(err: Optional[bytes]) -> str:
    text = (err or b"").decode(errors="replace").strip()
    return f": {text.splitlines()[-1][:200]}" if text else ""
