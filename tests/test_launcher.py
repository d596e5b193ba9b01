"""The compiled launcher (ociruntime/launcher.c, built by ociruntime/launcher.py).

It must start the interpreter exactly as the script launcher's `python -I -S` does (the
same flags, module search path and arguments, the environment ignored), start the cgroup
warm-up for the same command lines and at the same target as cgroups/warmup.py, and
hand its thread to Python. Where it cannot be built, the script launcher is installed.
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
from hypothesis import example, given, settings

from ociruntime import launcher
from ociruntime.cgroups import warmup
from testkit.bundles import OCIRUNTIME
from tests.test_cgroup_warmup import words  # command lines made of the CLI's own words

#: A prelude that shows how the interpreter was started, then stops before the CLI.
SHOW = """import sys
print(sys.flags.isolated, sys.flags.no_site, sys.flags.ignore_environment,
      sys.flags.safe_path, sys.flags.dont_write_bytecode)
print(sys.path)
print(sys.argv[1:])
print(sys.getfilesystemencoding(), sys.stdout.encoding)
print("warm-up thread:", bool(globals().get("WARM_UP_THREAD")))
sys.stdout.flush()
raise SystemExit(0)
"""


@pytest.fixture(scope="module")
def selftest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """launcher.c built with LAUNCHER_SELFTEST: prints what it would warm up, runs nothing."""
    path = tmp_path_factory.mktemp("launcher") / "selftest"
    launcher.build(str(path), selftest=True)
    return path


def selftest_says(binary: Path, argv: list[str]) -> dict[str, str]:
    out = subprocess.run([binary, *argv], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@settings(max_examples=80, deadline=None)
@given(words)
@example(["--root", "create", "state", "x"])  # `create` is --root's value
@example(["--log=create", "run"])
@example(["--debug", "--", "exec", "x"])
@example(["-", "create"])
@example([])
def test_command_word_is_warmup_pys(selftest: Path, argv: list[str]) -> None:
    said = selftest_says(selftest, argv)
    assert said["command"] == (warmup.command_of(argv) or "")
    assert said["warmed"] == str(int(warmup.command_of(argv) in warmup.WARMED))


def test_target_is_warmup_pys(selftest: Path) -> None:
    """The cgroup.procs it writes "0" to: warmup.own_v1_procs()'s (this host has v1)."""
    assert selftest_says(selftest, ["create"])["procs"] == (warmup.own_v1_procs() or "")


@pytest.mark.parametrize("command", ["create", "state"])
def test_starts_the_interpreter_as_the_script_launcher(tmp_path: Path, command: str) -> None:
    """The same flags, path, arguments and encodings as `python -I -S` and the script,
    with PYTHON* variables set (ignored by both); a warm-up thread for `create` only."""
    compiled, script = tmp_path / "compiled", tmp_path / "script"
    launcher.build(str(compiled), prelude=SHOW)
    launcher.write_script(str(script), prelude=SHOW)
    evil = tmp_path / "evil"
    (evil / "ociruntime").mkdir(parents=True)
    (evil / "ociruntime" / "__init__.py").write_text("raise SystemExit('evil')\n")
    env = dict(os.environ, PYTHONPATH=str(evil), PYTHONHOME=str(evil), PYTHONINSPECT="1",
               PYTHONDONTWRITEBYTECODE="1", LC_ALL="C")  # fmt: skip
    argv = ["--root", "/nonexistent", command, "x"]
    outputs = [
        subprocess.run([binary, *argv], capture_output=True, text=True, env=env, check=True,
                       stdin=subprocess.DEVNULL).stdout  # fmt: skip
        for binary in (compiled, script)
    ]
    flags, path, args, encodings, thread = outputs[0].splitlines()
    assert flags == "1 1 1 True 0"
    assert args == str(argv)
    assert encodings == "utf-8 utf-8"
    assert str(evil) not in path
    v1 = warmup.own_v1_procs() is not None
    assert thread == f"warm-up thread: {command == 'create' and v1}"
    # The script starts its warm-up itself, from Python: the rest is the same.
    assert outputs[0].splitlines()[:4] == outputs[1].splitlines()[:4]


MODULES = """import sys
print(sorted(m for m in sys.modules if m.startswith("_ociruntime")))
from ociruntime.kernel import _syscall
from ociruntime.security import _anonexe
print(getattr(_syscall, "__file__", "built-in"), getattr(_anonexe, "__file__", "built-in"))
print(open("/proc/self/maps").read())
sys.stdout.flush()
raise SystemExit(0)
"""


def test_links_the_runtimes_extensions_and_zlib_in(tmp_path: Path) -> None:
    """_syscall and _anonexe are built-in modules of the compiled launcher, zlib and expat
    are linked in: no such file for it to load, nor for the init to detach from. Only a
    create, run or exec initialises the two (a one-shot command needs neither)."""
    binary = tmp_path / "launcher"
    launcher.build(str(binary), prelude=MODULES)
    state = subprocess.run([binary, "state", "x"], capture_output=True, text=True, check=True)
    assert state.stdout.split("\n", 1)[0] == "[]"
    out = subprocess.run([binary, "create", "x"], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    initialised, modules, maps = out.split("\n", 2)
    assert initialised == "['_ociruntime_anonexe', '_ociruntime_syscall']"
    assert modules == "built-in built-in"
    assert "_syscall" not in maps and "_anonexe" not in maps
    assert "libz.so" not in maps and "libexpat.so" not in maps


def test_installed_launcher_is_compiled() -> None:
    """tools/setup.sh installs python3-dev and gcc: the compiled launcher is what runs."""
    with open(OCIRUNTIME, "rb") as f:
        assert f.read(4) == b"\x7fELF"


@pytest.mark.pure
def test_falls_back_to_the_script_launcher(tmp_path: Path, monkeypatch, capsys) -> None:
    """No libpython3.11.a: the script launcher is installed, and the warning says why."""
    real = sysconfig.get_config_var
    fake = {"LIBRARY": "libnothing.a"}
    monkeypatch.setattr(sysconfig, "get_config_var", lambda name: fake.get(name, real(name)))
    dest = tmp_path / "ociruntime"
    launcher.install(str(dest))
    assert dest.read_text() == launcher.launcher_text()
    assert "libnothing.a" in capsys.readouterr().err
    assert not (tmp_path / "ociruntime.tmp").exists()


@pytest.mark.pure
def test_c_strings_carry_any_path() -> None:
    """Paths and the body reach C byte for byte (quotes, backslashes, newlines, UTF-8)."""
    text = 'a "b" \\c\nd?\u00e9\t{x}'
    literal = launcher._c_string(text)
    assert literal.startswith('"') and literal.endswith('"')
    assert "\n" not in literal and '"' not in literal[1:-1] and "?" not in literal
    decoded = literal[1:-1].encode().decode("unicode_escape").encode("latin-1")
    assert decoded == text.encode()
