"""The README's examples leave the checkout as it was (issue #13: `spec` and the example
bundle used to write into it): tools/run-example.sh and `spec` in a temporary bundle dir."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testkit.bundles import OCIRUNTIME, REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs a container: root")


def checkout_status() -> str:
    return subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--ignored"],
                          capture_output=True, text=True, check=True).stdout


def test_run_example_leaves_checkout_clean() -> None:
    before = checkout_status()
    p = subprocess.run([REPO / "tools" / "run-example.sh"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("hello from ociruntime-example: pid 1, uid 0, root is bin dev")
    assert checkout_status() == before


def test_spec_in_temp_bundle(tmp_path: Path) -> None:
    """The README's recipe: build-rootfs.sh and `spec` in a fresh directory write there."""
    before = checkout_status()
    subprocess.run([REPO / "bundles" / "build-rootfs.sh", "rootfs"], cwd=tmp_path, check=True)
    subprocess.run([OCIRUNTIME, "spec"], cwd=tmp_path, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "rootfs"]
    assert checkout_status() == before
