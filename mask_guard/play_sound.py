"""Play one WAV through simpleaudio (ALSA) and exit: the alert player's child process.

``python -m mask_guard.play_sound FILE``: exit 0 once played; exit 3 with the reason on stderr when the
sound card or the file cannot be used. See alerts.py for why the daemon plays in a child on Python >= 3.12.
"""
from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    try:
        import simpleaudio  # type: ignore

        play = simpleaudio.WaveObject.from_wave_file(argv[0]).play()
    except Exception as exc:  # SimpleaudioError (no card), a bad file, no simpleaudio
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        os._exit(3)
    play.wait_done()
    os._exit(0)  # no interpreter teardown: where simpleaudio crashes, it crashes there


if __name__ == "__main__":
    main(sys.argv[1:])
