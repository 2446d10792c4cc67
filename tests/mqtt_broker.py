"""A real Mosquitto broker for the MQTT tests, on loopback only: a password file, an ACL, a plain and a
TLS listener (a CA made here with openssl signs the broker's certificate), persistence so that it can be
stopped and started again mid-test like a broker that reboots.

Not a conftest.py on purpose: test modules import this by name. ``mosquitto_sub`` (Mosquitto's own
client, not ours) records what subscribers see.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

import pytest

USER, PASSWORD = "door1", "s3cret-Pa55-word"  # the appliance's login
READER, READER_PASSWORD = "ha", "reader-pass"  # Home Assistant's


def need_mosquitto() -> None:
    for tool in ("mosquitto", "mosquitto_sub", "mosquitto_passwd", "openssl"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            pytest.skip(f"{tool} is not installed (apt install mosquitto mosquitto-clients openssl)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(*cmd: str, cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stderr}"


def make_ca(d: Path, name: str) -> Path:
    """A self-signed CA: ``d/name.crt`` and ``d/name.key``."""
    _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)
    return d / f"{name}.crt"


def make_server_cert(d: Path, ca: str = "ca") -> None:
    """server.crt/key signed by ``ca``, valid for 127.0.0.1 and localhost (paho checks the host name)."""
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", "server.key", "-out", "server.csr", cwd=d)
    _run("openssl", "x509", "-req", "-in", "server.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
         "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=d)


class Broker:
    def __init__(self, d: Path):
        need_mosquitto()
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.ca = make_ca(d, "ca")
        self.other_ca = make_ca(d, "other-ca")  # signs nothing of this broker: the "wrong CA"
        make_server_cert(d)
        pw = d / "passwords"
        pw.write_text(f"{USER}:{PASSWORD}\n{READER}:{READER_PASSWORD}\n")
        _run("mosquitto_passwd", "-U", str(pw), cwd=d)  # hashes the plain passwords in place
        (d / "acl").write_text(
            f"user {USER}\ntopic readwrite mask-guard/#\ntopic readwrite homeassistant/#\n\n"
            f"user {READER}\ntopic read #\n")
        self.password_file = d / "mqtt-password"
        self.password_file.write_text(PASSWORD + "\n")
        self.log = d / "mosquitto.log"
        (d / "data").mkdir(exist_ok=True)
        user = "user root\n" if os.geteuid() == 0 else ""  # as root it would switch to 'mosquitto' otherwise
        (d / "mosquitto.conf").write_text(
            f"{user}per_listener_settings false\nallow_anonymous false\npassword_file {pw}\nacl_file {d / 'acl'}\n"
            f"persistence true\npersistence_location {d / 'data'}/\nautosave_interval 1\n"
            f"log_dest file {self.log}\nlog_type all\nconnection_messages true\n"
            f"listener {self.port} 127.0.0.1\n"
            f"listener {self.tls_port} 127.0.0.1\ncafile {self.ca}\ncertfile {d / 'server.crt'}\n"
            f"keyfile {d / 'server.key'}\n")
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Broker":
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.proc = subprocess.Popen([exe, "-c", str(self.dir / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited {self.proc.returncode}: {self.proc.stderr.read().decode()}"
                                     f"\n{self.log.read_text() if self.log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not listen within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves the persistence file: retained and queued messages
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def config(self, tls: bool = False, ca: Optional[Path] = None, **over) -> dict:
        """The ``mqtt`` config section of an appliance logging in to this broker (TLS: trusting ``ca``)."""
        cfg = {"enabled": True, "host": "127.0.0.1", "port": self.tls_port if tls else self.port,
               "username": USER, "password_file": str(self.password_file), "topic": "mask-guard/door1",
               "client_id": "mask-guard-door1", "retry_max_s": 0.5}
        if tls:
            cfg["tls"] = str(ca or self.ca)
        cfg.update(over)
        return cfg


class Subscriber:
    """``mosquitto_sub`` as Home Assistant would be: its own login, QoS 1, a persistent session (``-c``), so
    messages published while it is away (the broker restarting) wait for it; one line per message."""

    def __init__(self, broker: Broker, topics: tuple[str, ...] = ("mask-guard/#", "homeassistant/#"),
                 client_id: str = "test-sub"):
        self.broker, self.topics, self.client_id = broker, topics, client_id
        self.lines: list[tuple[float, str, str, bool]] = []  # (time, topic, payload, retained)
        self._cond = threading.Condition()
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> "Subscriber":
        cmd = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-u", READER, "-P", READER_PASSWORD,
               "-q", "1", "-c", "-i", self.client_id, "-F", "%r\t%t\t%p", "--keepalive", "5"]
        probe = f"mask-guard/probe/{self.client_id}"
        for t in (*self.topics, probe):
            cmd += ["-t", t]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        # subscribed once a probe message comes through (mosquitto_sub says nothing when it is)
        for _ in range(50):
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.broker.port), "-u", USER, "-P", PASSWORD,
                            "-t", probe, "-m", "ready", "-q", "1"], capture_output=True, timeout=10)
            try:
                self.wait_for(probe, timeout=0.5)
                return self
            except AssertionError:
                continue
        raise AssertionError(f"mosquitto_sub did not subscribe: {self.proc.stderr.read() if self.proc.poll() else ''}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            retained, topic, payload = line.rstrip("\n").split("\t", 2)
            with self._cond:
                self.lines.append((time.monotonic(), topic, payload, retained == "1"))
                self._cond.notify_all()

    def messages(self, topic: str) -> list[str]:
        with self._cond:
            return [p for _, t, p, _ in self.lines if t == topic]

    def wait_for(self, topic: str, payload: Optional[str] = None, timeout: float = 20.0, count: int = 1) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [p for _, t, p, _ in self.lines if t == topic and (payload is None or p == payload)]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{count} x {topic} {payload or ''} not seen within {timeout} s; got "
                                         f"{[(t, p[:80]) for _, t, p, _ in self.lines][-30:]}")
                self._cond.wait(left)

    def stop(self) -> None:
        # mosquitto_sub answers SIGTERM with a clean DISCONNECT, which can stall on a loaded machine (CI saw
        # > 5 s once); the messages are already read, so a kill after a grace period loses nothing
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait(cond, timeout=15.0, what="condition"):
    """Poll ``cond`` until it holds; fail the test naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


def retained(broker, topic: str) -> dict[str, str]:
    """What a client subscribing now gets as retained messages (a fresh mosquitto_sub)."""
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", READER,
                        "-P", READER_PASSWORD, "-t", topic, "--retained-only", "-W", "1", "-F", "%t\t%p"],
                       capture_output=True, text=True, timeout=10)
    return dict(line.split("\t", 1) for line in r.stdout.splitlines() if "\t" in line)


def unique_in_order(evs: list[dict]) -> list[dict]:
    """QoS 1 is at least once: a redelivered event carries the same seq."""
    seen, out = set(), []
    for e in evs:
        if e["seq"] not in seen:
            seen.add(e["seq"])
            out.append(e)
    return out
