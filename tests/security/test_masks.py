"""Issue #9 finding 4, maskedPaths (CVE-2025-31133): a masked file gets the null device,
bound by fd from a /dev/null checked to be char 1:3, never whatever an image's /dev/null
points to.

The attack: /dev bound from the image (a directory of the bundle) whose `null` is a
symlink to /proc/sys/kernel/ostype. Masking bound "/dev/null" by path, so the masked
/proc/timer_list showed `Linux` (and a writable target would have been writable).
"""

from __future__ import annotations

import os
from pathlib import Path

from .common import one_line_error


def dev_from_bundle(bundle, null: str) -> Path:
    """Replace the /dev tmpfs with an rbind of the bundle's `dev` directory, whose `null`
    is `null`: "symlink" (to /proc/sys/kernel/ostype), "file", "device" (a real 1:3)."""
    dev = bundle.path / "dev"
    dev.mkdir()
    if null == "symlink":
        os.symlink("/proc/sys/kernel/ostype", dev / "null")
    elif null == "file":
        (dev / "null").write_text("")
    else:
        os.mknod(dev / "null", 0o666 | 0o020000, os.makedev(1, 3))
    os.symlink("pts/ptmx", dev / "ptmx")
    mounts = bundle.config["mounts"]
    index = next(i for i, m in enumerate(mounts) if m["destination"] == "/dev")
    mounts[index] = {"destination": "/dev", "type": "bind", "source": str(dev),
                     "options": ["rbind"]}  # fmt: skip
    bundle.write()
    return dev


def test_masked_file_through_a_symlinked_dev_null_is_refused(runtime, make_bundle):
    bundle = make_bundle(["cat", "/proc/timer_list"])
    assert "/proc/timer_list" in bundle.config["linux"]["maskedPaths"]
    dev_from_bundle(bundle, "symlink")
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert "Linux" not in result.stdout  # before: the mask showed ostype
    line = one_line_error(result)
    assert "config.json: /linux/maskedPaths/" in line
    assert line.endswith("/dev/null is not the null device: it is or passes through a symlink")


def test_masked_file_with_a_regular_dev_null_is_refused(runtime, make_bundle):
    bundle = make_bundle(["cat", "/proc/timer_list"])
    dev_from_bundle(bundle, "file")
    line = one_line_error(runtime("run", "--bundle", str(bundle.path), runtime.new_id()))
    assert line.endswith("/dev/null is not the null device: not a character device")


def test_masks_from_a_genuine_dev_null_in_a_bound_dev(runtime, make_bundle):
    """The image's /dev may hold a real null device: masks then work as always."""
    bundle = make_bundle(["sh", "-c", "wc -c < /proc/timer_list; stat -c %t:%T /proc/timer_list"])
    dev_from_bundle(bundle, "device")
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1:3"]


def test_default_masks_still_read_empty(runtime, make_bundle):
    bundle = make_bundle(["sh", "-c", "wc -c < /proc/timer_list; ls -A /proc/scsi | wc -l"])
    result = runtime("run", "--bundle", str(bundle.path), runtime.new_id())
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "0"
