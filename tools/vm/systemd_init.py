"""PID 1 of the systemd lane's guest (see tools/vm-systemd-lane.sh), for a moment: it
writes two units into the root overlay and execs systemd, which stays PID 1.

The guest's root is the host's / (read-only 9p under a tmpfs overlay, tools/vm/init):
booted normally, systemd would start every service the host enables (containerd, docker,
databases...). So it boots `vm-lane.target` instead (systemd.unit= on the kernel command
line), which wants only what the tests need: the D-Bus system bus (dbus.socket, which
brings sysinit.target: journald, tmpfiles...) and `vm-lane.service`, which runs
tools/vm/guest_init.py, the cgroup v2 lane's runner: pytest as root, its output to the
host's terminal, the exit code to the results share, then power-off.

Runs under the host's /usr/bin/python3 -I after switch_root; everything is mounted.
"""

import os
import sys

SYSTEMD = "/lib/systemd/systemd"
UNITS = "/etc/systemd/system"  # in the overlay: the host never sees them

TARGET = """\
[Unit]
Description=ociruntime systemd lane
Requires=vm-lane.service
Wants=dbus.socket
AllowIsolate=yes
"""

SERVICE = """\
[Unit]
Description=ociruntime systemd lane: pytest
DefaultDependencies=no
Wants=dbus.socket
After=dbus.socket systemd-journald.socket

[Service]
Type=simple
ExecStart=/usr/bin/python3 -I {runner}
StandardInput=null
StandardOutput=journal
# pytest and the runtime make cgroups below this service's own (cgroupfs tests).
Delegate=yes
TimeoutStartSec=infinity
"""


def main() -> None:
    runner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "guest_init.py")
    os.makedirs(UNITS, exist_ok=True)
    with open(os.path.join(UNITS, "vm-lane.target"), "w") as f:
        f.write(TARGET)
    with open(os.path.join(UNITS, "vm-lane.service"), "w") as f:
        f.write(SERVICE.format(runner=runner))
    # The host may be a container (this one has /.dockerenv): systemd would then take the
    # VM for one too, skip what a container does not do and ignore the kernel command line.
    # The file goes from the overlay only.
    for marker in ("/.dockerenv", "/run/.containerenv"):
        if os.path.exists(marker):
            os.unlink(marker)
    if not os.path.exists(SYSTEMD):
        sys.stderr.write(f"systemd lane: no {SYSTEMD} (install Debian's systemd)\n")
        sys.exit(1)  # PID 1 exiting: the kernel panics, qemu (-no-reboot) exits
    # The unit on its command line as well as the kernel's: systemd reads the latter only
    # when it knows it runs on a machine of its own.
    os.execv(SYSTEMD, [SYSTEMD, "--unit=vm-lane.target", "--show-status=0"])


if __name__ == "__main__":
    main()
