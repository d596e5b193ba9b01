"""Running OCI hooks: the state JSON on stdin, the hook's own args/env, and its timeout.

A hook runs wherever the caller is: the runtime runs prestart, createRuntime, poststart and
poststop in the runtime namespace; the container init runs createContainer (before
pivot_root) and startContainer (in the container). Its working directory is runc's: the
bundle for the runtime's hooks (runc's create and run chdir into it; an engine runs
runc's start and delete from it too), the rootfs (its host path) for createContainer, the
process's cwd for startContainer (the init's own, by then); a hook may name files
relative to it. `subprocess` is not used: it costs
more to import than the whole hot path has to spare, and posix_spawn + a pidfd gives the
timeout without threads.
"""

from __future__ import annotations

import _signal
import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import select
import time

from ociruntime import jsonlite
from ociruntime.errors import RuntimeFailure, field_error, pointer

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping

HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
_OUTPUT_LIMIT = 4096
#: The hooks the runtime runs in its own namespaces: from the bundle directory.
_RUNTIME_KINDS = frozenset(("prestart", "createRuntime", "poststart", "poststop"))


def run_hook(kind: str, index: int, hook: dict, state: dict, cwd: str | None = None) -> None:
    """Run one hook to completion, in `cwd` (the bundle for the runtime's kinds by
    default); a non-zero exit, a signal or a timeout is a failure."""
    where = pointer("hooks", kind, index)
    failed = f"error running hook #{index}: "  # runc's words for every kind: engines match them
    path = hook["path"]
    argv = hook.get("args") or [hook["path"]]
    env = hook["env"] if "env" in hook else None
    if cwd is None and kind in _RUNTIME_KINDS:
        cwd = state.get("bundle")
    stdin_r, stdin_w = posix.pipe()
    out_r, out_w = posix.pipe()
    try:
        pid = _spawn_in(
            cwd,
            hook["path"],
            argv,
            _env_dict(env) if env is not None else posix.environ,
            [
                (posix.POSIX_SPAWN_DUP2, stdin_r, 0),
                (posix.POSIX_SPAWN_DUP2, out_w, 1),
                (posix.POSIX_SPAWN_DUP2, out_w, 2),
            ],
        )
    except OSError as e:
        for fd in (stdin_r, stdin_w, out_r, out_w):
            posix.close(fd)
        raise field_error(where, f"{failed}{path}: {e.strerror}") from None
    posix.close(stdin_r)
    posix.close(out_w)
    try:
        posix.write(stdin_w, jsonlite.dumps(state).encode())
    except BrokenPipeError:
        pass  # the hook does not read its stdin: allowed
    finally:
        posix.close(stdin_w)
    try:
        output, status = _wait(pid, out_r, hook.get("timeout"))
    except TimeoutError:
        timeout = f"{float(hook['timeout']):.1f}s"
        ran_past = f"hook ran past specified timeout of {timeout}"
        raise field_error(where, f"{failed}{path}: {ran_past}") from None
    if status != 0:
        detail = output.decode(errors="replace").strip()
        reason = _describe(status)
        raise field_error(where, f"{failed}{path}: {reason}" + (f": {detail}" if detail else ""))


def _spawn_in(
    cwd: str | None, path: str, argv: list[str], env: Mapping[str, str], actions: list
) -> int:
    """posix_spawn in `cwd`: Python offers no chdir file action, so the caller (a runtime
    command or the init, single-threaded both) steps into `cwd` for the spawn and back.
    A `cwd` that is gone (a removed bundle, at delete) leaves the caller's."""
    back = -1
    if cwd is not None:
        back = posix.open(".", posix.O_PATH | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            posix.chdir(cwd)
        except OSError:
            posix.close(back)
            back = -1
    try:
        return posix.posix_spawn(
            path, argv, env, file_actions=actions, setsigdef=(_signal.SIGPIPE,)
        )
    finally:
        if back >= 0:
            posix.fchdir(back)
            posix.close(back)


def _env_dict(env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)


#: poll(2)'s longest timeout (an int of milliseconds, ~24.8 days); `timeout` may exceed it.
_MAX_POLL_MS = 2**31 - 1


def _wait(pid: int, out_r: int, timeout: int | None) -> tuple[bytes, int]:
    """Collect the hook's output until it exits; kill it (and raise TimeoutError) when the
    timeout passes."""
    pidfd = posix.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(out_r, select.POLLIN)
    output = b""
    deadline_ms = None if timeout is None else timeout * 1000
    start = time.monotonic()
    try:
        while True:
            remaining = None
            if deadline_ms is not None:
                remaining = max(0, int(deadline_ms - (time.monotonic() - start) * 1000))
            events = poller.poll(None if remaining is None else min(remaining, _MAX_POLL_MS))
            if not events:
                if remaining is not None and remaining > _MAX_POLL_MS:
                    continue  # a timeout longer than poll(2) takes: wait on in slices
                posix.kill(pid, _signal.SIGKILL)
                posix.waitpid(pid, 0)
                raise TimeoutError
            for fd, _ in events:
                if fd == out_r:
                    chunk = posix.read(out_r, 65536)
                    if not chunk:
                        poller.unregister(out_r)
                    output = (output + chunk)[-_OUTPUT_LIMIT:]
                else:
                    _, status = posix.waitpid(pid, 0)
                    output += _drain(out_r)
                    return output[-_OUTPUT_LIMIT:], status
    finally:
        posix.close(pidfd)
        posix.close(out_r)


def _drain(fd: int) -> bytes:
    """What is left in the pipe once the hook exited (a child it forked may keep it open,
    so read only what is already there)."""
    posix.set_blocking(fd, False)
    data = b""
    try:
        while chunk := posix.read(fd, 65536):
            data += chunk
    except BlockingIOError:
        pass
    return data


def _describe(status: int) -> str:
    if posix.WIFSIGNALED(status):
        return f"killed by signal {posix.WTERMSIG(status)}"
    return f"exit status {posix.waitstatus_to_exitcode(status)}"


def run_hooks(kind: str, hooks: list[dict], state: dict, cwd: str | None = None) -> None:
    for index, hook in enumerate(hooks):
        run_hook(kind, index, hook, state, cwd)


def run_hooks_warn(kind: str, hooks: list[dict], state: dict) -> None:
    """poststart/poststop: a failure is a warning, the operation goes on (spec)."""
    from ociruntime.log import LOG

    for index, hook in enumerate(hooks):
        try:
            run_hook(kind, index, hook, state)
        except RuntimeFailure as e:
            LOG.warning(str(e))
