"""Loading an OCI bundle: config.json parsed, validated against our schema, rootfs found.

Every failure names the file and the JSON pointer of the offending field, in one line.
"""

from __future__ import annotations

import os

from ociruntime import jsonlite
from ociruntime.errors import RuntimeFailure


class Bundle:
    __slots__ = ("path", "config", "rootfs")

    def __init__(self, path: str, config: dict, rootfs: str) -> None:
        self.path, self.config, self.rootfs = path, config, rootfs  # paths absolute


def load(path: str) -> Bundle:
    bundle = os.path.abspath(path)
    if not os.path.isdir(bundle):
        raise RuntimeFailure(f"bundle {path}: no such directory")
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise RuntimeFailure(f"config.json: not found in bundle {bundle}") from None
    except OSError as e:
        raise RuntimeFailure(f"config.json: {e.strerror}") from None
    config = parse_config(raw)
    return Bundle(bundle, config, _rootfs(bundle, config))


def parse_config(raw: bytes) -> dict:
    """JSON, then the schema, then the checks a schema cannot express."""
    try:
        config = jsonlite.loads(raw)
    except ValueError as e:
        where = f" at line {e.lineno} column {e.colno}" if hasattr(e, "lineno") else ""
        raise RuntimeFailure(f"config.json: invalid JSON{where}: {getattr(e, 'msg', e)}") from None
    from ociruntime.validation import ConfigInvalid, check_config

    try:
        check_config(config)
    except ConfigInvalid as e:
        raise RuntimeFailure(str(e)) from None
    major = str(config["ociVersion"]).split(".", 1)[0]
    if major != "1":
        raise RuntimeFailure(
            f"config.json: /ociVersion: {config['ociVersion']!r} is not a 1.x spec version"
        )
    return config


def _rootfs(bundle: str, config: dict) -> str:
    root = (config.get("root") or {}).get("path")
    if not root:
        raise RuntimeFailure("config.json: /root/path: a rootfs is required on Linux")
    rootfs = os.path.normpath(os.path.join(bundle, root))
    if not os.path.isdir(rootfs):
        raise RuntimeFailure(f"config.json: /root/path: rootfs {rootfs} does not exist")
    return rootfs
