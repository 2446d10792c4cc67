"""One typed config tree, loaded from one YAML file.

Each concern has a small dataclass (as in Frigate); ``load_config`` walks the tree, fills defaults,
and reports *every* problem as ``key.path: value -- what is allowed``. Unknown keys are errors: a
typo must not silently fall back to a default on an unattended appliance.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml


class ConfigError(ValueError):
    """Raised with every problem found; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid configuration:\n  " + "\n  ".join(errors))


def _opt(default, doc: str, **checks):
    """A config field with its help text and checks: min, max, choices, pattern, length."""
    meta = {"doc": doc, **checks}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


_HHMM = r"^([01]\d|2[0-3]):[0-5]\d$"
_HHMM_DOC = "HH:MM (00:00 to 23:59)"  # what the error message shows instead of the regex


@dataclass
class SourceConfig:
    uri: str = _opt("auto", "'auto' (Pi camera if present, else webcam 0), 'picamera', a webcam index "
                    "('0'), a video file or a stream URL (rtsp://, http://)")
    width: int = _opt(640, "requested frame width (px); a larger frame (a 720p webcam, a file) is scaled down "
                      "once to fit width x height for face detection (boxes and mouth crops stay full size)",
                      min=32, max=8192)
    height: int = _opt(480, "requested frame height (px); see width", min=32, max=8192)
    fps: float = _opt(30.0, "requested camera frame rate", min=1, max=240)
    realtime: bool = _opt(True, "true: always take the newest frame (drop older ones); false: read a "
                          "video file frame by frame in order, timed by the video's own clock (tests, evaluation)")
    loop: bool = _opt(False, "restart a video file at its end (soak tests, demos)")
    retry_initial_s: float = _opt(1.0, "first wait before reopening a lost camera", min=0.01, max=600)
    retry_max_s: float = _opt(30.0, "longest wait between reopen attempts (doubling backoff)", min=0.01, max=3600)


@dataclass
class MotionConfig:
    """The motion gate (motion.py): the face detector rests while nothing moves and nobody is tracked."""

    enabled: bool = _opt(True, "skip face detection on frames without motion while nobody is tracked (an empty "
                         "entrance then costs a few % of a core instead of a whole one); false: detect on every frame")
    max_idle_s: float = _opt(2.0, "detect at least this often anyway, so a person standing perfectly still is "
                             "found too", min=0.1, max=60)
    frame_height: int = _opt(120, "rows of the grayscale copy compared (px): small is cheap and averages sensor "
                             "noise away; a face at min_face_px is still a few pixels", min=24, max=1080)
    threshold: float = _opt(20.0, "grey levels (0-255) a pixel of the copy must change by to count: above "
                            "averaged sensor noise and JPEG flicker", min=1, max=255)
    min_area: float = _opt(0.002, "share of the copy that must change to be motion (a person far away changes "
                           "about 1 %)", min=0.0, max=1.0)
    relearn_area: float = _opt(0.3, "a change this large at once, even after matching the local brightness, is a "
                               "new scene (the camera moved, a day/night switch): the background is re-learnt from "
                               "it and the detector looks once, instead of chasing it for seconds", min=0.01, max=1.0)
    learn_s: float = _opt(2.0, "time constant of the background (s): it follows slow light drift and forgets "
                          "a person who left within a few seconds", min=0.1, max=600)


@dataclass
class FacesConfig:
    model_dir: str = _opt("", "folder with mtcnn_pnet/rnet/onet.tflite; empty: the bundled models/")
    min_face_px: int = _opt(24, "smallest face MTCNN looks for (px); larger is faster", min=12, max=1000)
    thresholds: list = _opt([0.6, 0.7, 0.7], "P-Net, R-Net, O-Net score thresholds", length=3,
                            item=float, min=0.0, max=1.0)
    scale_factor: float = _opt(0.709, "image pyramid scale step", min=0.3, max=0.95)
    num_threads: int = _opt(2, "TFLite threads for MTCNN", min=1, max=16)
    # A masked face's P-Net box is often off-centre, so R-Net sees half a face and rejects it; cropping again where
    # R-Net's own box puts the face finds more of them, but off by default: on a real clip it split one person in
    # two (models/MTCNN_MODEL_CARD.md, "second look").
    second_look_from: float = _opt(1.0, "R-Net candidates scored between this and the R-Net threshold are cropped "
                                   "again where R-Net's box puts the face and scored once more (measured: 0.3); "
                                   ">= the R-Net threshold: off, the mtcnn package's cascade", min=0.0, max=1.0)
    second_look_onet: float = _opt(0.95, "a face only the second look let through must reach this O-Net score "
                                   "(it keeps the false faces down)", min=0.0, max=1.0)
    # The package's R-/O-Net drop ~1 in 5 masked faces; the fine-tune (distilled from stock) finds most of them with
    # as many unmasked faces and fewer false ones on the dev parts, so it is the default (models/MTCNN_MODEL_CARD.md).
    weights: str = _opt("masks", "MTCNN nets: masks (R-/O-Net fine-tuned on masked faces, models/mtcnn_masks_*) "
                        "or stock (the mtcnn package's)", choices=["stock", "masks"])


@dataclass
class MouthsConfig:
    # mouth_on, mouth_off and mask_on: chosen on the scene sets' dev parts by tools/training/calibrate_mouth.py's
    # written rules (never on test parts); nose_on from the validation split
    model: str = _opt("mouth_nose.tflite", "mouth/nose/mask detector (.tflite); a bare name is looked up in models/")
    mouth_on: float = _opt(0.325, "mouth score >= this: mouth visible (no_mask); see tools/training/calibrate_mouth.py",
                           min=0.0, max=1.0)
    mouth_off: float = _opt(0.275, "mouth score < this: mouth covered", min=0.0, max=1.0)
    nose_on: float = _opt(0.675, "nose score >= this (mouth covered): mask_below_nose", min=0.0, max=1.0)
    mask_on: float = _opt(0.45, "mask score >= this (mouth below mouth_off): a mask is seen; neither a mouth nor a "
                          "mask seen is unsure and never votes", min=0.0, max=1.0)
    num_threads: int = _opt(1, "TFLite threads for the mouth model", min=1, max=16)
    flip_tta: str = _opt("mean", "also score each face crop mirrored (same batch, ~0.6 ms more per face) and "
                         "combine the two scores", choices=["off", "mean", "max"])


@dataclass
class AreaConfig:
    """Which faces may vote: the street-camera write-up's margins, size and frontal-face rules."""

    margin_left: float = _opt(0.0, "ignore faces whose centre is in this left fraction of the frame", min=0.0, max=0.49)
    margin_right: float = _opt(0.0, "same, right side", min=0.0, max=0.49)
    margin_top: float = _opt(0.0, "same, top", min=0.0, max=0.49)
    margin_bottom: float = _opt(0.0, "same, bottom", min=0.0, max=0.49)
    min_face_px: int = _opt(32, "faces narrower than this are tracked but do not vote", min=0, max=2000)
    frontal_only: bool = _opt(True, "only faces with both eyes visible vote")


@dataclass
class TrackerConfig:
    distance_threshold: float = _opt(0.8, "largest box distance (0..1, reads like 1 - IoU: 0.8 allows a shift of "
                                     "0.8 face size or a 2x size change) to match a face to a person",
                                     min=0.05, max=1.0)
    hit_counter_max: int = _opt(40, "frames a person survives without being seen (bridges a 1 s blackout at "
                                "25-30 fps)", min=1, max=1000)
    initialization_delay: int = _opt(2, "hits before a new person gets an id", min=0, max=100)
    reid_frames: int = _opt(90, "frames a lost person is remembered: a new face where they were lost, at their "
                            "size (or a little further on, if its colours match: tracker.appearance), is them again "
                            "(a head turned away ~3 s at 30 fps); one count, one alert. 0: off",
                            min=0, max=10000)
    end_at_cut: bool = _opt(True, "a cut (most of the picture unlike the previous frame at once: a video edit, "
                            "the camera knocked or turned) ends every track, so nobody inherits another's "
                            "votes; people already counted stay counted")
    appearance: bool = _opt(True, "also compare the colours of the face crops when matching faces to people (two "
                            "people crossing keep their own ids and votes; the box rule still decides what may "
                            "match) and when re-identifying a lost person (tracker.reid_frames)")


@dataclass
class VotesConfig:
    decide_after: int = _opt(3, "votes needed before a person is decided", min=1, max=100)
    cap: int = _opt(100, "votes are capped at +/- this, so a decision can change", min=1, max=10000)
    count_below_nose_as: str = _opt("mask", "how a confident mask_below_nose verdict votes",
                                    choices=["mask", "no_mask", "abstain"])


@dataclass
class AlertsConfig:
    enabled: bool = _opt(True, "play a sound when a person is decided 'no mask'")
    sound: str = _opt("alert.wav", "WAV file to play; a bare name is looked up in sounds/")
    cooldown_s: float = _opt(5.0, "no two alerts (any people) closer than this", min=0, max=86400)
    realert_s: float = _opt(600.0, "the same person is alerted again at most this often", min=0, max=86400 * 7)
    quiet_start: str = _opt("", "start of quiet hours, HH:MM (empty: none)", pattern=_HHMM, format=_HHMM_DOC,
                            allow_empty=True)
    quiet_end: str = _opt("", "end of quiet hours, HH:MM", pattern=_HHMM, format=_HHMM_DOC, allow_empty=True)
    command: str = _opt("", "program run at each alert (split like a shell line, run without one), with "
                        "MASK_GUARD_PERSON, MASK_GUARD_TIME (ISO 8601) and MASK_GUARD_FRAME in its environment; "
                        "empty: none")
    command_timeout_s: float = _opt(10.0, "a command still running after this is killed (it never holds up "
                                    "detection)", min=0.1, max=3600)


@dataclass
class OutputsConfig:
    """A lamp, buzzer or relay beside the speaker (gpiozero)."""

    gpio_pin: int = _opt(0, "BCM GPIO number switched on at each alert, 2-27; 0: none", min=0, max=27)
    gpio_on_s: float = _opt(3.0, "seconds the output stays on per alert", min=0.05, max=3600)
    gpio_active_high: bool = _opt(True, "true: on is 3.3 V; false: on is 0 V (relay boards that switch on low)")


@dataclass
class CountsConfig:
    state_file: str = _opt("", "counts file; empty: $STATE_DIRECTORY/counts.json or ~/.local/state/mask-guard/")
    keep_days: int = _opt(400, "days of per-day counts kept", min=1, max=100000)


@dataclass
class ServiceConfig:
    control_socket: str = _opt("", "Unix socket for status/snapshot; empty: $RUNTIME_DIRECTORY/control.sock "
                               "or $XDG_RUNTIME_DIR/mask-guard.sock")
    status_interval_s: float = _opt(5.0, "how often STATUS= and the log line with fps/counts are updated",
                                    min=0.5, max=3600)
    log_level: str = _opt("INFO", "log level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    camera_lost_restart_s: float = _opt(120.0, "a camera down this long stops the systemd watchdog pings, so "
                                        "systemd restarts the service", min=1, max=86400)


@dataclass
class MqttConfig:
    """State, events and Home Assistant discovery on an MQTT broker (mqtt.py); needs network sockets in the unit."""

    enabled: bool = _opt(False, "publish to an MQTT broker (the unit needs deploy/install.sh --network)")
    host: str = _opt("localhost", "broker host name or address")
    port: int = _opt(0, "broker port; 0: 1883, or 8883 with tls", min=0, max=65535)
    topic: str = _opt("", "base topic (availability, state, event below it); empty: mask-guard/HOSTNAME",
                      pattern=r"^[^#+\s]*[^#+\s/]$", format="a topic without +, #, spaces or a trailing /",
                      allow_empty=True)
    username: str = _opt("", "user name at the broker; empty: anonymous")
    password_file: str = _opt("", "file whose first line is the password (kept out of this file, so it never "
                              "shows in logs, status or check-config)")
    tls: str = _opt("", "CA certificate (PEM) the broker's certificate must be signed by; set: TLS")
    client_id: str = _opt("", "MQTT client id; empty: mask-guard-HOSTNAME")
    discovery_prefix: str = _opt("homeassistant", "Home Assistant discovery prefix; empty: no discovery messages")
    keepalive_s: int = _opt(30, "ping interval; the broker publishes the last will ('offline') after 1.5x this "
                            "without a word", min=5, max=3600)
    queue_size: int = _opt(1000, "events kept in memory while the broker is unreachable; beyond it the oldest "
                           "are dropped (and counted)", min=1, max=1000000)
    retry_max_s: float = _opt(60.0, "longest wait between reconnect attempts (doubling from 1 s)", min=0.1, max=3600)


@dataclass
class Config:
    source: SourceConfig = field(default_factory=SourceConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    faces: FacesConfig = field(default_factory=FacesConfig)
    mouths: MouthsConfig = field(default_factory=MouthsConfig)
    area: AreaConfig = field(default_factory=AreaConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    votes: VotesConfig = field(default_factory=VotesConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    counts: CountsConfig = field(default_factory=CountsConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    path: Optional[str] = field(default=None, metadata={"internal": True})  # the file it came from


# --- validation ---------------------------------------------------------------------------------

_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _check_scalar(value: Any, typ: type, meta: dict, key: str, errors: list[str]):
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ in (int, float) and isinstance(value, bool)):
        errors.append(f"{key}: {value!r} is {type(value).__name__}, expected {_TYPE_NAMES[typ]}")
        return None
    if typ is float and value != value:  # NaN passes min/max checks, so refuse it here
        errors.append(f"{key}: {value!r} is not a number")
        return None
    if "min" in meta and value < meta["min"]:
        errors.append(f"{key}: {value!r} is too small, allowed >= {meta['min']}")
    if "max" in meta and value > meta["max"]:
        errors.append(f"{key}: {value!r} is too large, allowed <= {meta['max']}")
    if "choices" in meta and value not in meta["choices"]:
        errors.append(f"{key}: {value!r} is not allowed, choose one of {meta['choices']}")
    if "pattern" in meta and not (meta.get("allow_empty") and value == "") and not re.match(meta["pattern"], value):
        errors.append(f"{key}: {value!r} does not match the format {meta.get('format', meta['pattern'])}")
    return value


def _check_field(value: Any, f: dataclasses.Field, typ: Any, key: str, errors: list[str]):
    meta = dict(f.metadata)
    if typ is list:
        if not isinstance(value, list):
            errors.append(f"{key}: {value!r} is {type(value).__name__}, expected a list")
            return None
        if "length" in meta and len(value) != meta["length"]:
            errors.append(f"{key}: {value!r} has {len(value)} items, expected {meta['length']}")
            return None
        item_meta = {k: v for k, v in meta.items() if k in ("min", "max", "choices")}
        items = [_check_scalar(v, meta.get("item", str), item_meta, f"{key}[{i}]", errors) for i, v in enumerate(value)]
        return items
    return _check_scalar(value, typ, meta, key, errors)


def _build(cls, data: Any, prefix: str, errors: list[str]):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        errors.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {type(data).__name__}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for k in data:
        if k not in fields:
            allowed = ", ".join(fields)
            errors.append(f"{prefix}{k}: unknown key, allowed here: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        typ = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(typ):
            kwargs[name] = _build(typ, data[name], key + ".", errors)
        else:
            value = _check_field(data[name], f, typ, key, errors)
            if value is not None:
                kwargs[name] = value
    return cls(**kwargs)


def _cross_checks(cfg: Config, errors: list[str]) -> None:
    m = cfg.mouths
    if m.mouth_off > m.mouth_on:
        errors.append(f"mouths.mouth_off: {m.mouth_off} is above mouths.mouth_on ({m.mouth_on}), must be <=")
    if cfg.motion.min_area >= cfg.motion.relearn_area:
        errors.append(f"motion.min_area: {cfg.motion.min_area} is not below motion.relearn_area "
                      f"({cfg.motion.relearn_area}), must be <")
    if cfg.source.retry_max_s < cfg.source.retry_initial_s:
        errors.append(f"source.retry_max_s: {cfg.source.retry_max_s} is below source.retry_initial_s, must be >=")
    if bool(cfg.alerts.quiet_start) != bool(cfg.alerts.quiet_end):
        errors.append("alerts.quiet_start / alerts.quiet_end: set both or neither")
    try:
        shlex.split(cfg.alerts.command)
    except ValueError as exc:
        errors.append(f"alerts.command: {cfg.alerts.command!r} cannot be split into arguments: {exc}")
    if cfg.outputs.gpio_pin == 1:
        errors.append("outputs.gpio_pin: 1 is reserved (HAT ID EEPROM), use 2-27 or 0 for none")
    if cfg.mqtt.enabled and not cfg.mqtt.host.strip():
        errors.append("mqtt.host: empty, but mqtt.enabled is true")
    if cfg.mqtt.password_file and not cfg.mqtt.username:
        errors.append("mqtt.password_file: set, but mqtt.username is empty")


def config_from_dict(data: Any, path: Optional[str] = None) -> Config:
    errors: list[str] = []
    cfg = _build(Config, data, "", errors)
    if not errors:
        _cross_checks(cfg, errors)
    if errors:
        raise ConfigError(errors)
    cfg.path = path
    return cfg


def load_config(path: Optional[str | os.PathLike] = None) -> Config:
    """Defaults when ``path`` is None; otherwise the file, validated. ``ConfigError`` on any problem."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{p}: cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{p}: not UTF-8 text: {exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{p}: not valid YAML: {exc}"]) from exc
    return config_from_dict(data, str(p))


def to_dict(cfg: Config) -> dict:
    d = dataclasses.asdict(cfg)
    d.pop("path", None)
    return d


def reference() -> list[tuple[str, Any, str]]:
    """(key path, default, help) for every option: the README's reference table is made from it."""
    rows = []
    for sec in dataclasses.fields(Config):
        if sec.metadata.get("internal"):
            continue
        for f in dataclasses.fields(typing.get_type_hints(Config)[sec.name]):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{sec.name}.{f.name}", default, f.metadata.get("doc", "")))
    return rows


# --- where bundled files live -------------------------------------------------------------------

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resource_path(name: str, kind: str) -> Path:
    """Resolve a bare file name in ``models`` or ``sounds``: $MASK_GUARD_<KIND>, the checkout, /usr/share."""
    p = Path(os.path.expanduser(name))
    if p.is_absolute() or p.parent != Path("."):
        return p
    candidates = []
    env = os.environ.get(f"MASK_GUARD_{kind.upper()}")
    if env:
        candidates.append(Path(env) / name)
    candidates += [PROJECT_ROOT / kind / name, Path("/usr/share/mask-guard") / kind / name]
    for c in candidates:
        if c.exists():
            return c
    return candidates[0]


def models_dir(cfg: Config) -> Path:
    if cfg.faces.model_dir:
        return Path(os.path.expanduser(cfg.faces.model_dir))
    return resource_path("mtcnn_pnet.tflite", "models").parent
