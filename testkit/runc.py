"""The reference runtime: one bundle run under runc, for tests that compare with it."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest


def run_bundle(bundle_path: str) -> subprocess.CompletedProcess:
    """`runc run` of the bundle in a private --root (removed after), stdin /dev/null;
    the test is skipped where runc is not installed."""
    if not shutil.which("runc"):
        pytest.skip("runc (the reference runtime) is not installed")
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    try:
        return subprocess.run(
            ["runc", "--root", root, "run", "--bundle", bundle_path, "ref-" + root[-8:]],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
