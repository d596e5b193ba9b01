"""Helpers shared by the security tests: bundle surgery and runc 1.1.5 as the reference."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import pytest

from testkit.processes import Result, run_to_files

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def add_mount(bundle, entry: dict) -> int:
    """Append a mounts entry; returns its index (for the error's JSON pointer)."""
    bundle.config["mounts"].append(entry)
    bundle.write()
    return len(bundle.config["mounts"]) - 1


def bind(source: str | Path, destination: str, *options: str) -> dict:
    return {"destination": destination, "type": "bind", "source": str(source),
            "options": ["bind", *options]}  # fmt: skip


def one_line_error(result) -> str:
    """The refusal the user sees: exit 1 and exactly one line on stderr."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


class Runc:
    """runc 1.1.5 with a private --root, for recording what the reference does."""

    def __init__(self) -> None:
        if not os.access(RUNC, os.X_OK):
            pytest.skip("runc (the reference runtime) is not installed")
        self.root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
        self.ids: set[str] = set()

    def __call__(self, *args: str, timeout: float = 30) -> Result:
        """Output to files, not pipes: a created container's init keeps its stdio."""
        return run_to_files([RUNC, "--root", self.root, *args], timeout=timeout)

    def new_id(self) -> str:
        cid = "ref-" + uuid.uuid4().hex[:10]
        self.ids.add(cid)
        return cid

    def pid(self, cid: str) -> int:
        return json.loads(self("state", cid).stdout)["pid"]

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)
        shutil.rmtree(self.root, ignore_errors=True)


def copy_bundle(bundle, dest: Path):
    """A copy of a bundle (rootfs and all side directories) for the other runtime: each
    runtime gets files of its own to (not) write to."""
    shutil.copytree(bundle.path, dest, symlinks=True)
    config = json.loads((dest / "config.json").read_text())
    text = json.dumps(config).replace(str(bundle.path), str(dest))
    (dest / "config.json").write_text(text)
    return dest
