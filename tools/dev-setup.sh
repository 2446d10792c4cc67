#!/usr/bin/env bash
# Set up a development/test environment on a fresh Debian/Ubuntu machine or a laptop:
# system libraries (apt, when root or sudo is available), then .venv with mask-guard and its tools.
#   bash tools/dev-setup.sh            # .venv with numpy 2 (as on Raspberry Pi OS Trixie) + TensorFlow tools
#   bash tools/dev-setup.sh --numpy1 .venv-np1   # runtime-only venv with numpy 1 (as on Bookworm), no TensorFlow
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

numpy1=0
venv=.venv
while [ $# -gt 0 ]; do
  case "$1" in
    --numpy1) numpy1=1; venv=${2:-.venv-np1}; shift 2 || shift ;;
    *) venv=$1; shift ;;
  esac
done

apt_pkgs=(python3-venv python3-dev gcc pkg-config libasound2-dev libsystemd-dev alsa-utils
          libgl1 libglib2.0-0 shellcheck systemd espeak-ng sox xvfb xdotool
          mosquitto mosquitto-clients openssl)  # a real MQTT broker for tests/test_mqtt*.py
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "dev-setup: please install: ${missing[*]}" >&2; exit 1
  fi
  echo "dev-setup: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if [ "$numpy1" -eq 1 ]; then
  # The Bookworm runtime set: numpy 1, no TensorFlow (parity tests skip themselves), and Bookworm's
  # paho-mqtt 1.6 / gpiozero 1.6 (apt's versions) so the 1.x APIs stay tested; .venv has the 2.x ones (Trixie).
  "${pip[@]}" "numpy>=1.24,<2" "opencv-python-headless>=4.5,<4.12" pyyaml ai-edge-litert simpleaudio systemd-python pytest \
    "paho-mqtt>=1.6,<2" "gpiozero>=1.6,<2" jinja2
  "${pip[@]}" --no-deps -e .
else
  "${pip[@]}" -e ".[dev,appliance,mqtt,gpio]"
fi
echo "dev-setup: $venv ready ($("$venv/bin/python" -c 'import numpy; print("numpy", numpy.__version__)'))"
