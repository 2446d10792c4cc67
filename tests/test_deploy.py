"""deploy/: the systemd unit (systemd-analyze verify), sysusers.d, and install.sh (shellcheck, scratch-root runs)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "mask-guard.service"
INSTALL = DEPLOY / "install.sh"
VENV_BIN = Path(sys.executable).parent / "mask-guard"  # a real mask-guard to stand in for /opt/...


def need(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed (apt install {tool})")
    return path


def unit_settings(text: str) -> dict[str, list[str]]:
    """KEY -> every value, from the unit's non-comment lines."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


# --- the unit -----------------------------------------------------------------------------------

def test_unit_speaks_the_notify_protocol_restarts_and_reloads():
    s = unit_settings(UNIT.read_text())
    assert s["Type"] == ["notify"]
    assert int(s["WatchdogSec"][0]) >= 10
    assert s["Restart"] == ["on-failure"]
    assert s["ExecStart"] == ["/opt/mask-guard/venv/bin/mask-guard run --config /etc/mask-guard/config.yaml"]
    assert s["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert "check-config /etc/mask-guard/config.yaml" in s["ExecReload"][0], "check before HUP"
    assert set(s["RestartPreventExitStatus"][0].split()) == {"66", "78"}, "model/config errors are not retried"
    assert int(s["TimeoutStopSec"][0]) > 2


def test_unit_runs_as_its_own_user_and_is_hardened_without_hiding_the_camera():
    s = unit_settings(UNIT.read_text())
    assert s["User"] == ["mask-guard"] and s["Group"] == ["mask-guard"]
    assert set(s["SupplementaryGroups"][0].split()) == {"video", "audio"}
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "RestrictAddressFamilies": "AF_UNIX",
                       "StateDirectory": "mask-guard", "RuntimeDirectory": "mask-guard"}.items():
        assert s.get(key) == [value], key
    assert "PrivateDevices" not in s, "PrivateDevices hides /dev/video* and /dev/snd"
    assert "ProtectClock" not in s, "ProtectClock implies DeviceAllow=char-rtc, which blocks the camera on systemd 252"
    assert "DeviceAllow" not in s and "DevicePolicy" not in s
    assert "ReadWritePaths" not in s, "writable: only the StateDirectory (and the RuntimeDirectory socket)"


def test_unit_passes_systemd_analyze_verify_without_warnings(tmp_path):
    need("systemd-analyze")
    assert VENV_BIN.exists(), VENV_BIN
    text = UNIT.read_text()
    # verify checks that ExecStart's binary exists: point it at this checkout's mask-guard
    unit = tmp_path / "mask-guard.service"
    unit.write_text(text.replace("/opt/mask-guard/venv/bin/mask-guard", str(VENV_BIN)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    ours = [line for line in r.stderr.splitlines() if "mask-guard" in line]
    assert ours == [], r.stderr
    assert r.returncode == 0, r.stderr
    # the shipped file itself: the only complaint allowed is the binary that install.sh creates
    shipped = tmp_path / "shipped" / "mask-guard.service"
    shipped.parent.mkdir()
    shipped.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(shipped)], capture_output=True, text=True, timeout=60)
    other = [line for line in r.stderr.splitlines()
             if "mask-guard" in line and "/opt/mask-guard/venv/bin/mask-guard is not executable" not in line]
    assert other == [], r.stderr


def test_sysusers_creates_a_system_user_in_video_and_audio(tmp_path):
    need("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    r = subprocess.run(["systemd-sysusers", "--root", str(tmp_path), str(DEPLOY / "mask-guard.sysusers")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text()
    m = re.search(r"^mask-guard:x:(\d+):(\d+):[^:]*:/var/lib/mask-guard:(\S+)$", passwd, re.M)
    assert m and int(m.group(1)) < 1000 and "nologin" in m.group(3), passwd
    group = (tmp_path / "etc" / "group").read_text()
    for g in ("video", "audio"):
        assert re.search(rf"^{g}:x:\d+:.*\bmask-guard\b", group, re.M), group


# --- install.sh ---------------------------------------------------------------------------------

def test_install_script_passes_shellcheck():
    need("shellcheck")
    r = subprocess.run(["shellcheck", "-x", str(INSTALL)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.access(INSTALL, os.X_OK)


def install(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=120, env=env)


EXPECTED = ["etc/systemd/system/mask-guard.service", "etc/sysusers.d/mask-guard.conf",
            "etc/mask-guard/config.yaml", "etc/mask-guard/config.yaml.example",
            "usr/share/mask-guard/models/mtcnn_pnet.tflite", "usr/share/mask-guard/models/mtcnn_rnet.tflite",
            "usr/share/mask-guard/models/mtcnn_onet.tflite", "usr/share/mask-guard/sounds/alert.wav",
            "opt/mask-guard/constraints.txt"]


def test_install_dry_run_into_a_scratch_root_writes_the_files_and_runs_no_system_command(tmp_path):
    r = install("--dry-run", "--root", str(tmp_path))
    assert r.returncode == 0, r.stderr
    for rel in EXPECTED:
        assert (tmp_path / rel).is_file(), rel
    assert (tmp_path / "etc/systemd/system/mask-guard.service").read_text() == UNIT.read_text()
    assert (tmp_path / "etc/mask-guard/config.yaml").read_text() == (DEPLOY / "config.yaml").read_text()
    assert oct((tmp_path / "etc/mask-guard/config.yaml").stat().st_mode & 0o777) == "0o640"
    link = tmp_path / "usr/local/bin/mask-guard"
    assert link.is_symlink() and os.readlink(link) == "/opt/mask-guard/venv/bin/mask-guard"
    assert re.fullmatch(r"numpy==\S+\n", (tmp_path / "opt/mask-guard/constraints.txt").read_text())
    if (ROOT / "models" / "mouth_nose.tflite").exists():
        assert (tmp_path / "usr/share/mask-guard/models/mouth_nose.tflite").is_file()
    # every system-changing step is printed, in order, not run
    cmds = [line[2:] for line in r.stdout.splitlines() if line.startswith("+ ")]
    joined = "\n".join(cmds)
    for expected in ("systemd-sysusers /etc/sysusers.d/mask-guard.conf",
                     "python3 -m venv --system-site-packages /opt/mask-guard/venv",
                     "-m pip install --disable-pip-version-check -q -c /opt/mask-guard/constraints.txt "
                     "ai-edge-litert==2.3.0 simpleaudio==1.0.4",
                     f"--no-deps --force-reinstall {ROOT}",
                     "systemctl daemon-reload", "systemctl enable mask-guard.service",
                     "systemctl restart mask-guard.service"):
        assert expected in joined, (expected, joined)
    assert joined.index("systemctl enable") < joined.index("systemctl restart")
    apt = [c for c in cmds if "apt-get install" in c]
    assert all("--no-install-recommends" in c for c in apt)


def test_install_twice_keeps_the_edited_config_and_uninstall_keeps_config_and_counts(tmp_path):
    assert install("--dry-run", "--root", str(tmp_path), "--skip-apt").returncode == 0
    cfg = tmp_path / "etc/mask-guard/config.yaml"
    cfg.write_text("source:\n  uri: '1'\n")
    state = tmp_path / "var/lib/mask-guard/counts.json"
    state.parent.mkdir(parents=True)
    state.write_text("{}")
    r = install("--dry-run", "--root", str(tmp_path), "--skip-apt")
    assert r.returncode == 0 and "keeping /etc/mask-guard/config.yaml" in r.stdout
    assert cfg.read_text() == "source:\n  uri: '1'\n"
    assert "apt-get" not in r.stdout
    r = install("--dry-run", "--root", str(tmp_path), "--uninstall")
    assert r.returncode == 0, r.stderr
    assert "+ systemctl disable --now mask-guard.service" in r.stdout
    for gone in ("etc/systemd/system/mask-guard.service", "etc/sysusers.d/mask-guard.conf", "opt/mask-guard",
                 "usr/share/mask-guard", "usr/local/bin/mask-guard"):
        assert not os.path.lexists(tmp_path / gone), gone
    assert cfg.exists() and state.exists()
    r = install("--dry-run", "--root", str(tmp_path), "--uninstall", "--purge")
    assert r.returncode == 0 and not cfg.exists() and not state.exists()


def test_install_dry_run_on_the_real_root_touches_nothing():
    watched = [Path(p) for p in ("/etc/systemd/system/mask-guard.service", "/etc/mask-guard", "/opt/mask-guard",
                                 "/usr/share/mask-guard", "/usr/local/bin/mask-guard", "/etc/sysusers.d/mask-guard.conf")]
    before = {p: (os.path.lexists(p), p.stat().st_mtime if p.exists() else None) for p in watched}
    r = install("--dry-run", "--skip-apt")
    assert r.returncode == 0, r.stderr
    assert "+ install -D -m 0644" in r.stdout and "+ systemctl restart mask-guard.service" in r.stdout
    assert {p: (os.path.lexists(p), p.stat().st_mtime if p.exists() else None) for p in watched} == before


def test_install_rejects_unknown_options():
    r = install("--frobnicate")
    assert r.returncode == 2 and "unknown option" in r.stderr
