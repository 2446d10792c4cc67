"""What mqtt.py needs around the connection: names derived from the config, the password, a paho client
for either API (1.6, Bookworm's apt package; 2.x, Trixie's), and what a failed connection means in terms
of the settings to fix. No network here; ``describe`` is also what check-config prints (never a password).
"""
from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Optional

from .config import MqttConfig

# CONNACK refusals: MQTT 3.1.1 codes (paho 1.x) and the MQTT 5 reason codes paho 2.x maps them to.
_REFUSED = {1: "protocol", 132: "protocol", 2: "client_id", 133: "client_id", 3: "unavailable", 136: "unavailable",
            4: "login", 134: "login", 5: "login", 135: "login"}


def hostname() -> str:
    return socket.gethostname().split(".")[0] or "pi"


def base_topic(cfg: MqttConfig) -> str:
    return cfg.topic or f"mask-guard/{hostname()}"


def client_id(cfg: MqttConfig) -> str:
    return cfg.client_id or f"mask-guard-{hostname()}"


def broker(cfg: MqttConfig) -> str:
    return f"{cfg.host}:{cfg.port or (8883 if cfg.tls else 1883)}"


def describe(cfg: MqttConfig) -> str:
    """One line for logs and check-config: where, who, how; never the password."""
    who = f" as {cfg.username!r} (password from {cfg.password_file})" if cfg.password_file else \
        f" as {cfg.username!r}" if cfg.username else ""
    tls = f", TLS with CA {cfg.tls}" if cfg.tls else ""
    disc = f", Home Assistant discovery under {cfg.discovery_prefix}/" if cfg.discovery_prefix else ""
    return f"{broker(cfg)}{who}{tls}, topic {base_topic(cfg)}{disc}"


def read_password(cfg: MqttConfig) -> Optional[str]:
    """The first line of ``mqtt.password_file``; ``ValueError`` naming the setting when unreadable."""
    if not cfg.password_file:
        return None
    try:
        lines = Path(cfg.password_file).expanduser().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"mqtt.password_file: cannot read {cfg.password_file}: "
                         f"{getattr(exc, 'strerror', None) or exc}") from exc
    if not lines or not lines[0]:
        raise ValueError(f"mqtt.password_file: {cfg.password_file} is empty (the first line is the password)")
    return lines[0]


def new_client(cid: str):
    """A paho MQTT 3.1.1 client; with paho 2.x on its VERSION2 callbacks (the ones mqtt.py's ``*rest`` take)."""
    import paho.mqtt.client as mqtt

    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt >= 2.0
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    return mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311)


def result_code(rc) -> int:
    """A CONNACK/PUBACK result as an int: paho 1.x passes an int, 2.x a ReasonCode."""
    return int(getattr(rc, "value", rc))


def refusal(cfg: MqttConfig, rc) -> str:
    """The broker's CONNACK refusal, naming the setting to fix."""
    import paho.mqtt.client as mqtt

    kind = _REFUSED.get(result_code(rc), "")
    text = str(rc) if hasattr(rc, "value") else mqtt.connack_string(rc)
    if kind == "login":
        if not cfg.username:
            return f"mqtt.username: {broker(cfg)} refuses anonymous clients ({text})"
        return f"mqtt.username {cfg.username!r} / mqtt.password_file {cfg.password_file!r}: {broker(cfg)} " \
               f"refused the login ({text})"
    if kind == "client_id":
        return f"mqtt.client_id {client_id(cfg)!r}: refused by {broker(cfg)} ({text})"
    return f"{broker(cfg)} refused the connection ({text})"


def connect_error(cfg: MqttConfig, exc: Exception) -> str:
    """Why the TCP/TLS connection could not be made, naming the setting where one is to blame."""
    where = broker(cfg)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"mqtt.tls: the certificate of {where} does not verify against {cfg.tls} ({exc.verify_message or exc})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed ({exc.reason or exc}): check mqtt.tls and mqtt.port"
    if isinstance(exc, ConnectionRefusedError):
        return f"{where} refused the connection (broker not running?)"
    if isinstance(exc, socket.gaierror):
        return f"mqtt.host {cfg.host!r}: cannot resolve ({exc.strerror or exc})"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer from {where}"
    return f"cannot reach {where}: {getattr(exc, 'strerror', None) or exc}"
