"""Session-wide test environment.

Sound goes to ALSA's null device for every in-process test: a real simpleaudio/ALSA path with no
speaker (CI has no sound card). Tests of a missing card run in subprocesses with their own config.
"""
import os
import tempfile

_conf = os.path.join(tempfile.mkdtemp(prefix="mask-guard-alsa-"), "asound.conf")
with open(_conf, "w") as fh:
    fh.write("pcm.!default { type null }\nctl.!default { type hw card 0 }\n")
os.environ.setdefault("ALSA_CONFIG_PATH", _conf)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
