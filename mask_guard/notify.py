"""sd_notify: tell systemd we are ready, alive, reloading or stopping (``Type=notify`` services).

Uses ``systemd.daemon.notify`` (libsystemd's ``sd_notify``) when systemd-python is importable, else
sends the same datagram itself to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket).
Both speak the real protocol, so a test can bind its own socket and read what systemd would read.
``MASK_GUARD_NOTIFY=raw`` forces the built-in sender (tests of the fallback, hosts without the binding).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional

log = logging.getLogger(__name__)


def _systemd_notify():
    if os.environ.get("MASK_GUARD_NOTIFY") == "raw":
        return None
    try:
        from systemd import daemon  # type: ignore

        return daemon.notify
    except ImportError:
        return None


def raw_notify(message: str, address: Optional[str] = None) -> bool:
    """Send one datagram to ``address`` (default ``$NOTIFY_SOCKET``); False when there is nowhere to send."""
    address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract namespace
    elif not address.startswith("/"):
        log.debug("unsupported NOTIFY_SOCKET %r (only AF_UNIX paths and @abstract names)", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode("utf-8"))
        return True
    except OSError as exc:
        log.debug("sd_notify to %r failed: %s", address, exc)
        return False


def watchdog_interval() -> Optional[float]:
    """``WatchdogSec=`` in seconds when the watchdog is meant for this process (sd_watchdog_enabled)."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # set for our parent, not for us
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 1e6 if value > 0 else None


class Notifier:
    """The daemon's side of the protocol; every method is a no-op when not run by systemd."""

    def __init__(self) -> None:
        self.enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._send = _systemd_notify()
        self.watchdog_s = watchdog_interval()
        # Ping well inside the interval, but not on every frame: at 30 fps that would be 30 datagrams a second.
        self._ping_every = min(self.watchdog_s / 4, 1.0) if self.watchdog_s else None
        self._last_ping = 0.0
        self.ready_sent = False
        self.last_status = ""

    def send(self, message: str) -> bool:
        if not self.enabled:
            return False
        if self._send is not None:
            try:
                return bool(self._send(message))
            except (OSError, ValueError) as exc:
                log.debug("systemd.daemon.notify failed (%s); sending it myself", exc)
        return raw_notify(message)

    def ready(self, status: str = "") -> None:
        msg = "READY=1" + (f"\nSTATUS={status}" if status else "")
        self.send(msg)
        self.ready_sent = True
        if status:
            self.last_status = status

    def status(self, text: str) -> None:
        self.last_status = text
        self.send(f"STATUS={text}")

    def watchdog(self, force: bool = False) -> None:
        """``WATCHDOG=1``, rate-limited; call it from the frame loop only while the service is healthy."""
        if self._ping_every is None:
            return
        now = time.monotonic()
        if force or now - self._last_ping >= self._ping_every:
            self._last_ping = now
            self.send("WATCHDOG=1")

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match READY=1 to this reload.
        self.send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str = "stopping") -> None:
        self.send(f"STOPPING=1\nSTATUS={status}")
