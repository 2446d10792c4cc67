"""A lamp, buzzer or relay on a GPIO pin, on for ``outputs.gpio_on_s`` at each alert (gpiozero).

gpiozero is Raspberry Pi OS's own GPIO library; it picks the Pi's pin driver (lgpio, RPi.GPIO, ...) or
the one named in ``$GPIOZERO_PIN_FACTORY`` (``mock`` in tests). No gpiozero, or no GPIO (not a Pi, a pin
in use, no permission): one warning and the output stays off; nothing else changes. ``blink`` runs in
gpiozero's own thread, so an alert never waits for the lamp.
"""
from __future__ import annotations

import logging
import warnings
from typing import Optional

from .config import OutputsConfig

log = logging.getLogger(__name__)


class GpioOutput:
    def __init__(self, cfg: OutputsConfig, pin_factory=None):
        self.cfg = cfg
        self.device = None
        self.error = ""
        self.pulses = 0
        try:
            from gpiozero import DigitalOutputDevice
        except ImportError as exc:
            self._unavailable(f"gpiozero is not installed ({exc}): apt install python3-gpiozero")
            return
        try:
            # gpiozero warns once per pin driver it falls back from; the one line below says it all
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.device = DigitalOutputDevice(cfg.gpio_pin, active_high=cfg.gpio_active_high,
                                                  initial_value=False, pin_factory=pin_factory)
        except Exception as exc:  # BadPinFactory (not a Pi), GPIOPinInUse, PermissionError, ...
            self._unavailable(f"GPIO{cfg.gpio_pin}: {type(exc).__name__}: {exc}")
            return
        log.info("GPIO%d ready: on for %g s at each alert (active %s)", cfg.gpio_pin, cfg.gpio_on_s,
                 "high" if cfg.gpio_active_high else "low")

    def _unavailable(self, why: str) -> None:
        self.error = why
        log.warning("outputs.gpio_pin: no GPIO output (%s); detection, sound and counts go on", why)

    @property
    def available(self) -> bool:
        return self.device is not None

    def alert(self, event: Optional[dict] = None) -> None:
        """On for gpio_on_s, in gpiozero's thread; an alert during the pulse starts it anew."""
        if self.device is None:
            return
        try:
            self.device.blink(on_time=self.cfg.gpio_on_s, off_time=0, n=1, background=True)
            self.pulses += 1
        except Exception as exc:
            if not self.error:
                log.warning("GPIO%d: switching failed: %s", self.cfg.gpio_pin, exc)
            self.error = str(exc)

    def status(self) -> str:
        return f"GPIO{self.cfg.gpio_pin} ok, {self.pulses} pulses" if self.device is not None and not self.error \
            else f"GPIO{self.cfg.gpio_pin} unavailable: {self.error}"

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.off()
                self.device.close()
            except Exception as exc:
                log.debug("closing GPIO%d: %s", self.cfg.gpio_pin, exc)
            self.device = None
