"""MQTT: the appliance's state, its events and Home Assistant discovery on a broker (paho-mqtt).

Topics under ``mqtt.topic`` (default ``mask-guard/<hostname>``):
  availability  ``online`` / ``offline``, retained; ``offline`` is also the last will
  state         retained JSON: today's counts, masked share, people in view, fps, camera, last alert
  event         one JSON per decision and per alert, QoS 1, not retained, with a ``seq`` number

The frame loop never waits for the network: ``event()`` and ``state_changed()`` only append to a
bounded in-memory queue or set a flag, and wake the thread through a socket pair. One thread of our
own owns the paho client and does every network call (paho's external-loop API: our ``select``
sleeps until the broker or the frame loop has something, so an idle appliance's thread wakes about
once a second, not 20 times), so paho is never used from two threads, and connection errors reach us
as exceptions (paho's own reconnecting thread would swallow them). While the broker is unreachable the thread
retries with a doubling backoff and the events wait in the queue (the oldest dropped, and counted,
beyond ``mqtt.queue_size``); after a reconnect they go out in order. paho re-sends an event whose
PUBACK had not come before the connection dropped (QoS 1: at least once; ``seq`` finds duplicates).

paho-mqtt 1.6 (Raspberry Pi OS Bookworm's python3-paho-mqtt) and 2.x (Trixie's) differ in the client
constructor and in the callbacks' signatures: ``mqtt_setup.new_client`` and the ``*rest`` callbacks cover both.
"""
from __future__ import annotations

import json
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, Optional

from .config import MqttConfig
from .ha_discovery import discovery_messages
from .mqtt_setup import base_topic, broker, client_id, connect_error, describe, hostname, new_client, \
    read_password, refusal, result_code

log = logging.getLogger(__name__)

RETRY_MIN_S = 1.0
IDLE_S = 1.0  # the thread's longest sleep (keepalive and periodic state are timed from it)
MIN_STATE_GAP_S = 0.25  # state messages no closer than this (a busy scene changes counts every frame)
INFLIGHT = 20  # events handed to paho and not yet acknowledged (paho keeps these across a reconnect)
CONNACK_TIMEOUT_S = 10.0


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
        self._wake_r, self._wake_w = socket.socketpair()  # the frame loop's doorbell
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._woken = False
        self._stop = threading.Event()
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._client = None
        self._sock_up = self._connected = self._discovery_due = False
        self._offline_mid: Optional[int] = None
        self._last_state = float("-inf")  # monotonic time of the last state message
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
        self._wake()
        if first:
            log.warning("MQTT: event queue full (%d, mqtt.queue_size): dropping the oldest (%d so far)",
                        self.cfg.queue_size, self.dropped)

    def state_changed(self) -> None:
        self._state_dirty.set()
        self._wake()

    def _wake(self) -> None:
        if not self._woken:  # one byte per sleep of the thread, not per call
            self._woken = True
            try:
                self._wake_w.send(b"!")
            except OSError:  # full (it is awake anyway) or closed
                pass

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
        client = new_client(client_id(cfg))
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
            self._close_doorbell()
            return
        self._closing.set()
        self._woken = False
        self._wake()  # out of its select now
        self._closed.wait(timeout)
        self._stop.set()
        self._thread.join(0.5)
        sock = self._client.socket() if self.state != "off" and not self._thread.is_alive() else None
        if sock is not None:
            sock.close()  # no clean goodbye in time: a dropped connection makes the broker send the will
            self.state = "off"
        if not self._thread.is_alive():
            self._close_doorbell()
        left = len(self._pending) + len(self._inflight)
        if left:
            log.warning("MQTT: %d event(s) not delivered at exit (%s)", left, self.error or self.state)

    def _close_doorbell(self) -> None:
        self._wake_r.close()
        self._wake_w.close()

    # --- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_try = connack_by = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if not self._sock_up:
                if self._closing.is_set():
                    break  # nothing to say goodbye over
                if now < next_try:
                    self._stop.wait(min(next_try - now, 0.2))
                    continue
                if not self._try_connect():
                    next_try = time.monotonic() + self._retry_s
                    self._retry_s = min(self._retry_s * 2, self.cfg.retry_max_s)
                    continue
                connack_by = time.monotonic() + CONNACK_TIMEOUT_S
            try:
                rc = self._io(self._sleep_s() if self._connected and not self._closing.is_set() else 0.05)
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

    def _sleep_s(self) -> float:
        """Until the next state message is due (a pending change, or the interval), at most IDLE_S."""
        since = time.monotonic() - self._last_state
        due = MIN_STATE_GAP_S - since if self._state_dirty.is_set() else self.interval_s - since
        return min(max(due, 0.0), IDLE_S)

    def _io(self, timeout: float):
        """One round of network I/O: sleep in select until the broker, the doorbell or ``timeout``."""
        c = self._client
        sock = c.socket()
        if sock is None:
            return 1
        if getattr(sock, "pending", lambda: 0)():
            timeout = 0.0  # TLS: bytes already decrypted would not wake select
        r, w, _ = select.select([sock, self._wake_r], [sock] if c.want_write() else [], [], timeout)
        if self._wake_r in r:
            self._woken = False  # before draining: a later call rings again
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        if sock in r:
            rc = c.loop_read()
            if rc:
                return rc
        if sock in w:
            rc = c.loop_write()
            if rc:
                return rc
        return c.loop_misc()

    def _try_connect(self) -> bool:
        try:
            self._client.reconnect()
        except Exception as exc:
            self._set_state("down", connect_error(self.cfg, exc))
            return False
        self._sock_up = True
        return True

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
        code = result_code(rc)
        if code == 0:
            self._connected, self._retry_s, self._discovery_due = True, RETRY_MIN_S, True
            self._state_dirty.set()
            self._publish("availability", "online", retain=True)
            if self.cfg.discovery_prefix:  # Home Assistant says "online" here when it (re)starts
                client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)
            self._set_state("connected")
            return
        why = refusal(self.cfg, rc)
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
        since = now - self._last_state
        if (self._state_dirty.is_set() and since >= MIN_STATE_GAP_S) or since >= self.interval_s:
            self._state_dirty.clear()
            self._last_state = now
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
        self._io(0.05)
        self._connected = self._sock_up = False
        self.state = "off"
        log.info("MQTT: disconnected from %s (%d events delivered)", broker(self.cfg), self.delivered)
        return True
