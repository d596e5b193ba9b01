"""Where the runtime and the busybox bundle are, and the example bundle's config."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OCIRUNTIME = REPO / ".venv" / "bin" / "ociruntime"
#: bundles/build-rootfs.sh DEST: a busybox-static rootfs.
BUILD_ROOTFS = REPO / "bundles" / "build-rootfs.sh"
#: The example bundle's config: `runc spec`'s defaults with a hostname and a command.
EXAMPLE_CONFIG = REPO / "bundles" / "busybox" / "config.json"


def base_config(args: list[str]) -> dict:
    """The example bundle's config (runc spec defaults) with other args."""
    config = json.loads(EXAMPLE_CONFIG.read_text())
    config["process"]["args"] = args
    return config
