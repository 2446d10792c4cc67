"""The outcomes' listeners beyond sound and counts: MQTT, a GPIO lamp or buzzer, the alert command.

``Outcomes`` calls ``alert``, ``decision`` and ``changed`` from the frame loop; each returns at once
(MQTT queues, gpiozero blinks in its thread, the command runs in a worker). A failing listener logs
once and the others go on. ``reconfigure`` (SIGHUP) rebuilds only those whose settings changed.
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Callable, Optional

from .config import Config
from .counts import FIELDS

log = logging.getLogger(__name__)

# daemon state -> the camera's health as the MQTT state (and Home Assistant) shows it
_CAMERA = {"running": "ok", "camera_lost": "lost", "waiting_for_camera": "waiting", "starting": "starting",
           "stopping": "stopped"}


def now_iso() -> str:
    """Local time with its UTC offset (ISO 8601), as every event carries it."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def state_payload(report: dict, last_alert: Optional[dict]) -> dict:
    """The MQTT ``state`` JSON from a ``status_report`` and the last alert this process sent."""
    today = report.get("today") or {}
    t = {k: int(today.get(k, 0)) for k in FIELDS}
    decided = t["masked"] + t["unmasked"]
    return {"today": t, "masked_share": round(100.0 * t["masked"] / decided, 1) if decided else None,
            "in_view": int(report.get("people_in_view", 0)), "fps": round(float(report.get("fps", 0.0)), 1),
            "camera": _CAMERA.get(report.get("state", ""), report.get("state", "unknown")),
            "last_alert": last_alert}


class Outputs:
    def __init__(self, cfg: Config, report: Optional[Callable[[], dict]] = None, pin_factory=None):
        """``report``: the daemon's status (``status_report``) for the MQTT state; ``pin_factory``: gpiozero's."""
        self.report = report or dict
        self.pin_factory = pin_factory
        self.mqtt = self.gpio = self.hook = None
        self.last_alert: Optional[dict] = None
        self._failed: set[str] = set()
        self._cfg: Optional[Config] = None
        self.reconfigure(cfg)

    def reconfigure(self, cfg: Config) -> None:
        old = self._cfg
        if old is None or (cfg.mqtt, cfg.service.status_interval_s) != (old.mqtt, old.service.status_interval_s):
            self._close("mqtt")
            if cfg.mqtt.enabled:
                from .mqtt import MqttPublisher
                from .mqtt_setup import describe

                log.info("MQTT: connecting to %s", describe(cfg.mqtt))
                self.mqtt = MqttPublisher(cfg.mqtt, self.state, cfg.service.status_interval_s)
                self.mqtt.start()
        if old is None or cfg.outputs != old.outputs:
            self._close("gpio")
            if cfg.outputs.gpio_pin:
                from .gpio_out import GpioOutput

                self.gpio = GpioOutput(cfg.outputs, self.pin_factory)
        a = cfg.alerts
        if old is None or (a.command, a.command_timeout_s) != (old.alerts.command, old.alerts.command_timeout_s):
            self._close("hook")
            if a.command:
                from .hook import AlertHook

                self.hook = AlertHook(a)
        self._cfg = cfg

    # --- from the frame loop ----------------------------------------------------------------------

    def alert(self, person: int, frame: int) -> None:
        ev = {"type": "alert", "person": person, "decision": "no_mask", "time": now_iso(), "frame": frame}
        self.last_alert = {"time": ev["time"], "person": person}
        for name in ("mqtt", "gpio", "hook"):
            self._call(name, "event" if name == "mqtt" else "alert", ev)

    def decision(self, person: int, decision: str, previous: str, frame: int) -> None:
        self._call("mqtt", "event", {"type": "decision", "person": person, "decision": decision,
                                     "previous": previous, "time": now_iso(), "frame": frame})

    def changed(self) -> None:
        """Counts or people in view changed: MQTT publishes the state soon."""
        self._call("mqtt", "state_changed")

    def _call(self, name: str, method: str, *args) -> None:
        sink = getattr(self, name)
        if sink is None:
            return
        try:
            getattr(sink, method)(*args)
        except Exception:  # a listener's bug must not cost a frame, nor the other listeners
            if name not in self._failed:
                self._failed.add(name)
                log.exception("%s output failed; detection goes on", name)

    # --- for status and shutdown ------------------------------------------------------------------

    def state(self) -> dict:
        return state_payload(self.report(), self.last_alert)

    def status(self) -> dict:
        return {"mqtt": self.mqtt.status() if self.mqtt else "off",
                "gpio": self.gpio.status() if self.gpio else "off",
                "alert_command": self.hook.status() if self.hook else "off"}

    def _close(self, name: str) -> None:
        sink = getattr(self, name)
        setattr(self, name, None)
        if sink is not None:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing the %s output: %s", name, exc)

    def close(self) -> None:
        for name in ("mqtt", "gpio", "hook"):
            self._close(name)
