"""tools/install.sh and `pip install .`: ociruntime installed as a system tool would be.

install.sh goes into a temporary prefix and bin dir (never /usr/local); the installed
command runs a real container, reports the commit it was installed from, does not depend
on the checkout, and `--uninstall` leaves nothing behind. The checkout stays untouched
(the package is built from a copy).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from testkit.bundles import REPO, base_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs and runs containers: root")

INSTALL = REPO / "tools" / "install.sh"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def expected_commit() -> str:
    commit = git("rev-parse", "--short=12", "HEAD")
    dirty = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "ociruntime",
                            "setup.py", "setup.cfg", "pyproject.toml"]).returncode
    return commit + ("-dirty" if dirty else "")


def install(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([str(INSTALL), *args], capture_output=True, text=True, cwd="/",
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, p.stderr
    return p


def run_container(ociruntime: Path, rootfs_template: Path, tmp_path: Path) -> str:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copytree(rootfs_template, bundle / "rootfs", symlinks=True)
    config = base_config(["sh", "-c", "echo hello from $(hostname)"])
    (bundle / "config.json").write_text(json.dumps(config))
    p = subprocess.run([str(ociruntime), "--root", str(tmp_path / "state"), "run", "--bundle",
                        str(bundle), f"install-{os.getpid()}"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_install_run_uninstall(tmp_path: Path, rootfs_template: Path) -> None:
    status = git("status", "--porcelain", "--ignored")
    prefix, bindir = tmp_path / "opt" / "ociruntime", tmp_path / "bin"
    env = {"OCIRUNTIME_PREFIX": str(prefix), "OCIRUNTIME_BINDIR": str(bindir)}
    install(env=env)
    install(env=env)  # idempotent: a second run installs the same again
    ociruntime = bindir / "ociruntime"

    # The compiled launcher, every path in it inside the prefix, none in the checkout.
    launcher = ociruntime.read_bytes()
    assert launcher.startswith(b"\x7fELF")
    assert f"ociruntime launcher for {prefix}/venv".encode() in launcher
    assert f"{prefix}/venv/lib/".encode() in launcher
    assert str(REPO).encode() not in launcher
    where = subprocess.run([f"{prefix}/venv/bin/python", "-I", "-c",
                            "import ociruntime.kernel._syscall as s, ociruntime.security._anonexe"
                            " as a; print(s.__file__); print(a.__file__)"],
                           capture_output=True, text=True, check=True, cwd="/").stdout.split()
    assert all(f.startswith(f"{prefix}/venv/") and f.endswith(".so") for f in where), where

    version = subprocess.run([ociruntime, "--version"], capture_output=True, text=True,
                             check=True, cwd="/").stdout
    assert version.splitlines()[0].startswith("ociruntime version ")
    assert "spec: 1.3.0" in version.splitlines()
    assert f"commit: {expected_commit()}" in version.splitlines(), version

    config = base_config([])
    assert run_container(ociruntime, rootfs_template, tmp_path) == (
        f"hello from {config['hostname']}\n")

    install("--uninstall", env=env)
    assert not ociruntime.exists() and not bindir.exists() and not prefix.exists()
    assert list((tmp_path / "opt").iterdir()) == []
    # Built from a copy: no build/, egg-info or .so appeared in the checkout.
    assert git("status", "--porcelain", "--ignored") == status


def test_uninstall_leaves_foreign_launcher(tmp_path: Path) -> None:
    """--uninstall removes only what install.sh wrote: a nothing-installed prefix is a
    no-op, and a launcher that is not ours is kept."""
    prefix, bindir = tmp_path / "opt", tmp_path / "bin"
    bindir.mkdir()
    foreign = bindir / "ociruntime"
    foreign.write_text("#!/bin/sh\necho someone else's\n")
    args = ("--uninstall", "--prefix", str(prefix), "--bindir", str(bindir))
    assert "nothing installed" in install(*args).stderr
    prefix.mkdir()
    (prefix / ".ociruntime-install").write_text(f"launcher={foreign}\nmade_bindir=\n")
    install(*args)
    assert foreign.exists() and not prefix.exists()


def test_pip_install_into_plain_venv(tmp_path: Path) -> None:
    """`pip install .` into a fresh venv (no --system-site-packages) builds both C
    extensions and gives a working `ociruntime` console script. Dependencies come from
    the configured index (this machine's pip config); building needs the Debian packages
    gcc, python3-dev and libseccomp-dev (tools/setup.sh installs them)."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.so", "build", "*.egg-info", "rootfs", ".*_cache"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    p = subprocess.run([f"{venv}/bin/pip", "install", "-q", "--no-cache-dir", "."], cwd=src,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    version = subprocess.run([f"{venv}/bin/ociruntime", "--version"], capture_output=True,
                             text=True, check=True, cwd="/").stdout
    assert "spec: 1.3.0" in version.splitlines()
    libseccomp = subprocess.run([f"{venv}/bin/python", "-I", "-c", "import pyseccomp"],
                                capture_output=True, text=True, cwd="/")
    assert libseccomp.returncode == 0, libseccomp.stderr
