"""process.terminal: the init's pty, sent over `--console-socket` as runc sends it, and
`run` attaching it to the caller's terminal. Real containers, driven through a pty; every
read waits for the expected output with a deadline, never for a fixed time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import termios
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OCIRUNTIME
from test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    assert_nothing_left,
    expect_error,
    no_leftover_processes,
)

from testkit.processes import wait_exited
from testkit.recvtty import Console, ConsoleSocket

SIZE = {"height": 33, "width": 111}
RUNC = shutil.which("runc")

# What the shell in the container is asked, each answer printed as `@@ answer @@`: the
# terminal echoes the typed line too, but that has a `$` or a `"` between the markers.
PROBES = {
    "tty": "tty",
    "arithmetic": "echo $((6*7))",
    "stdio-ttys": '[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo "@@ y""es @@"',  # not in $(...)
    "size": "stty size",
    "ctty": "cut -d' ' -f7 /proc/1/stat",  # tty_nr of PID 1 (sh)
    "console-mounts": "grep -c ' /dev/console ' /proc/self/mountinfo",
    "console-device": "stat -c %t:%T /dev/console",
    "owner": "stat -c %u:%g /dev/pts/0",
}
ANSWER = r'@@ ([^$@"]*) @@'


def ask(term: Console, command: str) -> str:
    term.write((command if "@@" in command else f'echo "@@ $({command}) @@"') + "\n")
    return term.expect(ANSWER).group(1)


def terminal_bundle(
    make_bundle, args: list[str] | None = None, size: dict | None = SIZE, uid: int = 0
):
    bundle = make_bundle(args or ["sh"])
    bundle.config["process"]["terminal"] = True
    bundle.config["process"]["user"] = {"uid": uid, "gid": uid}
    if size:
        bundle.config["process"]["consoleSize"] = size
    return bundle.write()


@pytest.fixture
def console_socket(tmp_path: Path) -> Iterator[ConsoleSocket]:
    with ConsoleSocket(str(tmp_path / "console.sock")) as listener:
        yield listener


def wait_exit(pid: int) -> None:
    """The init is not our child: its pidfd says when it is gone."""
    wait_exited(pid, 10, "the container did not stop")


def console_session(run, listener: ConsoleSocket, bundle) -> dict:
    """create --console-socket, start, a shell session through the received master, exit 3.
    `run(*args)` runs one runtime command and fails the test if it fails. Returns what
    was observed, for comparing runtimes."""
    run("create", "--console-socket", listener.path, "--bundle", str(bundle.path), "c")
    console = listener.accept()
    seen: dict = {"name": console.name}
    try:
        # Set by the init before create returned: the size, and the pty's default modes.
        seen["size-before-start"] = termios.tcgetwinsize(console.fd)
        seen["onlcr"] = bool(termios.tcgetattr(console.fd)[1] & termios.ONLCR)
        pid = run("state", "c")["pid"]
        run("start", "c")
        for name, command in PROBES.items():
            seen[name] = ask(console, command)
        console.write("exit 3\n")
        console.read_to_end()
    finally:
        console.close()
    wait_exit(pid)
    seen["status"] = run("state", "c")["status"]
    run("delete", "c")
    return seen


EXPECTED = {
    "name": "/dev/ptmx",  # runc's SendFd payload: the master's name
    "size-before-start": (SIZE["height"], SIZE["width"]),
    "onlcr": True,
    "tty": "/dev/pts/0",
    "arithmetic": "42",
    "stdio-ttys": "yes",
    "size": f"{SIZE['height']} {SIZE['width']}",
    "ctty": str(136 << 8),  # pts/0 is the controlling terminal of PID 1's session
    "console-mounts": "1",  # the slave bound on /dev/console
    "console-device": "88:0",  # (hex) the major and minor of /dev/pts/0
    "owner": "1000:5",  # the process's user owns its terminal; devpts' gid=5 stays
    "status": "stopped",
}


def _runner(base: list[str], ids: dict[str, str]):
    """run("create", ..., "c") with "c" mapped to a unique id; parses `state`."""

    def run(*args: str):
        args = tuple(ids.get(a, a) for a in args)
        p = subprocess.run([*base, *args], stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=30)  # fmt: skip
        assert p.returncode == 0, f"{args}: {p.stderr}"
        return json.loads(p.stdout) if args[0] == "state" else p.stdout

    return run


def test_console_socket(runtime, make_bundle, console_socket) -> None:
    """The master arrives as runc sends it; through it: a shell on /dev/pts/0, stdio all
    terminals, consoleSize applied, the slave is PID 1's controlling terminal and is bound
    on /dev/console; `exit 3` stops the container."""
    cid = runtime.new_id()
    base = [OCIRUNTIME, "--root", runtime.root, "--log", runtime.log]
    seen = console_session(
        _runner(base, {"c": cid}), console_socket, terminal_bundle(make_bundle, uid=1000)
    )
    assert seen == EXPECTED


@pytest.mark.skipif(RUNC is None, reason="runc (the reference) is not installed")
def test_console_socket_as_runc(make_bundle, tmp_path: Path) -> None:
    """The same session under runc, through the same recvtty: same observations."""
    root = f"/run/ociruntime-test-runc-{uuid.uuid4().hex[:8]}"
    cid = "t-" + uuid.uuid4().hex[:12]
    try:
        with ConsoleSocket(str(tmp_path / "runc.sock")) as listener:
            seen = console_session(
                _runner([str(RUNC), "--root", root], {"c": cid}),
                listener,
                terminal_bundle(make_bundle, uid=1000),
            )
    finally:
        subprocess.run([str(RUNC), "--root", root, "delete", "--force", cid], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    assert seen == EXPECTED


def test_run_attaches_the_callers_terminal(runtime, make_bundle) -> None:
    """`run` on a terminal: an interactive shell, the caller's size (and its changes on
    SIGWINCH), the caller's terminal raw meanwhile and restored after; the exit code."""
    bundle = terminal_bundle(make_bundle, size=None)
    cid = runtime.new_id()
    master, slave = os.openpty()
    termios.tcsetwinsize(master, (40, 120))
    before = termios.tcgetattr(slave)
    cmd = [OCIRUNTIME, "--root", runtime.root, "--log", runtime.log, "run", "-b", str(bundle.path),
           cid]  # fmt: skip
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    term = Console(master, "caller")
    try:
        term.read_until("/ # ")  # the shell's prompt: interactive, so on a terminal
        during = termios.tcgetattr(slave)
        assert not during[3] & (termios.ICANON | termios.ECHO | termios.ISIG), "not raw"
        assert during[1] & termios.OPOST, "raw as runc: output processing stays"
        assert ask(term, "tty") == "/dev/pts/0"
        assert ask(term, "stty size") == "40 120"
        termios.tcsetwinsize(master, (50, 132))
        proc.send_signal(signal.SIGWINCH)  # what the kernel sends a terminal's foreground
        assert ask(term, "stty size") == "50 132"
        term.write("exit 3\n")
        assert proc.wait(timeout=10) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        after = termios.tcgetattr(slave)
        os.close(slave)
        term.close()
    assert after == before, "the caller's terminal mode was not restored"
    assert not os.path.exists(os.path.join(runtime.root, cid)), "run did not delete"


def test_run_without_a_terminal_still_proxies(runtime, make_bundle) -> None:
    """stdin not a terminal (stderr is, as runc needs one of them: tests/test_parity.py):
    no raw mode, the output still comes through (newlines as the program wrote them), and
    stdin's end reaches the container as the terminal's EOF."""
    bundle = terminal_bundle(make_bundle, ["sh", "-c", 'tty; read x; echo "got $x"; exit 5'])
    cid = runtime.new_id()
    master, slave = os.openpty()
    try:
        r = subprocess.run([OCIRUNTIME, "--root", runtime.root, "run", "--bundle",
                            str(bundle.path), cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=slave, text=True, timeout=30)  # fmt: skip
    finally:
        os.close(slave)
        os.close(master)
    assert (r.returncode, r.stdout) == (5, "/dev/pts/0\ngot \n")
    assert not os.path.exists(os.path.join(runtime.root, cid))


# --- bad input: one line, exit 1, nothing left behind --------------------------------------


def test_terminal_without_console_socket(runtime, make_bundle) -> None:
    bundle = terminal_bundle(make_bundle)
    for command in (["create"], ["run", "-d"]):
        cid = runtime.new_id()
        expect_error(runtime, [*command, "--bundle", str(bundle.path), cid],
                     "/process/terminal", "console socket")  # fmt: skip
        assert_nothing_left(runtime, bundle)


@pytest.mark.parametrize("kind", ["missing", "regular-file", "directory", "not-listening"])
def test_bad_console_socket(runtime, make_bundle, tmp_path: Path, kind: str) -> None:
    bundle = terminal_bundle(make_bundle)
    path = tmp_path / "console.sock"
    needle = {"missing": "No such file", "not-listening": "Connection refused"}.get(
        kind, "not a socket"
    )
    if kind == "regular-file":
        path.write_text("")
    elif kind == "directory":
        path.mkdir()
    elif kind == "not-listening":
        socket.socket(socket.AF_UNIX).bind(str(path))  # closed at once: a stale socket
    cid = runtime.new_id()
    args = ["create", "--console-socket", str(path), "--bundle", str(bundle.path), cid]
    expect_error(runtime, args, "--console-socket", str(path), needle)
    assert_nothing_left(runtime, bundle)


def test_console_socket_without_terminal(runtime, make_bundle, console_socket) -> None:
    """As runc: --console-socket is refused unless a detached terminal needs it."""
    bundle = make_bundle(["true"])
    cid = runtime.new_id()
    args = ["create", "--console-socket", console_socket.path, "--bundle", str(bundle.path), cid]
    expect_error(runtime, args, "--console-socket", "cannot use console socket")
    bundle = terminal_bundle(make_bundle)
    args = ["run", "--console-socket", console_socket.path, "--bundle", str(bundle.path), cid]
    expect_error(runtime, args, "--console-socket", "cannot use console socket")
    assert_nothing_left(runtime, bundle)


def test_console_size_too_big(runtime, make_bundle, console_socket) -> None:
    bundle = terminal_bundle(make_bundle, size={"height": 70000, "width": 80})
    cid = runtime.new_id()
    args = ["create", "--console-socket", console_socket.path, "--bundle", str(bundle.path), cid]
    expect_error(runtime, args, "/process/consoleSize/height", "70000")
    assert_nothing_left(runtime, bundle)


def test_terminal_needs_devpts(runtime, make_bundle, console_socket) -> None:
    """Failing in the init (no /dev/pts mount, so no /dev/ptmx): rolled back, and the
    console socket gets a closed connection, no fd."""
    bundle = terminal_bundle(make_bundle)
    bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["destination"] != "/dev/pts"]
    bundle.write()
    cid = runtime.new_id()
    args = ["create", "--console-socket", console_socket.path, "--bundle", str(bundle.path), cid]
    expect_error(runtime, args, "config.json: /process/terminal: open /dev/ptmx")
    assert_nothing_left(runtime, bundle)
    with pytest.raises(AssertionError, match="expected one fd"):
        console_socket.accept(timeout=5)
