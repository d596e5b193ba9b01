"""`exec`: run a new process inside a running (or created) container, as `runc exec`.

The process is described by `--process FILE` (a runtime-spec `process` object, as
containerd's shim and conmon pass it) or, without it, by the container's own
`config.json` process with ARGS as its args and the flags' overrides (runc's rules).

How it enters the container (this command P, an intermediate I, the process C) is
ociruntime/stages/exec_stages.py's. This module parses the options, reads the state,
builds the plan (the process with the flags' overrides, the container's seccomp filter
and process attributes, the init's namespaces) and waits: foreground, P forwards
signals, waits and returns the exit code (128+N on signal N); `--detach`, P writes
--pid-file (C's host pid) and returns at once.

Failures exit 255 with `exec failed: ...`, as runc's.
"""

from __future__ import annotations

import _signal
import gc
import posix  # not os (~1 ms): exec's path loads none (pathlite.py)

from ociruntime import pathlite
from ociruntime.container.container import Container
from ociruntime.errors import COMMAND_LINE_PROCESS, RuntimeFailure
from ociruntime.signals import FORWARDED_SIGNALS
from ociruntime.stages import exec_stages
from ociruntime.stages.exec_stages import EXIT_FAILED
from ociruntime.stages.plan import ExecPlan

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
__all__ = ["EXIT_FAILED", "ExecOptions", "exec_command"]


class ExecOptions:
    def __init__(self, root: str, container_id: str, args: list[str], o: dict) -> None:
        self.root, self.container_id, self.args = root, container_id, args
        self.process_file: str | None = o.get("process")  # type: ignore[assignment]
        self.tty = bool(o.get("tty"))
        self.console_socket: str | None = o.get("console_socket")  # type: ignore[assignment]
        self.detach = bool(o.get("detach"))
        self.pid_file: str | None = o.get("pid_file")  # type: ignore[assignment]
        self.cwd: str | None = o.get("cwd")  # type: ignore[assignment]
        self.env: list[str] = list(o.get("env") or [])  # type: ignore[arg-type]
        self.user: str | None = o.get("user")  # type: ignore[assignment]
        self.additional_gids: list[str] = list(o.get("additional_gids") or [])  # type: ignore[arg-type]
        self.caps: list[str] = list(o.get("cap") or [])  # type: ignore[arg-type]
        self.no_new_privs = bool(o.get("no_new_privs"))
        self.preserve_fds = str(o.get("preserve_fds") or "0")
        self.apparmor: str | None = o.get("apparmor")  # type: ignore[assignment]
        self.process_label: str | None = o.get("process_label")  # type: ignore[assignment]
        self.ignore_paused = bool(o.get("ignore_paused"))
        self.cgroup: list[str] = list(o.get("cgroup") or [])  # type: ignore[arg-type]


def _fail(message: str) -> RuntimeFailure:
    return RuntimeFailure(f"exec failed: {message}", exit_code=EXIT_FAILED)


def exec_command(opts: ExecOptions) -> int:
    try:
        return _exec(opts)
    except RuntimeFailure as e:
        if e.exit_code == EXIT_FAILED:
            raise
        raise _fail(str(e)) from None


def _exec(opts: ExecOptions) -> int:
    try:
        preserve_fds = int(opts.preserve_fds)
    except ValueError:
        raise RuntimeFailure(f"invalid value for --preserve-fds: {opts.preserve_fds}") from None
    if opts.pid_file:
        from ociruntime.commands import pidfile

        pidfile.check_dir(opts.pid_file)
    container = Container.load(opts.root, opts.container_id)
    # The lock guards the state file only: held across the exec, a process frozen in a
    # paused container (--ignore-paused) would block `resume` forever.
    container.unlock()
    status = container.check("exec --ignore-paused" if opts.ignore_paused else "exec")
    state = container.state
    cgroups = container.cgroups
    if opts.cgroup:  # join sub-cgroups of the container's instead
        cgroups = cgroups.sub(sub_cgroup_paths(opts.cgroup))
    config = _load_json(pathlite.join(state.bundle, "config.json"), "config.json")
    proc = _process_spec(opts, config)
    _check_terminal(opts, proc)
    # The container's linux.seccomp applies to exec'd processes too (runc's setns init);
    # built here, while the host's site-packages are reachable.
    seccomp_filter = _container_seccomp(config, opts.root)
    attrs = _process_attrs(opts, proc, config)
    mempolicy = _container_mempolicy(config)
    ns_fds = exec_stages.open_namespaces(state.pid)
    console = None
    peer = None
    try:
        if proc.get("terminal"):
            from ociruntime.process import terminal

            if opts.detach:
                console = terminal.connect(str(opts.console_socket))
            else:
                console, peer = terminal.pair()
        document = (f"--process {opts.process_file}", "") if opts.process_file else (
            COMMAND_LINE_PROCESS, "/process")  # fmt: skip
        plan = ExecPlan(
            container=state, cgroups=cgroups, status=status, process=proc,
            process_document=document,
            ns_fds=ns_fds, console=console, preserve_fds=preserve_fds,
            seccomp=seccomp_filter, attrs=attrs, mempolicy=mempolicy,  # type: ignore[arg-type]
        )  # fmt: skip
        return _run(opts, plan, peer)
    finally:
        for fd in ns_fds.values():
            posix.close(fd)
        if console is not None:
            console.close()


def sub_cgroup_paths(args: list[str]) -> dict[str, str]:
    """--cgroup [<controller>[,<controller>...]:]<path>, repeatable, as runc 1.1.5's
    getSubCgroupPaths reads it: controller -> path below the container's cgroup; "" (no
    prefix, allowed alone only, or an empty one) for every hierarchy; a later path for a
    controller replaces an earlier one."""
    paths: dict[str, str] = {}
    for arg in args:
        parts = arg.split(":", 2)
        if len(parts) > 2:
            raise RuntimeFailure(f"invalid --cgroup argument: {arg}")
        if len(parts) == 1:
            if len(args) != 1:
                raise RuntimeFailure(
                    f"invalid --cgroup argument: {arg} (missing <controller>: prefix)"
                )
            paths[""] = arg
            continue
        for controller in parts[0].split(","):
            paths[controller] = parts[1]
    return paths


def _check_terminal(opts: ExecOptions, proc: dict) -> None:
    """runc's rules: a detached terminal needs --console-socket, which is for nothing else."""
    if proc.get("terminal"):
        if opts.detach and not opts.console_socket:
            raise RuntimeFailure(
                "cannot allocate tty if runc will detach without setting console socket"
            )
        from ociruntime.process import terminal  # before setns: the container cannot import it

        terminal.check_config(proc)
    if opts.console_socket and not (proc.get("terminal") and opts.detach):
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate tty")


def _run(opts: ExecOptions, plan: ExecPlan, peer: object | None) -> int:
    """Start the process (exec_stages), then the pid file and, unless detached, wait."""
    try:
        pid = exec_stages.start(plan)
    except BaseException:
        if peer is not None:
            peer.close()  # type: ignore[attr-defined]
        raise
    if opts.pid_file:  # foreground too, as runc
        _write_pid_file(opts.pid_file, pid)
    if opts.detach:
        return 0
    return _wait(pid, peer)


def _wait(pid: int, peer: object | None) -> int:
    """Foreground: forward signals (and, with a terminal, proxy it) until C exits."""
    gc.enable()  # a long wait: cycles are collected again (cli.run_and_exit)
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda n, _frame: _forward(pid, n))
    if peer is not None:
        from ociruntime.process import terminal

        try:
            attached = terminal.Attached(terminal.receive_master(peer))
        finally:
            peer.close()  # type: ignore[attr-defined]
        attached.prepare()
        _signal.signal(_signal.SIGWINCH, lambda _n, _frame: attached.resize())
        status = attached.run(pid)
    else:
        while True:
            try:
                _, status = posix.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    if posix.WIFEXITED(status):
        return posix.WEXITSTATUS(status)
    return 128 + posix.WTERMSIG(status)


def _write_pid_file(path: str, pid: int) -> None:
    """As runc: a pid file that cannot be written fails exec, and the process it would
    have named is killed and reaped first, never left running unaccounted for. (The CLI
    checked the directory before anything started; this is the race after that.)"""
    from ociruntime.commands import pidfile

    try:
        pidfile.write(path, pid)
    except OSError as e:
        _forward(pid, _signal.SIGKILL)
        posix.waitpid(pid, 0)
        raise RuntimeFailure(f"--pid-file {path}: {e.strerror}") from None


def _forward(pid: int, signum: int) -> None:
    try:
        posix.kill(pid, signum)
    except ProcessLookupError:
        pass


def _process_spec(opts: ExecOptions, config: dict) -> dict:
    """The process to run: --process FILE as given, or config.json's with the flags."""
    if opts.process_file:
        if opts.args:
            raise RuntimeFailure("--process: no arguments are allowed with a process file")
        proc = _load_json(opts.process_file, "--process " + opts.process_file)
        where = f"--process {opts.process_file}"
    else:
        if not opts.args:
            raise RuntimeFailure("exec args cannot be empty")
        proc = config.get("process") if isinstance(config, dict) else None
        if not isinstance(proc, dict):
            raise RuntimeFailure("config.json: /process: missing")
        proc = dict(proc, args=list(opts.args), terminal=opts.tty)
        proc.pop("consoleSize", None)
        where = "config.json /process"
    _check_process(proc, where)
    if opts.env:
        from ociruntime.container.bundle import check_env

        check_env(opts.env, "--env")
        proc["env"] = [*(proc.get("env") or []), *opts.env]
    if opts.cwd:
        proc["cwd"] = opts.cwd
    if opts.tty:
        proc["terminal"] = True
    user = dict(proc.get("user") or {})
    if opts.user:
        uid, _, gid = opts.user.partition(":")
        try:
            user["uid"] = int(uid)
            if gid:
                user["gid"] = int(gid)
        except ValueError:
            raise RuntimeFailure(f"--user {opts.user}: uid and gid must be numbers") from None
    if opts.additional_gids:
        try:
            gids = [int(g) for g in opts.additional_gids]
        except ValueError:
            raise RuntimeFailure("--additional-gids: must be numbers") from None
        user["additionalGids"] = [*(user.get("additionalGids") or []), *gids]
    proc["user"] = user
    if opts.caps:
        caps = {k: list(v or []) for k, v in (proc.get("capabilities") or {}).items()}
        for name in opts.caps:
            for s in ("bounding", "effective", "permitted", "ambient"):
                caps.setdefault(s, []).append(name)
        proc["capabilities"] = caps
    if opts.no_new_privs:
        proc["noNewPrivileges"] = True
    if opts.apparmor:
        proc["apparmorProfile"] = opts.apparmor
    if opts.process_label:
        proc["selinuxLabel"] = opts.process_label
    if not str(proc.get("cwd") or "/").startswith("/"):
        raise RuntimeFailure(f"{where}: cwd {proc.get('cwd')!r} must be an absolute path")
    return proc


def _load_json(path: str, what: str) -> dict:
    """A JSON object from a file, with config.json's bounds (bundle.read_bounded and
    parse_json: a regular file, bounded size and depth, no NUL in any string)."""
    from ociruntime.container import bundle

    try:
        value = bundle.parse_json(bundle.read_bounded(path, what), what)
    except FileNotFoundError:
        raise RuntimeFailure(f"{what}: no such file or directory") from None
    if not isinstance(value, dict):
        raise RuntimeFailure(f"{what}: not a JSON object")
    return value


def _check_process(proc: dict, where: str) -> None:
    """The shapes exec relies on (the schema's, for the fields it uses)."""
    args = proc.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
        raise RuntimeFailure(f"{where}: args must be a non-empty list of strings")
    env = proc.get("env", [])
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise RuntimeFailure(f"{where}: env must be a list of strings")
    from ociruntime.container.bundle import check_env

    check_env(env, f"{where}: env")
    if not isinstance(proc.get("cwd", "/"), str):
        raise RuntimeFailure(f"{where}: cwd must be a string")
    user = proc.get("user", {})
    if not isinstance(user, dict):
        raise RuntimeFailure(f"{where}: user must be an object")
    for key in ("uid", "gid", "umask"):
        if key in user and (not isinstance(user[key], int) or user[key] < 0):
            raise RuntimeFailure(f"{where}: user.{key} must be a non-negative integer")
    gids = user.get("additionalGids", [])
    if not isinstance(gids, list) or not all(isinstance(g, int) and g >= 0 for g in gids):
        raise RuntimeFailure(f"{where}: user.additionalGids must be a list of integers")
    caps = proc.get("capabilities", {})
    if not isinstance(caps, dict) or not all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in caps.values()
    ):
        raise RuntimeFailure(f"{where}: capabilities must map set names to lists of names")
    rlimits = proc.get("rlimits", [])
    if not isinstance(rlimits, list) or not all(
        isinstance(r, dict) and isinstance(r.get("type"), str)
        and isinstance(r.get("soft"), int) and isinstance(r.get("hard"), int)
        for r in rlimits
    ):  # fmt: skip
        raise RuntimeFailure(f"{where}: rlimits must be objects with type, soft and hard")


def _process_attrs(opts: ExecOptions, proc: dict, config: dict) -> object | None:
    """The process's scheduler, I/O priority, CPU affinity and LSM labels and the
    container's personality, checked now (ociruntime.process.procattrs, only when one is set)."""
    from ociruntime.process import settings

    linux = config.get("linux") or {}
    if not isinstance(linux, dict) or not settings.wants_attrs(proc, linux):
        return None
    from ociruntime.process import procattrs
    from ociruntime.security import lsm

    if opts.process_label:
        lsm.check_selinux_label(opts.process_label, "--process-label")
    proc_at = f"--process {opts.process_file}: " if opts.process_file else "config.json: /process"
    return procattrs.plan(proc, linux, proc_at, "config.json: /linux")


def _container_mempolicy(config: dict) -> object | None:
    """The container's linux.memoryPolicy, for the exec'd process too: the policy is the
    container's, and an exec'd process descends from us, not from the init, so it would
    otherwise run under ours (checked again: the host's nodes may have changed)."""
    linux = (config.get("linux") or {}) if isinstance(config, dict) else {}
    if linux.get("memoryPolicy") is None:
        return None
    from ociruntime.process import mempolicy

    where = "config.json: /linux/memoryPolicy"
    return mempolicy.plan(linux["memoryPolicy"], where, mempolicy.online_nodes())


def _container_seccomp(config: dict, root: str) -> object | None:
    spec = (config.get("linux") or {}).get("seccomp") if isinstance(config, dict) else None
    if not spec:
        return None
    from ociruntime.security import seccomp_cache

    return seccomp_cache.filter_for(spec, root)
