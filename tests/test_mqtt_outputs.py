"""MQTT fed by the daemon's outcomes (outputs.py), rebuilt on a reload, and shown by check-config: against a
real Mosquitto (tests/mqtt_broker.py), read back with ``mosquitto_sub``."""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from mask_guard.alerts import Alerter, SoundPlayer
from mask_guard.config import config_from_dict
from mask_guard.counts import Counts
from mask_guard.detections import Frame
from mask_guard.outcomes import Outcomes
from mask_guard.outputs import Outputs
from mask_guard.pipeline import FrameResult
from mask_guard.votes import Decision, DecisionChange

import mqtt_broker as mb
from mqtt_broker import retained, wait


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = mb.Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


def events(sub, base) -> list[dict]:
    return [json.loads(p) for p in sub.messages(f"{base}/event")]


def beep(path: Path) -> str:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(400, "<i2").tobytes())
    return str(path)


def frame_result(i: int, changes=(), tallies=None, new=()) -> FrameResult:
    return FrameResult(Frame(np.zeros((8, 8, 3), np.uint8), i, time.monotonic()), [], list(new), list(changes),
                       tallies or {})


def test_outcomes_publish_one_event_per_decision_and_per_alert_and_the_counts_as_state(broker, tmp_path):
    cfg = config_from_dict({"mqtt": broker.config(topic="mask-guard/wired", client_id="wired"),
                            "alerts": {"sound": beep(tmp_path / "b.wav"), "cooldown_s": 0}})
    counts = Counts(tmp_path / "counts.json")
    report = lambda: {"today": counts.today(), "state": "running", "fps": 12.0, "people_in_view": 1}  # noqa: E731
    outputs = Outputs(cfg, report)
    outcomes = Outcomes(Alerter(cfg.alerts, SoundPlayer(cfg.alerts.sound)), counts, outputs)
    sub = mb.Subscriber(broker, ("mask-guard/wired/#",), client_id="t9").start()
    try:
        wait(lambda: outputs.mqtt.state == "connected")
        outcomes.apply(frame_result(0, new=[3]))
        no_mask = DecisionChange(3, Decision.UNDECIDED, Decision.NO_MASK)
        alerted = outcomes.apply(frame_result(1, [no_mask], {3: (-3, 3, Decision.NO_MASK)}))
        assert alerted == [3]
        outcomes.apply(frame_result(2, [DecisionChange(3, Decision.NO_MASK, Decision.MASK)], {3: (1, 8, Decision.MASK)}))
        sub.wait_for("mask-guard/wired/event", count=3)
        wait(lambda: json.loads(sub.messages("mask-guard/wired/state")[-1])["today"] == counts.today(),
             what="the state to show the counts")
        outcomes.close()
        sub.wait_for("mask-guard/wired/availability", "offline")
    finally:
        outcomes.close()
        sub.stop()
    evs = events(sub, "mask-guard/wired")
    assert [(e["type"], e["person"], e["decision"], e["frame"]) for e in evs] == [
        ("decision", 3, "no_mask", 1), ("alert", 3, "no_mask", 1), ("decision", 3, "mask", 2)]
    assert evs[0]["previous"] == "undecided" and evs[2]["previous"] == "no_mask"
    assert all(datetime.fromisoformat(e["time"]).utcoffset() is not None for e in evs)
    state = json.loads(sub.messages("mask-guard/wired/state")[-1])
    assert state["today"] == {"people": 1, "masked": 1, "unmasked": 0, "alerts": 1}
    assert state["masked_share"] == 100.0 and state["camera"] == "ok" and state["last_alert"]["person"] == 3
    assert sub.messages("mask-guard/wired/availability")[-1] == "offline"


def test_a_reload_rebuilds_the_mqtt_client_only_when_its_settings_change(broker):
    cfg = config_from_dict({"mqtt": broker.config(topic="mask-guard/reload", client_id="reload")})
    outputs = Outputs(cfg, dict)
    first = outputs.mqtt
    try:
        wait(lambda: first.state == "connected")
        outputs.reconfigure(config_from_dict({"mqtt": broker.config(topic="mask-guard/reload", client_id="reload"),
                                              "alerts": {"cooldown_s": 9}}))
        assert outputs.mqtt is first
        outputs.reconfigure(config_from_dict({"mqtt": broker.config(topic="mask-guard/reload2", client_id="reload")}))
        assert outputs.mqtt is not first and first.state == "off"
        wait(lambda: outputs.mqtt.state == "connected")
        outputs.reconfigure(config_from_dict({}))
        assert outputs.mqtt is None
    finally:
        outputs.close()
    assert retained(broker, "mask-guard/reload/availability") == {"mask-guard/reload/availability": "offline"}


def test_check_config_shows_the_mqtt_settings_and_never_the_password(broker, tmp_path, capsys):
    from mask_guard import cli

    path = tmp_path / "c.yaml"
    path.write_text(json.dumps({"mqtt": broker.config(tls=True)}))  # JSON is YAML
    cli.main(["check-config", str(path)])
    out = capsys.readouterr().out
    assert f"  mqtt        127.0.0.1:{broker.tls_port} as 'door1' (password from {broker.password_file}), TLS with CA " \
           f"{broker.ca}, topic mask-guard/door1, Home Assistant discovery under homeassistant/" in out
    assert mb.PASSWORD not in out and "warning" not in out
    path.write_text(json.dumps({"mqtt": broker.config(password_file="/nonexistent/pw")}))
    cli.main(["check-config", str(path)])
    out = capsys.readouterr().out
    assert "  warning: mqtt.password_file: cannot read /nonexistent/pw: No such file or directory" in out
