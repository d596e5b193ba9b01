"""ociruntime's `spec` output must match runc's `runc spec` byte for byte, bar ociVersion."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ociruntime import SPEC_VERSION
from ociruntime.commands.spec import (
    SPEC_EXISTS_MESSAGE,
    default_spec,
    render_spec,
    write_spec,
)

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
needs_runc = pytest.mark.skipif(RUNC is None, reason="runc is not installed")


def _runc_spec(tmp_path: Path, rootless: bool) -> str:
    """Run the real `runc spec` in an empty directory and return the file it wrote."""
    bundle = tmp_path / ("runc-rootless" if rootless else "runc")
    bundle.mkdir()
    cmd = [RUNC, "spec"] + (["--rootless"] if rootless else [])
    subprocess.run(cmd, cwd=bundle, check=True, capture_output=True, timeout=30)
    return (bundle / "config.json").read_text()


def _with_version(text: str, version: str) -> str:
    """Swap the ociVersion value in runc's text, keeping every other byte as is."""
    runc_version = json.loads(text)["ociVersion"]
    old = f'"ociVersion": "{runc_version}"'
    assert text.count(old) == 1
    return text.replace(old, f'"ociVersion": "{version}"')


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_matches_runc_spec_byte_for_byte(tmp_path: Path, rootless: bool) -> None:
    expected = _with_version(_runc_spec(tmp_path, rootless), SPEC_VERSION)
    ours = tmp_path / "ours"
    ours.mkdir()
    write_spec(str(ours), rootless)
    assert (ours / "config.json").read_text() == expected


@needs_runc
@pytest.mark.parametrize("rootless", [False, True])
def test_matches_runc_spec_as_data(tmp_path: Path, rootless: bool) -> None:
    runc = json.loads(_runc_spec(tmp_path, rootless))
    ours = default_spec(rootless)
    assert ours.pop("ociVersion") == SPEC_VERSION
    runc.pop("ociVersion")
    assert ours == runc
    assert list(ours) == list(runc)


def test_rootless_maps_the_callers_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setattr(os, "getegid", lambda: 2345)
    linux = default_spec(rootless=True)["linux"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1234, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 2345, "size": 1}]
    assert "resources" not in linux
    assert {"type": "user"} in linux["namespaces"]
    assert {"type": "network"} not in linux["namespaces"]


def test_rootful_and_rootless_differ_only_where_runc_does() -> None:
    rootful, rootless = default_spec(False), default_spec(True)
    assert rootful["process"] == rootless["process"]
    devpts = [m for m in rootful["mounts"] if m["destination"] == "/dev/pts"][0]
    assert "gid=5" in devpts["options"]
    sys_mount = [m for m in rootless["mounts"] if m["destination"] == "/sys"][0]
    assert sys_mount == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }


def test_each_call_returns_a_fresh_dict() -> None:
    a = default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["linux"]["maskedPaths"].clear()
    b = default_spec()
    assert b["process"]["capabilities"]["bounding"] == [
        "CAP_AUDIT_WRITE",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
    ]
    assert b["linux"]["maskedPaths"]


def test_render_has_tabs_and_no_trailing_newline() -> None:
    text = render_spec(default_spec())
    assert text.startswith('{\n\t"ociVersion": ')
    assert text.endswith("\n}")


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileExistsError) as info:
        write_spec(str(tmp_path), False)
    assert str(info.value) == SPEC_EXISTS_MESSAGE == "File config.json exists. Remove it first"
    assert (tmp_path / "config.json").read_text() == "{}"


def test_refuses_when_config_json_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").mkdir()
    with pytest.raises(FileExistsError):
        write_spec(str(tmp_path), False)


def test_missing_bundle_worded_like_runc(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"^chdir {missing}: no such file or directory$"):
        write_spec(str(missing), False)


def test_file_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_spec(str(tmp_path), False)
    finally:
        os.umask(old)
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o640
