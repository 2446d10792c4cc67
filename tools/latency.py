"""Alert latency on the walk-through clips, measured on the real daemon; also the harness the e2e tests use.

Usage:
  python tools/latency.py [CLIP ...] [--seed 0] [--keep DIR]

For each clip (default: all of tools/clips.py's scenarios) it runs the daemon (``Daemon(cfg, opts).run()``,
exactly what ``mask-guard run`` calls) in a child process on the clip, frame by frame (``source.realtime:
false``), with the real models, sound through ALSA's null device and the counts file in a scratch folder. A
recording subclass of ``Outcomes`` (it calls the real ``apply`` and only writes down what happened) logs, per
frame, the faces with their track ids, the decisions and the alerts. Track ids are matched to the clip's
ground-truth people by box overlap, and each alert's latency is

  frames = alert frame - first frame in which that person's face is visible (frontal, >= 24 px, in frame)

reported in frames, in seconds at the clip's frame rate (video time), and in seconds at the daemon's measured
frame rate while it detects (frames / processed frames per second on the frames the face detector ran on: the
time the same number of processed frames takes on a live camera when every frame the daemon takes is a new
one; the motion gate's idle frames, much cheaper, are left out so they cannot flatter it). Prints a Markdown
table, and how many frames the detector ran on (the motion gate is on, as shipped).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clips  # noqa: E402

ROOT = clips.ROOT


def short_sound(path: Path, seconds: float = 0.15) -> Path:
    """A short 16-bit mono beep (the clip runs' alert sound, see ``daemon_config``)."""
    import wave

    import numpy as np

    rate = 22050
    t = np.arange(int(rate * seconds)) / rate
    data = (0.3 * 32767 * np.sin(2 * np.pi * 880 * t) * np.hanning(len(t))).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def daemon_config(workdir: Path, **sections) -> dict:
    """The config the clip runs use: the defaults, frame by frame, files in ``workdir``.

    The alert rules run on the clip's own clock (clock.py), so the run gives the same alerts on any machine.
    Two of them are scaled down so that each unmasked person of a clip is alerted once while in view:
    ``alerts.cooldown_s`` is 0 (with the shipped 5 s, the second of two people crossing in 5 s would rightly
    go unalerted), and the alert sound is a 0.15 s beep, because one sound plays at a time (the bundled
    2.8 s chime would still be playing, in clip time, when the second of two people a few frames apart is
    decided).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    cfg: dict = {
        "source": {"realtime": False},
        "alerts": {"cooldown_s": 0.0, "sound": str(short_sound(workdir / "beep.wav"))},
        "counts": {"state_file": str(workdir / "counts.json")},
        "service": {"control_socket": str(workdir / "control.sock"), "log_level": "INFO"},
    }
    for sec, vals in sections.items():
        cfg.setdefault(sec, {}).update(vals)
    return cfg


@dataclass
class RunResult:
    """What one daemon run on one clip produced."""

    returncode: int
    events: list  # one dict per processed frame (see _child)
    log: str
    counts: dict  # today's counters from the state file the daemon wrote
    wall_s: float
    header: dict = field(default_factory=dict)  # t_start (child, before imports), t_spawn (parent), pid
    trailer: dict = field(default_factory=dict)  # maxrss_kb of the child at exit

    def alerts(self) -> list[tuple[int, int]]:
        """(frame, track id) of every alert played."""
        return [(e["frame"], tid) for e in self.events for tid in e["alerted"]]

    def changes(self) -> list[tuple[int, int, str, str]]:
        return [(e["frame"], tid, old, new) for e in self.events for tid, old, new in e["changes"]]

    def track_boxes(self) -> dict[int, dict[int, list]]:
        out: dict[int, dict[int, list]] = {}
        for e in self.events:
            for tid, x1, y1, x2, y2, *_ in e["faces"]:
                if tid is not None:
                    out.setdefault(tid, {})[e["frame"]] = [x1, y1, x2, y2]
        return out

    def detected_frames(self) -> list[int]:
        """Frames the face detector ran on (the rest the motion gate let it skip)."""
        return [e["frame"] for e in self.events if e.get("detected", True)]

    def active_fps(self) -> float:
        """Frames per second of the whole loop on the frames the detector ran on (mean frame interval)."""
        gaps = [b["t"] - a["t"] for a, b in zip(self.events, self.events[1:]) if b.get("detected", True)]
        return len(gaps) / sum(gaps) if gaps and sum(gaps) > 0 else 0.0

    def processing_fps(self) -> float:
        """Processed frames per second of frame work (pipeline + outcomes), from the recorded timings."""
        ms = [e["ms"] for e in self.events if e.get("ms")]
        return 1000.0 / (sum(ms) / len(ms)) if ms else 0.0

    def loop_fps(self) -> float:
        """Frames per second of the whole loop (decode + pipeline + outcomes), first to last frame."""
        ts = [e["t"] for e in self.events]
        return (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0


def match_tracks(truth: dict, result: RunResult, min_iou: float = 0.3) -> dict[int, Optional[int]]:
    """Track id -> ground-truth person id (the person its faces overlap most often), None for a ghost."""
    from mask_guard.boxes import iou

    gt: dict[int, list] = {}
    for q in truth["people"]:
        for f, x1, y1, x2, y2, state, masked in q["track"]:
            gt.setdefault(f, []).append((q["id"], (x1, y1, x2, y2)))
    out: dict[int, Optional[int]] = {}
    for tid, boxes in result.track_boxes().items():
        votes: dict[int, int] = {}
        for f, box in boxes.items():
            best = max(((float(iou(box, b)[0, 0]), pid) for pid, b in gt.get(f, [])), default=(0.0, None))
            if best[0] >= min_iou:
                votes[best[1]] = votes.get(best[1], 0) + 1
        out[tid] = max(votes, key=votes.get) if votes else None
    return out


def run_on_clip(clip: "clips.Clip", workdir: Path, cfg: Optional[dict] = None, timeout: float = 300,
                env: Optional[dict] = None, max_frames: Optional[int] = None,
                video: Optional[Path] = None, slow_ms: float = 0.0) -> RunResult:
    """Run the daemon on ``clip`` (or on ``video`` instead of its file) in a child process; see the module
    docstring. ``cfg`` is a config dict (default ``daemon_config(workdir)``: frame by frame). ``slow_ms``:
    every frame takes this much longer (before its outcomes are applied): a slow machine."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    cfg = cfg if cfg is not None else daemon_config(workdir)
    cfg_path, events_path = workdir / "config.yaml", workdir / "events.jsonl"
    cfg_path.write_text(yaml.safe_dump(cfg))
    asound = workdir / "asoundrc"
    asound.write_text("pcm.!default { type null }\n")  # real playback through simpleaudio, no speaker
    child_env = {**os.environ, "ALSA_CONFIG_PATH": str(asound), "PYTHONUNBUFFERED": "1", **(env or {})}
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM", "INVOCATION_ID"):
        child_env.pop(k, None)  # a plain run, not a systemd service, even when the tests run under one
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(cfg_path),
                           str(video or clip.video), str(events_path),
                           json.dumps({"max_frames": max_frames, "slow_ms": slow_ms})],
                          env=child_env, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    lines = [json.loads(x) for x in events_path.read_text().splitlines()] if events_path.exists() else []
    header = {**(lines[0] if lines else {}), "t_spawn": t0}
    events = [x for x in lines[1:] if "frame" in x]
    trailer = next((x for x in lines[1:] if "maxrss_kb" in x), {})
    counts = {}
    state = Path(cfg["counts"]["state_file"])
    if state.exists():
        days = json.loads(state.read_text()).get("days", {})
        counts = days[max(days)] if days else {}
    return RunResult(proc.returncode, events, proc.stderr + proc.stdout, counts, wall, header, trailer)


def _rss_kb() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _child(cfg_path: str, video: str, events_path: str, opts: str = "{}") -> int:
    """In the child: the daemon with a recording Outcomes (calls the real one, writes one line per frame)."""
    t_start = time.monotonic()
    from mask_guard import outcomes as oc
    from mask_guard.config import load_config
    from mask_guard.daemon import Daemon, RunOptions

    fh = open(events_path, "w", buffering=1)
    fh.write(json.dumps({"t_start": t_start, "pid": os.getpid()}) + "\n")

    slow_s = float(json.loads(opts).get("slow_ms") or 0) / 1000.0

    class RecordingOutcomes(oc.Outcomes):
        def apply(self, result):
            if slow_s:
                time.sleep(slow_s)  # a slower machine: the wall clock runs on, the clip's clock does not
            alerted = super().apply(result)
            fh.write(json.dumps({
                "frame": result.frame.index, "t": time.monotonic(),
                "new": list(result.new_people), "alerted": list(alerted),
                "changes": [[c.track_id, c.old.value, c.new.value] for c in result.changes],
                "faces": [[f.track_id, *(round(float(v), 1) for v in f.box), f.verdict.value, bool(f.votes),
                           round(f.mouth, 3), round(f.nose, 3)] for f in result.faces],
                "ms": round(result.timings.get("frame_ms", 0.0), 2),
                "detected": bool(getattr(result, "detected", True)), "why": getattr(result, "why", "off"),
                # how old the frame is once processed: stays ~ one frame's work when the newest frame is taken
                "age_ms": round((time.monotonic() - result.frame.timestamp) * 1e3, 1),
                "rss_kb": _rss_kb(),
            }) + "\n")
            return alerted

    oc.Outcomes = RecordingOutcomes  # the daemon imports Outcomes when it starts: it gets this one
    max_frames = json.loads(opts).get("max_frames")
    code = Daemon(load_config(cfg_path), RunOptions(source=video, max_frames=max_frames)).run()
    import resource

    fh.write(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}) + "\n")
    fh.close()
    return code


def latency_rows(clip: "clips.Clip", result: RunResult) -> list[dict]:
    """One row per ground-truth person: first visible frame, alert frame (or none), latency."""
    truth = clip.truth
    who = match_tracks(truth, result)
    fps_run = result.active_fps()  # whole loop, decode included, on the frames the detector ran on
    rows = []
    for q in truth["people"]:
        alerts = [(f, tid) for f, tid in result.alerts() if who.get(tid) == q["id"]]
        row = {"clip": truth["name"], "person": q["id"], "masked": "on midway" if q["mask_on_frame"] else
               ("yes" if q["masked_start"] else "no"), "first_visible": q["first_visible"],
               "alerts": len(alerts), "alert_frame": alerts[0][0] if alerts else None}
        if alerts and q["first_visible"] is not None:
            n = alerts[0][0] - q["first_visible"]
            row.update(frames=n, s_clip=n / clip.fps, s_measured=n / fps_run if fps_run else None)
        rows.append(row)
    return rows


def _fmt(v, nd=2) -> str:
    if v is None:
        return "-"
    return f"{v:.{nd}f}" if isinstance(v, float) else str(v)


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--child":
        return _child(*sys.argv[2:6])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="clips (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="keep the run folders (config, events, counts) here")
    ap.add_argument("--no-motion-gate", action="store_true", help="motion.enabled: false (detect on every frame)")
    a = ap.parse_args(argv)
    names = a.names or list(clips.SCENARIOS)
    base = a.keep or Path(tempfile.mkdtemp(prefix="mask-guard-latency-"))
    print("| clip | person | masked | first visible (frame) | alerts | alert frame | latency (frames) | "
          "s at clip fps | s at measured fps | daemon fps (detecting) | frames detected |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    worst = []
    for name in names:
        clip = clips.make_clip(name, seed=a.seed)
        cfg = daemon_config(base / name, motion={"enabled": False}) if a.no_motion_gate else None
        res = run_on_clip(clip, base / name, cfg=cfg)
        if res.returncode != 0:
            print(f"| {name} | daemon exited {res.returncode} | | | | | | | | | |")
            print(res.log[-2000:], file=sys.stderr)
            continue
        for r in latency_rows(clip, res):
            print(f"| {r['clip']} | {r['person']} | {r['masked']} | {_fmt(r['first_visible'])} | {r['alerts']} | "
                  f"{_fmt(r['alert_frame'])} | {_fmt(r.get('frames'))} | {_fmt(r.get('s_clip'))} | "
                  f"{_fmt(r.get('s_measured'))} | {res.active_fps():.1f} | "
                  f"{len(res.detected_frames())} / {len(res.events)} |")
            if r.get("s_measured") is not None:
                worst.append(r["s_measured"])
    if worst:
        print(f"\nalerts: {len(worst)}; latency at the measured frame rate: max {max(worst):.2f} s, "
              f"median {sorted(worst)[len(worst) // 2]:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
