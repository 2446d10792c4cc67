"""The GPIO output (a lamp, buzzer or relay) on gpiozero's own mock pin factory: the pin's level over time.

gpiozero's MockFactory records every level a pin takes with its time (``MockPin.states``), so these tests
read what a lamp on the pin would have done. "No GPIO" is real here: this machine is not a Pi, so
gpiozero's default pin drivers all fail, as they would on a Pi without GPIO access.
"""
from __future__ import annotations

import logging
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from mask_guard.alerts import Alerter, SoundPlayer
from mask_guard.config import ConfigError, config_from_dict
from mask_guard.counts import Counts
from mask_guard.detections import Frame
from mask_guard.gpio_out import GpioOutput
from mask_guard.outcomes import Outcomes
from mask_guard.outputs import Outputs
from mask_guard.pipeline import FrameResult
from mask_guard.votes import Decision, DecisionChange

mock = pytest.importorskip("gpiozero.pins.mock")


def outputs_cfg(**kw):
    return config_from_dict({"outputs": {"gpio_pin": 17, **kw}}).outputs


def levels(pin) -> list[tuple[float, bool]]:
    """(seconds since the first change, level) of every change after the pin was set up."""
    st = pin.states[1:]  # states[0] is the mock pin's own initial entry
    return [(s.timestamp - st[0].timestamp, bool(s.state)) for s in st]


def test_each_alert_switches_the_pin_on_for_gpio_on_s():
    factory = mock.MockFactory()
    out = GpioOutput(outputs_cfg(gpio_on_s=0.2), pin_factory=factory)
    assert out.available
    out.alert({"person": 1})
    pin = factory.pin(17)
    t0 = time.monotonic()
    while len(pin.states) < 3 and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    lv = levels(pin)
    assert [v for _, v in lv] == [True, False]
    # About gpio_on_s: gpiozero's blink thread and the mock pin's timestamps jitter by some 10 ms either way
    # (seen: 0.187 s for 0.2 s on a clean CI run); the upper bound leaves room for a busy machine.
    assert 0.15 <= lv[1][0] - lv[0][0] <= 0.6, lv
    out.close()


def test_active_low_inverts_the_level_for_relay_boards():
    factory = mock.MockFactory()
    out = GpioOutput(outputs_cfg(gpio_on_s=0.1, gpio_active_high=False), pin_factory=factory)
    pin = factory.pin(17)
    assert pin.state is True or pin.state == 1, "off is high on an active-low board"
    out.alert()
    time.sleep(0.02)
    assert not pin.state, "on is low"
    time.sleep(0.3)
    assert pin.state
    out.close()


def test_an_alert_during_the_pulse_starts_it_anew():
    factory = mock.MockFactory()
    out = GpioOutput(outputs_cfg(gpio_on_s=0.3), pin_factory=factory)
    pin = factory.pin(17)
    t0 = time.monotonic()
    out.alert()
    time.sleep(0.2)
    out.alert()  # the second person: the lamp stays on 0.3 s from here
    while pin.state and time.monotonic() - t0 < 2:
        time.sleep(0.005)
    assert time.monotonic() - t0 >= 0.45
    assert out.pulses == 2
    out.close()


def test_alerts_reach_the_pin_through_the_outcomes(tmp_path):
    beep = tmp_path / "b.wav"
    with wave.open(str(beep), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(np.zeros(400, "<i2").tobytes())
    cfg = config_from_dict({"outputs": {"gpio_pin": 22, "gpio_on_s": 0.2}, "alerts": {"sound": str(beep)}})
    factory = mock.MockFactory()
    outputs = Outputs(cfg, pin_factory=factory)
    outcomes = Outcomes(Alerter(cfg.alerts, SoundPlayer(beep)), Counts(tmp_path / "c.json"), outputs)
    frame = Frame(np.zeros((8, 8, 3), np.uint8), 5, time.monotonic())
    masked = FrameResult(frame, [], [], [DecisionChange(1, Decision.UNDECIDED, Decision.MASK)], {1: (3, 3, Decision.MASK)})
    assert outcomes.apply(masked) == [] and not factory.pin(22).state  # a masked person: lamp stays off
    unmasked = FrameResult(frame, [], [], [DecisionChange(2, Decision.UNDECIDED, Decision.NO_MASK)],
                           {2: (-3, 3, Decision.NO_MASK)})
    assert outcomes.apply(unmasked) == [2]
    time.sleep(0.02)
    assert factory.pin(22).state
    assert outputs.status()["gpio"] == "GPIO22 ok, 1 pulses"
    outcomes.close()
    assert not factory.pin(22).state


def test_without_gpio_one_warning_and_the_rest_goes_on(caplog):
    if Path("/proc/device-tree/model").exists() and "Raspberry" in Path("/proc/device-tree/model").read_text():
        pytest.skip("a real Pi: its GPIO works")
    caplog.set_level(logging.INFO)
    out = GpioOutput(outputs_cfg())  # gpiozero's own choice of pin driver: none works on this machine
    out.alert()
    out.alert()
    out.close()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    msg = warnings[0].getMessage()
    assert msg.startswith("outputs.gpio_pin: no GPIO output (GPIO17: BadPinFactory") and "go on" in msg
    assert not out.available and out.status().startswith("GPIO17 unavailable")


def test_without_gpiozero_one_warning(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # import gpiozero raises ImportError
    caplog.set_level(logging.INFO)
    out = GpioOutput(outputs_cfg())
    out.alert()
    (w,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "gpiozero is not installed" in w and "apt install python3-gpiozero" in w


def test_a_pin_in_use_gives_one_warning(caplog):
    factory = mock.MockFactory()
    first = GpioOutput(outputs_cfg(), pin_factory=factory)
    caplog.set_level(logging.INFO)
    second = GpioOutput(outputs_cfg(), pin_factory=factory)
    (w,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "GPIOPinInUse" in w and not second.available
    first.close()


def test_config_checks_the_pin():
    assert config_from_dict({}).outputs.gpio_pin == 0  # off by default
    for bad in (1, 28, -1):
        with pytest.raises(ConfigError) as e:
            config_from_dict({"outputs": {"gpio_pin": bad}})
        assert e.value.errors[0].startswith("outputs.gpio_pin")


def test_the_service_user_is_in_group_gpio(tmp_path):
    """Raspberry Pi OS gives /dev/gpiochip* and /dev/gpiomem to group gpio; sysusers puts mask-guard in it."""
    import shutil
    import subprocess

    if not shutil.which("systemd-sysusers"):
        pytest.skip("systemd-sysusers is not installed")
    (tmp_path / "etc").mkdir()
    conf = Path(__file__).resolve().parent.parent / "deploy" / "mask-guard.sysusers"
    r = subprocess.run(["systemd-sysusers", "--root", str(tmp_path), str(conf)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert any(line.startswith("gpio:") and "mask-guard" in line.split(":")[3].split(",")
               for line in (tmp_path / "etc" / "group").read_text().splitlines())
