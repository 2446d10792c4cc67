"""Per-day counts (people, masked, unmasked, alerts) in a small JSON state file.

Only numbers are stored: no images, no faces, no track ids. Saving is atomic (temp file + fsync +
rename) and keeps the previous file as ``<name>.bak``; loading survives a corrupt or unreadable
file (the backup is used, or counting starts empty with the broken files renamed aside), so a
power cut on the Pi never stops the service nor silently loses the history.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable, Optional, Union

from .config import CountsConfig

log = logging.getLogger(__name__)

FIELDS = ("people", "masked", "unmasked", "alerts")
_VERSION = 1
# A person's decision (votes.Decision or its value) -> the counter it sits in.
_BUCKET = {"mask": "masked", "no_mask": "unmasked"}
_UNDECIDED = {"undecided", "unsure"}


def default_state_path(cfg: Optional[CountsConfig] = None) -> Path:
    """cfg.state_file, else $STATE_DIRECTORY/counts.json (systemd StateDirectory=), else
    $XDG_STATE_HOME or ~/.local/state, /mask-guard/counts.json."""
    if cfg is not None and cfg.state_file:
        return Path(os.path.expanduser(cfg.state_file))
    state_dir = os.environ.get("STATE_DIRECTORY", "").split(":")[0]  # systemd may list several
    if state_dir:
        return Path(state_dir) / "counts.json"
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "mask-guard" / "counts.json"


def _bucket(decision) -> Optional[str]:
    """'masked' / 'unmasked' for a decision (str or enum), None for undecided."""
    if decision is None:
        return None
    value = getattr(decision, "value", decision)
    if value in _UNDECIDED:
        return None
    if value not in _BUCKET:
        raise ValueError(f"not a person decision: {decision!r} (expected one of {sorted(_BUCKET)} or None)")
    return _BUCKET[value]


def parse_state(text: str) -> dict[str, dict[str, int]]:
    """The days of a state file; ValueError for anything that is not a valid one."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("days"), dict):
        raise ValueError("no 'days' mapping")
    days = {}
    for day, rec in data["days"].items():
        date.fromisoformat(day)  # ValueError for a bad key
        if not isinstance(rec, dict):
            raise ValueError(f"day {day}: not a mapping")
        vals = {k: rec.get(k, 0) for k in FIELDS}
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in vals.values()):
            raise ValueError(f"day {day}: counts must be non-negative integers")
        days[day] = vals
    return days


class Counts:
    """Per-day counters; thread-safe; ``save()`` writes only when something changed."""

    def __init__(self, path: Union[str, Path], keep_days: int = 400,
                 today: Callable[[], date] = date.today):
        self.path = Path(path)
        self.backup = self.path.with_name(self.path.name + ".bak")
        self.keep_days = keep_days
        self._today = today
        self._lock = threading.Lock()
        self._days: dict[str, dict[str, int]] = {}
        self._dirty = False
        self._save_failing = False
        self._main_trusted = True  # False: a broken main file is still in place; never rotate it to .bak
        self._load()

    @classmethod
    def from_config(cls, cfg: CountsConfig) -> "Counts":
        return cls(default_state_path(cfg), cfg.keep_days)

    # --- counting ----------------------------------------------------------------------------

    def _day(self) -> dict[str, int]:
        key = self._today().isoformat()
        if key not in self._days:
            self._days[key] = dict.fromkeys(FIELDS, 0)
        return self._days[key]

    def person_seen(self) -> None:
        """A new person (track) appeared."""
        with self._lock:
            self._day()["people"] += 1
            self._dirty = True

    def decided(self, decision, previous_decision=None) -> None:
        """A person's decision became ``decision`` (was ``previous_decision``; None or "undecided").

        A changed decision moves the person from one counter to the other, so masked + unmasked
        never exceeds people. A person decided before midnight and changed after it counts as
        one of today's people too.
        """
        new, old = _bucket(decision), _bucket(previous_decision)
        if new == old:
            return
        with self._lock:
            day = self._day()
            if old is not None:
                if day[old] > 0:
                    day[old] -= 1
                else:  # the earlier decision was counted yesterday: a person of today as well
                    day["people"] += 1
            if new is not None:
                day[new] += 1
            self._dirty = True

    def alert_played(self) -> None:
        with self._lock:
            self._day()["alerts"] += 1
            self._dirty = True

    # --- reading -----------------------------------------------------------------------------

    def today(self) -> dict[str, int]:
        key = self._today().isoformat()
        with self._lock:
            return dict(self._days.get(key) or dict.fromkeys(FIELDS, 0))

    def totals(self) -> dict[str, int]:
        with self._lock:
            return {k: sum(d[k] for d in self._days.values()) for k in FIELDS}

    def days(self) -> list[tuple[str, dict[str, int]]]:
        """(YYYY-MM-DD, counts) oldest first."""
        with self._lock:
            return [(k, dict(v)) for k, v in sorted(self._days.items())]

    # --- persistence -------------------------------------------------------------------------

    def _prune(self) -> None:
        oldest = (self._today() - timedelta(days=self.keep_days - 1)).isoformat()
        for k in [k for k in self._days if k < oldest]:
            del self._days[k]

    def save(self, force: bool = False) -> bool:
        """Write the file if anything changed; True when the file is up to date. Never raises."""
        with self._lock:
            if not (self._dirty or force):
                return True
            self._prune()
            text = json.dumps({"version": _VERSION, "saved_at": datetime.now().isoformat(timespec="seconds"),
                               "days": self._days}, indent=1, sort_keys=True)
            try:
                self._write(text)
            except OSError as exc:
                if not self._save_failing:  # one warning per failure streak, not one every few seconds
                    log.warning("cannot save counts to %s: %s (will keep trying)", self.path, exc)
                    self._save_failing = True
                return False
            if self._save_failing:
                log.info("counts saved to %s again", self.path)
                self._save_failing = False
            self._dirty = False
            return True

    def _write(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text + "\n")
                f.flush()
                os.fsync(f.fileno())
            if self._main_trusted and self.path.exists():
                # The current file was written by us or loaded fine (a broken one was moved aside
                # at load), so it is a good backup. Between these renames only .bak exists: load copes.
                os.replace(self.path, self.backup)
            os.replace(tmp, self.path)
            self._main_trusted = True
        finally:
            if tmp.exists():
                tmp.unlink()
        self._fsync_dir()

    def _fsync_dir(self) -> None:
        try:
            fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)  # make the renames themselves durable
        except OSError:
            pass
        finally:
            os.close(fd)

    def _read(self, path: Path) -> tuple[Optional[dict], str]:
        """(days, "") or (None, why); (None, "") when the file (or its folder) does not exist."""
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return None, ""
        except (OSError, UnicodeDecodeError) as exc:
            return None, f"unreadable ({exc})"
        try:
            return parse_state(text), ""
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            return None, f"corrupt ({exc})"

    def _set_aside(self, path: Path) -> Optional[Path]:
        """Rename a broken file so it is kept but never rotated over the good backup."""
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        try:
            os.replace(path, aside)
            return aside
        except OSError as exc:
            log.warning("cannot move the broken %s aside: %s", path, exc)
            return None

    def _load(self) -> None:
        days, why = self._read(self.path)
        if days is not None:
            self._days = days
            return
        main_broken = bool(why)
        bak, bak_why = self._read(self.backup)
        if main_broken:
            aside = self._set_aside(self.path)
            self._main_trusted = aside is not None
            where = f" (kept as {aside.name})" if aside else ""
            if bak is not None:
                log.warning("counts file %s %s%s; using the backup %s",
                            self.path, why, where, self.backup.name)
            else:
                log.warning("counts file %s %s%s; backup %s; starting from zero",
                            self.path, why, where, bak_why or "missing")
        elif bak is not None:  # main missing, backup there: a crash between the two renames
            log.warning("counts file %s missing; using the backup %s", self.path, self.backup.name)
        elif bak_why:
            log.warning("counts file %s missing and its backup %s; starting from zero",
                        self.path, bak_why)
        if bak is None and bak_why:
            self._set_aside(self.backup)
        self._days = bak or {}
        self._dirty = bak is not None  # write the recovered counts back as the main file soon
