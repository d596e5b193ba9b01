"""ociruntime.security.procfs against a reshaped /proc, in a private mount namespace (the kernel
answers; nothing is mocked): the host-side handle (create's user namespace maps, exec's
child) refuses a /proc that is not a procfs root and any file with a mount on its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def in_private_mount_ns(setup: str, code: str) -> subprocess.CompletedProcess:
    """Run `setup` (shell) then `code` (Python, ociruntime importable) in a new mount
    namespace whose mounts do not propagate back."""
    script = f"{setup}\nexec {sys.executable} -c '{code}'"
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-ec", script],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )  # fmt: skip


def test_a_file_mounted_over_a_proc_file_is_refused(tmp_path):
    fake = tmp_path / "fake"
    fake.write_text("0\n")
    result = in_private_mount_ns(
        f"mount --bind {fake} /proc/$$/oom_score_adj",
        "from ociruntime.security import procfs\n"
        "try:\n"
        '    procfs.write("self/oom_score_adj", "7")\n'
        "except OSError as e:\n"
        "    print(e.errno)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["18"]  # EXDEV: a mount on the path
    assert fake.read_text() == "0\n"


def test_a_directory_mounted_over_proc_sys_is_refused(tmp_path):
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "cap_last_cap").write_text("0\n")
    result = in_private_mount_ns(
        f"mount --bind {tmp_path} /proc/sys",
        "from ociruntime.security import procfs\n"
        "try:\n"
        '    procfs.read("sys/kernel/cap_last_cap")\n'
        "except OSError as e:\n"
        "    print(e.errno)\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["18"]


def test_proc_that_is_not_a_procfs_root_is_refused(tmp_path):
    for setup in (f"mount --bind {tmp_path} /proc", "mount --bind /proc/sys /proc"):
        result = in_private_mount_ns(
            setup,
            "from ociruntime.security import procfs\n"
            "try:\n"
            "    procfs.use_host()\n"
            "except OSError as e:\n"
            "    print(e.strerror)\n",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "/proc is not the root of a procfs", setup


def test_private_procfs_ignores_mounts_on_proc():
    """The init's handle: a fresh procfs instance, which no mount on /proc affects."""
    result = in_private_mount_ns(
        "mount -t tmpfs none /proc/sys",
        "from ociruntime.security import procfs\n"
        "procfs.use_private()\n"
        'print(procfs.read("sys/kernel/ostype").decode().strip())\n',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Linux"]
