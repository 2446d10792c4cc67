"""The local control channel: a Unix socket in the service's runtime directory, never the network.

Protocol (one request per connection): the client sends one JSON line, ``{"cmd": "status"}`` or
``{"cmd": "snapshot"}``; the server answers one JSON line. A reply that carries bytes (the snapshot
JPEG) says ``"length": N`` in that line and N raw bytes follow it. Errors: ``{"ok": false, "error": ...}``.

The socket is created mode 0660 inside ``RuntimeDirectory=`` (0750): only the service user, its group
(add an admin with ``usermod -aG mask-guard USER``) and root can ask for a camera frame.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .config import Config

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
CLIENT_TIMEOUT_S = 3.0
MAX_CLIENTS = 8
# A handler returns the reply object and optionally bytes to send after it.
Handler = Callable[[dict], "tuple[dict, Optional[bytes]]"]


class NotRunning(ConnectionError):
    """No service answers on any control socket."""


def default_socket_path(cfg: Optional[Config] = None) -> Path:
    """Where the service listens: the config, ``$RUNTIME_DIRECTORY``, ``$XDG_RUNTIME_DIR``, else /tmp."""
    if cfg is not None and cfg.service.control_socket:
        return Path(os.path.expanduser(cfg.service.control_socket))
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / "control.sock"
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "mask-guard.sock"
    return Path(f"/tmp/mask-guard-{os.getuid()}.sock")


def socket_candidates(cfg: Optional[Config] = None, explicit: Optional[str] = None) -> list[Path]:
    """Where a client looks, in order: the system service first (an SSH user has no $RUNTIME_DIRECTORY)."""
    if explicit:
        return [Path(explicit)]
    if cfg is not None and cfg.service.control_socket:
        return [default_socket_path(cfg)]
    out = [Path("/run/mask-guard/control.sock"), default_socket_path(None)]
    return list(dict.fromkeys(out))


def _recv_line(conn: socket.socket, limit: int) -> bytes:
    buf = b""
    while b"\n" not in buf:
        chunk = conn.recv(1024)
        if not chunk:
            break
        buf += chunk
        if len(buf) > limit:
            raise ValueError(f"line longer than {limit} bytes")
    return buf.split(b"\n", 1)[0]


def _recv_exact(conn: socket.socket, n: int, already: bytes = b"") -> bytes:
    parts, got = [already], len(already)
    while got < n:
        chunk = conn.recv(min(1 << 16, n - got))
        if not chunk:
            raise ConnectionError(f"reply cut short: {got} of {n} bytes")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class ControlServer:
    """Accepts in a background thread; each connection gets a short-lived thread (at most MAX_CLIENTS)."""

    def __init__(self, path: Path, handlers: dict[str, Handler], mode: int = 0o660):
        self.path = Path(path)
        self.handlers = handlers
        self.mode = mode
        self._sock: Optional[socket.socket] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._inode: Optional[int] = None
        self.requests = 0
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)

    def start(self) -> None:
        """Bind (replacing a stale socket file) and serve; raises OSError if another instance is listening."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise OSError(f"{self.path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.settimeout(0.5)
                probe.connect(str(self.path))
                raise OSError(f"another mask-guard already listens on {self.path}")
            except (ConnectionRefusedError, FileNotFoundError):
                self.path.unlink(missing_ok=True)  # stale, left by a killed run
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.bind(str(self.path))
        os.chmod(self.path, self.mode)
        s.listen(64)
        s.settimeout(0.25)  # so close() is noticed quickly
        self._sock = s
        self._inode = self.path.stat().st_ino
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        log.info("control socket %s", self.path)

    def _serve(self) -> None:
        assert self._sock is not None
        failing = False
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._stop.is_set():
                    return
                # e.g. EMFILE: out of file descriptors for a moment. Raising would end this thread and
                # status/snapshot would stay dead until a restart; one warning per streak, then retry.
                if not failing:
                    log.warning("control socket: accept failed (%s); retrying", exc)
                    failing = True
                self._stop.wait(1.0)
                continue
            failing = False
            # at most MAX_CLIENTS at once; more wait (each client has CLIENT_TIMEOUT_S to finish)
            while not self._slots.acquire(timeout=0.25):
                if self._stop.is_set():
                    conn.close()
                    return
            threading.Thread(target=self._client, args=(conn,), name="control-client", daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        try:
            with conn:
                self._handle(conn)
        except Exception as exc:  # a bad client must never take the service down
            log.debug("control request failed: %s", exc, exc_info=True)
        finally:
            self._slots.release()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT_S)
        try:
            req = json.loads(_recv_line(conn, MAX_REQUEST) or b"null")
            if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                raise ValueError('expected a JSON object like {"cmd": "status"}')
        except ValueError as exc:
            self._reply(conn, {"ok": False, "error": f"bad request: {exc}"})
            return
        handler = self.handlers.get(req["cmd"])
        if handler is None:
            self._reply(conn, {"ok": False, "error": f"unknown command {req['cmd']!r}, "
                                                     f"known: {', '.join(sorted(self.handlers))}"})
            return
        self.requests += 1
        try:
            reply, payload = handler(req)
        except Exception as exc:
            log.warning("control command %r failed: %s", req["cmd"], exc)
            reply, payload = {"ok": False, "error": str(exc)}, None
        self._reply(conn, reply, payload)

    @staticmethod
    def _reply(conn: socket.socket, reply: dict, payload: Optional[bytes] = None) -> None:
        reply = dict(reply)
        reply.setdefault("ok", True)
        if payload is not None:
            reply["length"] = len(payload)
        conn.sendall(json.dumps(reply).encode() + b"\n" + (payload or b""))

    def close(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        try:  # remove the file only if it is still ours (a new instance may have replaced it)
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass


def request(path: Path, cmd: str, timeout: float = 10.0, **args) -> tuple[dict, Optional[bytes]]:
    """Send one command; returns (reply, payload). ``NotRunning`` when nothing listens at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                s.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise NotRunning(f"no mask-guard service at {path} ({exc.strerror})") from exc
            except BlockingIOError:
                # A Unix socket's backlog is full (many clients at once): it refuses with EAGAIN
                # instead of waiting, so wait here.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        s.sendall(json.dumps({"cmd": cmd, **args}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"{path}: the service closed the connection without a reply")
            buf += chunk
            if len(buf) > (1 << 20) and b"\n" not in buf:
                raise ConnectionError(f"{path}: reply header too long")
        line, rest = buf.split(b"\n", 1)
        reply = json.loads(line)
        payload = None
        if isinstance(reply, dict) and "length" in reply:
            payload = _recv_exact(s, int(reply["length"]), rest)
        return reply, payload
    finally:
        s.close()


def ask(cfg: Optional[Config], cmd: str, explicit: Optional[str] = None, timeout: float = 10.0,
        **args) -> tuple[dict, Optional[bytes], Path]:
    """Try each candidate socket; the first that answers wins. ``NotRunning`` if none does."""
    tried = []
    for path in socket_candidates(cfg, explicit):
        try:
            reply, payload = request(path, cmd, timeout=timeout, **args)
            return reply, payload, path
        except NotRunning:
            tried.append(str(path))
    raise NotRunning("mask-guard is not running (no control socket at " + ", ".join(tried) + ")")
