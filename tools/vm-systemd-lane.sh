#!/bin/sh
# The systemd lane: the cgroup v2 lane's VM (tools/vm-lane.sh: qemu TCG, Debian's 6.1
# kernel, every controller on cgroup v2, the host's / read-only under a tmpfs overlay),
# but with systemd as PID 1, so that `--systemd-cgroup` has a systemd to talk to. The
# guest boots vm-lane.target only (tools/vm/systemd_init.py writes it into the overlay):
# the D-Bus system bus, journald and the rest of sysinit.target, and a service that runs
# pytest; none of the host's enabled services.
#
# Usage: tools/vm-systemd-lane.sh [pytest args...]
#     e.g. tools/vm-systemd-lane.sh tests/test_systemd_cgroup.py -q
# Environment: as tools/vm-lane.sh (VM_LANE_TIMEOUT, VM_LANE_MEM, VM_LANE_CPUS,
# VM_LANE_KEEP, VM_LANE_APPEND).
set -eu
cd "$(dirname "$0")/.."
# systemd itself (not systemd-sysv: this host's init stays what it is) and dbus-daemon,
# for the guest, which sees this host's files.
. tools/debs.sh
install_missing_debs vm-systemd-lane --no-install-recommends systemd dbus
export VM_LANE_INIT=systemd_init.py
# fstab=no: the host's /etc/fstab is not the guest's.
export VM_LANE_APPEND="systemd.unit=vm-lane.target systemd.show_status=0 fstab=no ${VM_LANE_APPEND:-}"
exec tools/vm-lane.sh "$@"
