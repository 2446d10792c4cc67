#!/bin/bash
# Try mask-guard on 64-bit Raspberry Pi OS before a Pi is bought: arm64 Debian Bookworm and Trixie under
# qemu emulation on a Debian/Ubuntu x86_64 machine, as root. Not part of .ci/run (an hour or more).
#
#   sudo tools/pi-emulate.sh                       all stages, Bookworm then Trixie, then the table
#   sudo tools/pi-emulate.sh bookworm              one release
#   sudo tools/pi-emulate.sh --stage install trixie   stages up to and including STAGE only
#   sudo tools/pi-emulate.sh --system              also boot Bookworm in qemu-system-aarch64 (a real
#                                                  arm64 kernel: seccomp and namespaces are applied)
#   sudo tools/pi-emulate.sh --report              print the table of the last results and exit
#
# Stages (each cached; a finished one is skipped on the next run, so an interrupted run resumes):
#   host     binfmt_misc, qemu-user-static from bookworm-backports (bookworm's qemu 7.2 segfaults in
#            ai-edge-litert), binfmt-support, debootstrap, systemd-container; re-registers qemu-aarch64
#   rootfs   debootstrap --arch=arm64 --foreign, then --second-stage in a chroot; a user "pi" with
#            sudo, as on Pi OS Lite; kept as CACHE/RELEASE/base.tar
#   install  the working tree (git ls-files, models included) in /home/pi/mask-guard, then
#            `sudo deploy/install.sh --no-start` there in a chroot, as a user would (no systemd in a chroot)
#   checks   every models/*.tflite loads and runs through mask_guard's loaders with the same output as on
#            this machine; `mask-guard detect --json` on the same real images equals this machine's output
#            (timing fields aside)
#   boot     systemd-nspawn -b: install.sh with no camera completes and the unit stays up waiting; on a
#            real clip the unit reaches READY=1, answers `mask-guard status`, survives `systemctl reload`,
#            restarts after kill -9 of its main PID and stops within 2 s
#   system   (with --system, Bookworm only) qemu-system-aarch64 -M virt -cpu cortex-a72 with Debian's
#            linux-image-arm64: systemd-analyze security and the unit with its full hardening
#
# Options: --cache DIR  where root file systems, logs and results live (default
#                       $MASK_GUARD_EMULATE_CACHE or /var/cache/mask-guard-emulate; never inside the repo)
#          --data DIR   the image data (default ../shared/data beside the repo, or /work/shared/data)
#          --fresh      forget RELEASE's install and later stages (back to the debootstrapped base.tar)
#          --stage S    stop after stage S (host, rootfs, install, checks, boot, system)
#
# Emulation runs many times slower than this machine and says nothing about a Raspberry Pi's speed:
# the only times printed are stage wall times, labelled as emulation time.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$REPO/tools/emulate
CACHE=${MASK_GUARD_EMULATE_CACHE:-/var/cache/mask-guard-emulate}
DATA=""
RELEASES=()
UPTO=system
SYSTEM=0
FRESH=0
REPORT_ONLY=0
MIRROR=${MASK_GUARD_EMULATE_MIRROR:-http://deb.debian.org/debian}
# The Pi 4's core. qemu's default ("max") has SVE/SME, and LiteRT then takes paths many times slower.
export QEMU_CPU=cortex-a72
STAGES=(host rootfs install checks boot system)

usage() { sed -n '2,37p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    --cache) CACHE=${2:?--cache needs a directory}; shift ;;
    --data) DATA=${2:?--data needs a directory}; shift ;;
    --stage) UPTO=${2:?--stage needs a stage name}; shift ;;
    --system) SYSTEM=1 ;;
    --fresh) FRESH=1 ;;
    --report) REPORT_ONLY=1 ;;
    -h|--help) usage; exit 0 ;;
    bookworm|trixie) RELEASES+=("$1") ;;
    *) echo "pi-emulate: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#RELEASES[@]} -gt 0 ] || RELEASES=(bookworm trixie)
case " ${STAGES[*]} " in *" $UPTO "*) ;; *) echo "pi-emulate: unknown stage $UPTO" >&2; exit 2 ;; esac
CACHE=$(realpath -m "$CACHE")
case "$CACHE/" in "$REPO"/*) echo "pi-emulate: the cache must be outside the repository ($CACHE)" >&2; exit 2 ;; esac
if [ -z "$DATA" ]; then
  for d in "$REPO/../shared/data" /work/shared/data; do [ -d "$d" ] && { DATA=$(realpath "$d"); break; }; done
fi

say() { printf '[pi-emulate %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf '[pi-emulate] ERROR: %s\n' "$*" >&2; exit 1; }

# Results: CACHE/results/RELEASE.tsv, one "check<TAB>PASS|FAIL|SKIP<TAB>detail" line per check.
result() {  # result RELEASE CHECK STATE DETAIL
  local f=$CACHE/results/$1.tsv
  mkdir -p "$CACHE/results"
  touch "$f"
  grep -v -P "^\Q$2\E\t" "$f" > "$f.tmp" || true
  printf '%s\t%s\t%s\n' "$2" "$3" "$4" >> "$f.tmp"
  mv "$f.tmp" "$f"
  say "$1: $2: $3${4:+ ($4)}"
}

# Stage wall time, labelled: it is emulation time on this machine, not a Pi's.
timed() {  # timed LABEL CMD...
  local label=$1 t0=$SECONDS rc=0
  shift
  "$@" || rc=$?
  say "$label: $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s of emulation wall time (not Pi speed)"
  return $rc
}

want() { local s; for s in "${STAGES[@]}"; do [ "$s" = "$1" ] && return 0; [ "$s" = "$UPTO" ] && return 1; done; return 1; }

# ---------------------------------------------------------------- host
stage_host() {
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
  [ "$(uname -m)" = x86_64 ] || die "made for an x86_64 host; this is $(uname -m)"
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  local codename
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  local need=(binfmt-support debootstrap systemd-container qemu-user-static)
  [ "$SYSTEM" -eq 1 ] && need+=(qemu-system-arm qemu-efi-aarch64 e2fsprogs)
  local qver
  qver=$(dpkg-query -W -f='${Version}' qemu-user-static 2>/dev/null || echo "")
  local ok=1 p installed=0
  for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || ok=0; done
  case "$qver" in 1:7.*|1:6.*|1:5.*|"") ok=0 ;; esac
  if [ "$ok" -eq 0 ]; then
    local from=()
    if [ "$codename" = bookworm ]; then
      if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        say "adding bookworm-backports to apt (qemu 10 for arm64 LiteRT)"
        printf 'deb %s bookworm-backports main\n' "$MIRROR" > /etc/apt/sources.list.d/mask-guard-emulate-backports.list
      fi
      from=(-t bookworm-backports)
    fi
    installed=1
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends binfmt-support debootstrap \
      systemd-container
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${from[@]}" qemu-user-static
    if [ "$SYSTEM" -eq 1 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${from[@]}" qemu-system-arm \
        qemu-efi-aarch64 e2fsprogs
    fi
  fi
  qver=$(dpkg-query -W -f='${Version}' qemu-user-static)
  case "$qver" in 1:7.*|1:6.*|1:5.*) die "qemu-user-static $qver segfaults in ai-edge-litert; need >= 8 (bookworm-backports)" ;; esac
  # The binfmt entry may still point at an older qemu (or at none): register the installed one.
  local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [ -e "$conf" ] || die "$conf missing after installing qemu-user-static"
  # Flag C added: setuid arm64 programs (sudo, as the user runs install.sh) get their credentials.
  # (Not when it is already so: a second run must not pull it from under a first.)
  local interp flags
  interp=$(cut -d: -f7 "$conf")
  flags=$(sed -n 's/^flags: //p' /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null)
  if [ "$installed" -eq 1 ] || [[ "$flags" != *C* ]] \
     || ! grep -qx "interpreter $interp" /proc/sys/fs/binfmt_misc/qemu-aarch64 2>/dev/null; then
    if [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64; fi
    sed -e '/^[:]/!d' -e '/:[A-Z]*C[A-Z]*$/!s/$/C/' "$conf" > /proc/sys/fs/binfmt_misc/register
  fi
  grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "qemu-aarch64 binfmt entry not enabled"
  say "host: qemu-user-static $qver registered ($(grep '^interpreter' /proc/sys/fs/binfmt_misc/qemu-aarch64), $(grep '^flags' /proc/sys/fs/binfmt_misc/qemu-aarch64)), QEMU_CPU=$QEMU_CPU"
}

# ---------------------------------------------------------------- chroot helpers
ROOTS_MOUNTED=()
chroot_mount() {  # chroot_mount ROOT
  local r=$1 m
  for m in proc sys dev dev/pts; do mountpoint -q "$r/$m" && continue; mkdir -p "$r/$m"; done
  mountpoint -q "$r/proc" || mount -t proc proc "$r/proc"
  mountpoint -q "$r/sys" || mount --rbind /sys "$r/sys"
  mountpoint -q "$r/dev" || mount --rbind /dev "$r/dev"
  ROOTS_MOUNTED+=("$r")
  if [ -e /etc/resolv.conf ]; then cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true; fi
}
chroot_umount() {  # chroot_umount ROOT
  local r=$1 m
  for m in dev sys proc; do
    if mountpoint -q "$r/$m"; then umount -R "$r/$m" 2>/dev/null || umount -lR "$r/$m" || true; fi
  done
}
cleanup() { local r; for r in "${ROOTS_MOUNTED[@]}"; do chroot_umount "$r"; done; }
trap cleanup EXIT
in_chroot() {  # in_chroot ROOT CMD...: run as root in the arm64 chroot, QEMU_CPU kept
  local r=$1; shift
  chroot "$r" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 QEMU_CPU="$QEMU_CPU" SYSTEMD_OFFLINE=1 "$@"
}

# ---------------------------------------------------------------- rootfs
# Emulation only: every arm64 process must see QEMU_CPU (qemu-user reads it at each exec), also behind
# sudo and in services that systemd starts with a clean environment; SYSTEMD_OFFLINE=1 (set in the
# chroot only) tells systemctl it runs offline, which it cannot see here when /proc/1/root is not
# readable (it then refuses daemon-reload instead of ignoring it, as it does in a chroot).
emulation_env() {  # emulation_env ROOT
  echo 'Defaults env_keep += "QEMU_CPU SYSTEMD_OFFLINE"' > "$1/etc/sudoers.d/020_emulate-env"
  chmod 0440 "$1/etc/sudoers.d/020_emulate-env"
  rm -f "$1/etc/sudoers.d/020_emulate-qemu-cpu"
}
stage_rootfs() {  # stage_rootfs RELEASE
  local rel=$1 dir=$CACHE/$1 root=$CACHE/$1/root
  mkdir -p "$dir"
  if [ -e "$dir/base.tar" ] && [ -d "$root/etc" ]; then say "$rel: rootfs cached ($dir/base.tar)"; return; fi
  if [ -e "$dir/base.tar" ]; then
    say "$rel: unpacking cached base.tar"
    mkdir -p "$root"; tar -C "$root" --numeric-owner -xpf "$dir/base.tar"; return
  fi
  rm -rf "$root" "$dir/root.part"
  local part=$dir/root.part
  say "$rel: debootstrap --arch=arm64 --foreign (log: $dir/debootstrap.log)"
  # What Raspberry Pi OS Lite has that a minimal Debian lacks: sudo, python3, dbus, an init.
  local inc=sudo,ca-certificates,dbus,python3,systemd-sysv,locales,iproute2
  timed "$rel rootfs first stage" debootstrap --arch=arm64 --foreign --variant=minbase --include="$inc" \
    "$rel" "$part" "$MIRROR" > "$dir/debootstrap.log" 2>&1 || { tail -20 "$dir/debootstrap.log"; die "debootstrap failed"; }
  say "$rel: debootstrap --second-stage in the chroot (emulated; Bookworm about 7 min, Trixie longer)"
  timed "$rel rootfs second stage" chroot "$part" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    QEMU_CPU="$QEMU_CPU" /debootstrap/debootstrap --second-stage >> "$dir/debootstrap.log" 2>&1 \
    || { tail -20 "$dir/debootstrap.log"; die "debootstrap --second-stage failed"; }
  # Pi OS Lite: apt sources with updates and security, a user with password-less sudo, a hostname.
  local sec="http://deb.debian.org/debian-security $rel-security main"
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s\n' "$MIRROR" "$rel" "$MIRROR" "$rel" "$sec" \
    > "$part/etc/apt/sources.list"
  echo raspberrypi > "$part/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n' > "$part/etc/hosts"
  in_chroot "$part" useradd -m -s /bin/bash -G sudo pi
  echo 'pi ALL=(ALL) NOPASSWD: ALL' > "$part/etc/sudoers.d/010_pi-nopasswd"
  emulation_env "$part"
  chmod 0440 "$part/etc/sudoers.d/010_pi-nopasswd"
  mkdir -p "$part/etc/systemd/system.conf.d"
  printf '# pi-emulate: qemu-user CPU model for every service\n[Manager]\nDefaultEnvironment=QEMU_CPU=%s\n' \
    "$QEMU_CPU" > "$part/etc/systemd/system.conf.d/90-emulate-qemu-cpu.conf"
  # No getty on the nspawn console (the boot checks own it) and no network wait.
  in_chroot "$part" systemctl mask console-getty.service getty@tty1.service >/dev/null 2>&1 || true
  tar -C "$part" --numeric-owner -cpf "$dir/base.tar.part" .
  mv "$dir/base.tar.part" "$dir/base.tar"
  mv "$part" "$root"
  say "$rel: rootfs ready ($(du -sh "$dir/base.tar" | cut -f1) base.tar)"
}

# ---------------------------------------------------------------- install
copy_tree() {  # copy_tree ROOT: the working tree (tracked files and untracked non-ignored, models) as pi's checkout
  local root=$1 dest=$1/home/pi/mask-guard
  rm -rf "$dest"; mkdir -p "$dest"
  (cd "$REPO" && { git ls-files -z --cached --others --exclude-standard; find models -maxdepth 1 -type f -print0; } \
    | sort -zu | xargs -0 -I{} sh -c '[ -f "{}" ] && printf "%s\0" "{}"' | tar --null -T - -cf -) | tar -C "$dest" -xf -
  in_chroot "$root" chown -R pi:pi /home/pi/mask-guard
}

# The host's own CAs (a TLS-inspecting proxy, a company CA), which pip in the rootfs needs as much as
# the host does; what the Pi's owner would add for such a network. Appended on the host side (fast)
# and kept in /usr/local/share/ca-certificates, so a later update-ca-certificates keeps them.
local_cas() {  # local_cas ROOT
  local r=$1 c
  for c in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$c" ] || continue
    [ -e "$r/usr/local/share/ca-certificates/$(basename "$c")" ] && continue
    mkdir -p "$r/usr/local/share/ca-certificates"
    cp "$c" "$r/usr/local/share/ca-certificates/"
    cat "$c" >> "$r/etc/ssl/certs/ca-certificates.crt"
    say "added the host's CA $(basename "$c") to the rootfs"
  done
}

stage_install() {  # stage_install RELEASE
  local rel=$1 dir=$CACHE/$1 root=$CACHE/$1/root
  if [ -e "$dir/installed" ]; then say "$rel: install done before ($dir/install.log)"; return; fi
  chroot_mount "$root"
  copy_tree "$root"
  local_cas "$root"
  emulation_env "$root"
  say "$rel: sudo deploy/install.sh --no-start as user pi in the chroot (log: $dir/install.log)"
  local rc=0
  timed "$rel install" in_chroot "$root" /bin/su - pi -w QEMU_CPU,SYSTEMD_OFFLINE -c \
    'cd ~/mask-guard && sudo deploy/install.sh --no-start' > "$dir/install.log" 2>&1 || rc=$?
  chroot_umount "$root"
  tail -5 "$dir/install.log"
  if [ "$rc" -ne 0 ]; then
    result "$rel" install FAIL "install.sh exit $rc: $(grep -E '^(ERROR|E:|mask-guard install: ERROR)' "$dir/install.log" | tail -n 1 | cut -c1-140)"
    die "$rel: install.sh failed (see $dir/install.log)"
  fi
  local py np lite
  py=$(in_chroot "$root" python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  np=$(in_chroot "$root" python3 -c 'import numpy; print(numpy.__version__)')
  lite=$(in_chroot "$root" /opt/mask-guard/venv/bin/python -c \
    'import importlib.metadata as m; print(m.version("ai-edge-litert"), m.version("simpleaudio"))')
  result "$rel" install PASS "install.sh --no-start exit 0; Python $py, system numpy $np, ai-edge-litert/simpleaudio $lite"
  touch "$dir/installed"
}

# ---------------------------------------------------------------- checks (chroot)
pick_images() {  # the same few real images on both sides: scenes with faces of all three classes, a crop
  local d=$DATA/scenes/ilc2021/images
  [ -d "$d" ] || return 0
  # (sed, not head: head's early exit would be a SIGPIPE failure under pipefail)
  find "$d" -maxdepth 1 -name '*.jpg' | sort | sed -n 1,6p
  find "$DATA/faces/masktypes" -name '*.jpg' | sort | sed -n 1,2p
}

stage_checks() {  # stage_checks RELEASE
  local rel=$1 dir=$CACHE/$1 root=$CACHE/$1/root
  local host_py=$REPO/.venv/bin/python host_mg=$REPO/.venv/bin/mask-guard
  [ -x "$host_py" ] || host_py=python3
  [ -x "$host_mg" ] || host_mg=mask-guard
  mkdir -p "$CACHE/x86"
  # This machine's reference, once (models and images do not change between releases).
  if [ ! -s "$CACHE/x86/models.json" ] || [ "$REPO/models" -nt "$CACHE/x86/models.json" ]; then
    (cd "$REPO" && "$host_py" "$HERE/check_models.py" "$REPO/models") > "$CACHE/x86/models.json"
  fi
  chroot_mount "$root"
  copy_tree "$root"
  local out
  out=$(in_chroot "$root" /bin/su - pi -w QEMU_CPU,SYSTEMD_OFFLINE -c \
    '/opt/mask-guard/venv/bin/python ~/mask-guard/tools/emulate/check_models.py /usr/share/mask-guard/models' \
    2> "$dir/models.err") || true
  printf '%s\n' "$out" > "$dir/models.json"
  local verdict
  if verdict=$("$host_py" "$HERE/compare.py" models "$CACHE/x86/models.json" "$dir/models.json"); then
    result "$rel" models PASS "$verdict"
  else
    result "$rel" models FAIL "${verdict:-no output; see $dir/models.err}"
  fi
  local imgs=()
  mapfile -t imgs < <(pick_images)
  if [ ${#imgs[@]} -eq 0 ]; then
    result "$rel" detect SKIP "no images under $DATA (--data DIR)"
  else
    # Images go to the rootfs's /tmp only (never the repo), removed afterwards.
    local t=$root/tmp/mg-images n=0 f base names=()
    rm -rf "$t"; mkdir -p "$t"
    for f in "${imgs[@]}"; do  # numbered, with a shell-safe name (some files have spaces)
      n=$((n + 1)); base=$(basename "$f" | tr -c 'A-Za-z0-9._\n-' '_')
      cp "$f" "$t/$n-$base"; names+=("$n-$base")
    done
    chmod -R a+rX "$t"
    (cd "$t" && "$host_mg" detect --json --config "$REPO/deploy/config.yaml" "${names[@]}") \
      > "$CACHE/x86/detect-$rel.jsonl" 2> "$dir/detect-x86.err" || true
    in_chroot "$root" /bin/su - pi -w QEMU_CPU,SYSTEMD_OFFLINE -c "cd /tmp/mg-images && mask-guard detect --json \
      --config ~/mask-guard/deploy/config.yaml ${names[*]}" > "$dir/detect.jsonl" 2> "$dir/detect.err" || true
    rm -rf "$t"
    if verdict=$("$host_py" "$HERE/compare.py" detect "$CACHE/x86/detect-$rel.jsonl" "$dir/detect.jsonl"); then
      result "$rel" detect PASS "$verdict"
    else
      result "$rel" detect FAIL "${verdict:-no output; see $dir/detect.err}"
    fi
  fi
  chroot_umount "$root"
}

# ---------------------------------------------------------------- boot (systemd-nspawn)
stage_boot() {  # stage_boot RELEASE
  local rel=$1 dir=$CACHE/$1 root=$CACHE/$1/root
  if [ -e "$dir/booted" ]; then say "$rel: boot checks done before (--fresh to redo)"; return; fi
  local clip=$DATA/videos/kf94_tutorial.mp4
  copy_tree "$root"
  # The clip and the checks go to the rootfs temporarily; results come back through a bind mount.
  rm -rf "$root/srv/mg-emulate" "$dir/boot-out"; mkdir -p "$root/srv/mg-emulate" "$dir/boot-out"
  [ -e "$clip" ] && cp "$clip" "$root/srv/mg-emulate/clip.mp4"
  chmod -R a+rX "$root/srv/mg-emulate"
  install -m 0644 "$HERE/mg-emulate-checks.service" "$root/etc/systemd/system/mg-emulate-checks.service"
  ln -sfn /etc/systemd/system/mg-emulate-checks.service \
    "$root/etc/systemd/system/multi-user.target.wants/mg-emulate-checks.service"
  # This boot's results replace the last boot's (the chroot stages' and --system's stay).
  if [ -e "$CACHE/results/$rel.tsv" ]; then
    grep -P '^(install|models|detect|system:[^\t]*)\t' "$CACHE/results/$rel.tsv" > "$CACHE/results/$rel.tsv.tmp" || true
    mv "$CACHE/results/$rel.tsv.tmp" "$CACHE/results/$rel.tsv"
  fi
  say "$rel: booting in systemd-nspawn (emulated systemd; log: $dir/boot.log)"
  local rc=0
  # --keep-unit/--register=no: no systemd or machined needed on this host.
  timed "$rel boot checks" timeout 3000 systemd-nspawn -b -q -D "$root" --register=no --keep-unit \
    --setenv=QEMU_CPU="$QEMU_CPU" --bind="$dir/boot-out:/mg-out" --bind-ro="$REPO/tools/emulate:/mg-tools" \
    > "$dir/boot.log" 2>&1 < /dev/null || rc=$?
  rm -f "$root/etc/systemd/system/multi-user.target.wants/mg-emulate-checks.service" \
    "$root/etc/systemd/system/mg-emulate-checks.service"
  rm -rf "$root/srv/mg-emulate"
  if [ ! -s "$dir/boot-out/results.tsv" ]; then
    result "$rel" boot FAIL "nspawn exit $rc, no results (see $dir/boot.log)"
    return
  fi
  [ -e "$dir/boot-out/done" ] || result "$rel" boot-checks FAIL "incomplete: nspawn exit $rc before the last check (see $dir/boot.log)"
  # What emulated systemd could not set up for any unit (its own console lines).
  local failed
  failed=$(sed 's/\x1b\[[0-9;:]*m//g' "$dir/boot.log" | grep -oE '^[^ ]+\.service: Failed at step [A-Z_]+' | sort -u \
    | sed 's/: Failed at step / /' | awk '{s[$2]=s[$2] " " $1} END {for (k in s) printf "%s:%s; ", k, s[k]}' || true)
  if [ -n "$failed" ]; then
    result "$rel" units-spawn-failures FAIL "failed at step (console): ${failed%; }"
  else
    result "$rel" units-spawn-failures PASS "no unit failed at a spawn step (NAMESPACE, CREDENTIALS, ...)"
  fi
  local check state detail
  while IFS=$'\t' read -r check state detail; do result "$rel" "$check" "$state" "$detail"; done < "$dir/boot-out/results.tsv"
  [ -e "$dir/boot-out/done" ] && touch "$dir/booted"
  return 0
}

# ---------------------------------------------------------------- system (qemu-system-aarch64)
stage_system() {
  "$HERE/system.sh" "$CACHE" "$DATA" "$REPO"
}

# ---------------------------------------------------------------- report
report() {  # a Markdown table: one row per check, a column per release, then the details
  local rels=("$@") r c st d checks
  printf '\n| check |'; for r in "${rels[@]}"; do printf ' %s |' "$r"; done; printf ' detail |\n|---|'
  for r in "${rels[@]}"; do printf -- '---|'; done; printf -- '---|\n'
  checks=$(for r in "${rels[@]}"; do cut -f1 "$CACHE/results/$r.tsv" 2>/dev/null; done | awk '!s[$0]++')
  while read -r c; do
    [ -n "$c" ] || continue
    local details=""
    printf '| %s |' "$c"
    for r in "${rels[@]}"; do
      st=$(awk -F'\t' -v c="$c" '$1==c {s=$2} END {print s}' "$CACHE/results/$r.tsv" 2>/dev/null)
      d=$(awk -F'\t' -v c="$c" '$1==c {s=$3} END {print s}' "$CACHE/results/$r.tsv" 2>/dev/null)
      printf ' %s |' "${st:--}"
      [ -n "$d" ] && details+="$r: ${d//|//}; "
    done
    printf ' %s |\n' "${details%; }"
  done <<< "$checks"
  printf '\nEmulation (qemu-user, QEMU_CPU=%s) checks function, not speed: it says nothing about a Pi'"'"'s speed.\n' "$QEMU_CPU"
}

main() {
  if [ "$REPORT_ONLY" -eq 1 ]; then report "${RELEASES[@]}"; return; fi
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
  mkdir -p "$CACHE"
  say "cache: $CACHE; data: ${DATA:-none}; releases: ${RELEASES[*]}"
  want host && stage_host
  local rel
  for rel in "${RELEASES[@]}"; do
    if [ "$FRESH" -eq 1 ]; then
      rm -rf "${CACHE:?}/$rel/root" "$CACHE/$rel/installed" "$CACHE/$rel/booted" "$CACHE/results/$rel.tsv"
    fi
    want rootfs || continue
    stage_rootfs "$rel"
    want install || continue
    stage_install "$rel"
    want checks || continue
    stage_checks "$rel"
    want boot || continue
    stage_boot "$rel"
  done
  if [ "$SYSTEM" -eq 1 ] && want system; then stage_system; fi
  report "${RELEASES[@]}"
}

main; exit
