"""The hot-path rule, measured: each hot-path command of the installed `ociruntime`, on a
real container, imports no module of a deny-list (README, Performance).

Each command runs as the engines run it, through the installed launcher with `-X
importtime` on: the compiled launcher (ociruntime/launcher.c) turns it on for
OCIRUNTIME_IMPORTTIME, the script one gets it added to the interpreter's flags read from
its first line (`#!.../python -IS`). The interpreter then lists every module it imports,
and so does a child it forks (the init inherits the flag and create's stderr), so an
import the init would make shows up here too. ruff (pyproject.toml, flake8-tidy-imports)
enforces the static half: no heavy module imported at module level anywhere in ociruntime/.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time

from conftest import IMPORT_GUARD_ENV, OCIRUNTIME

#: Never on the hot path: each costs ~1-70 ms, or pulls in what does.
HEAVY = frozenset({
    "json", "re", "enum", "signal", "collections", "contextlib", "dataclasses", "argparse",
    "logging", "subprocess", "typing", "jsonschema", "referencing", "functools", "threading",
    "tempfile", "shutil", "pathlib", "inspect", "traceback", "warnings", "tokenize",
    "linecache", "datetime", "uuid", "random", "hashlib", "string", "textwrap", "locale",
    "selectors", "socket", "_socket", "termios", "tty", "pyseccomp", "pyroute2",
    "importlib.metadata", "sysconfig",
})  # fmt: skip
#: What a plain config's container never needs (the terminal, seccomp, netDevices...).
OFF_PATH = frozenset({
    "ociruntime.process.terminal", "ociruntime.security.seccomp",
    "ociruntime.security.seccomp_notify",
    "ociruntime.process.netdevices", "ociruntime.commands.features", "ociruntime.commands.spec",
    "ociruntime.cgroups.stats", "ociruntime.launcher", "ociruntime.commands.exec",
    "ociruntime.commands.run", "ociruntime.commands.ps", "ociruntime.commands.events",
    "ociruntime.commands.update", "ociruntime.helptext",
})  # fmt: skip
#: The one-shot commands do not build a container: no ctypes or prctl (~2 ms), no
#: config validation, no init or rootfs code.
NOT_ONE_SHOT = frozenset({
    "ctypes", "_ctypes", "prctl", "_prctl", "resource", "ociruntime.kernel.syscalls",
    "ociruntime.container.bundle", "ociruntime.container.validation",
    "ociruntime.container._config_validator",
    "ociruntime.stages.init", "ociruntime.rootfs.mounts", "ociruntime.commands.create",
    "ociruntime.security.containersafe", "ociruntime.security._anonexe",
    "ociruntime.cgroups.warmup",
})  # fmt: skip
#: What only making a cgroup needs: the one-shot commands read a cgroup's state through
#: the freezer, and find its processes or remove it through cgroups/existing.py.
CGROUP_WORK = frozenset({"ociruntime.cgroups.cgroupfs", "ociruntime.cgroups.devicerules"})
#: Light, but ~0.9 ms together of a one-shot's ~2 ms above the interpreter: `os` (it loads
#: `_collections_abc`) and `__future__` (ociruntime/pathlite.py).
NOT_ONE_SHOT_STDLIB = frozenset({"os", "posixpath", "_collections_abc", "__future__"})
ONE_SHOT = HEAVY | OFF_PATH | NOT_ONE_SHOT | CGROUP_WORK | NOT_ONE_SHOT_STDLIB
#: create of a plain config and exec load no `os` either (~1 ms of CPU each).
NOT_CREATE_STDLIB = frozenset({"os", "posixpath", "_collections_abc"})
DENIED = {
    "create": HEAVY | OFF_PATH | NOT_CREATE_STDLIB,
    "start": ONE_SHOT,
    "state": ONE_SHOT | {"select"},
    "kill": ONE_SHOT | {"select"},
    "delete": ONE_SHOT,
}


def launcher_argv() -> tuple[list[str], dict[str, str]]:
    """How to run the installed launcher with `-X importtime`: argv and environment."""
    with open(OCIRUNTIME, "rb") as f:
        first = f.readline()
    if first.startswith(b"\x7fELF"):  # the compiled launcher
        return [OCIRUNTIME], {"OCIRUNTIME_IMPORTTIME": "1"}
    assert first.startswith(b"#!"), first
    return [*first[2:].decode().split(), "-X", "importtime", OCIRUNTIME], {}


def imported_modules(runtime, *args: str) -> set[str]:  # noqa: ANN001 - conftest.Runtime
    """Run one command of the installed runtime; the modules it (and what it forked)
    imported. Fails if the command does."""
    return set(import_order(runtime, *args))


def import_order(runtime, *args: str) -> list[str]:  # noqa: ANN001 - conftest.Runtime
    """imported_modules, in the order their imports ended (-X importtime's)."""
    argv, importtime = launcher_argv()
    cmd = [*argv, "--root", runtime.root, "--log", runtime.log, "--log-format", "json", *args]
    with tempfile.TemporaryFile() as out:  # not a pipe: a created init would hold it
        # As in production: without the test suite's import guard (conftest.py).
        env = {k: v for k, v in os.environ.items() if k != IMPORT_GUARD_ENV} | importtime
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60,
                           env=env)  # fmt: skip
        out.seek(0)
        output = out.read().decode(errors="replace")
    assert p.returncode == 0, f"{args}: {output}"
    imported = [
        line.rpartition("|")[2].strip()
        for line in output.splitlines()
        if line.startswith("import time:") and "imported package" not in line
    ]
    assert "ociruntime.cli" in imported, output  # the measurement works
    return imported


def assert_light(command: str, imported: set[str]) -> None:
    heavy = sorted(imported & DENIED[command])
    assert not heavy, f"`{command}` imported {heavy} (the hot-path rule: README, Performance)"


def test_hot_path_commands_import_nothing_heavy(runtime, make_bundle) -> None:
    """create (a plain config, no terminal) -> state -> start -> state -> kill -> state ->
    delete, each under -X importtime."""
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    steps = [
        ("create", "--bundle", str(bundle.path), cid),
        ("state", cid),
        ("start", cid),
        ("state", cid),
        ("kill", cid, "KILL"),
        ("state", cid),
        ("delete", cid),
    ]
    seen = {}
    for args in steps:
        if args == ("state", cid) and "kill" in seen:  # the stopped container's state
            deadline = time.monotonic() + 10
            while runtime.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
                time.sleep(0.01)
        imported = imported_modules(runtime, *args)
        assert f"ociruntime.commands.{'query' if args[0] == 'state' else args[0]}" in imported
        assert_light(args[0], imported)
        seen[args[0]] = imported
    assert runtime("state", cid).returncode != 0  # deleted
    # create was measured
    assert {"ociruntime.stages.init", "ociruntime.rootfs.mounts"} <= seen["create"]


def test_the_launcher_starts_the_cgroup_warm_up_before_the_cli(runtime, make_bundle) -> None:
    """create, run and exec start the kernel's grace period first (cgroups/warmup.py): the
    launcher loads the warm-up's thread before the CLI. The one-shots never load it."""
    bundle = make_bundle(["sleep", "1000"])
    cid = runtime.new_id()
    for args in (("create", "--bundle", str(bundle.path), cid), ("exec", cid, "true")):
        if args[0] == "exec":
            runtime("start", cid, check=True)
        order = import_order(runtime, *args)
        assert "ociruntime.cgroups.warmup" in order, args
        assert order.index("ociruntime.kernel.threadwrite") < order.index("ociruntime.cli")
        assert not set(order) & (HEAVY | NOT_CREATE_STDLIB), args  # exec: health checks
    for args in (("state", cid), ("kill", cid, "KILL"), ("delete", "--force", cid)):
        assert "ociruntime.cgroups.warmup" not in imported_modules(runtime, *args), args
