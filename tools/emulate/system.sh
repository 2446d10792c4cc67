#!/bin/bash
# pi-emulate --system: boot the installed Bookworm root file system in qemu-system-aarch64 (-M virt
# -cpu cortex-a72) with Debian's own arm64 kernel, so seccomp and namespaces are a real kernel's, and
# run boot-checks.sh there (the unit with its full hardening, systemd-analyze security).
#   system.sh CACHE DATA REPO [kernel]   (called by tools/pi-emulate.sh, which sets up the host first;
#                                        "kernel": only prepare the kernel, which needs just the rootfs stage)
set -euo pipefail
CACHE=$1 DATA=$2 REPO=$3
HERE=$REPO/tools/emulate
DIR=$CACHE/bookworm
ROOT=$DIR/root
IMG=$DIR/system.img
OUT=$DIR/system-out
RES=$CACHE/results/bookworm.tsv
export QEMU_CPU=${QEMU_CPU:-cortex-a72}

say() { printf '[pi-emulate system %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
result() {
  mkdir -p "$CACHE/results"; touch "$RES"
  grep -v -P "^\Q$1\E\t" "$RES" > "$RES.tmp" || true
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$RES.tmp"; mv "$RES.tmp" "$RES"
  say "bookworm: $1: $2 ($3)"
}
[ -e "$DIR/base.tar" ] || { result system:boot SKIP "rootfs stage not done for bookworm"; exit 0; }
command -v qemu-system-aarch64 >/dev/null || { result system:boot SKIP "qemu-system-aarch64 not installed"; exit 0; }

# 1. Debian's arm64 kernel and an initramfs, installed once in a scratch copy of the debootstrapped base
#    (emulated apt, several minutes; kept apart so it can run while the other stages use the root).
KROOT=$DIR/kernel-root
if [ ! -e "$DIR/kernel-installed" ]; then
  say "installing linux-image-arm64 in a copy of base.tar (log: $DIR/kernel.log)"
  if [ ! -e "$KROOT/etc/debian_version" ]; then
    rm -rf "$KROOT"; mkdir -p "$KROOT"; tar -C "$KROOT" --numeric-owner -xpf "$DIR/base.tar"
  fi
  # Only the modules a virt machine needs to mount its root: MODULES=most copies some thousand
  # modules, one emulated process each, which takes far longer than the whole boot.
  mkdir -p "$KROOT/etc/initramfs-tools/conf.d" "$KROOT/usr/share/initramfs-tools/modules.d"
  echo MODULES=list > "$KROOT/etc/initramfs-tools/conf.d/mg-emulate.conf"
  printf '%s\n' virtio_mmio virtio_pci virtio_blk virtio_net virtio_rng ext4 > \
    "$KROOT/usr/share/initramfs-tools/modules.d/mg-emulate"
  cp -L /etc/resolv.conf "$KROOT/etc/resolv.conf"
  mount -t proc proc "$KROOT/proc"; mount --rbind /sys "$KROOT/sys"; mount --rbind /dev "$KROOT/dev"
  trap 'umount -lR "$KROOT/dev" "$KROOT/sys" "$KROOT/proc" 2>/dev/null || true' EXIT
  rc=0
  chroot "$KROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin QEMU_CPU="$QEMU_CPU" DEBIAN_FRONTEND=noninteractive \
    sh -c 'dpkg --configure -a; apt-get update -q && apt-get install -y -q --no-install-recommends linux-image-arm64 initramfs-tools zstd' \
    > "$DIR/kernel.log" 2>&1 || rc=$?
  umount -lR "$KROOT/dev" "$KROOT/sys" "$KROOT/proc" 2>/dev/null || true
  trap - EXIT
  [ $rc -eq 0 ] || { result system:boot FAIL "linux-image-arm64 install failed: $(tail -n 1 "$DIR/kernel.log")"; exit 0; }
  touch "$DIR/kernel-installed"
fi
[ "${4:-}" = kernel ] && exit 0
vmlinuz=$(ls "$KROOT"/boot/vmlinuz-* | sort -V | tail -n 1)
initrd=$(ls "$KROOT"/boot/initrd.img-* | sort -V | tail -n 1)
kver=${vmlinuz##*/vmlinuz-}
[ -e "$vmlinuz" ] && [ -e "$initrd" ] && [ -d "$KROOT/lib/modules/$kver" ] \
  || { result system:boot FAIL "no vmlinuz/initrd/modules in $KROOT"; exit 0; }

[ -e "$DIR/installed" ] || { result system:boot SKIP "install stage not done for bookworm"; exit 0; }
# 2. The kernel's modules, the checks, the clip and the tree in the image; the results come back out of it with debugfs.
rm -rf "$ROOT/mg-tools" "$ROOT/mg-out" "$ROOT/srv/mg-emulate"
mkdir -p "$ROOT/mg-tools" "$ROOT/mg-out" "$ROOT/srv/mg-emulate"
rm -rf "$ROOT/lib/modules/$kver"; mkdir -p "$ROOT/lib/modules"; cp -a "$KROOT/lib/modules/$kver" "$ROOT/lib/modules/"
cp "$HERE"/boot-checks.sh "$ROOT/mg-tools/"
[ -e "$DATA/videos/kf94_tutorial.mp4" ] && cp "$DATA/videos/kf94_tutorial.mp4" "$ROOT/srv/mg-emulate/clip.mp4"
chmod -R a+rX "$ROOT/srv/mg-emulate" "$ROOT/mg-tools"
install -m 0644 "$HERE/mg-emulate-checks.service" "$ROOT/etc/systemd/system/mg-emulate-checks.service"
mkdir -p "$ROOT/etc/systemd/system/mg-emulate-checks.service.d"
printf '[Service]\nEnvironment=MG_EMULATE_MODE=system\n' > "$ROOT/etc/systemd/system/mg-emulate-checks.service.d/mode.conf"
ln -sfn /etc/systemd/system/mg-emulate-checks.service "$ROOT/etc/systemd/system/multi-user.target.wants/mg-emulate-checks.service"
printf '/dev/vda / ext4 rw,relatime 0 1\n' > "$ROOT/etc/fstab"
# Network for install.sh's pip (Pi OS has it set up; a debootstrapped root has none): DHCP from
# qemu's user network, whose DNS is 10.0.2.3. Removed from the root again after mkfs.
mkdir -p "$ROOT/etc/systemd/network" "$ROOT/etc/systemd/system/multi-user.target.wants"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' > "$ROOT/etc/systemd/network/80-mg-emulate.network"
NETWORKD=$ROOT/etc/systemd/system/multi-user.target.wants/systemd-networkd.service
added_networkd=0
[ -e "$NETWORKD" ] || { ln -s /lib/systemd/system/systemd-networkd.service "$NETWORKD"; added_networkd=1; }
cp "$ROOT/etc/resolv.conf" "$DIR/resolv.conf.saved" 2>/dev/null || true
echo 'nameserver 10.0.2.3' > "$ROOT/etc/resolv.conf"
size_mb=$(( $(du -sm "$ROOT" | cut -f1) + 1536 ))
rm -f "$IMG"
mkfs.ext4 -q -F -L mgroot -d "$ROOT" "$IMG" "${size_mb}M"
rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/mg-emulate-checks.service" "$ROOT/etc/systemd/system/mg-emulate-checks.service"
rm -f "$ROOT/etc/systemd/network/80-mg-emulate.network"
[ "$added_networkd" -eq 1 ] && rm -f "$NETWORKD"
cp "$DIR/resolv.conf.saved" "$ROOT/etc/resolv.conf" 2>/dev/null || true
rm -rf "$ROOT/lib/modules/$kver" "$ROOT/etc/systemd/system/mg-emulate-checks.service.d" "$ROOT/mg-tools" "$ROOT/mg-out" "$ROOT/srv/mg-emulate"

# 3. Boot. The serial console is the log; the checks power the machine off when done.
say "booting qemu-system-aarch64 -M virt -cpu cortex-a72 ($(basename "$vmlinuz"); console log: $DIR/system-console.log)"
t0=$SECONDS rc=0
timeout 3000 qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 3072 -accel tcg,thread=multi -nographic \
  -kernel "$vmlinuz" -initrd "$initrd" -append "root=/dev/vda rw console=ttyAMA0 systemd.show_status=1" \
  -drive file="$IMG",format=raw,if=virtio -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= -no-reboot \
  < /dev/null > "$DIR/system-console.log" 2>&1 || rc=$?
say "qemu-system exit $rc after $(( (SECONDS - t0) / 60 )) min of emulation wall time (not Pi speed)"
rm -rf "$OUT"; mkdir -p "$OUT"
# This boot's results replace the last one's.
if [ -e "$RES" ]; then grep -v -P '^system:' "$RES" > "$RES.tmp" || true; mv "$RES.tmp" "$RES"; fi
debugfs -R "rdump /mg-out $OUT" "$IMG" >/dev/null 2>&1 || true
if [ -s "$OUT/mg-out/results.tsv" ]; then
  while IFS=$'\t' read -r check state detail; do result "system:$check" "$state" "$detail"; done < "$OUT/mg-out/results.tsv"
else
  reached=$(grep -aoE 'Reached target [^.]*|Kernel panic[^\r]*|Welcome to [^!]*' "$DIR/system-console.log" | tail -n 1)
  result system:boot FAIL "qemu exit $rc, no results; console's last milestone: ${reached:-none} (see $DIR/system-console.log)"
fi
