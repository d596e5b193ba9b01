"""The cgroup warm-up: start the kernel's grace period before anything else.

On cgroup v1 (and v2 without favordynmods) the kernel's first cgroup migration after a
quiet spell waits for an RCU grace period, and waits holding the global cgroup lock, so
every cgroup mkdir made meanwhile waits too. With both CPUs busy the period lasts 10-25 ms
here: the longest wait of a create, whose init cannot mount its cgroups before they exist.
A no-op move of the runtime into its own cgroup, written by a thread outside Python
(kernel/threadwrite.py: it starts at once, whoever holds the GIL), starts that period
early, and the create, run or exec goes on meanwhile; the init's join that follows
within a short window is fast. The thread only makes system calls, so forking while it
runs is safe: the child has no such thread.

The compiled launcher (launcher.c) starts it before the interpreter, from the same
command word and target as `command_of` and `own_v1_procs` (tests/test_launcher.py
holds them together), and hands its thread over (`adopt`). The script launcher calls
`warm_up_for` before the CLI is even imported, ~0.8 ms after the interpreter instead of
~3 ms (after the CLI's and cgroupfs's imports); A/Bs of 120 interleaved creates: median
-0.1 and -0.8 ms, mean -0.9 and -1.0 ms. Hence only `posix`, no ociruntime module but
the thread's, and the target found from two small reads as bytes; `cgroupfs.hierarchies`
reads the same files properly for the rest.
"""

import posix  # not os: nothing runs before this (pathlite.py)
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence

#: The commands whose cgroup joins the warm-up speeds up.
WARMED = frozenset(("create", "run", "exec"))
#: The CLI's global flags that take a value (cli.GLOBAL_FLAGS; a test keeps them equal).
GLOBAL_VALUE_FLAGS = frozenset(("root", "log", "log-format", "criu", "rootless"))
#: Mount options of a v1 hierarchy that name no controller (cgroupfs uses this list too).
NOT_CONTROLLERS = frozenset((b"rw", b"ro", b"clone_children", b"noprefix", b"xattr", b"none"))

_started = False


def command_of(argv: "Sequence[str]") -> "str | None":
    """The command word of an `ociruntime` command line (its arguments, without the
    program name), skipping the global flags as cli.parse_flags does; None if none."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv[i + 1] if i + 1 < len(argv) else None
        if not arg.startswith("-") or arg == "-":
            return arg
        name, eq, _ = arg.lstrip("-").partition("=")
        i += 2 if name in GLOBAL_VALUE_FLAGS and not eq else 1
    return None


def warm_up_for(argv: "Sequence[str]") -> None:
    """From the launcher: start the warm-up if the command line is a create, run or
    exec. A misread command line only starts it for nothing, or leaves it to the CLI."""
    if command_of(argv) in WARMED:
        start()


def start() -> None:
    """Once per process: start the no-op move of ourselves into our own cgroup of the
    first v1 hierarchy, in a thread. Nothing to do on a v2-only host, or when there is
    no such thread (pids.max reached, say): the init's join then pays the wait."""
    global _started
    if _started:
        return
    _started = True
    procs = own_v1_procs()
    if procs is None:
        return
    from ociruntime.kernel import threadwrite

    try:
        threadwrite.start(procs, b"0")
    except OSError:
        pass


def adopt(thread: int) -> None:
    """From the compiled launcher (launcher.c), which started the warm-up itself before
    the interpreter: `thread` is its pthread, which `wait` joins; `start` does nothing."""
    global _started
    _started = True
    from ociruntime.kernel import threadwrite

    threadwrite.adopt(thread)


def own_v1_procs() -> "str | None":
    """`cgroup.procs` of our own cgroup in the first v1 controller hierarchy mounted
    (/proc/self/mountinfo's order; cgroupfs.hierarchies' rule: first mount of each, our
    cgroup from /proc/self/cgroup); None if there is none."""
    own: dict[frozenset[bytes], bytes] = {}
    for line in _read(b"/proc/self/cgroup").split(b"\n"):
        parts = line.split(b":", 2)
        if len(parts) == 3 and parts[1] and not parts[1].startswith(b"name="):
            own[frozenset(parts[1].split(b","))] = parts[2]
    if not own:
        return None
    for line in _read(b"/proc/self/mountinfo").split(b"\n"):
        fields, sep, fs = line.partition(b" - cgroup ")
        if not sep:
            continue
        path = own.get(frozenset(fs.split()[-1].split(b",")) - NOT_CONTROLLERS)
        if path is not None:
            mountpoint = fields.split()[4]
            return (mountpoint + path.rstrip(b"/") + b"/cgroup.procs").decode(
                sys.getfilesystemencoding(), "surrogateescape"
            )
    return None


def _read(path: bytes) -> bytes:
    """The whole of a /proc file, or b"" if it cannot be read. (procfs.read's loop, but
    not procfs's verified handle nor `os`: this runs before anything else is imported,
    and only reads.)"""
    try:
        fd = posix.open(path, posix.O_RDONLY | posix.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks = []
        while chunk := posix.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        posix.close(fd)


def wait() -> None:
    """Block until the warm-up thread has ended (some namespace changes need a
    single-threaded process). Only in the process that started it, never in a child."""
    threadwrite = sys.modules.get("ociruntime.kernel.threadwrite")
    if threadwrite is not None:  # loaded by start, if it started one
        threadwrite.join()
