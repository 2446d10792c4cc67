#!/bin/bash
# Install mask-guard as a systemd service on Raspberry Pi OS (Bookworm or Trixie, 64-bit).
#
#   sudo deploy/install.sh                      install or upgrade (idempotent), enable and (re)start
#   sudo deploy/install.sh --uninstall          remove the service and program; keep config and counts
#   sudo deploy/install.sh --uninstall --purge  ... and remove /etc/mask-guard and /var/lib/mask-guard
#   deploy/install.sh --dry-run [--root DIR]    print what would be done; with --root, write the files
#                                               under DIR (a scratch root) and run no system command
# Options: --admin USER   add USER to group mask-guard (status/snapshot/stats without sudo);
#                         default: the user who ran sudo
#          --no-start     install and enable, but do not (re)start the service
#          --skip-apt     do not install Debian packages (already done, or managed elsewhere)
#          --network      let the service open IP sockets, which MQTT (mqtt.enabled) and IP cameras
#                         (rtsp://, http://) need: writes the drop-in mask-guard.service.d/network.conf;
#                         --no-network removes it (the unit alone allows Unix sockets only)
#
# Layout: program in /opt/mask-guard/venv (a venv with --system-site-packages, so apt's numpy,
# OpenCV, picamera2 and systemd bindings are used), models and sounds in /usr/share/mask-guard,
# config /etc/mask-guard/config.yaml (never overwritten), counts /var/lib/mask-guard (StateDirectory=),
# control socket /run/mask-guard/control.sock, command /usr/local/bin/mask-guard.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=/
DRY=0
UNINSTALL=0
PURGE=0
START=1
NETWORK=""  # 1: write the network drop-in, 0: remove it, empty: leave it as it is
APT=1
ADMIN=${SUDO_USER:-}

PREFIX=/opt/mask-guard
VENV=$PREFIX/venv
SHARE=/usr/share/mask-guard
ETC=/etc/mask-guard
UNIT=/etc/systemd/system/mask-guard.service
SYSUSERS=/etc/sysusers.d/mask-guard.conf
DROPIN=/etc/systemd/system/mask-guard.service.d/network.conf
BIN=/usr/local/bin/mask-guard
STATE=/var/lib/mask-guard

# What pip installs (apt has no package for them), pinned to versions with aarch64 wheels for
# Python 3.11 (Bookworm) and 3.13 (Trixie) that accept numpy >= 1.23 (Bookworm's 1.24 and Trixie's 2.x).
PIP_PKGS=("ai-edge-litert==2.3.0" "simpleaudio==1.0.4")
APT_PKGS=(python3 python3-venv python3-dev gcc libasound2-dev alsa-utils
          python3-numpy python3-opencv python3-yaml python3-systemd
          python3-paho-mqtt python3-gpiozero  # MQTT and the GPIO lamp, both off until configured
          procps)  # /bin/kill, the unit's ExecReload (a minimal image lacks it: reload then fails)
APT_OPTIONAL=(python3-picamera2)  # Raspberry Pi OS only; elsewhere a USB webcam through OpenCV

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --root) ROOT=${2:?--root needs a directory}; shift ;;
    --root=*) ROOT=${1#--root=} ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --admin) ADMIN=${2:?--admin needs a user name}; shift ;;
    --no-start) START=0 ;;
    --skip-apt) APT=0 ;;
    --network) NETWORK=1 ;;
    --no-network) NETWORK=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
ROOT=${ROOT%/}
# System commands (apt, useradd, systemctl, pip) run only on the real system, never with --root.
SYSTEM=1
if [ "$DRY" -eq 1 ] || [ -n "$ROOT" ]; then SYSTEM=0; fi
if [ -n "$ROOT" ] && [ ! -d "$ROOT" ]; then echo "install.sh: --root $ROOT is not a directory" >&2; exit 2; fi
# Files are written on the real system, or under a scratch --root (even in a dry run).
FILES=1
if [ "$DRY" -eq 1 ] && [ -z "$ROOT" ]; then FILES=0; fi

say() { printf 'mask-guard install: %s\n' "$*"; }
warn() { printf 'mask-guard install: WARNING: %s\n' "$*" >&2; }
die() { printf 'mask-guard install: ERROR: %s\n' "$*" >&2; exit 1; }

# run CMD...: a command that changes the system; printed instead when it must not run.
run() {
  if [ "$SYSTEM" -eq 1 ]; then
    "$@"
  else
    printf '+ %s\n' "$*"
  fi
}

# put MODE SRC DEST: install a file (under ROOT); DEST's folder is created.
put() {
  if [ "$FILES" -eq 1 ]; then
    install -D -m "$1" "$2" "$ROOT$3"
  else
    printf '+ install -D -m %s %s %s\n' "$1" "$2" "$3"
  fi
}

# remove PATH...: rm -rf under ROOT (printed in a dry run on the real root).
remove() {
  local p
  for p in "$@"; do
    case "$p" in /?*) ;; *) die "refusing to remove '$p'" ;; esac
    if [ "$FILES" -eq 1 ]; then rm -rf -- "$ROOT$p"; else printf '+ rm -rf %s\n' "$p"; fi
  done
}

check_platform() {
  local codename="" arch=""
  if [ -r /etc/os-release ]; then
    # shellcheck disable=SC1091  # the running system's file
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  fi
  arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
  case "$codename" in
    bookworm|trixie) ;;
    *) warn "made for Raspberry Pi OS Bookworm/Trixie; this is '${codename:-unknown}': continuing" ;;
  esac
  case "$arch" in
    arm64|aarch64) ;;
    *) warn "made for 64-bit Raspberry Pi OS (arm64); this is $arch: pip wheels may differ" ;;
  esac
}

apt_install() {
  local missing=() p
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  for p in "${APT_OPTIONAL[@]}"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then continue; fi
    if apt-cache show "$p" >/dev/null 2>&1; then
      missing+=("$p")
    else
      warn "$p is not in the apt sources (not Raspberry Pi OS?): the Pi camera will not work, USB webcams will"
    fi
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "apt packages already installed"
    return
  fi
  say "apt packages: ${missing[*]}"
  run apt-get update -q
  # --no-install-recommends: picamera2 recommends a desktop GUI stack the appliance does not need
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

make_venv() {
  local want have=""
  want=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
  if [ -x "$ROOT$VENV/bin/python" ]; then
    have=$("$ROOT$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "broken")
  fi
  if [ -n "$have" ] && [ "$have" != "$want" ]; then
    say "venv has Python $have, the system $want (OS upgrade?): rebuilding it"
    run rm -rf "$VENV"
    have=""
  fi
  if [ -z "$have" ]; then
    run python3 -m venv --system-site-packages "$VENV"
  fi
  # Pin pip to the system numpy, so no pip install ever replaces it (apt's OpenCV is built against it).
  local numpy_version
  numpy_version=$(python3 -c 'import numpy; print(numpy.__version__)' 2>/dev/null || echo "")
  if [ -z "$numpy_version" ] && [ "$SYSTEM" -eq 1 ]; then die "python3-numpy is not importable"; fi
  local constraints=$PREFIX/constraints.txt
  if [ "$FILES" -eq 1 ]; then
    mkdir -p "$ROOT$PREFIX"
    printf 'numpy==%s\n' "${numpy_version:-unknown}" > "$ROOT$constraints"
  else
    printf '+ echo numpy==%s > %s\n' "${numpy_version:-unknown}" "$constraints"
  fi
  local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  run "${pip[@]}" -c "$constraints" "${PIP_PKGS[@]}"
  # --no-deps: numpy, OpenCV, PyYAML and systemd come from apt (pip would fetch opencv-python instead).
  run "${pip[@]}" --no-deps --force-reinstall "$SRC"
}

install_files() {
  local f n=0
  for f in "$SRC"/models/*.tflite; do
    [ -e "$f" ] || continue
    put 0644 "$f" "$SHARE/models/$(basename "$f")"
    n=$((n + 1))
  done
  if [ ! -e "$SRC/models/mouth_nose.tflite" ]; then
    if [ "$DRY" -eq 1 ]; then warn "models/mouth_nose.tflite is missing (dry run goes on)"
    else die "models/mouth_nose.tflite is missing: train/export it first (see README)"; fi
  fi
  say "$n model files -> $SHARE/models"
  for f in "$SRC"/sounds/*.wav; do
    [ -e "$f" ] || continue
    put 0644 "$f" "$SHARE/sounds/$(basename "$f")"
  done
  if [ -e "$SRC/README.md" ]; then put 0644 "$SRC/README.md" "$PREFIX/README.md"; fi
  put 0644 "$SRC/deploy/mask-guard.service" "$UNIT"
  put 0644 "$SRC/deploy/mask-guard.sysusers" "$SYSUSERS"
  put 0644 "$SRC/deploy/config.yaml" "$ETC/config.yaml.example"
  if [ -e "$ROOT$ETC/config.yaml" ]; then
    say "keeping $ETC/config.yaml (new options: $ETC/config.yaml.example)"
  else
    put 0640 "$SRC/deploy/config.yaml" "$ETC/config.yaml"
    say "config: $ETC/config.yaml (edit, then: mask-guard check-config $ETC/config.yaml && systemctl reload mask-guard)"
  fi
  if [ "$FILES" -eq 1 ]; then
    mkdir -p "$ROOT$(dirname "$BIN")"
    ln -sfn "$VENV/bin/mask-guard" "$ROOT$BIN"
  else
    printf '+ ln -sfn %s %s\n' "$VENV/bin/mask-guard" "$BIN"
  fi
}

# The unit keeps RestrictAddressFamilies=AF_UNIX; this drop-in widens it (and waits for the network at boot).
network_dropin() {
  if [ "$NETWORK" = 1 ]; then
    local tmp
    tmp=$(mktemp)
    cat > "$tmp" <<'EOF_DROPIN'
# Written by deploy/install.sh --network: MQTT (mqtt.enabled) and IP cameras need IP sockets.
# Remove it with: sudo deploy/install.sh --no-network
[Unit]
Wants=network-online.target
After=network-online.target

[Service]
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
EOF_DROPIN
    put 0644 "$tmp" "$DROPIN"
    rm -f "$tmp"
    say "network sockets allowed: $DROPIN"
  elif [ "$NETWORK" = 0 ]; then
    remove "$DROPIN"
    say "network sockets no longer allowed (Unix sockets only)"
  elif [ -e "$ROOT$DROPIN" ]; then
    say "keeping $DROPIN (network sockets allowed; --no-network removes it)"
  fi
}

# (Re)start and say how the service is: `systemctl restart` returns once it is READY=1, which it is
# with a camera delivering or, with none attached yet, waiting for one (see the unit's comments).
start_service() {
  if ! run systemctl restart mask-guard.service; then
    warn "the service did not start; its last journal lines:"
    journalctl -u mask-guard.service -n 20 --no-pager >&2 || true
    die "mask-guard.service failed to start (see above; systemctl status mask-guard)"
  fi
  if [ "$SYSTEM" -eq 0 ]; then say "(dry run) then: how the service is, from its STATUS= line"; return; fi
  local status
  status=$(systemctl show -p StatusText --value mask-guard.service || true)
  case "$status" in
    *"waiting for camera"*)
      say "the service is up and waiting for a camera (${status##*waiting for camera }): plug it in, or set"
      say "source.uri in $ETC/config.yaml and: systemctl reload mask-guard; it is picked up without a restart" ;;
    *) say "the service is up${status:+: $status}" ;;
  esac
  say "follow it with: journalctl -u mask-guard -f   and: mask-guard status"
}

do_install() {
  check_platform
  [ "$SYSTEM" -eq 0 ] || [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
  if [ "$APT" -eq 1 ]; then apt_install; fi
  install_files
  network_dropin
  run systemd-sysusers "$SYSUSERS"
  # The service reads its config as group mask-guard; the file may hold stream passwords.
  run chown root:mask-guard "$ETC/config.yaml"
  make_venv
  if [ -n "$ADMIN" ] && [ "$ADMIN" != root ]; then
    if id -nG "$ADMIN" 2>/dev/null | tr ' ' '\n' | grep -qx mask-guard; then
      say "$ADMIN is already in group mask-guard"
    else
      run usermod -aG mask-guard "$ADMIN"
      say "$ADMIN added to group mask-guard (log in again for status/snapshot without sudo)"
    fi
  fi
  run systemctl daemon-reload
  run systemctl enable mask-guard.service
  if [ "$START" -eq 1 ]; then
    run "$VENV/bin/mask-guard" check-config "$ETC/config.yaml"
    start_service
  fi
  say "done"
}

do_uninstall() {
  [ "$SYSTEM" -eq 0 ] || [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0 --uninstall)"
  if [ "$SYSTEM" -eq 0 ] || systemctl list-unit-files mask-guard.service >/dev/null 2>&1; then
    run systemctl disable --now mask-guard.service
  fi
  remove "$UNIT" "$BIN" "$PREFIX" "$SHARE" "$SYSUSERS" "$DROPIN"
  run systemctl daemon-reload
  if [ "$PURGE" -eq 1 ]; then
    remove "$ETC" "$STATE"
    say "removed config and counts"
  else
    say "kept $ETC and $STATE (remove them with --uninstall --purge)"
  fi
  # The system user stays: files it owned (backups, copies) keep a valid owner. userdel mask-guard if wanted.
  say "uninstalled"
}

if [ "$UNINSTALL" -eq 1 ]; then do_uninstall; else do_install; fi
