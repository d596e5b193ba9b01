"""Issue #9 finding 4, /dev/console (CVE-2025-52565): with process.terminal the pty slave
is bound on /dev/console by fd (the master's TIOCGPTPEER, open_tree + move_mount), onto a
/dev/console opened without following symlinks. Before, the slave was opened and then
bound by its path /dev/pts/N: a name in a directory the container's config (or its image)
may control, so what got bound on /dev/console could be swapped for a symlink between the
two, e.g. to /proc/sys/kernel/core_pattern, which the container could then write.

The race is reproduced, not simulated: /dev/pts is a directory of the bundle (the real
devpts at /dev/pts/pts, `ptmx` and `0` symlinks into it) and a process on the host flips
`0` between the real slave and /proc/sys/kernel/ostype (harmless to read) while the
runtime creates containers. /dev/console must be the devpts slave every time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from testkit.recvtty import ConsoleSocket

from .common import one_line_error

#: Before the fix, of 80 attempts 10 showed "proc" (the exploit: /dev/console was the
#: procfs file) and 42 "refused" (the slave was opened through the planted symlink): 12
#: attempts all clean happen with probability 0.35**12, ~3e-6.
ATTEMPTS = 12
FLIPPER = """
import os, sys
d = sys.argv[1]
good, evil = os.path.join(d, ".good"), os.path.join(d, ".evil")
while True:
    os.symlink("pts/0", good); os.rename(good, os.path.join(d, "0"))
    os.symlink("/proc/sys/kernel/ostype", evil); os.rename(evil, os.path.join(d, "0"))
"""


def racy_pts_bundle(bundle) -> Path:
    """/dev/pts from the bundle, the container's own devpts one level down."""
    pts = bundle.path / "pts"
    (pts / "pts").mkdir(parents=True)
    os.symlink("pts/ptmx", pts / "ptmx")
    os.symlink("pts/0", pts / "0")
    mounts = bundle.config["mounts"]
    index = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev/pts")
    devpts = dict(mounts[index], destination="/dev/pts/pts")
    mounts[index] = {"destination": "/dev/pts", "type": "bind", "source": str(pts),
                     "options": ["rbind"]}  # fmt: skip
    mounts.insert(index + 1, devpts)
    bundle.config["process"]["terminal"] = True
    bundle.write()
    return pts


def console_fstype(pid: int) -> str:
    """The filesystem mounted on the container's /dev/console, from the host."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == "/dev/console":
            return fields[fields.index("-") + 1]
    return "none"


def race(create, delete, bundle, tmp_path: Path) -> list[str]:
    """`create(socket, bundle_path) -> (cid, pid or None)` ATTEMPTS times while the flipper
    runs; the /dev/console filesystem of each container ("refused" where create failed).
    `delete(cid)` removes each."""
    pts = racy_pts_bundle(bundle)
    flipper = subprocess.Popen([sys.executable, "-c", FLIPPER, str(pts)])
    seen = []
    try:
        for n in range(ATTEMPTS):
            with ConsoleSocket(str(tmp_path / f"c{n}.sock")) as listener:
                cid, pid = create(listener.path, str(bundle.path))
                if pid is None:
                    seen.append("refused")
                    continue
                console = listener.accept()
                seen.append(console_fstype(pid))
                console.close()
                delete(cid)
    finally:
        flipper.send_signal(signal.SIGKILL)
        flipper.wait()
    return seen


def test_console_is_bound_by_fd_under_a_symlink_race(runtime, make_bundle, tmp_path):
    """Every container gets the devpts slave on /dev/console. Before the fix some got the
    procfs file ("proc"), and others failed ("refused": the runtime opened the slave by
    its name and got the planted symlink's target)."""

    def create(socket: str, path: str) -> tuple[str, int | None]:
        cid = runtime.new_id()
        result = runtime("create", "--console-socket", socket, "--bundle", path, cid)
        print("ERR", result.stderr.strip()) if result.returncode else None
        return cid, (runtime.state(cid)["pid"] if result.returncode == 0 else None)

    seen = race(create, lambda cid: runtime("delete", "--force", cid), make_bundle(["true"]),
                tmp_path)  # fmt: skip
    assert set(seen) == {"devpts"}, seen


def console_symlink_bundle(make_bundle):
    """A terminal container whose /dev is bound from the image, its console a symlink to
    /etc/hostname (the same for runc in test_runc_reference)."""
    bundle = make_bundle(["true"])
    dev = bundle.path / "dev"
    dev.mkdir()
    os.mknod(dev / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink("pts/ptmx", dev / "ptmx")
    os.symlink("/etc/hostname", dev / "console")
    mounts = bundle.config["mounts"]
    index = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev")
    mounts[index] = {"destination": "/dev", "type": "bind", "source": str(dev),
                     "options": ["rbind"]}  # fmt: skip
    bundle.config["process"]["terminal"] = True
    return bundle.write()


def test_console_symlink_is_refused(runtime, make_bundle, tmp_path):
    """An image whose /dev/console is a symlink: refused (a bind would follow it)."""
    bundle = console_symlink_bundle(make_bundle)
    with ConsoleSocket(str(tmp_path / "c.sock")) as listener:
        result = runtime("create", "--console-socket", listener.path, "--bundle",
                         str(bundle.path), runtime.new_id())  # fmt: skip
    line = one_line_error(result)
    assert line.endswith(
        "config.json: /process/terminal: /dev/console: exists and is a symbolic link"
    )
