"""SIGHUP: reload the config file into the running daemon; an invalid file changes nothing.

Models are reloaded only when their settings changed (Pipeline.reconfigure); tracks and votes always
survive (new settings apply from the next frame). The alerter (keeping who was alerted when), counts,
log level, control socket and source are rebuilt only when their sections changed. Command-line
overrides (``--source`` ...) stay in force.
"""
from __future__ import annotations

import dataclasses
import logging

from . import logs
from .config import Config, ConfigError, load_config
from .tflite import ModelError

log = logging.getLogger(__name__)

SECTIONS = tuple(f.name for f in dataclasses.fields(Config) if not f.metadata.get("internal"))


def reload_config(d) -> bool:
    """Re-read ``d.cfg.path`` into daemon ``d`` (main thread, between frames); True when applied."""
    path = d.cfg.path
    if not path:
        log.warning("reload: started without a config file, nothing to reload")
        return False
    d.notifier.reloading()
    try:
        new = d._overrides(load_config(path))
    except ConfigError as exc:
        log.error("reload: %s is invalid, keeping the running configuration:\n  %s", path, "\n  ".join(exc.errors))
        d.notifier.ready(d._status_text())
        return False
    old = d.cfg
    try:
        d.pipeline.reconfigure(new)  # loads any new model before it changes anything
    except ModelError as exc:
        log.error("reload: %s; keeping the running configuration", exc)
        d.notifier.ready(d._status_text())
        return False
    changed = [s for s in SECTIONS if getattr(new, s) != getattr(old, s)]
    with d.state_lock:
        if new.alerts != old.alerts:
            previous = d.outcomes.alerter
            if previous is not None:
                previous.close()
            d.outcomes.alerter = d._make_alerter(new)
            if previous is not None and d.outcomes.alerter is not None:
                d.outcomes.alerter.policy.inherit(previous.policy)
        if new.counts != old.counts:
            d._save_counts()
            d.outcomes.counts = d._make_counts(new)
        d.outcomes.reconfigure(new)  # MQTT, GPIO, alert command: those whose settings changed
    if new.service.log_level != old.service.log_level:
        logs.set_level(new.service.log_level)
    if new.service.control_socket != old.service.control_socket:
        if d.control is not None:
            d.control.close()
            d.control = None
        d._start_control(new)
    d.cfg = new
    if new.source != old.source:
        _reopen_source(d, old)
    log.info("reloaded %s (changed: %s)", path, ", ".join(changed) or "nothing")
    d.notifier.ready(d._status_text())
    return True


def _reopen_source(d, old: Config) -> None:
    from .sources import SourceError, open_source

    d.source.close()
    try:
        d.source = open_source(d.cfg.source)
    except SourceError as exc:
        log.error("reload: cannot open the new source (%s); back to %s", exc, old.source.uri)
        d.cfg.source = old.source
        d.source = open_source(old.source)
    d.last_frame_at, d.camera_down_since = None, None
    log.info("source %s opened", d.source.name)
