"""Signals that work mid-frame: a thread reads them from ``signal.set_wakeup_fd``.

CPython runs Python-level signal handlers only in the main thread and only between bytecodes, so a
SIGTERM arriving during a long TFLite ``invoke()`` would wait for the frame. The C-level handler,
though, writes the signal number to the wakeup fd at once; a small thread reading that fd reacts
immediately (``STOPPING=1``, a deadline for the exit), whatever the main thread is doing.
No signal is blocked, so child processes (``aplay``, shells) inherit a normal signal mask.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading
from typing import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SignalWatcher:
    """SIGTERM/SIGINT call ``on_stop(name)`` once; SIGHUP calls ``on_reload()``; both in the watcher thread."""

    def __init__(self, on_stop: Callable[[str], None], on_reload: Callable[[], None]):
        self.on_stop, self.on_reload = on_stop, on_reload
        self._installed = False

    def install(self) -> None:
        """Call from the main thread (Python's rule for signal handlers)."""
        self._r, self._w = socket.socketpair()
        self._w.setblocking(False)
        self._old_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        # The Python-level handlers only keep the default actions (death) away; the thread does the work.
        self._old = {s: signal.signal(s, lambda *_: None) for s in (*STOP_SIGNALS, signal.SIGHUP)}
        self._installed = True
        threading.Thread(target=self._run, name="signals", daemon=True).start()

    def restore(self) -> None:
        if not self._installed:
            return
        signal.set_wakeup_fd(self._old_wakeup)
        for s, h in self._old.items():
            signal.signal(s, h)
        self._w.close()
        self._r.close()
        self._installed = False

    def _run(self) -> None:
        stopped = False
        while True:
            try:
                data = self._r.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in STOP_SIGNALS and not stopped:
                    stopped = True
                    self.on_stop(signal.Signals(signum).name)  # may not return (forced exit)
                elif signum == signal.SIGHUP:
                    self.on_reload()
