"""``mask-guard status / snapshot / stats``: asking the running service, or reading what it saved.

The service answers over its control socket (control.py); ``snapshot`` falls back to opening the
configured source itself when no service runs; ``stats`` reads the counts file without changing it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

from .cli_common import EXIT_NOPERM, EXIT_NOT_RUNNING, EXIT_OK, CliError, load
from .cli_common import model_error as _model_error
from .cli_common import out as _out
from .config import Config

log = logging.getLogger("mask_guard.cli")

SYSTEM_STATE = Path("/var/lib/mask-guard/counts.json")


def _ask(a: argparse.Namespace, cmd: str, **args):
    from .control import NotRunning, ask

    cfg = load(a.config) if a.config else _quiet_default_config()
    try:
        return ask(cfg, cmd, explicit=a.socket, **args)
    except NotRunning as exc:
        raise CliError(str(exc), EXIT_NOT_RUNNING) from exc
    except PermissionError as exc:
        raise CliError(f"permission denied on {exc.filename or 'the control socket'}: run with sudo, or "
                       "add yourself to the group: sudo usermod -aG mask-guard $USER (then log in again)",
                       EXIT_NOPERM) from exc


def _quiet_default_config() -> Optional[Config]:
    """The default config for finding the socket; a broken one must not stop 'status' from working."""
    try:
        return load(None)
    except CliError:
        return None


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def cmd_status(a: argparse.Namespace) -> int:
    reply, _, path = _ask(a, "status")
    if not reply.get("ok"):
        raise CliError(f"status failed: {reply.get('error')}")
    if a.json:
        _out(json.dumps(reply))
        return EXIT_OK
    cam = reply.get("camera", {})
    today = reply.get("today", {})
    print(f"mask-guard {reply.get('version', '?')}: {reply.get('state')} (pid {reply.get('pid')}, "
          f"up {_age(reply.get('uptime_s', 0))}, socket {path})")
    cam_state = "ok" if cam.get("ok") else "LOST" if cam.get("frames") else "NOT DELIVERING"
    age = cam.get("last_frame_age_s")
    print(f"camera: {cam_state}, {cam.get('source')}, {reply.get('fps', 0):.1f} fps, "
          f"last frame {'never' if age is None else f'{age:.1f} s ago'}, {cam.get('reconnects', 0)} reconnects"
          + (f", last error: {cam['last_error']}" if cam.get("last_error") else ""))
    print("today: " + (", ".join(f"{v} {k}" for k, v in today.items()) or "nothing yet"))
    print(f"in view: {reply.get('people_in_view', 0)} people")
    la = reply.get("last_alert")
    print("last alert: " + (f"{la.get('time')} (person {la.get('track_id')})" if la else "none"))
    print(f"audio: {reply.get('audio', '?')}")
    _print_outputs(reply.get("outputs") or {})
    return EXIT_OK


def _print_outputs(outputs: dict) -> None:
    m = outputs.get("mqtt")
    if isinstance(m, dict):
        print(f"mqtt: {m.get('state')}, {m.get('broker')}, topic {m.get('topic')}, {m.get('delivered', 0)} events "
              f"delivered, {m.get('queued', 0)} queued, {m.get('dropped', 0)} dropped"
              + (f", last error: {m['error']}" if m.get("error") else ""))
    for name in ("gpio", "alert_command"):
        if outputs.get(name) not in (None, "off"):
            print(f"{name.replace('_', ' ')}: {outputs[name]}")


def cmd_snapshot(a: argparse.Namespace) -> int:
    out = Path(a.out)
    try:
        reply, payload, path = _ask(a, "snapshot", raw=a.raw)
    except CliError as exc:
        if exc.code != EXIT_NOT_RUNNING or a.service_only:
            raise
        log.info("%s; opening the camera myself", exc)
        return _snapshot_direct(a, out)
    if not reply.get("ok") or payload is None:
        raise CliError(f"snapshot failed: {reply.get('error', 'no image in the reply')}")
    _write_atomic(out, payload)
    print(f"{out}: {reply.get('width')}x{reply.get('height')} frame {reply.get('frame')} from the service ({path})")
    return EXIT_OK


def _write_atomic(out: Path, data: bytes) -> None:
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)


def _snapshot_direct(a: argparse.Namespace, out: Path) -> int:
    """No service: open the configured source, analyse the first frames, write one annotated frame."""
    import cv2

    from .sources import SourceError, open_source
    from .tflite import ModelError

    cfg = load(a.config)
    if a.source:
        cfg.source.uri = a.source
    try:
        from .pipeline import Pipeline

        pipeline = Pipeline(cfg)
    except ModelError as exc:
        raise _model_error(exc) from exc
    try:
        src = open_source(cfg.source)
    except SourceError as exc:
        raise CliError(str(exc)) from exc
    try:
        frame = None
        deadline = time.monotonic() + a.timeout
        while frame is None and time.monotonic() < deadline and not src.finished:
            frame = src.read(timeout=0.5)
        if frame is None:
            raise CliError(f"no frame from {src.name} within {a.timeout:g} s")
        result = pipeline.process(frame)
    finally:
        src.close()
    if a.raw:
        image = frame.image
    else:
        from .draw import annotate

        image = annotate(frame.image, result)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise CliError("JPEG encoding failed")
    _write_atomic(out, buf.tobytes())
    h, w = image.shape[:2]
    print(f"{out}: {w}x{h} frame from {src.name} ({len(result.faces)} faces)")
    return EXIT_OK


def read_counts(cfg: Config) -> tuple[Path, dict]:
    """(file, {day: counts}) read-only: the service's file first, its backup when the main one is corrupt."""
    from .counts import parse_state, default_state_path

    if cfg.counts.state_file:
        candidates = [default_state_path(cfg.counts)]
    else:
        candidates = list(dict.fromkeys([SYSTEM_STATE, default_state_path(cfg.counts)]))
    path = next((p for p in candidates if p.exists() or p.with_name(p.name + ".bak").exists()), candidates[0])
    problems = []
    for p in (path, path.with_name(path.name + ".bak")):
        try:
            return p, parse_state(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except PermissionError as exc:
            raise CliError(f"cannot read {p}: {exc.strerror}; run with sudo, or: sudo usermod -aG mask-guard "
                           "$USER (then log in again)", EXIT_NOPERM) from exc
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            problems.append(f"{p}: {exc}")
    if problems:
        raise CliError("counts unreadable: " + "; ".join(problems))
    return path, {}


def cmd_stats(a: argparse.Namespace) -> int:
    cfg = load(a.config)
    path, days = read_counts(cfg)
    if a.plot:
        return _plot(days, path, Path(a.plot), a.days)
    if a.json:
        _out(json.dumps({"state_file": str(path), "days": days}))
        return EXIT_OK
    if not days:
        print(f"no counts yet ({path})")
        return EXIT_OK
    from .counts import FIELDS

    print(f"{'day':10s}  " + "  ".join(f"{k:>8s}" for k in FIELDS))
    for day in sorted(days)[-a.days:]:
        print(f"{day:10s}  " + "  ".join(f"{days[day].get(k, 0):>8}" for k in FIELDS))
    if len(days) > 1:
        print(f"{'total':10s}  " + "  ".join(f"{sum(d.get(k, 0) for d in days.values()):>8}" for k in FIELDS))
    print(f"({path})")
    return EXIT_OK


def _plot(days: dict, path: Path, out: Path, n_days: int) -> int:
    from .mqtt_setup import hostname
    from .plot import PlotUnavailable, plot_days

    if not days:
        raise CliError(f"no counts to plot yet ({path})")
    try:
        span = plot_days(days, out, n_days, title=f"mask-guard on {hostname()}")
    except PlotUnavailable as exc:
        raise CliError(str(exc)) from exc
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror or exc}") from exc
    shown = [d for d in span if d.isoformat() in days]
    print(f"{out}: {len(span)} days ({span[0]} to {span[-1]}), {len(shown)} with counts ({path})")
    return EXIT_OK
