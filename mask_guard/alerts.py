"""The audio alert: a WAV played through simpleaudio (ALSA) and the policy deciding when to play it.

Nothing here may stop the frame loop: a missing simpleaudio, a missing sound card or a broken WAV
log one warning and make the player unavailable (it tries again every few minutes), and every
call returns quickly (simpleaudio's ``play_buffer`` plays in its own thread).

On Python >= 3.12 simpleaudio 1.0.4 is known to crash the interpreter once a sound has played
(hamiltron/py-simple-audio#72), and Raspberry Pi OS Trixie ships 3.13: there each alert plays in a
short-lived child process (``mask_guard.play_sound``), so a crash there can never take the daemon down.
The child also keeps the daemon clear of an ALSA open that waits for a card another program holds.

Time: every rule here (cooldown, re-alert, quiet hours, one sound at a time) reads one clock. The
daemon passes its ``FrameClock`` (clock.py): the wall clock for live cameras, the video's own clock
for a file read frame by frame, so a clip gives the same alerts on a slow machine as on a fast one.
On the video's clock a sound counts as playing for its length in video time, and an alert due while
the device still plays the previous one (a fast machine compresses the clip) cuts that one short.
"""
from __future__ import annotations

import logging
import subprocess
import sys
import time
import wave
from dataclasses import dataclass
from datetime import datetime
from datetime import time as dtime
from pathlib import Path
from typing import Callable, Optional, Union

from .clock import FrameClock
from .config import AlertsConfig, resource_path

log = logging.getLogger(__name__)

RETRY_S = 300.0  # a missing sound card is tried again this often (USB speakers plugged in later)
ISOLATE_DEFAULT = sys.version_info >= (3, 12)  # where in-process simpleaudio crashes after playing


class SoundError(RuntimeError):
    """The alert WAV cannot be used (missing, not a PCM WAV)."""


@dataclass(frozen=True)
class Wav:
    data: bytes
    channels: int
    sample_width: int  # bytes per sample
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.data) / (self.channels * self.sample_width * self.rate)


def load_wav(path: Union[str, Path]) -> Wav:
    """The PCM frames of a WAV file; ``SoundError`` naming the file if it cannot be played."""
    try:
        with wave.open(str(path), "rb") as w:
            wav = Wav(w.readframes(w.getnframes()), w.getnchannels(), w.getsampwidth(), w.getframerate())
    except (OSError, EOFError, wave.Error) as exc:
        raise SoundError(f"{path}: cannot read the alert sound: {exc}") from exc
    if wav.sample_width not in (1, 2, 3, 4) or wav.channels not in (1, 2) or not wav.data:
        raise SoundError(f"{path}: unsupported WAV ({wav.channels} ch, {8 * wav.sample_width} bit) or empty")
    return wav


class SoundPlayer:
    """Plays one WAV without blocking the caller; one play at a time; never raises from ``play``."""

    def __init__(self, path: Union[str, Path], retry_s: float = RETRY_S,
                 clock: Callable[[], float] = time.monotonic, isolate: Optional[bool] = None,
                 video_time: Callable[[], bool] = lambda: False):
        self.path = Path(path)
        self.retry_s = retry_s
        self._clock = clock
        self._video_time = video_time  # True: ``clock`` is a video's, not the device's (see the module doc)
        self.isolate = ISOLATE_DEFAULT if isolate is None else isolate  # play in a child process
        self._handle = None  # simpleaudio.PlayObject of the current/last play
        self._child: Optional[subprocess.Popen] = None  # the current/last child player (isolate)
        self._started = float("-inf")  # clock() when the current/last play started
        self._sa = None
        self.available = False
        self.error = ""  # why the player is unavailable, for status / check-config
        self.attempts = 0  # plays tried on the device (tests and stats)
        self._next_retry = 0.0
        self._wav: Optional[Wav] = None
        try:
            self._wav = load_wav(self.path)
        except SoundError as exc:
            self._disable(str(exc), retry=False)
            return
        try:
            import simpleaudio  # type: ignore
        except ImportError as exc:
            self._disable(f"simpleaudio is not installed ({exc}): alerts are silent", retry=False)
            return
        self._sa = simpleaudio
        self.available = True

    def _disable(self, error: str, retry: bool) -> None:
        if self.available or not self.error:  # one warning per state change, not per alert
            log.warning("sound unavailable: %s%s", error,
                        f"; trying again every {self.retry_s:.0f} s" if retry else "")
        self.available, self.error = False, error
        self._next_retry = self._clock() + self.retry_s if retry else float("inf")

    @property
    def playing(self) -> bool:
        """True while the sound plays: for the sound's length since it started (simpleaudio sets its
        own flag a moment after ``play_buffer`` returns, and a child may end early), then while the
        child runs or simpleaudio's flag says so. On a video's clock: for the sound's length only."""
        if self._video_time():
            if self._child is not None and self._child.poll() is not None:
                self._reap_child()  # its verdict on the sound card still counts
            return self._wav is not None and self._clock() - self._started < self._wav.duration_s
        if self._child is not None and self._reap_child():
            return True
        if self._wav is not None and self._clock() - self._started < self._wav.duration_s:
            return True
        try:
            return self._handle is not None and bool(self._handle.is_playing())
        except Exception:
            return False

    def _reap_child(self) -> bool:
        """True while the child player runs; once it has ended, take its verdict on the sound card."""
        child = self._child
        if child.poll() is None:
            return True
        err = child.stderr.read().decode(errors="replace").strip() if child.stderr else ""
        if child.stderr:
            child.stderr.close()
        self._child = None
        if child.returncode > 0:  # it could not open the card (or the WAV): as an in-process failure
            self._started = float("-inf")  # nothing is playing
            self._disable(err.splitlines()[-1] if err else f"player exited {child.returncode}", retry=True)
            return False
        if child.returncode < 0:
            log.debug("alert player ended by signal %d after playing", -child.returncode)
        if not self.available:
            log.info("sound output works again")
        self.available, self.error = True, ""
        return False

    def _spawn_child(self) -> None:
        self._child = subprocess.Popen([sys.executable, "-m", "mask_guard.play_sound", str(self.path)],
                                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, close_fds=True)

    def play(self) -> bool:
        """Start playing; False (at once) when busy, unavailable or the device refuses."""
        if self._wav is None or self._sa is None:
            return False
        if not self.available and self._clock() < self._next_retry:
            return False
        if self.playing:
            return False  # one alert at a time: overlapping chimes are noise
        w = self._wav
        if self._video_time():
            self._cut()  # the device may still play the last one: video time runs faster than the wall's
        self.attempts += 1
        try:
            if self.isolate:
                self._spawn_child()  # the card's verdict comes with the child's exit (_reap_child)
                self._started = self._clock()
                return True
            self._handle = self._sa.play_buffer(w.data, w.channels, w.sample_width, w.rate)
            self._started = self._clock()
        except Exception as exc:  # SimpleaudioError: no card, device busy, format refused
            self._handle = None
            self._disable(f"{type(exc).__name__}: {exc}", retry=True)
            return False
        if not self.available:
            log.info("sound output works again")
        self.available, self.error = True, ""
        return True

    def _cut(self) -> None:
        """End a sound the device still plays (without forgetting when it started)."""
        started = self._started
        if (self._child is not None and self._child.poll() is None) or self._handle is not None:
            self.stop()
        self._started = started

    def stop(self) -> None:
        try:
            if self._handle is not None:
                self._handle.stop()
            if self._child is not None and self._child.poll() is None:
                self._child.terminate()
                self._child.wait(2)
        except Exception as exc:
            log.debug("stopping the sound failed: %s", exc)
        self._handle = None
        self._started = float("-inf")
        if self._child is not None and self._child.stderr:
            self._child.stderr.close()
        self._child = None

    close = stop


def _hhmm(s: str) -> Optional[dtime]:
    if not s:
        return None
    h, m = s.split(":")
    return dtime(int(h), int(m))


class AlertPolicy:
    """When an unmasked person may be alerted: enabled, outside quiet hours, cooldowns respected.

    Quiet hours are the half-open interval [quiet_start, quiet_end) in local time and may wrap
    midnight (22:00..07:00); equal start and end mean no quiet hours. ``mono`` is time.monotonic().
    """

    def __init__(self, cfg: AlertsConfig):
        self.cfg = cfg
        self._quiet = (_hhmm(cfg.quiet_start), _hhmm(cfg.quiet_end))
        self._last_any: Optional[float] = None
        self._last_by_track: dict[int, float] = {}

    def in_quiet_hours(self, now: datetime) -> bool:
        start, end = self._quiet
        if start is None or end is None or start == end:
            return False
        t = now.time()  # local wall-clock time of ``now``; naive, comparable with start/end
        if start < end:
            return start <= t < end
        return t >= start or t < end  # wraps midnight

    def should_alert(self, track_id: int, now: datetime, mono: float) -> tuple[bool, str]:
        """(True, "ok") or (False, why): "disabled", "quiet_hours", "realert", "cooldown"."""
        if not self.cfg.enabled:
            return False, "disabled"
        if self.in_quiet_hours(now):
            return False, "quiet_hours"
        last = self._last_by_track.get(track_id)
        if last is not None and mono - last < self.cfg.realert_s:
            return False, "realert"
        if self._last_any is not None and mono - self._last_any < self.cfg.cooldown_s:
            return False, "cooldown"
        return True, "ok"

    def inherit(self, previous: "AlertPolicy") -> None:
        """Keep who was alerted when across a config reload: people in view are not alerted again at once."""
        self._last_any = previous._last_any
        self._last_by_track = dict(previous._last_by_track)

    def alerted(self, track_id: int, mono: float) -> None:
        self._last_any = mono
        self._last_by_track[track_id] = mono
        # Forget people whose realert window has passed: the dict must not grow for months.
        if len(self._last_by_track) > 256:
            horizon = mono - self.cfg.realert_s
            self._last_by_track = {k: v for k, v in self._last_by_track.items() if v > horizon}


class Alerter:
    """Policy + player: ``on_no_mask(track_id)`` plays the alert if allowed; True when it played.

    ``clock`` (the daemon's ``FrameClock``) replaces ``now`` and ``mono``, for the player it makes too.
    ``silent_ok``: other outputs (a GPIO lamp, the alert command, MQTT) carry the alert, so with no working
    sound (no card, bad file) the alert still counts and they fire; a sound that is merely busy still waits.
    """

    def __init__(self, cfg: AlertsConfig, player: Optional[SoundPlayer] = None,
                 now: Callable[[], datetime] = datetime.now, mono: Callable[[], float] = time.monotonic,
                 clock: Optional[FrameClock] = None, silent_ok: bool = False):
        self.policy = AlertPolicy(cfg)
        self.silent_ok = silent_ok
        if clock is not None:
            now, mono = clock.now, clock.mono
        if player is None and cfg.enabled:
            video = (lambda: clock.video) if clock is not None else (lambda: False)
            player = SoundPlayer(resource_path(cfg.sound, "sounds"), clock=mono, video_time=video)
        self.player = player
        self._now, self._mono = now, mono
        self.played = 0
        self._failed = False

    def on_no_mask(self, track_id: int) -> bool:
        try:
            mono = self._mono()
            ok, reason = self.policy.should_alert(track_id, self._now(), mono)
            if not ok:
                log.debug("no alert for person %s: %s", track_id, reason)
                return False
            if self.player is None or not self.player.play():
                if not (self.silent_ok and (self.player is None or not self.player.available)):
                    return False  # not recorded: the person is alerted once the sound works (or is free)
                log.info("alert for person %s without sound (%s): the other outputs carry it", track_id,
                         self.player.error if self.player is not None else "no player")
            self.policy.alerted(track_id, mono)
            self.played += 1
            log.info("alert played for person %s", track_id)
            return True
        except Exception:  # the frame loop outlives any alerting bug
            if not self._failed:
                log.exception("alerting failed; detection goes on")
                self._failed = True
            return False

    def close(self) -> None:
        if self.player is not None:
            self.player.stop()
