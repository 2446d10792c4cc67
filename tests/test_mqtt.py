"""MQTT against a real Mosquitto broker (tests/mqtt_broker.py: loopback, password file, ACL, a TLS listener
with a CA made by openssl); what subscribers see is read with ``mosquitto_sub``, Mosquitto's own client.

The publisher (mask_guard.mqtt) runs as in the daemon: its own thread, fed by ``event()`` / ``state_changed()``.
Runs with whichever paho-mqtt the venv has: 2.x in .venv, 1.6 (Bookworm's) in .venv-np1.
"""
from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from mask_guard.config import ConfigError, config_from_dict
from mask_guard.ha_discovery import SENSORS
from mask_guard.mqtt import MqttPublisher
from mask_guard.outputs import state_payload

import mqtt_broker as mb
from mqtt_broker import retained, unique_in_order, wait

ROOT = Path(__file__).resolve().parent.parent
BASE = "mask-guard/door1"
STATE = {"today": {"people": 3, "masked": 1, "unmasked": 2, "alerts": 2}, "masked_share": 33.3, "in_view": 1,
         "fps": 9.5, "camera": "ok", "last_alert": {"time": "2026-11-21T12:00:01.250+01:00", "person": 7}}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = mb.Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


@pytest.fixture
def own_broker(tmp_path):
    """A broker this test may stop and start."""
    b = mb.Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def mqtt_cfg(broker, **over):
    return config_from_dict({"mqtt": broker.config(**over)}).mqtt


def publisher(broker, state=lambda: STATE, interval_s=5.0, **over) -> MqttPublisher:
    p = MqttPublisher(mqtt_cfg(broker, **over), state, interval_s)
    assert p.start()
    return p


def events(sub, base=BASE) -> list[dict]:
    return [json.loads(p) for p in sub.messages(f"{base}/event")]


# --- what a subscriber sees -----------------------------------------------------------------------

def test_availability_state_and_events_reach_a_subscriber_and_offline_stays_retained(broker):
    sub = mb.Subscriber(broker, (f"{BASE}/#",), client_id="t1").start()
    try:
        p = publisher(broker)
        sub.wait_for(f"{BASE}/availability", "online")
        for i in range(5):
            p.event({"type": "decision", "person": i, "decision": "no_mask", "time": f"t{i}"})
        sub.wait_for(f"{BASE}/event", count=5)
        got = events(sub)
        assert [e["person"] for e in got] == [0, 1, 2, 3, 4] and [e["seq"] for e in got] == [1, 2, 3, 4, 5]
        assert json.loads(sub.wait_for(f"{BASE}/state")[-1]) == STATE
        assert retained(broker, f"{BASE}/#") == {f"{BASE}/availability": "online", f"{BASE}/state": json.dumps(STATE)}
        assert p.status()["delivered"] == 5 and p.status()["queued"] == 0
        p.close()
        sub.wait_for(f"{BASE}/availability", "offline")
    finally:
        sub.stop()
    assert retained(broker, f"{BASE}/availability") == {f"{BASE}/availability": "offline"}


def test_state_is_published_on_each_change_and_every_interval(broker):
    n = {"calls": 0}

    def state():
        n["calls"] += 1
        return {**STATE, "n": n["calls"]}

    sub = mb.Subscriber(broker, (f"{BASE}/state",), client_id="t2").start()
    p = publisher(broker, state, interval_s=1.0)
    try:
        sub.wait_for(f"{BASE}/state", count=4, timeout=6)  # no change: the interval alone
        times = [t for t, topic, _, kept in sub.lines if topic == f"{BASE}/state" and not kept]  # (an earlier test's
        assert len(times) >= 3                                                                   # retained one)
        assert all(0.8 < b - a < 1.6 for a, b in zip(times, times[1:])), times
        before = len(sub.messages(f"{BASE}/state"))
        time.sleep(0.3)
        p.state_changed()
        t1 = time.monotonic()
        sub.wait_for(f"{BASE}/state", count=before + 1, timeout=5)
        assert time.monotonic() - t1 < 0.6, "a change goes out before the next interval"
        assert json.loads(sub.messages(f"{BASE}/state")[-1])["n"] == n["calls"]  # the state as of now
    finally:
        p.close()
        sub.stop()


def test_the_last_will_says_offline_when_the_process_dies(broker, tmp_path):
    script = tmp_path / "die.py"
    script.write_text(
        "import json, os, signal, sys, time\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from mask_guard.config import config_from_dict\nfrom mask_guard.mqtt import MqttPublisher\n"
        f"p = MqttPublisher(config_from_dict({{'mqtt': json.loads({json.dumps(json.dumps(broker.config(topic='mask-guard/dies', client_id='dies')))})}}).mqtt, dict)\n"
        "p.start()\n"
        "while p.state != 'connected': time.sleep(0.02)\n"
        "time.sleep(0.3)\nos.kill(os.getpid(), signal.SIGKILL)\n")
    sub = mb.Subscriber(broker, ("mask-guard/dies/availability",), client_id="t3").start()
    try:
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
        assert r.returncode == -9, r.stderr
        sub.wait_for("mask-guard/dies/availability", "offline", timeout=10)
        assert sub.messages("mask-guard/dies/availability") == ["online", "offline"]
    finally:
        sub.stop()
    assert retained(broker, "mask-guard/dies/availability") == {"mask-guard/dies/availability": "offline"}


# --- Home Assistant discovery ---------------------------------------------------------------------

# Home Assistant's documented options of an MQTT sensor (integrations/sensor.mqtt) that discovery may carry.
HA_SENSOR_OPTIONS = {"availability_topic", "payload_available", "payload_not_available", "device", "device_class",
                     "entity_category", "icon", "name", "state_class", "state_topic", "unique_id",
                     "unit_of_measurement", "value_template", "expire_after", "force_update", "object_id"}
HA_DEVICE_OPTIONS = {"identifiers", "connections", "name", "manufacturer", "model", "sw_version", "hw_version"}


def test_home_assistant_discovery_matches_its_schema_and_the_templates_read_the_state(broker):
    jinja2 = pytest.importorskip("jinja2")
    p = publisher(broker)
    try:
        disc = "homeassistant/sensor/mask-guard-door1/#"
        wait(lambda: len(retained(broker, disc)) == len(SENSORS), what="discovery configs")
        configs = {t: json.loads(v) for t, v in retained(broker, disc).items()}
        state = json.loads(retained(broker, f"{BASE}/state")[f"{BASE}/state"])
    finally:
        p.close()
    env = jinja2.Environment()
    rendered = {}
    for topic, c in configs.items():
        key = topic.split("/")[3]
        assert topic == f"homeassistant/sensor/mask-guard-door1/{key}/config"
        assert set(c) <= HA_SENSOR_OPTIONS, set(c) - HA_SENSOR_OPTIONS
        for required in ("unique_id", "device", "state_topic", "availability_topic", "value_template", "name"):
            assert c.get(required), (key, required)
        assert c["state_topic"] == f"{BASE}/state" and c["availability_topic"] == f"{BASE}/availability"
        assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
        assert set(c["device"]) <= HA_DEVICE_OPTIONS and c["device"]["identifiers"] == ["mask-guard-door1"]
        rendered[key] = env.from_string(c["value_template"]).render(value_json=state)
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    assert len({json.dumps(c["device"], sort_keys=True) for c in configs.values()}) == 1, "one device"
    assert rendered == {"people": "3", "masked": "1", "unmasked": "2", "alerts": "2", "masked_share": "33.3",
                        "in_view": "1", "camera": "ok", "last_alert": "2026-11-21T12:00:01.250+01:00", "fps": "9.5"}
    assert datetime.fromisoformat(rendered["last_alert"]).utcoffset() is not None  # device_class timestamp
    # before the first alert (and before anyone is decided) Home Assistant gets its "no value"
    empty = state_payload({"today": {}, "state": "waiting_for_camera"}, None)
    assert env.from_string(configs["homeassistant/sensor/mask-guard-door1/last_alert/config"]["value_template"]) \
        .render(value_json=empty) == "None"
    assert empty["masked_share"] is None and empty["camera"] == "waiting"


def test_discovery_is_sent_again_when_home_assistant_comes_online(broker):
    node = "homeassistant/sensor/mask-guard-hass/people/config"
    sub = mb.Subscriber(broker, ("homeassistant/sensor/mask-guard-hass/#",), client_id="t4").start()
    p = publisher(broker, topic="mask-guard/hass", client_id="mask-guard-hass")
    try:
        sub.wait_for(node)
        time.sleep(0.3)
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", mb.USER, "-P", mb.PASSWORD,
                        "-t", "homeassistant/status", "-m", "online", "-q", "1"], check=True, timeout=10)
        sub.wait_for(node, count=2, timeout=5)
    finally:
        p.close()
        sub.stop()
    assert len(sub.messages(node)) == 2


def test_no_discovery_messages_with_an_empty_prefix(broker):
    p = publisher(broker, topic="mask-guard/nodisc", client_id="nodisc", discovery_prefix="")
    try:
        wait(lambda: "mask-guard/nodisc/state" in retained(broker, "mask-guard/nodisc/#"), what="state")
        assert not any("nodisc" in t for t in retained(broker, "homeassistant/#"))
    finally:
        p.close()


# --- the broker goes away -------------------------------------------------------------------------

def test_events_wait_while_the_broker_is_down_and_arrive_in_order_the_oldest_dropped_beyond_the_bound(
        own_broker, caplog):
    caplog.set_level(logging.DEBUG, logger="mask_guard.mqtt")
    sub = mb.Subscriber(own_broker, (f"{BASE}/event",), client_id="t5").start()
    p = publisher(own_broker, queue_size=5)
    try:
        wait(lambda: p.state == "connected")
        p.event({"type": "alert", "person": 0})
        sub.wait_for(f"{BASE}/event")
        wait(lambda: p.status()["delivered"] == 1, what="PUBACK")
        own_broker.stop()
        wait(lambda: p.state == "down")
        for i in range(1, 9):  # 8 events into a queue of 5: events 1-3 are dropped, 4-8 wait
            p.event({"type": "alert", "person": i})
        assert p.status()["queued"] == 5 and p.dropped == 3
        time.sleep(1.5)  # a few reconnect attempts against the stopped broker
        own_broker.start()
        wait(lambda: len(unique_in_order(events(sub))) == 6, timeout=20, what="6 distinct events")
    finally:
        p.close()
        sub.stop()
    got = unique_in_order(events(sub))
    assert [e["person"] for e in got] == [0, 4, 5, 6, 7, 8]
    assert [e["seq"] for e in got] == [1, 5, 6, 7, 8, 9]  # seq shows the gap the dropped ones left
    msgs = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len([m for m in msgs if m.startswith("MQTT: connected")]) == 2, msgs
    assert len([m for m in msgs if "lost" in m or "refused the connection" in m]) == 1, msgs  # one per change
    assert len([m for m in msgs if "queue full" in m]) == 1, msgs
    assert any("sending 5 queued event(s)" in m for m in msgs), msgs


def test_a_broker_that_never_answers_does_not_hold_up_the_caller():
    """A TCP port that accepts and says nothing (a hung broker): event() still returns in microseconds."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    conns = []
    threading.Thread(target=lambda: conns.append(srv.accept()), daemon=True).start()
    cfg = config_from_dict({"mqtt": {"enabled": True, "host": "127.0.0.1", "port": srv.getsockname()[1],
                                     "topic": "mask-guard/hung"}}).mqtt
    p = MqttPublisher(cfg, lambda: STATE)
    assert p.start()
    try:
        wait(lambda: conns, what="the client's TCP connection")
        took = []
        for i in range(2000):
            t = time.perf_counter()
            p.event({"type": "decision", "person": i})
            p.state_changed()
            took.append(time.perf_counter() - t)
        assert p.state != "connected" and p.status()["queued"] == 1000  # the default bound
        # (single calls may wait a GIL switch interval, 5 ms, for the MQTT thread: so the median and the sum;
        # the sum's bound allows a loaded 2-core machine: a caller held up by the broker would wait seconds)
        assert np.median(took) < 50e-6 and sum(took) < 1.0, f"median {np.median(took) * 1e6:.0f} us, " \
                                                            f"sum {sum(took) * 1e3:.0f} ms for 2000 calls"
    finally:
        p.close(timeout=0.1)
        srv.close()


# --- wrong settings: one clear error naming the setting ---------------------------------------------

def test_a_wrong_password_gives_one_error_naming_the_settings_and_never_shows_the_password(broker, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-Pa55word\n")
    p = publisher(broker, password_file=str(wrong), retry_max_s=0.2)
    try:
        wait(lambda: p.state == "refused")
        time.sleep(1.0)  # several more attempts
        status = json.dumps(p.status())
    finally:
        p.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "mqtt.username 'door1' / mqtt.password_file" in errors[0] and "refused the login" in errors[0]
    assert "mqtt.password_file" in status
    everything = caplog.text + status
    assert "not-the-Pa55word" not in everything and mb.PASSWORD not in everything


def test_tls_with_the_right_ca_delivers_and_a_wrong_ca_gives_one_error_naming_mqtt_tls(broker, caplog):
    sub = mb.Subscriber(broker, ("mask-guard/tls/event",), client_id="t7").start()
    p = publisher(broker, tls=True, topic="mask-guard/tls", client_id="tls-ok")
    try:
        p.event({"type": "alert", "person": 1})
        sub.wait_for("mask-guard/tls/event")
    finally:
        p.close()
        sub.stop()
    caplog.set_level(logging.INFO, logger="mask_guard.mqtt")
    caplog.clear()
    bad = publisher(broker, tls=True, ca=broker.other_ca, topic="mask-guard/tls", client_id="tls-bad",
                    retry_max_s=0.2)
    try:
        wait(lambda: bad.state == "down")
        time.sleep(1.0)
    finally:
        bad.close()
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1, problems
    assert problems[0].startswith("MQTT: mqtt.tls: the certificate of 127.0.0.1:") and "other-ca.crt" in problems[0]
    assert "self-signed certificate in certificate chain" in problems[0], problems[0]  # OpenSSL's reason


def test_plain_mqtt_to_the_tls_port_says_so(broker, caplog):
    caplog.set_level(logging.INFO, logger="mask_guard.mqtt")
    p = publisher(broker, port=broker.tls_port, topic="mask-guard/plain2tls", client_id="plain2tls")
    try:
        wait(lambda: p.state == "down")
    finally:
        p.close()
    assert "a TLS port? then set mqtt.tls" in p.error


@pytest.mark.parametrize("setting, expect", [
    ({"password_file": "/nonexistent/pw"}, "mqtt.password_file: cannot read /nonexistent/pw: No such file"),
    ({"tls": True, "ca": "/nonexistent/ca.crt"}, "mqtt.tls: cannot use the CA file /nonexistent/ca.crt"),
])
def test_an_unreadable_password_or_ca_file_turns_mqtt_off_with_one_error(broker, caplog, setting, expect):
    caplog.set_level(logging.INFO, logger="mask_guard.mqtt")
    p = MqttPublisher(mqtt_cfg(broker, **setting), lambda: STATE)
    assert not p.start()
    p.event({"type": "alert", "person": 1})  # still harmless to call
    p.close()
    (err,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert err.startswith("MQTT off: " + expect) and "detection, sound and counts go on" in err
    assert p.status()["state"] == "failed" and expect in p.status()["error"]


def test_config_refuses_a_bad_topic_and_a_password_file_without_a_user():
    for bad, key in (({"topic": "a/#"}, "mqtt.topic"), ({"topic": "trailing/"}, "mqtt.topic"),
                     ({"password_file": "/x"}, "mqtt.password_file"), ({"port": 70000}, "mqtt.port"),
                     ({"enabled": True, "host": ""}, "mqtt.host")):
        with pytest.raises(ConfigError) as e:
            config_from_dict({"mqtt": bad})
        assert e.value.errors[0].startswith(key), e.value.errors
