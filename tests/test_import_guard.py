"""The after-fork rule, enforced in tests: the init and an exec's intermediate import
everything before they fork (ociruntime/importguard.py). conftest.py turns the guard on
for the whole suite; these tests show it catches a deliberately late import, in a plain
subprocess and in a real container's init and exec, and that without it (production) the
same late import goes unnoticed on a host whose files the container can still reach."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import IMPORT_GUARD_ENV, OCIRUNTIME, REPO

from ociruntime import launcher
from ociruntime.security import containersafe


@pytest.mark.pure
def test_the_name_is_the_runtimes() -> None:
    assert IMPORT_GUARD_ENV == containersafe.IMPORT_GUARD_ENV


@pytest.mark.pure
def test_guard_refuses_new_modules_in_the_process_and_its_children() -> None:
    code = (
        "import os, sys\n"
        "from ociruntime import importguard\n"
        "importguard.install('the test')\n"
        "import os.path  # already imported: allowed\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    try:\n"
        "        import json\n"
        "    except importguard.LateImport:\n"
        "        os._exit(7)\n"
        "    os._exit(0)\n"
        "assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 7\n"
        "import colorsys\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 1, p.stderr
    assert "LateImport: ociruntime: import of colorsys after the fork (the test)" in p.stderr
    # Also on fd 2 itself, for code that would catch the ImportError:
    assert "import of json after the fork (the test)" in p.stderr


def late_import_launcher(path, patch: str) -> str:  # noqa: ANN001 - a pathlib.Path
    """A launcher like the installed one that first applies `patch` (Python lines)."""
    with open(OCIRUNTIME, "rb") as f:
        compiled = f.read(4) == b"\x7fELF"
    (launcher.build if compiled else launcher.write_script)(str(path), prelude=patch)
    return str(path)


INIT_PATCH = """from ociruntime.stages import init
_set_names = init._set_names
def _late(*args):
    import colorsys  # deliberately after the fork
    return _set_names(*args)
init._set_names = _late
"""

EXEC_PATCH = """from ociruntime.stages import exec_stages as _exec
_join = _exec._join_container
def _late(*args):
    import colorsys  # deliberately after the fork
    return _join(*args)
_exec._join_container = _late
"""


def test_late_import_in_the_init_fails_create(runtime, make_bundle, tmp_path, monkeypatch):
    runtime.binary = late_import_launcher(tmp_path / "late-init", INIT_PATCH)
    bundle = make_bundle(["true"])
    cid = runtime.new_id()
    r = runtime("create", "--bundle", str(bundle.path), cid)
    assert r.returncode != 0
    assert "import of colorsys after the fork (container init)" in r.stderr
    runtime("delete", "--force", cid)
    # Without the guard, as in production: unnoticed here (the host's files are still
    # reachable from where this import happens), which is why the guard exists.
    monkeypatch.delenv(IMPORT_GUARD_ENV)
    runtime("create", "--bundle", str(bundle.path), cid, check=True)
    runtime("delete", "--force", cid, check=True)


def test_late_import_in_exec_fails_it(runtime, make_bundle, tmp_path) -> None:
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    runtime("run", "-d", "--bundle", str(bundle.path), cid, check=True)
    normal = runtime("exec", cid, "true")
    assert normal.returncode == 0, normal.stderr  # the guard is on: a plain exec passes
    runtime.binary = late_import_launcher(tmp_path / "late-exec", EXEC_PATCH)
    r = runtime("exec", cid, "true")
    assert r.returncode != 0
    assert "import of colorsys after the fork (exec)" in r.stderr
    runtime.binary = OCIRUNTIME
    runtime("delete", "--force", cid, check=True)


def test_suite_runs_with_the_guard() -> None:
    assert os.environ.get(IMPORT_GUARD_ENV) == "1"
