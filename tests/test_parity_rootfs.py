"""Parity with runc 1.1.5 (issue #11 items 12, 13, 14, 21 and the error words of 19): the
same bundle runs under ociruntime and under runc (`/usr/sbin/runc`, the reference), and
what a container, a hook or an error line shows is compared with runc's."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from conftest import Bundle

RUNC = "/usr/sbin/runc"

pytestmark = pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is not installed")


def run_runc(bundle: Bundle, *args: str, cwd: str = "/") -> subprocess.CompletedProcess:
    """`runc run` of the bundle (a private --root), from `cwd`; deleted afterwards."""
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    cid = "ref-" + root[-8:]
    try:
        return subprocess.run(
            [RUNC, "--root", root, "run", *args, "--bundle", str(bundle.path), cid],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=cwd,
        )  # fmt: skip
    finally:
        subprocess.run([RUNC, "--root", root, "delete", "--force", cid], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def run_ours(runtime, bundle: Bundle, *args: str, cwd: str = "/"):
    """`ociruntime run` of the bundle, from `cwd` (the runtime fixture cleans up)."""
    return runtime("run", *args, "--bundle", str(bundle.path), runtime.new_id(), cwd=cwd)


def both(runtime, bundle: Bundle, *args: str, cwd: str = "/") -> tuple:
    """(ours, runc's) results of the same bundle."""
    return run_ours(runtime, bundle, *args, cwd=cwd), run_runc(bundle, *args, cwd=cwd)


def runc_message(stderr: str) -> str:
    """runc's error line (logrus text) without its time and level."""
    line = [x for x in stderr.splitlines() if "level=error" in x][-1]
    return line.split('msg="', 1)[1].rsplit('"', 1)[0]


# --- item 12: a read-only /dev (and tmpfs) is filled first, made read-only last -------

_SHOW_RO = (
    'awk \'$5=="/dev"||$5=="/tmp"||$5=="/tmp/sub"{print $5, $6}\' /proc/self/mountinfo;'
    " ls /dev; touch /dev/x 2>/dev/null; echo dev-write=$?;"
    " touch /tmp/x 2>/dev/null; echo tmp-write=$?"
)


def test_read_only_dev_and_tmpfs_are_filled_then_read_only(runtime, make_bundle):
    """runc mounts a read-only /dev read-write, makes /dev/pts, /dev/shm, /dev/mqueue, the
    nodes and links in it, and remounts it read-only last; so for a read-only tmpfs in
    which a later entry makes its mountpoint."""
    bundle = make_bundle(["sh", "-c", _SHOW_RO])
    mounts = bundle.config["mounts"]
    next(m for m in mounts if m["destination"] == "/dev")["options"].append("ro")
    mounts += [
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]},
        {"destination": "/tmp/sub", "type": "tmpfs", "source": "tmpfs"},
    ]
    bundle.write()
    ours, runc = both(runtime, bundle)
    assert runc.returncode == 0, runc.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == runc.stdout
    lines = ours.stdout.splitlines()
    assert "/dev ro,nosuid" in lines and "/tmp ro,relatime" in lines
    assert {"pts", "shm", "mqueue", "null", "ptmx", "fd"} <= set(lines)
    assert "dev-write=1" in lines and "tmp-write=1" in lines
