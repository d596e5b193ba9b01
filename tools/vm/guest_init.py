"""PID 1 of the cgroup v2 lane's guest (see tools/vm-lane.sh): runs the host's pytest
command in the repo as root, streams its output to the host, reaps orphans as a real init
does, writes pytest's exit code to the results share and powers the machine off.

It runs under the host's /usr/bin/python3 after switch_root; the initramfs (tools/vm/init)
has mounted everything. The host put the command in the results share: `args` holds the
repo directory, then pytest's arguments, NUL-separated.
"""

import ctypes
import os
import subprocess
import sys
import termios
import time
import traceback

RESULTS = "/run/vm-lane"
UPPER = "/run/vm-lane-upper/data"  # the root overlay's upper layer (tools/vm/init)
CONSOLE = "/dev/hvc0"  # a virtio console that qemu connects to its stdout
RB_POWER_OFF = 0x4321FEDC


def open_console() -> int:
    """The stream to the host, without the tty's newline translation (pytest's output
    arrives byte for byte)."""
    fd = os.open(CONSOLE, os.O_WRONLY | os.O_NOCTTY)
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


def enable_controllers() -> list[str]:
    """Delegate every controller to the root's children, as systemd does on a v2 host, so
    a container's cgroup has the memory, pids, cpu... interface files."""
    with open("/sys/fs/cgroup/cgroup.controllers") as f:
        controllers = f.read().split()
    with open("/sys/fs/cgroup/cgroup.subtree_control", "w") as f:
        f.write(" ".join("+" + c for c in controllers))
    return controllers


def run(console: int) -> int:
    with open(os.path.join(RESULTS, "args"), "rb") as f:
        repo, *args = [a.decode() for a in f.read().split(b"\0")[:-1]]

    def say(text: str) -> None:
        os.write(console, f"vm-lane: {text}\n".encode())

    say(f"guest up after {time.clock_gettime(time.CLOCK_BOOTTIME):.1f} s (guest clock); "
        f"cgroup v2 controllers: {' '.join(enable_controllers())}")  # fmt: skip
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OCIRUNTIME_VM_LANE": "1",
    }
    with open(os.path.join(RESULTS, "color")) as f:
        env["PY_COLORS"] = f.read().strip()
    started = time.monotonic()
    child = subprocess.Popen(
        # no cacheprovider: its .pytest_cache would only land in the guest's overlay
        [os.path.join(repo, ".venv/bin/python"), "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=repo, env=env, stdin=subprocess.DEVNULL, stdout=console, stderr=console,
    )  # fmt: skip
    while True:  # reap every orphan until pytest itself is done
        pid, status = os.wait()
        if pid == child.pid:
            code = os.waitstatus_to_exitcode(status)
            break
    # After pytest's summary nothing more on its stream (CI reads the closing line): the
    # host prints these notes on its stderr.
    notes = [f"pytest exited {code} after {time.monotonic() - started:.1f} s (guest clock)"]
    written = written_under(repo)
    if written:
        listed = ", ".join(f"{top} ({n} files)" for top, n in sorted(written.items()))
        notes.append(f"the tests wrote into the repo (kept in the guest's overlay only): {listed}")
    with open(os.path.join(RESULTS, "notes"), "w") as f:
        f.write("".join(f"vm-lane: {note}\n" for note in notes))
    return code


def written_under(repo: str) -> dict[str, int]:
    """What the run created, changed or deleted in the repo (the overlay's upper layer
    keeps it), as files per top-level entry of the repo."""
    top = UPPER + repo
    counts: dict[str, int] = {}
    for dirpath, _, filenames in os.walk(top):
        for name in filenames:
            entry = os.path.relpath(os.path.join(dirpath, name), top).split("/")[0]
            entry += "" if dirpath == top else "/"
            counts[entry] = counts.get(entry, 0) + 1
    return counts


def main() -> None:
    console = open_console()
    try:
        code = run(console)
    except BaseException:
        os.write(console, traceback.format_exc().encode())
        code = 255
    with open(os.path.join(RESULTS, "rc"), "w") as f:
        f.write(f"{code}\n")
    os.sync()
    ctypes.CDLL(None, use_errno=True).reboot(RB_POWER_OFF)
    sys.exit(1)  # reboot failed: the kernel panics, and qemu (-no-reboot) exits


if __name__ == "__main__":
    main()
