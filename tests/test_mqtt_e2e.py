"""``mask-guard run`` on a walk-through clip, publishing to a real Mosquitto broker (TLS, password, ACL) that is
stopped mid-run and started again: every decision and alert the daemon logged arrives, in order, with nothing
lost; Home Assistant's discovery, the retained state (equal to the counts file) and the availability
(online, the last will while the broker restarts, online again, offline at exit) are what a subscriber sees.

The clip is the "noisy" walk-through (three people, two without a mask) with 40 empty frames before it, so
the broker is down before the first person is decided, and 40 after it.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime

import pytest
import yaml

import appliance_helpers as h
import mqtt_broker as mb
from clip_fixtures import clip_cache, clips, latency, need_clip_inputs, need_mouth_model
from mqtt_broker import retained, unique_in_order

BASE = "mask-guard/door1"
LEAD = TAIL = 40


def logged_events(log: str) -> list[tuple[str, int, str]]:
    """(type, person, decision) of every decision and alert in the daemon's log, in order."""
    out = []
    for line in log.splitlines():
        m = re.search(r"person (\d+) decided (\w+) \(was \w+\)", line)
        if m:
            out.append(("decision", int(m.group(1)), m.group(2)))
        m = re.search(r"ALERT: person (\d+) without a mask", line)
        if m:
            out.append(("alert", int(m.group(1)), "no_mask"))
    return out


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mask_guard.cli", *args], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.slow
def test_mask_guard_run_delivers_every_event_in_order_across_a_broker_restart(tmp_path, tmp_path_factory):
    need_clip_inputs()
    need_mouth_model()
    broker = mb.Broker(tmp_path / "broker").start()
    sub = mb.Subscriber(broker).start()
    clip = clips.make_clip("noisy", seed=0, out_dir=clip_cache(tmp_path_factory))
    frames = list(clips.read_frames(clip.video))
    video = h.write_clip(tmp_path / "walk.avi", [frames[0]] * LEAD + frames + [frames[0]] * TAIL, fps=clip.fps)
    cfg = latency.daemon_config(tmp_path, mqtt=broker.config(tls=True),
                                service={"control_socket": str(tmp_path / "ctl.sock"), "status_interval_s": 0.5})
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = h.daemon_env(tmp_path)
    log_path = tmp_path / "daemon.log"
    proc = h.start_daemon(["--config", str(cfg_path), "--source", str(video)], env, log_path)
    try:
        h.wait_log(log_path, "MQTT: connected to 127.0.0.1", timeout=120, proc=proc)
        broker.stop()
        assert logged_events(log_path.read_text()) == [], "the broker must be down before the first decision"
        h.wait_log(log_path, "ALERT: person", timeout=120, proc=proc)
        # while the broker is down: status tells, and never shows the password
        st = cli("status", "--json", "--config", str(cfg_path), env=env)
        assert st.returncode == 0, st.stderr
        mqtt = json.loads(st.stdout)["outputs"]["mqtt"]
        assert mqtt["state"] == "down" and mqtt["queued"] >= 1, mqtt
        human = cli("status", "--config", str(cfg_path), env=env).stdout
        assert re.search(r"^mqtt: down, 127\.0\.0\.1:\d+, topic mask-guard/door1, \d+ events delivered, [1-9]\d* "
                         r"queued, 0 dropped, last error: ", human, re.M), human
        check = cli("check-config", str(cfg_path), env=env)
        assert "  mqtt        127.0.0.1:" in check.stdout and "TLS with CA" in check.stdout, check.stdout
        broker.start()
        rc = h.finish(proc, timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = log_path.read_text()
    try:
        assert rc == 0, log[-3000:]
        want = logged_events(log)
        assert sum(t == "alert" for t, _, _ in want) >= 2 and len(want) >= 5, want
        deadline = time.monotonic() + 20
        while len(unique_in_order([json.loads(p) for p in sub.messages(f"{BASE}/event")])) < len(want) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        raw = [json.loads(p) for p in sub.messages(f"{BASE}/event")]
        got = unique_in_order(raw)
        assert [(e["type"], e["person"], e["decision"]) for e in got] == want, (got, want)
        assert [e["seq"] for e in got] == list(range(1, len(want) + 1)), "none lost, none dropped, in order"
        assert all(datetime.fromisoformat(e["time"]).utcoffset() is not None for e in got)
        queued = int(re.search(r"MQTT: connected to .*; sending (\d+) queued event\(s\)", log).group(1))
        assert queued >= 1, log
        assert log.count("MQTT: connected to") == 2 and log.count("MQTT: connection to") == 1, log
        assert mb.PASSWORD not in log + st.stdout + human + check.stdout
        # availability: online, the last will when the broker went down, online again, offline at exit
        av = sub.messages(f"{BASE}/availability")
        assert av[0] == "online" and av[-1] == "offline" and "online" in av[av.index("offline"):], av
        # the retained picture a newcomer (Home Assistant starting later) gets
        ret = retained(broker, "#")
        assert ret[f"{BASE}/availability"] == "offline"
        state = json.loads(ret[f"{BASE}/state"])
        days = json.loads((tmp_path / "counts.json").read_text())["days"]
        assert state["today"] == {k: days[max(days)][k] for k in ("people", "masked", "unmasked", "alerts")}
        assert state["today"]["alerts"] == sum(t == "alert" for t, _, _ in want)
        assert state["last_alert"]["person"] == [p for t, p, _ in want if t == "alert"][-1]
        disc = [t for t in ret if t.startswith("homeassistant/sensor/mask-guard-door1/")]
        assert len(disc) == 9, disc
        print(f"\n{len(want)} events ({queued} queued while the broker was down), {len(raw) - len(got)} "
              f"redelivered duplicates, seq 1..{len(got)}")
    finally:
        sub.stop()
        broker.stop()
