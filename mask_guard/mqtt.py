"""MQTT: the appliance's state, its events and Home Assistant discovery on a broker (paho-mqtt).

Topics under ``mqtt.topic`` (default ``mask-guard/<hostname>``):
  availability  ``online`` / ``offline``, retained; ``offline`` is also the last will
  state         retained JSON: today's counts, masked share, people in view, fps, camera, last alert
  event         one JSON per decision and per alert, QoS 1, not retained, with a ``seq`` number

The frame loop never waits for the network: ``event()`` and ``state_changed()`` only append to a
bounded in-memory queue or set a flag. One thread of our own owns the paho client and does every
network call, so paho is never used from two threads, and connection errors reach us as exceptions
(paho's own reconnecting thread would swallow them). While the broker is unreachable the thread
retries with a doubling backoff and the events wait in the queue (the oldest dropped, and counted,
beyond ``mqtt.queue_size``); after a reconnect they go out in order. paho re-sends an event whose
PUBACK had not come before the connection dropped (QoS 1: at least once; ``seq`` finds duplicates).

paho-mqtt 1.6 (Raspberry Pi OS Bookworm's python3-paho-mqtt) and 2.x (Trixie's) differ in the client
constructor and in the callbacks' signatures: ``_new_client`` and the ``*args`` callbacks cover both.
"""
from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Optional

from .config import MqttConfig
from .ha_discovery import discovery_messages

log = logging.getLogger(__name__)

RETRY_MIN_S = 1.0
LOOP_S = 0.05  # the thread's poll period: how long an event may wait before it is sent
MIN_STATE_GAP_S = 0.25  # state messages no closer than this (a busy scene changes counts every frame)
INFLIGHT = 20  # events handed to paho and not yet acknowledged (paho keeps these across a reconnect)
CONNACK_TIMEOUT_S = 10.0
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


def _new_client(cid: str):
    import paho.mqtt.client as mqtt

    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt >= 2.0
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    return mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311)


def _code(rc) -> int:
    """A CONNACK/PUBACK result as an int: paho 1.x passes an int, 2.x a ReasonCode."""
    return int(getattr(rc, "value", rc))


class MqttPublisher:
    """``start()``; then ``event(dict)`` and ``state_changed()`` from any thread; ``close()`` at exit."""

    def __init__(self, cfg: MqttConfig, state: Callable[[], dict], interval_s: float = 5.0):
        """``state()``: the JSON-able state dict, called in the thread; published on ``state_changed()``
        and at least every ``interval_s`` (the daemon's service.status_interval_s)."""
        self.cfg = cfg
        self.interval_s = interval_s
        self.base = base_topic(cfg)
        self._state_fn = state
        self._lock = threading.Lock()
        self._pending: deque = deque()  # events not yet handed to paho
        self._inflight: dict[int, dict] = {}  # paho message id -> event, until its PUBACK
        self._acked_early: set[int] = set()
        self._seq = 0
        self.dropped = 0  # events dropped (oldest first) because the queue was full
        self.delivered = 0  # events the broker acknowledged
        self.state = "off"  # off, connecting, connected, down, refused, failed
        self.error = ""  # the last problem, for status
        self._state_dirty = threading.Event()
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._client = None
        self._sock_up = self._connected = self._discovery_due = False
        self._offline_mid: Optional[int] = None
        self._next_state = 0.0
        self._retry_s = RETRY_MIN_S
        self._logged = ""  # the state last logged

    # --- the frame loop's side: never blocks --------------------------------------------------

    def event(self, ev: dict) -> None:
        with self._lock:
            self._seq += 1
            ev = {**ev, "seq": self._seq}
            if len(self._pending) >= self.cfg.queue_size:
                self._pending.popleft()
                self.dropped += 1
                first = self.dropped == 1 or self.dropped % 1000 == 0
            else:
                first = False
            self._pending.append(ev)
        if first:
            log.warning("MQTT: event queue full (%d, mqtt.queue_size): dropping the oldest (%d so far)",
                        self.cfg.queue_size, self.dropped)

    def state_changed(self) -> None:
        self._state_dirty.set()

    def status(self) -> dict:
        return {"state": self.state, "broker": broker(self.cfg), "topic": self.base, "error": self.error,
                "queued": len(self._pending) + len(self._inflight), "dropped": self.dropped,
                "delivered": self.delivered}

    # --- start and stop -------------------------------------------------------------------------

    def start(self) -> bool:
        """Set the client up and start the thread; False (one error logged, MQTT off) when it cannot work."""
        try:
            self._client = self._setup()
        except ValueError as exc:
            self._fail(str(exc))
            return False
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()
        return True

    def _fail(self, why: str) -> None:
        self.state, self.error = "failed", why
        log.error("MQTT off: %s (detection, sound and counts go on)", why)

    def _setup(self):
        cfg = self.cfg
        try:
            import paho.mqtt.client  # noqa: F401
        except ImportError as exc:
            raise ValueError(f"mqtt.enabled is true but paho-mqtt is not installed ({exc}): "
                             "apt install python3-paho-mqtt (or pip install paho-mqtt)") from exc
        password = read_password(cfg)
        client = _new_client(client_id(cfg))
        if cfg.username:
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            try:
                client.tls_set(ca_certs=str(Path(cfg.tls).expanduser()), tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError, ValueError) as exc:
                raise ValueError(f"mqtt.tls: cannot use the CA file {cfg.tls}: {exc}") from exc
        client.will_set(f"{self.base}/availability", "offline", qos=1, retain=True)
        client.max_inflight_messages_set(INFLIGHT + 40)  # ours plus availability, discovery and state
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        host, port = broker(cfg).rsplit(":", 1)
        client.connect_async(host, int(port), keepalive=cfg.keepalive_s)
        self.state = "connecting"
        return client

    def close(self, timeout: float = 0.5) -> None:
        """Publish the last state and ``offline``, wait up to ``timeout`` for queued events, disconnect."""
        if self._thread is None:
            return
        self._closing.set()
        self._closed.wait(timeout)
        self._stop.set()
        self._thread.join(0.5)
        left = len(self._pending) + len(self._inflight)
        if left:
            log.warning("MQTT: %d event(s) not delivered at exit (%s)", left, self.error or self.state)

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_try = connack_by = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if not self._sock_up:
                if self._closing.is_set():
                    break  # nothing to say goodbye over
                if now < next_try:
                    self._stop.wait(min(next_try - now, LOOP_S * 4))
                    continue
                if not self._try_connect():
                    next_try = time.monotonic() + self._retry_s
                    self._retry_s = min(self._retry_s * 2, self.cfg.retry_max_s)
                    continue
                connack_by = time.monotonic() + CONNACK_TIMEOUT_S
            try:
                rc = self._client.loop(timeout=LOOP_S)
            except Exception as exc:  # paho raises on some socket errors instead of returning them
                rc = exc
            if rc != 0 or self._client.socket() is None:
                self._lost()
                next_try = time.monotonic() + self._retry_s
                self._retry_s = min(self._retry_s * 2, self.cfg.retry_max_s)
                continue
            if self._connected:
                self._pump(time.monotonic())
                if self._closing.is_set() and self._say_goodbye():
                    break
            elif time.monotonic() > connack_by:
                self._set_state("down", f"no answer (CONNACK) from {broker(self.cfg)} within "
                                        f"{CONNACK_TIMEOUT_S:.0f} s")
                self._client.disconnect()
                self._sock_up = False
        self._closed.set()

    def _try_connect(self) -> bool:
        try:
            self._client.reconnect()
        except Exception as exc:
            self._set_state("down", self._connect_error(exc))
            return False
        self._sock_up = True
        return True

    def _connect_error(self, exc: Exception) -> str:
        cfg, where = self.cfg, broker(self.cfg)
        if isinstance(exc, ssl.SSLCertVerificationError):
            return f"mqtt.tls: the certificate of {where} does not verify against {cfg.tls} " \
                   f"({exc.verify_message or exc})"
        if isinstance(exc, ssl.SSLError):
            return f"TLS with {where} failed ({exc.reason or exc}): check mqtt.tls and mqtt.port"
        if isinstance(exc, ConnectionRefusedError):
            return f"{where} refused the connection (broker not running?)"
        if isinstance(exc, socket.gaierror):
            return f"mqtt.host {cfg.host!r}: cannot resolve ({exc.strerror or exc})"
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return f"no answer from {where}"
        return f"cannot reach {where}: {getattr(exc, 'strerror', None) or exc}"

    def _lost(self) -> None:
        was_connected, self._connected, self._sock_up = self._connected, False, False
        if self.state == "refused":
            return  # the refusal was the news
        if was_connected:
            why = f"connection to {broker(self.cfg)} lost"
        elif self.cfg.tls:
            why = f"{broker(self.cfg)} closed the connection before answering"
        else:
            why = f"{broker(self.cfg)} closed the connection before answering (a TLS port? then set mqtt.tls)"
        self._set_state("down", why)

    def _set_state(self, state: str, detail: str = "") -> None:
        """One log line per change of state (or of the reason), not one per retry."""
        self.state, self.error = state, detail if state != "connected" else ""
        if state == self._logged:
            log.debug("MQTT: %s", detail)  # still down, for another reason (lost, then refused)
            return
        self._logged = state
        queued = len(self._pending) + len(self._inflight)
        if state == "connected":
            log.info("MQTT: connected to %s%s", describe(self.cfg),
                     f"; sending {queued} queued event(s)" if queued else "")
        elif state == "refused":
            log.error("MQTT: %s; retrying up to every %g s (detection goes on)", detail, self.cfg.retry_max_s)
        else:
            log.warning("MQTT: %s; %d event(s) queued, retrying up to every %g s", detail, queued,
                        self.cfg.retry_max_s)

    # --- paho callbacks (inside loop(), in this thread) --------------------------------------------

    def _on_connect(self, client, userdata, flags, rc, *rest) -> None:
        code = _code(rc)
        if code == 0:
            self._connected, self._retry_s, self._discovery_due = True, RETRY_MIN_S, True
            self._state_dirty.set()
            self._publish("availability", "online", retain=True)
            if self.cfg.discovery_prefix:  # Home Assistant says "online" here when it (re)starts
                client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
            self._set_state("connected")
            return
        import paho.mqtt.client as mqtt

        kind = _REFUSED.get(code, "")
        text = str(rc) if hasattr(rc, "value") else mqtt.connack_string(rc)
        if kind == "login":
            why = (f"mqtt.username {self.cfg.username!r} / mqtt.password_file {self.cfg.password_file!r}: "
                   f"{broker(self.cfg)} refused the login ({text})") if self.cfg.username else \
                f"mqtt.username: {broker(self.cfg)} refuses anonymous clients ({text})"
        elif kind == "client_id":
            why = f"mqtt.client_id {client_id(self.cfg)!r}: refused by {broker(self.cfg)} ({text})"
        else:
            why = f"{broker(self.cfg)} refused the connection ({text})"
        self._set_state("refused", why)
        client.disconnect()

    def _on_publish(self, client, userdata, mid, *rest) -> None:
        if mid == self._offline_mid:
            self._offline_mid = -1  # acknowledged
        ev = self._inflight.pop(mid, None)
        if ev is not None:
            self.delivered += 1
        else:
            self._acked_early.add(mid)

    def _on_message(self, client, userdata, msg) -> None:
        if msg.payload == b"online":
            self._discovery_due = True
            self._state_dirty.set()

    # --- sending ---------------------------------------------------------------------------------

    def _publish(self, sub: str, payload: str, retain: bool = False):
        return self._client.publish(f"{self.base}/{sub}", payload, qos=1, retain=retain)

    def _pump(self, now: float) -> None:
        if self._discovery_due:
            self._discovery_due = False
            for topic, payload in discovery_messages(self.cfg.discovery_prefix, self.base, client_id(self.cfg),
                                                     hostname()):
                self._client.publish(topic, payload, qos=1, retain=True)
        if now >= self._next_state and (self._state_dirty.is_set() or now >= self._next_state + self.interval_s):
            self._state_dirty.clear()
            self._next_state = now + MIN_STATE_GAP_S
            self._publish_state()
        while len(self._inflight) < INFLIGHT and self._pending:
            ev = self._pending[0]
            info = self._publish("event", json.dumps(ev))
            if info.rc != 0:
                break  # the connection is going; loop() reports it next
            with self._lock:
                self._pending.popleft()
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
                self.delivered += 1
            else:
                self._inflight[info.mid] = ev

    def _publish_state(self) -> None:
        try:
            state = self._state_fn()
        except Exception as exc:  # a status bug must not stop the events
            log.debug("MQTT: state unavailable: %s", exc)
            return
        self._publish("state", json.dumps(state), retain=True)

    def _say_goodbye(self) -> bool:
        """At close: final state, then ``offline`` once the events are out; True when done."""
        if self._offline_mid is None:
            if self._pending or self._inflight:
                return False
            self._publish_state()
            self._offline_mid = self._publish("availability", "offline", retain=True).mid
            return False
        if self._offline_mid != -1:
            return False
        self._client.disconnect()  # a clean DISCONNECT: the broker drops the will
        self._client.loop(timeout=0.05)
        self._connected = self._sock_up = False
        self.state = "off"
        log.info("MQTT: disconnected from %s (%d events delivered)", broker(self.cfg), self.delivered)
        return True
