#!/usr/bin/env python3
"""Make sounds/alert.wav: a two-tone chime, then eSpeak NG saying the message.

16-bit mono 22050 Hz PCM (what simpleaudio plays everywhere), a few seconds, well under 300 KB.
Without espeak-ng the chime alone is written (and a warning printed).

    python tools/make_sound.py                       # -> sounds/alert.wav
    python tools/make_sound.py -o /tmp/a.wav --text "Bitte Maske tragen" --voice de
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

RATE = 22050
ROOT = Path(__file__).resolve().parent.parent


def tone(freq: float, seconds: float, rate: int = RATE) -> np.ndarray:
    """A bell-like note: fundamental plus two soft partials, fast attack, exponential decay."""
    t = np.arange(int(seconds * rate)) / rate
    wave_ = (np.sin(2 * np.pi * freq * t) + 0.35 * np.sin(2 * np.pi * 2 * freq * t)
             + 0.12 * np.sin(2 * np.pi * 3.01 * freq * t))
    env = np.exp(-t * 5.0) * np.minimum(1.0, t / 0.005)  # 5 ms attack: no click
    env *= np.minimum(1.0, (seconds - t) / 0.08)  # 80 ms release: no click at the end either
    return (wave_ * env).astype(np.float32)


def chime(rate: int = RATE) -> np.ndarray:
    """Ding-dong (E6 then C6), the second note overlapping the tail of the first."""
    hi, lo = tone(1318.5, 0.9, rate), tone(1046.5, 1.1, rate)
    out = np.zeros(int(0.35 * rate) + len(lo), np.float32)
    out[:len(hi)] += hi
    out[int(0.35 * rate):] += lo
    return out


def read_wav_mono(path: Path, rate: int = RATE) -> np.ndarray:
    """A 16-bit WAV as float mono at ``rate`` (linear resampling is plenty for speech)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()} bit")
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
        data = data.reshape(-1, w.getnchannels()).mean(axis=1)
        src_rate = w.getframerate()
    if src_rate != rate and len(data):
        n = int(round(len(data) * rate / src_rate))
        data = np.interp(np.arange(n) * src_rate / rate, np.arange(len(data)), data).astype(np.float32)
    return data


def speech(text: str, voice: str, speed: int, rate: int = RATE) -> np.ndarray | None:
    """``text`` spoken by espeak-ng, or None when espeak-ng is not installed or fails."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        try:
            subprocess.run([exe, "-v", voice, "-s", str(speed), "-w", str(out), text],
                           check=True, capture_output=True, timeout=60)
            return read_wav_mono(out, rate)
        except (subprocess.SubprocessError, OSError, ValueError) as exc:
            print(f"warning: {exe} failed ({exc}); writing the chime only", file=sys.stderr)
            return None


def normalize(x: np.ndarray, peak: float) -> np.ndarray:
    m = float(np.abs(x).max()) if len(x) else 0.0
    return x * (peak / m) if m > 0 else x


def make_alert(text: str, voice: str, speed: int, rate: int = RATE) -> tuple[np.ndarray, bool]:
    """The alert as float samples in [-1, 1] and whether it contains speech."""
    parts = [normalize(chime(rate), 0.6)]
    spoken = speech(text, voice, speed, rate) if text else None
    if spoken is not None:
        # Trim espeak's leading/trailing silence so the words follow the chime closely.
        loud = np.flatnonzero(np.abs(spoken) > 0.01)
        if len(loud):
            spoken = spoken[max(0, loud[0] - rate // 100): loud[-1] + rate // 20]
        parts += [np.zeros(int(0.15 * rate), np.float32), normalize(spoken, 0.85)]
    parts.append(np.zeros(int(0.1 * rate), np.float32))
    return np.concatenate(parts), spoken is not None


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "sounds" / "alert.wav")
    ap.add_argument("--text", default="Please wear a mask", help="spoken after the chime ('' for none)")
    ap.add_argument("--voice", default="en-gb", help="espeak-ng voice")
    ap.add_argument("--speed", type=int, default=150, help="espeak-ng words per minute")
    args = ap.parse_args(argv)
    samples, spoken = make_alert(args.text, args.voice, args.speed)
    if args.text and not spoken:
        print("warning: espeak-ng not found; the alert is the chime only", file=sys.stderr)
    write_wav(args.output, samples)
    size = args.output.stat().st_size
    print(f"{args.output}: {len(samples) / RATE:.2f} s, {size / 1024:.0f} KiB, "
          f"16-bit mono {RATE} Hz, {'chime + speech' if spoken else 'chime only'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
