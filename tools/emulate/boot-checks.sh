#!/bin/bash
# Inside the booted, emulated Raspberry Pi OS (systemd-nspawn -b or qemu-system-aarch64), as root:
# install as a user would with no camera attached, then the unit on a real clip. One line per check in
# /mg-out/results.tsv ("check<TAB>PASS|FAIL|SKIP<TAB>detail"). Emulated: seconds here are emulation
# seconds, used only for the timeouts and the 2 s stop limit the unit promises, never as speed.
set -uo pipefail
OUT=/mg-out
mkdir -p "$OUT"
: > "$OUT/results.tsv"
rm -f "$OUT/done"
exec > >(tee -a "$OUT/checks.log") 2>&1
UNIT=mask-guard.service
CONF=/etc/mask-guard/config.yaml
CLIP=/srv/mg-emulate/clip.mp4
MODE=${MG_EMULATE_MODE:-nspawn}  # nspawn (qemu-user) or system (qemu-system: real arm64 kernel)

log() { printf '[boot-checks %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
result() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$OUT/results.tsv"; log "$1: $2 ($3)"; }
prop() { systemctl show -p "$1" --value "$UNIT"; }
mg_status() { timeout 120 /usr/local/bin/mask-guard status --json 2>/dev/null; }
status_field() {  # status_field EXPR: from `mask-guard status --json` (python expression on s)
  mg_status | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)" 2>/dev/null
}
# wait_for SECONDS CMD...: until CMD succeeds (emulation: generous limits, checked every 3 s)
wait_for() { local end=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 3; done; }
running_on_clip() { [ "$(status_field 's["state"]')" = running ] && [ "$(status_field 's["frames"]')" -gt 0 ] 2>/dev/null; }
why_not_active() {
  local st step
  st=$(prop ExecMainStatus)
  case "$st" in 226) step=" (NAMESPACE)" ;; 243) step=" (CREDENTIALS)" ;; 228) step=" (SECCOMP)" ;; *) step="" ;; esac
  printf 'ActiveState=%s Result=%s ExecMainStatus=%s%s; %s' "$(prop ActiveState)" "$(prop Result)" \
    "$st" "$step" "$(journalctl -u "$UNIT" -n 40 --no-pager -o cat | grep -iE 'fail|error|denied|not permitted' \
    | tail -n 2 | tr '\n' ' ' | cut -c1-220)"
}

SYSTEMD_VER=$(systemctl --version | awk 'NR==1 {print $2}')
. /etc/os-release
state=$(systemctl is-system-running 2>/dev/null)
result boot PASS "$PRETTY_NAME, systemd $SYSTEMD_VER, kernel $(uname -r) ($MODE), system state $state"
if [ "$(systemctl is-active systemd-journald.service)" = active ]; then
  result journald PASS "systemd-journald active"
else
  result journald FAIL "systemd-journald $(systemctl is-active systemd-journald.service), ExecMainStatus $(systemctl show -p ExecMainStatus --value systemd-journald.service) (243: CREDENTIALS); no journal in this boot"
fi
if [ "$MODE" = system ]; then
  result kernel-features PASS "seccomp actions: $(cat /proc/sys/kernel/seccomp/actions_avail 2>/dev/null | tr -d '\n'); user namespaces: $(cat /proc/sys/user/max_user_namespaces 2>/dev/null)"
fi

# The config as a fresh install writes it (an earlier run of these checks edited it).
if ! cmp -s "$CONF" /etc/mask-guard/config.yaml.example; then
  install -m 0640 -o root -g mask-guard /etc/mask-guard/config.yaml.example "$CONF"
  log "config reset to the installed example"
fi

# 1. A fresh install with no camera attached (the config as installed: source.uri auto), as user pi.
log "install.sh as user pi, no camera attached"
t0=$SECONDS
timeout 1500 su - pi -w QEMU_CPU -c 'cd ~/mask-guard && sudo deploy/install.sh' > "$OUT/install-nocamera.log" 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "waiting for a camera" "$OUT/install-nocamera.log" && grep -q "install: done" "$OUT/install-nocamera.log"; then
  result nocamera-install PASS "install.sh exit 0, says: $(grep -m1 'waiting for a camera' "$OUT/install-nocamera.log" | cut -c21-140)"
else
  result nocamera-install FAIL "install.sh exit $rc: $(grep -E 'ERROR|WARNING' "$OUT/install-nocamera.log" | grep -v picamera2 | tail -n 1 | cut -c1-160); $(why_not_active)"
fi

relaxed=""
if [ "$(prop ActiveState)" != active ]; then
  # Find out which sandboxing emulation refuses: a runtime drop-in (gone at the next boot) turns the
  # mount-namespace and credential options off, and the remaining checks run without them.
  why=$(why_not_active)
  mkdir -p /run/systemd/system/mask-guard.service.d
  cat > /run/systemd/system/mask-guard.service.d/emulate-relaxed.conf <<'EOD'
# pi-emulate only: the options emulation cannot set up (see the results table)
[Service]
ProtectSystem=no
ProtectHome=no
PrivateTmp=no
ProtectProc=default
ProtectKernelTunables=no
ProtectKernelModules=no
ProtectKernelLogs=no
ProtectControlGroups=no
ProtectHostname=no
EOD
  systemctl daemon-reload
  systemctl reset-failed "$UNIT"
  if timeout 900 systemctl restart "$UNIT" && [ "$(prop ActiveState)" = active ]; then
    relaxed=" (mount-namespace options off)"
    result sandbox-under-emulation FAIL "full unit refused: $why; with ProtectSystem/ProtectHome/PrivateTmp/ProtectProc/Protect*=no it starts"
  else
    result sandbox-under-emulation FAIL "unit does not start even relaxed: $(why_not_active)"
  fi
else
  result sandbox-under-emulation PASS "the unit started with all its hardening options set"
fi

# 2. Still up, waiting, past the watchdog (30 s) and camera_lost_restart_s (120 s).
pid0=$(prop MainPID); restarts0=$(prop NRestarts)
if [ "$(prop ActiveState)" = active ]; then
  log "waiting 160 s with no camera (watchdog 30 s, camera_lost_restart_s 120 s)"
  sleep 160
  st=$(prop StatusText)
  if [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$pid0" ] && [ "$(prop NRestarts)" = "$restarts0" ] \
     && [[ "$st" == *"waiting for camera"* ]]; then
    result nocamera-stays-up PASS "after 160 s: active, same PID, no restart, status: ${st##*; }$relaxed"
  else
    result nocamera-stays-up FAIL "after 160 s: $(prop ActiveState), PID $pid0 -> $(prop MainPID), restarts $restarts0 -> $(prop NRestarts), status: $st"
  fi
else
  result nocamera-stays-up SKIP "unit not active"
fi

# 3. The camera comes: a real clip set in the config as a user would, picked up by reload.
if [ ! -e "$CLIP" ]; then
  for c in clip-reload-pickup clip-ready status reload kill9-restart stop-2s; do result $c SKIP "no clip"; done
  exit 0
fi
# Emulation runs a frame through the models many times slower than a Pi (tens of seconds here), and
# the unit's 30 s watchdog is fed once per frame: for the clip it gets a longer one (a runtime
# drop-in, gone at the next boot), the only setting these checks change.
mkdir -p /run/systemd/system/mask-guard.service.d
printf '# pi-emulate only: emulated frames are slow\n[Service]\nWatchdogSec=600\nTimeoutStartSec=900\n' \
  > /run/systemd/system/mask-guard.service.d/emulate-slow.conf
systemctl daemon-reload
systemctl restart "$UNIT"  # still no camera: waiting again, now with the emulation watchdog
log "clip checks with WatchdogSec=600 (emulation drop-in)"
sed -i -e "s|^  # uri: auto|  uri: $CLIP|" -e 's|^  # loop: false|  loop: true|' "$CONF"
if [ "$(prop ActiveState)" = active ]; then
  pid=$(prop MainPID)
  if systemctl reload "$UNIT" && wait_for 600 running_on_clip && [ "$(prop MainPID)" = "$pid" ]; then
    result clip-reload-pickup PASS "source.uri set + systemctl reload: the waiting service took the clip, same PID, $(status_field 's["frames"]') frames"
  else
    result clip-reload-pickup FAIL "state $(status_field 's["state"]'), PID $pid -> $(prop MainPID)"
  fi
fi

# READY=1 on the clip: `systemctl restart` of a Type=notify unit returns when READY=1 came.
if timeout 900 systemctl restart "$UNIT" && [ "$(prop ActiveState)" = active ] && wait_for 600 running_on_clip; then
  result clip-ready PASS "restart returned on READY=1, state running on $(status_field 's["camera"]["source"]'), $(status_field 's["frames"]') frames$relaxed"
else
  result clip-ready FAIL "$(why_not_active)"
fi

# What the kernel applied to the main process: its user, no-new-privileges, seccomp mode (2: filter).
mp=$(prop MainPID)
if [ -r "/proc/$mp/status" ]; then
  uid=$(awk '/^Uid:/ {print $2}' "/proc/$mp/status"); nnp=$(awk '/^NoNewPrivs:/ {print $2}' "/proc/$mp/status")
  sc=$(awk '/^Seccomp:/ {print $2}' "/proc/$mp/status"); caps=$(awk '/^CapBnd:/ {print $2}' "/proc/$mp/status")
  detail="uid $uid (mask-guard is $(id -u mask-guard)), NoNewPrivs $nnp, CapBnd $caps, Seccomp $sc"
  if [ "$uid" != "$(id -u mask-guard)" ] || [ "$nnp" != 1 ]; then
    result own-user-nnp FAIL "$detail"
  else
    result own-user-nnp PASS "$detail"
  fi
  if [ "$MODE" = nspawn ]; then
    # The x86 kernel filters qemu's own x86_64 syscalls; what systemd meant for aarch64 ones is not
    # what a Pi's kernel would enforce, whatever the mode says: only --system tests it.
    result seccomp-applied SKIP "qemu-user: the kernel reports Seccomp: $sc for the emulator process, which says nothing about the aarch64 filter a Pi enforces (see --system)"
  elif [ "$sc" = 2 ]; then
    result seccomp-applied PASS "Seccomp: 2 (filter) on the main process ($MODE)"
  else
    result seccomp-applied FAIL "Seccomp: $sc on the main process ($MODE)"
  fi
fi

if out=$(su - pi -w QEMU_CPU -c 'mask-guard status --json' 2>&1) && [[ "$out" == *'"ok": true'* ]]; then
  result status PASS "mask-guard status as user pi (group mask-guard): ok, state $(status_field 's["state"]')"
else
  result status FAIL "$(echo "$out" | tail -n 1 | cut -c1-160)"
fi

pid=$(prop MainPID)
sed -i 's|^  # status_interval_s: 5.0|  status_interval_s: 2.0|' "$CONF"
if systemctl reload "$UNIT" && sleep 10 && [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$pid" ] \
   && [ "$(status_field 's["detector"]["interval_s"]')" = 2.0 ]; then
  result reload PASS "systemctl reload: same PID $pid, new status_interval_s 2.0 in effect"
else
  result reload FAIL "PID $pid -> $(prop MainPID), interval $(status_field 's["detector"]["interval_s"]'); $(why_not_active)"
fi
# A bad config is refused by ExecReload (check-config) and the running one kept.
cp "$CONF" /root/config.good
echo "service: {status_interval_s: fast}" >> "$CONF"
if ! systemctl reload "$UNIT" 2>/dev/null && [ "$(prop ActiveState)" = active ] && [ "$(prop MainPID)" = "$pid" ]; then
  result bad-reload-refused PASS "invalid value: reload fails, same PID keeps running"
else
  result bad-reload-refused FAIL "state $(prop ActiveState), PID $pid -> $(prop MainPID)"
fi
cp /root/config.good "$CONF"

restarts=$(prop NRestarts)
kill -9 "$pid"
if wait_for 600 sh -c "[ \"\$(systemctl show -p NRestarts --value $UNIT)\" -gt $restarts ] && [ \"\$(systemctl show -p ActiveState --value $UNIT)\" = active ]" \
   && wait_for 600 running_on_clip; then
  result kill9-restart PASS "kill -9 $pid: restarted (Restart=on-failure) as PID $(prop MainPID), running on the clip again"
else
  result kill9-restart FAIL "$(why_not_active)"
fi

pid=$(prop MainPID)
t0=$(date +%s.%N)
systemctl stop "$UNIT"
t1=$(date +%s.%N)
took=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
res=$(prop Result)
if python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 2.0 else 1)" && [ "$res" = success ]; then
  result stop-2s PASS "systemctl stop returned after ${took} s (emulated; limit 2 s), Result=$res"
else
  result stop-2s FAIL "systemctl stop took ${took} s (emulated; limit 2 s), Result=$res"
fi
journalctl -u "$UNIT" --no-pager -o short-monotonic > "$OUT/journal-mask-guard.txt" 2>/dev/null
systemd-analyze security "$UNIT" --no-pager > "$OUT/security.txt" 2>&1 \
  && result security-analyze PASS "systemd-analyze security: $(grep -i 'overall exposure' "$OUT/security.txt" | sed 's/.*exposure level for [^:]*: //')" \
  || result security-analyze FAIL "$(tail -n 1 "$OUT/security.txt")"
log "done"
touch "$OUT/done"
