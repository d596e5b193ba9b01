#!/bin/sh
# The cgroup v2 lane: run this repo's pytest in a small qemu VM (TCG, 2 vCPUs) whose kernel
# (Debian's, from linux-image-amd64) boots with cgroup_no_v1=all, so every controller is
# on the v2 hierarchy. The guest's root is this host's / over 9p (read-only) with a tmpfs
# overlay, so the repo and its .venv are at the same paths; pytest runs there as root, its
# output streams to this stdout, and the script exits with pytest's exit code.
#
# Usage: tools/vm-lane.sh [pytest args...]      e.g. tools/vm-lane.sh tests/test_lifecycle.py -q
# Environment: VM_LANE_TIMEOUT (seconds, default 900: then qemu is killed and the script
# fails with exit 124), VM_LANE_MEM (MiB, default 2048), VM_LANE_CPUS (default 2),
# VM_LANE_KEEP=1 keeps the work dir (boot log, initramfs) and prints its path,
# VM_LANE_APPEND adds to the kernel command line (e.g. "loglevel=7" for a verbose boot log).
set -eu
cd "$(dirname "$0")/.."
repo=$(pwd -P)
timeout_s=${VM_LANE_TIMEOUT:-900}

# What the lane needs on the host: the emulator, a Debian kernel with its modules, cpio
# and busybox-static for the initramfs; the venv and the clients as tools/test.sh has them.
. tools/debs.sh
install_missing_debs vm-lane --no-install-recommends qemu-system-x86 linux-image-amd64 cpio \
    busybox-static criu
OCIRUNTIME_EXTRA_DEBS="gcc libc6-dev" tools/setup.sh
tools/install-clients.sh  # the guest cannot reach apt: the client tests need them now

# The newest Debian kernel whose modules are installed (not the host's own kernel).
kver=""
for k in /boot/vmlinuz-*; do
    v=${k#/boot/vmlinuz-}
    [ -d "/lib/modules/$v" ] && kver=$(printf '%s\n%s\n' "$kver" "$v" | sort -V | tail -n 1)
done
[ -n "$kver" ] || { echo "vm-lane: no /boot/vmlinuz-* with modules in /lib/modules" >&2; exit 1; }

work=$(mktemp -d /tmp/vm-lane.XXXXXX)
cleanup() { [ "${VM_LANE_KEEP:-}" = 1 ] && echo "vm-lane: work dir kept: $work" >&2 || rm -rf "$work"; }
trap cleanup EXIT

# The initramfs: busybox, the modules that reach the root (virtio PCI, 9p, overlay, the
# virtio console) in dependency order, and tools/vm/init. Built each run (well under 1 s).
stage=$work/initramfs
mkdir -p "$stage/bin" "$stage/modules" "$stage/dev" "$stage/proc" "$stage/sys"
cp /bin/busybox "$stage/bin/busybox"
cp tools/vm/init "$stage/init"
mknod "$stage/dev/console" c 5 1
for m in virtio_pci 9pnet_virtio 9p overlay virtio_console; do
    modprobe -S "$kver" --show-depends "$m"
done | awk '$1 == "insmod" && !seen[$2]++ { print $2 }' | while read -r ko; do
    cp "$ko" "$stage/modules/"
    basename "$ko" >>"$stage/modules.order"
done
(cd "$stage" && find . | cpio -o -H newc --quiet) >"$work/initrd.cpio"

# The results share: the guest reads its init and pytest's command, writes the exit code.
mkdir "$work/results"
# VM_LANE_INIT: another guest init in tools/vm/ (tools/vm-systemd-lane.sh: systemd_init.py)
printf '%s\n' "$repo/tools/vm/${VM_LANE_INIT:-guest_init.py}" >"$work/results/init"
printf '%s\0' "$repo" "$@" >"$work/results/args"
# pytest in the guest writes to a terminal (the virtio console): colour only if we do.
if [ -t 1 ]; then echo 1; else echo 0; fi >"$work/results/color"

echo "vm-lane: booting Debian $kver (TCG, ${VM_LANE_CPUS:-2} vCPUs, ${VM_LANE_MEM:-2048} MiB, cgroup_no_v1=all), timeout ${timeout_s} s" >&2
start=$(date +%s.%N)
status=0
# /dev/kvm exists here but does not work (hangs or aborts), so TCG: software emulation.
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp "${VM_LANE_CPUS:-2}" -m "${VM_LANE_MEM:-2048}" \
    -nodefaults -no-user-config -nographic -no-reboot -nic none \
    -kernel "/boot/vmlinuz-$kver" -initrd "$work/initrd.cpio" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 cgroup_no_v1=all ${VM_LANE_APPEND:-}" \
    -serial "file:$work/boot.log" \
    -chardev stdio,id=out -device virtio-serial-pci -device virtconsole,chardev=out \
    -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap \
    -virtfs "local,path=$work/results,mount_tag=results,security_model=passthrough" \
    </dev/null &
qemu=$!
# Interrupted: stop qemu (timeout passes the signal on) before the work dir goes.
trap 'kill "$qemu" 2>/dev/null; wait "$qemu"; exit 130' INT TERM
wait "$qemu" || status=$?
trap - INT TERM
elapsed=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

# (without the firmware's terminal escapes)
boot_log_tail() { tail -n 30 "$work/boot.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' >&2; }
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "vm-lane: FAILED: the guest did not finish within ${timeout_s} s; qemu was killed. Boot log tail:" >&2
    boot_log_tail
    exit 124
fi
if [ ! -s "$work/results/rc" ]; then
    echo "vm-lane: FAILED: the guest powered off without pytest's exit code (qemu exit $status). Boot log tail:" >&2
    boot_log_tail
    exit 125
fi
rc=$(cat "$work/results/rc")
cat "$work/results/notes" >&2 2>/dev/null || true
echo "vm-lane: qemu ran ${elapsed} s (wall clock, boot + tests + power-off); pytest exit code $rc" >&2
exit "$rc"
