#!/usr/bin/env python3
"""Soak: run the real daemon on a looping clip for N frames and report memory growth.

    python tools/soak.py --frames 3000                    # the 'crossing' walk-through clip, looped
    python tools/soak.py --clip my.avi --frames 20000 --json
    python tools/soak.py --frames 3000 --max-growth-mb 8  # exit 1 if RSS grew more than that after warm-up

It starts ``mask-guard run --source CLIP --loop --no-realtime --max-frames N`` as its own process (the
same code path as the service: counts, alerts through ALSA's null device, control socket) and samples the
process's resident memory (``/proc/PID/status``), open file descriptors and threads every ``--every``
seconds, and the frame count over the control socket. Growth is measured after a warm-up (interpreter
caches, first allocations): first-to-last RSS and a least-squares slope per 1000 frames.
Every file it writes (config, counts, socket, log) lives in a temporary folder that is removed afterwards.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))


def proc_sample(pid: int) -> dict:
    """RSS (MB), open fds and threads of ``pid``; empty once it has exited."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if "VmRSS" not in fields:  # a zombie: exited, not yet reaped
        return {}
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "fds": fds, "threads": int(fields["Threads"])}


def slope(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def soak(clip: Path, frames: int, every: float, warmup: int, config: Path | None, tmp: Path,
         log=sys.stderr) -> dict:
    import yaml

    from mask_guard import control

    cfg = yaml.safe_load(config.read_text()) if config else {}
    cfg = cfg or {}
    cfg.setdefault("service", {})["control_socket"] = str(tmp / "ctl.sock")
    cfg.setdefault("counts", {})["state_file"] = str(tmp / "counts.json")
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp / "asoundrc").write_text("pcm.!default { type null }\n")
    env = dict(os.environ, ALSA_CONFIG_PATH=str(tmp / "asoundrc"))
    for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "INVOCATION_ID", "JOURNAL_STREAM"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "mask_guard.cli", "run", "--config", str(tmp / "config.yaml"), "--source",
           str(clip), "--loop", "--no-realtime", "--max-frames", str(frames)]
    t0 = time.monotonic()
    with open(tmp / "daemon.log", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    samples = []
    try:
        while proc.poll() is None:
            time.sleep(every)
            s = proc_sample(proc.pid)
            if not s:
                continue
            try:
                st, _ = control.request(tmp / "ctl.sock", "status", timeout=5)
                s["frames"] = st.get("frames", 0)
            except (OSError, ValueError):
                continue  # not listening yet, or exiting
            s["t"] = round(time.monotonic() - t0, 1)
            samples.append(s)
            print(f"  t={s['t']:7.1f}s frames={s['frames']:7d} rss={s['rss_mb']:7.1f} MB "
                  f"fds={s['fds']} threads={s['threads']}", file=log, flush=True)
    finally:
        if proc.poll() is None:
            proc.terminate()
        rc = proc.wait()
    wall = time.monotonic() - t0
    after = [s for s in samples if s["frames"] >= warmup]
    report = {"clip": str(clip), "frames": frames, "exit_code": rc, "wall_s": round(wall, 1),
              "fps": round(frames / wall, 2) if wall else None, "samples": len(samples), "warmup_frames": warmup}
    if len(after) >= 2:
        first, last = after[0], after[-1]
        report.update({
            "rss_after_warmup_mb": round(first["rss_mb"], 1), "rss_end_mb": round(last["rss_mb"], 1),
            "rss_max_mb": round(max(s["rss_mb"] for s in samples), 1),
            "growth_mb": round(last["rss_mb"] - first["rss_mb"], 2),
            "growth_mb_per_1000_frames": round(1000 * slope([s["frames"] for s in after],
                                                           [s["rss_mb"] for s in after]), 3),
            "fds_start_end": [first["fds"], last["fds"]], "threads_start_end": [first["threads"], last["threads"]],
            "frames_measured": last["frames"] - first["frames"],
        })
    text = (tmp / "daemon.log").read_text(errors="replace")
    errors = [line for line in text.splitlines() if " ERROR " in line or "Traceback" in line]
    report["errors_logged"] = len(errors)
    if errors:
        report["first_error"] = errors[0][:300]
    report["alerts_logged"] = text.count("alert played")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", type=Path, help="video file to loop (default: a composed walk-through clip)")
    ap.add_argument("--scenario", default="crossing", help="tools/clips.py scenario when no --clip (default crossing)")
    ap.add_argument("--frames", type=int, default=3000, help="frames the daemon processes (default 3000)")
    ap.add_argument("--every", type=float, default=2.0, help="sampling period, seconds (default 2)")
    ap.add_argument("--warmup", type=int, default=None, help="frames before growth is measured (default 10%%)")
    ap.add_argument("--config", type=Path, help="base config (socket and state file are redirected)")
    ap.add_argument("--max-growth-mb", type=float, default=None,
                    help="exit 1 when RSS grew more than this after the warm-up")
    ap.add_argument("--json", action="store_true", help="print the report as one JSON object")
    a = ap.parse_args(argv)
    clip = a.clip
    if clip is None:
        import clips  # tools/clips.py

        clip = clips.make_clip(a.scenario).video
    if not clip.exists():
        print(f"no such clip: {clip}", file=sys.stderr)
        return 2
    warmup = a.warmup if a.warmup is not None else max(a.frames // 10, 50)
    with tempfile.TemporaryDirectory(prefix="mask-guard-soak-") as tmp:
        report = soak(clip, a.frames, a.every, warmup, a.config, Path(tmp))
        if report["exit_code"] != 0:
            print((Path(tmp) / "daemon.log").read_text(errors="replace")[-4000:], file=sys.stderr)
    if a.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k:28s} {v}")
    if report["exit_code"] != 0:
        return 1
    if a.max_growth_mb is not None and report.get("growth_mb", 0) > a.max_growth_mb:
        print(f"RSS grew {report['growth_mb']} MB > {a.max_growth_mb} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
