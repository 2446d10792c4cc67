"""``mask-guard``: run the daemon, check a config, detect on images; the parser for every command
(status, snapshot and stats live in admin.py; exit codes and shared helpers in cli_common.py).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from typing import Iterator, Optional

from . import __version__, logs
from .admin import cmd_snapshot, cmd_stats, cmd_status
from .cli_common import EXIT_CONFIG, EXIT_ERROR, EXIT_MODEL, EXIT_OK, CliError, load  # noqa: F401  (tests use EXIT_*)
from .cli_common import model_error as _model_error
from .cli_common import out as _out
from .config import Config, ConfigError, load_config

log = logging.getLogger("mask_guard.cli")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp"}


# --- helpers -------------------------------------------------------------------------------------

def iter_images(paths: list[str]) -> Iterator[str]:
    """Files as given; folders searched recursively for jpg/jpeg/png/bmp, in sorted order."""
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, files in os.walk(p):
                dirs.sort()
                found += [os.path.join(root, f) for f in files if os.path.splitext(f)[1].lower() in IMAGE_EXTS]
            yield from sorted(found)
        else:
            yield p


def read_image(path: str):
    """(image, None) or (None, why)."""
    import cv2

    if not os.path.exists(path):
        return None, "no such file"
    if not os.path.isfile(path):
        return None, "not a file"
    if not os.access(path, os.R_OK):
        return None, "permission denied"
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None, "not a readable image"
    return img, None


# --- commands ------------------------------------------------------------------------------------

def cmd_detect(a: argparse.Namespace) -> int:
    from .tflite import ModelError

    cfg = load(a.config)
    try:
        from .pipeline import Analyzer

        analyzer = Analyzer(cfg)  # models loaded once for every image
    except ModelError as exc:
        raise _model_error(exc) from exc
    n_images = n_errors = n_faces = 0
    verdicts: dict[str, int] = {}
    total_ms = 0.0
    for path in iter_images(a.paths):
        img, why = read_image(path)
        if img is None:
            n_errors += 1
            if a.json:
                _out(json.dumps({"image": path, "error": why}))
            else:
                _out(f"{path}: ERROR {why}")
            continue
        t0 = time.perf_counter()
        try:
            faces = analyzer.analyze(img)
        except Exception as exc:  # one bad image must not end a batch of thousands
            log.debug("analysis failed on %s", path, exc_info=True)
            n_errors += 1
            _out(json.dumps({"image": path, "error": f"analysis failed: {exc}"}) if a.json
                 else f"{path}: ERROR analysis failed: {exc}")
            continue
        ms = (time.perf_counter() - t0) * 1e3
        n_images += 1
        n_faces += len(faces)
        total_ms += ms
        h, w = img.shape[:2]
        if a.json:
            _out(json.dumps({"image": path, "width": w, "height": h, "ms": round(ms, 1),
                             "faces": [f.to_json() for f in faces]}))
            continue
        _out(f"{path}: {w}x{h}, {len(faces)} face{'s' if len(faces) != 1 else ''}, {ms:.1f} ms")
        for f in faces:
            verdicts[f.verdict.value] = verdicts.get(f.verdict.value, 0) + 1
            box = ", ".join(f"{v:.0f}" for v in f.box)
            _out(f"  [{box}]  face {f.score:.2f}  mouth {f.mouth:.2f}  nose {f.nose:.2f}  mask {f.mask:.2f}  -> {f.verdict.value}")
    if not a.json:
        if n_images + n_errors == 0:
            print("no images found", file=sys.stderr)
        else:
            vs = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
            mean = total_ms / n_images if n_images else 0.0
            _out(f"{n_images} images, {n_faces} faces{f' ({vs})' if vs else ''}, {n_errors} errors, "
                 f"{mean:.1f} ms per image")
    if n_images + n_errors == 0:
        return EXIT_ERROR
    return EXIT_ERROR if n_errors else EXIT_OK


def check_files(cfg: Config) -> list[str]:
    """Problems with the files the config points at (models are opened, not only looked up)."""
    from .config import models_dir, resource_path
    from .tflite import ModelError, load_interpreter

    from .faces import WEIGHTS

    problems = []
    mdir = models_dir(cfg)
    for name in WEIGHTS[cfg.faces.weights]:  # the nets faces.weights selects (stock or masks)
        try:
            load_interpreter(mdir / name, allocate=False)
        except ModelError as exc:
            problems.append(f"faces.model_dir: {exc}")
    try:
        load_interpreter(resource_path(cfg.mouths.model, "models"), allocate=False)
    except ModelError as exc:
        problems.append(f"mouths.model: {exc}")
    return problems


def cmd_check_config(a: argparse.Namespace) -> int:
    try:
        cfg = load_config(a.file)
    except ConfigError as exc:
        print(f"{a.file}: INVALID, {len(exc.errors)} error{'s' if len(exc.errors) != 1 else ''}:", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return EXIT_CONFIG
    from .config import resource_path

    problems = check_files(cfg)
    sound = resource_path(cfg.alerts.sound, "sounds")
    print(f"{a.file}: configuration OK")
    print(f"  source      {cfg.source.uri} ({cfg.source.width}x{cfg.source.height} @ {cfg.source.fps:g} fps)")
    print(f"  faces       min {cfg.faces.min_face_px} px, thresholds {cfg.faces.thresholds}")
    print(f"  mouths      {resource_path(cfg.mouths.model, 'models')} (mouth on/off {cfg.mouths.mouth_on}/"
          f"{cfg.mouths.mouth_off}, nose on {cfg.mouths.nose_on}, mask on {cfg.mouths.mask_on})")
    print(f"  votes       decide after {cfg.votes.decide_after}, below-nose counts as {cfg.votes.count_below_nose_as}")
    quiet = f", quiet {cfg.alerts.quiet_start}-{cfg.alerts.quiet_end}" if cfg.alerts.quiet_start else ""
    print(f"  alerts      {'on' if cfg.alerts.enabled else 'off'}, {sound}, cooldown {cfg.alerts.cooldown_s:g} s{quiet}")
    if cfg.alerts.enabled and not sound.is_file():
        print(f"  warning: alerts.sound: {sound} not found (detection would run without sound)")
    _print_outputs(cfg)
    if problems:
        print(f"{a.file}: the files it names have {len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return EXIT_MODEL
    return EXIT_OK


def _print_outputs(cfg: Config) -> None:
    """The listeners beyond the speaker, with warnings about the files they need; never a password."""
    from .mqtt_setup import describe, read_password

    o, a = cfg.outputs, cfg.alerts
    if o.gpio_pin:
        print(f"  gpio        GPIO{o.gpio_pin} on {o.gpio_on_s:g} s per alert, active {'high' if o.gpio_active_high else 'low'}")
    if a.command:
        argv = shlex.split(a.command)  # only the program: its arguments may hold a token
        print(f"  command     {argv[0]} (+{len(argv) - 1} arguments), timeout {a.command_timeout_s:g} s")
    if not cfg.mqtt.enabled:
        print("  mqtt        off")
        return
    print(f"  mqtt        {describe(cfg.mqtt)}")
    try:
        read_password(cfg.mqtt)
    except ValueError as exc:
        print(f"  warning: {exc} (MQTT would stay off; the service reads it as user mask-guard)")
    if cfg.mqtt.tls and not os.path.isfile(os.path.expanduser(cfg.mqtt.tls)):
        print(f"  warning: mqtt.tls: {cfg.mqtt.tls} not found (MQTT would stay off)")


def cmd_run(a: argparse.Namespace) -> int:
    from .daemon import Daemon, RunOptions

    cfg = load(a.config)
    opts = RunOptions(source=a.source, realtime=a.realtime, loop=a.loop, max_frames=a.max_frames,
                      preview=a.preview, log_level=a.log_level)
    code = Daemon(cfg, opts).run()
    # Leave without interpreter finalization: native threads (ALSA playback, TFLite pools, FFmpeg) must not
    # race the teardown of the objects they use (a rare segfault at exit otherwise). Counts are saved.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- argument parsing ----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mask-guard", description="Face-mask alert appliance.")
    ap.add_argument("--version", action="version", version=f"mask-guard {__version__}")
    ap.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", metavar="F",
                       help="config file (default: $MASK_GUARD_CONFIG, else /etc/mask-guard/config.yaml if present)")
        return p

    p = with_config(sub.add_parser("run", help="the daemon: camera -> detection -> alerts and counts"))
    p.add_argument("--source", "-s", metavar="S", help="override source.uri (camera index, picamera, file, URL)")
    p.add_argument("--preview", action="store_true", help="show annotated frames in a window (needs a display)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                   help="override source.realtime (--no-realtime: every frame of a file, in order)")
    p.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None, help="override source.loop")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="override service.log_level")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file (run it before systemctl reload)")
    p.add_argument("file", metavar="F")
    p.set_defaults(func=cmd_check_config)

    p = with_config(sub.add_parser("detect", help="faces and mask verdicts in image files or folders"))
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="one JSON line per image (stable format)")
    p.set_defaults(func=cmd_detect)

    p = with_config(sub.add_parser("snapshot", help="write one annotated frame (from the running service if any)"))
    p.add_argument("out", metavar="OUT.jpg")
    p.add_argument("--raw", action="store_true", help="the frame without annotations")
    p.add_argument("--socket", help="control socket of the service")
    p.add_argument("--source", "-s", metavar="S", help="when the service is not running: this source")
    p.add_argument("--service-only", action="store_true", help="fail instead of opening the camera itself")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for a camera frame (default 10)")
    p.set_defaults(func=cmd_snapshot)

    p = with_config(sub.add_parser("stats", help="per-day counts from the state file"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--days", type=int, default=31, help="show the last N days (default 31)")
    p.add_argument("--plot", metavar="OUT.png", help="draw people, masked, unmasked, alerts per day and the "
                   "masked share into a chart (needs matplotlib)")
    p.set_defaults(func=cmd_stats)

    p = with_config(sub.add_parser("status", help="state of the running service (exit 3 if not running)"))
    p.add_argument("--json", action="store_true")
    p.add_argument("--socket", help="control socket of the service")
    p.set_defaults(func=cmd_status)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    a = build_parser().parse_args(argv)
    if a.cmd != "run":  # the daemon sets its logging up from the config
        logs.setup(["WARNING", "INFO", "DEBUG"][min(a.verbose, 2)], journal=False)
    try:
        return a.func(a)
    except CliError as exc:
        print(f"mask-guard {a.cmd}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `mask-guard detect --json dir | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
