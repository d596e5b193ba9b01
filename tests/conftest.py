"""Shared fixtures: real bundles from busybox-static, and a runtime driver that runs the
installed `ociruntime` executable (as engines do) and checks nothing is left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # testkit/ and conformance/ are directories, not installed

from testkit import bundles, containerd  # noqa: E402
from testkit.bundles import base_config  # noqa: E402
from testkit.processes import (  # noqa: E402
    Result,
    cgroup_dirs_named,
    mount_lines,
    run_to_files,
    state_dirs,
)

OCIRUNTIME = str(bundles.OCIRUNTIME)
BUILD_ROOTFS = str(bundles.BUILD_ROOTFS)
#: A pure cgroup v2 host (e.g. tools/vm-lane.sh): /sys/fs/cgroup is the unified hierarchy
#: itself, not a tmpfs of v1 hierarchies (v1 and hybrid hosts).
CGROUP_V2_ONLY = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


#: The after-fork import guard (ociruntime/importguard.py) for every runtime the tests start:
#: an init or exec that imports after its fork fails loudly instead of only in some container.
IMPORT_GUARD_ENV = "OCIRUNTIME_IMPORT_GUARD"


def pytest_configure(config: pytest.Config) -> None:
    os.environ[IMPORT_GUARD_ENV] = "1"
    if os.geteuid() != 0 and "pure" not in (config.option.markexpr or ""):
        raise pytest.UsageError(
            "the ociruntime tests start real containers: run them as root "
            "(or only the pure tier, `-m pure`, as any user)"
        )


@pytest.hookimpl(trylast=True)  # after `-m` has deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Unprivileged, only tests marked `pure` may run (no root, no kernel state)."""
    if os.geteuid() == 0:
        return
    impure = [item.nodeid for item in items if item.get_closest_marker("pure") is None]
    if impure:
        raise pytest.UsageError(
            f"not root: {len(impure)} selected tests are not marked pure, e.g. {impure[0]}"
        )


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("template") / "rootfs"
    subprocess.run([BUILD_ROOTFS, str(dest)], check=True)
    return dest


@dataclass
class Bundle:
    path: Path
    config: dict

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    def write(self) -> Bundle:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))
        return self


@pytest.fixture
def make_bundle(rootfs_template: Path, tmp_path: Path):
    """make_bundle(args) -> Bundle with a private copy of the busybox rootfs."""
    counter = iter(range(1000))

    def make(args: list[str] | None = None, name: str | None = None) -> Bundle:
        path = tmp_path / (name or f"bundle{next(counter)}")
        path.mkdir()
        shutil.copytree(rootfs_template, path / "rootfs", symlinks=True)
        return Bundle(path, base_config(args or ["true"])).write()

    return make


@dataclass
class Runtime:
    """Drives the real executable with a private --root; remembers ids to clean up."""

    root: str
    log: str
    ids: set[str] = field(default_factory=set)
    binary: str = OCIRUNTIME  #: another build of the runtime (tests/security)

    def __call__(self, *args: str, check: bool = False, timeout: float = 60, **kw) -> Result:
        """Run the runtime. Output goes to files, not pipes: a created container's init
        inherits the caller's stdio and would hold a pipe open (as with any engine)."""
        cmd = [self.binary, "--root", self.root, "--log", self.log, "--log-format", "json", *args]
        result = run_to_files(cmd, timeout=timeout, **kw)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    def new_id(self) -> str:
        cid = "t-" + uuid.uuid4().hex[:12]
        self.ids.add(cid)
        return cid

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid, check=True).stdout)

    def cleanup(self) -> None:
        for cid in self.ids:
            self("delete", "--force", cid)


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime with its own state root; after the test: every container deleted, and
    no state dir, cgroup, mount or process of the test left behind."""
    root = f"/run/ociruntime-test-{uuid.uuid4().hex[:8]}"
    rt = Runtime(root=root, log=str(tmp_path / "runtime.log"))
    mounts_before = mount_lines()
    try:
        yield rt
    finally:
        rt.cleanup()
        leftovers = state_dirs(root)
        shutil.rmtree(root, ignore_errors=True)
        assert leftovers == [], f"state dirs left behind: {leftovers}"
        assert cgroup_dirs_named(rt.ids) == [], "cgroups left behind"
        # Only this test's own paths: other programs on the machine may mount meanwhile.
        new = {m for m in mount_lines() - mounts_before if str(tmp_path) in m or root in m}
        assert new == set(), f"mounts left behind: {new}"


@pytest.fixture(scope="session")
def containerd_installed() -> None:
    """The containerd tests' (containerd, CRI, systemd lane) clients, installed once."""
    subprocess.run([str(REPO / "tools" / "install-clients.sh"), "containerd"], check=True)
    missing = containerd.missing_tools()
    assert missing == [], f"{missing} not found after tools/install-clients.sh"


@pytest.fixture
def event_streams() -> Iterator[list]:
    """`events` streams a test opens (test_cgroups.EventStream), closed after it."""
    streams: list = []
    yield streams
    for stream in streams:
        stream.close()
