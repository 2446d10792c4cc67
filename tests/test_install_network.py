"""``install.sh --network``: the one step that lets the service reach an MQTT broker or an IP camera. The unit
itself keeps Unix sockets only; the drop-in (written into a scratch root) widens that and passes systemd's own
check together with the unit."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "deploy" / "install.sh"
UNIT = ROOT / "deploy" / "mask-guard.service"
DROPIN = "etc/systemd/system/mask-guard.service.d/network.conf"


def install(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
    return subprocess.run(["bash", str(INSTALL), "--dry-run", "--skip-apt", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_the_unit_alone_allows_unix_sockets_only():
    assert settings(UNIT.read_text())["RestrictAddressFamilies"] == "AF_UNIX"


def test_network_writes_the_drop_in_a_plain_reinstall_keeps_it_and_no_network_removes_it(tmp_path):
    assert install("--root", str(tmp_path)).returncode == 0
    assert not (tmp_path / DROPIN).exists(), "off by default"
    r = install("--root", str(tmp_path), "--network")
    assert r.returncode == 0, r.stderr
    s = settings((tmp_path / DROPIN).read_text())
    assert s["RestrictAddressFamilies"] == "AF_UNIX AF_INET AF_INET6"
    assert s["After"] == s["Wants"] == "network-online.target"
    r = install("--root", str(tmp_path))
    assert (tmp_path / DROPIN).exists() and "keeping /etc/systemd/system/mask-guard.service.d/network.conf" in r.stdout
    assert install("--root", str(tmp_path), "--no-network").returncode == 0
    assert not (tmp_path / DROPIN).exists()
    install("--root", str(tmp_path), "--network")
    assert install("--root", str(tmp_path), "--uninstall").returncode == 0
    assert not (tmp_path / DROPIN).exists()


def test_the_unit_with_the_drop_in_passes_systemd_analyze_verify(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    scratch = tmp_path / "root"
    scratch.mkdir()
    assert install("--root", str(scratch), "--network").returncode == 0
    unit_dir = tmp_path / "units"
    (unit_dir / "mask-guard.service.d").mkdir(parents=True)
    exe = Path(sys.executable).parent / "mask-guard"
    (unit_dir / "mask-guard.service").write_text(UNIT.read_text().replace("/opt/mask-guard/venv/bin/mask-guard", str(exe)))
    shutil.copy(scratch / DROPIN, unit_dir / "mask-guard.service.d" / "network.conf")
    r = subprocess.run(["systemd-analyze", "verify", str(unit_dir / "mask-guard.service")], capture_output=True,
                       text=True, timeout=60)
    assert [line for line in r.stderr.splitlines() if "mask-guard" in line or "network.conf" in line] == [], r.stderr
    assert r.returncode == 0, r.stderr
