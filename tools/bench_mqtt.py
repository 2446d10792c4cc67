"""The frame loop's time per frame with MQTT on and off (``python tools/bench.py --mqtt`` runs this).

Usage:
  python tools/bench_mqtt.py [--reps 6] [--clip noisy] [--seed 0] [--alternate]

A real Mosquitto broker on a loopback port (local-only mode) with a subscriber taking everything, as Home
Assistant would; the daemon (``Daemon.run``, as ``mask-guard run`` calls it) in a child process on a
walk-through clip, frame by frame, with ``mqtt.enabled: false`` and with it on: an off and an on run side by
side (started together, so both see the same load from anything else on the machine; ``--alternate``: one at
a time, A-B-B-A...). Per run: the median wall time from one frame's outcomes to the next (the whole loop:
decode, pipeline, outcomes, MQTT's hand-off), the process's CPU time per frame (all threads: the MQTT
thread's work shows here, other processes' load does not), and the median pipeline time alone. Also, in this process, what ``Outputs`` costs the loop per call (the queue hand-off).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clips  # noqa: E402
import latency  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(port: int) -> tuple[subprocess.Popen, subprocess.Popen]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([exe, "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "#", "-q", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return broker, sub


def _child(cfg_path: str, video: str, out_path: str) -> int:
    """In the child: the daemon, with a timestamp (wall and this process's CPU) after each frame's outcomes."""
    from mask_guard import outcomes as oc
    from mask_guard.config import load_config
    from mask_guard.daemon import Daemon, RunOptions

    marks: list[tuple[float, float, float]] = []

    class Timed(oc.Outcomes):
        def apply(self, result):
            alerted = super().apply(result)
            marks.append((time.monotonic(), time.process_time(), result.timings.get("frame_ms", 0.0)))
            return alerted

    oc.Outcomes = Timed  # the daemon imports Outcomes when it starts
    code = Daemon(load_config(cfg_path), RunOptions(source=video)).run()
    Path(out_path).write_text(json.dumps(marks))
    return code


def start_run(clip, work: Path, port: int, mqtt: bool) -> subprocess.Popen:
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    cfg = latency.daemon_config(work, mqtt={"enabled": mqtt, "host": "127.0.0.1", "port": port,
                                            "topic": f"mask-guard/bench-{work.name}", "client_id": work.name})
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    (work / "asoundrc").write_text("pcm.!default { type null }\n")
    env = {**os.environ, "ALSA_CONFIG_PATH": str(work / "asoundrc")}
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM", "INVOCATION_ID"):
        env.pop(k, None)
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", str(work / "config.yaml"),
                             str(clip.video), str(work / "marks.json")], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(work / "log", "w"))


def finish_run(proc: subprocess.Popen, work: Path, mqtt: bool) -> dict:
    rc = proc.wait(600)
    log = (work / "log").read_text()
    if rc != 0:
        raise RuntimeError(f"daemon exited {rc}:\n{log[-3000:]}")
    if mqtt and "MQTT: connected to" not in log:
        raise RuntimeError("MQTT did not connect:\n" + log[-2000:])
    marks = json.loads((work / "marks.json").read_text())
    wall = [(b[0] - a[0]) * 1e3 for a, b in zip(marks, marks[1:])]
    cpu = [(b[1] - a[1]) * 1e3 for a, b in zip(marks, marks[1:])]
    return {"loop_ms": statistics.median(wall), "mean_loop_ms": statistics.fmean(wall),
            "cpu_ms": statistics.fmean(cpu), "pipeline_ms": statistics.median(m[2] for m in marks),
            "frames": len(marks), "events": log.count(" decided ") + log.count("ALERT: person")}


def handoff_cost(port: int, n: int = 20000) -> dict:
    """Microseconds per Outputs call on the caller's thread, MQTT connected, in this process."""
    from mask_guard.config import config_from_dict
    from mask_guard.outputs import Outputs

    cfg = config_from_dict({"mqtt": {"enabled": True, "host": "127.0.0.1", "port": port, "topic": "mask-guard/b2",
                                     "queue_size": n}})
    out = Outputs(cfg, lambda: {"today": {}, "state": "running"})
    while out.mqtt.state != "connected":
        time.sleep(0.01)
    t = time.perf_counter()
    for i in range(n):
        out.decision(i, "no_mask", "undecided", i)
    dec = (time.perf_counter() - t) / n * 1e6
    t = time.perf_counter()
    for i in range(n):
        out.changed()
    chg = (time.perf_counter() - t) / n * 1e6
    t0 = time.monotonic()
    while out.mqtt.status()["queued"] and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    drain = time.monotonic() - t0
    out.close()
    return {"decision_us": dec, "changed_us": chg, "drain_s": drain, "n": n}


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(*sys.argv[2:5])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=6, help="runs per setting")
    ap.add_argument("--alternate", action="store_true", help="one run at a time, off and on alternated, instead "
                    "of an off and an on run side by side")
    ap.add_argument("--clip", default="noisy", choices=list(clips.SCENARIOS))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    clip = clips.make_clip(a.clip, seed=a.seed)
    port = free_port()
    broker, sub = start_broker(port)
    base = Path(tempfile.mkdtemp(prefix="mask-guard-bench-mqtt-"))
    runs: dict[bool, list[dict]] = {False: [], True: []}
    try:
        for i in range(a.reps):
            order = (False, True) if i % 2 == 0 else (True, False)
            if a.alternate:
                for mqtt in order:
                    work = base / f"{'on' if mqtt else 'off'}{i}"
                    runs[mqtt].append(finish_run(start_run(clip, work, port, mqtt), work, mqtt))
            else:  # side by side: both runs see the same load at the same time
                started = [(m, base / f"{'on' if m else 'off'}{i}") for m in order]
                procs = [(m, w, start_run(clip, w, port, m)) for m, w in started]
                for m, w, p in procs:
                    runs[m].append(finish_run(p, w, m))
        cost = handoff_cost(port)
    finally:
        for p in (sub, broker):
            p.terminate()
            p.wait(5)
        shutil.rmtree(base, ignore_errors=True)
    print(f"## Frame loop with MQTT off / on ({a.clip} clip, {runs[False][0]['frames']} frames, "
          f"{runs[True][0]['events']} events, frame by frame, {os.cpu_count()} cores, {a.reps} runs each, "
          f"{'alternated' if a.alternate else 'an off and an on run side by side'})\n")
    print("| MQTT | loop per frame, wall: median / best run (ms) | each run (ms) | process CPU per frame, all "
          "threads: median / best run (ms) | pipeline per frame (ms) |")
    print("|---|---|---|---|---|")
    fig = {}
    for mqtt in (False, True):
        r = runs[mqtt]
        wall, cpu = [x["loop_ms"] for x in r], [x["cpu_ms"] for x in r]
        fig[mqtt] = (statistics.median(wall), min(wall), statistics.median(cpu), min(cpu))
        each = ", ".join(f"{x:.1f}" for x in wall)
        print(f"| {'on' if mqtt else 'off'} | {fig[mqtt][0]:.2f} / {fig[mqtt][1]:.2f} | {each} | "
              f"{fig[mqtt][2]:.2f} / {fig[mqtt][3]:.2f} | {statistics.median(x['pipeline_ms'] for x in r):.2f} |")
    ratio = [fig[True][i] / fig[False][i] for i in range(4)]
    pairs = [on["loop_ms"] / off["loop_ms"] for on, off in zip(runs[True], runs[False])]
    cpairs = [on["cpu_ms"] / off["cpu_ms"] for on, off in zip(runs[True], runs[False])]
    print(f"\nMQTT on / off: wall {ratio[0]:.3f} median, {ratio[1]:.3f} best run; CPU {ratio[2]:.3f} median, "
          f"{ratio[3]:.3f} best run (the best run is the one least disturbed by other load on the machine)")
    print(f"\nPer pair (run i on / run i off), wall: {', '.join(f'{x:.3f}' for x in pairs)}; median "
          f"{statistics.median(pairs):.3f}. CPU: {', '.join(f'{x:.3f}' for x in cpairs)}; median "
          f"{statistics.median(cpairs):.3f}")
    print(f"\nHand-off on the loop's thread (in process, broker connected): {cost['decision_us']:.1f} us per "
          f"event, {cost['changed_us']:.2f} us per state change; {cost['n']} events delivered in "
          f"{cost['drain_s']:.2f} s")
    print(json.dumps({"off": runs[False], "on": runs[True], "handoff": cost}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
