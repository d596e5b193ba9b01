"""Programs the tests put into a container's rootfs, built from the C sources in tests/."""

from __future__ import annotations

import subprocess
from pathlib import Path


def static_binary(source: Path, directory: Path) -> Path:
    """`gcc -static`: the program runs in any rootfs (busybox's has no libc to link to)."""
    binary = directory / source.stem
    subprocess.run(["gcc", "-static", "-O1", "-o", str(binary), str(source)],
                   check=True, timeout=120)  # fmt: skip
    return binary
