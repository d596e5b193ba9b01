"""`exec`: run a new process inside a running (or created) container, as `runc exec`.

The process is described by `--process FILE` (a runtime-spec `process` object, as
containerd's shim and conmon pass it) or, without it, by the container's own
`config.json` process with ARGS as its args and the flags' overrides (runc's rules).

How it enters the container (this command P, an intermediate I, the process C):

- P opens the init's namespaces (/proc/<init>/ns/*), detaches itself from the host's
  files and becomes non-dumpable (ociruntime.security.containersafe), then forks I. Nothing P
  holds, maps or runs from is then a host file C could reach through /proc.
- I, still in the host's PID namespace and so invisible to the container, joins the
  container's cgroups (host paths), then its namespaces: user first, then mount
  (setns(CLONE_NEWNS) sets I's root and cwd to the container's root), then the rest,
  and last the PID and time namespaces for its children. It forks C, reports C's pid
  and exits. So C is born inside the container with the container's root: there is no
  moment at which a process the container can see has the host's root or cwd (runc's
  nsexec orders it the same way). P is a child subreaper and so inherits C.
- C applies rlimits, the terminal, user, cwd, capabilities and no_new_privs and
  execs. Its errors reach P over a pipe; EOF on that pipe means execve succeeded.
- Foreground: P forwards signals, waits and returns the exit code (128+N on signal N).
  `--detach`: P writes --pid-file (C's host pid) and returns at once.

Failures exit 255 with `exec failed: ...`, as runc's.
"""

from __future__ import annotations

import _signal
import os

from ociruntime.container.state import open_existing, status_of
from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import syscalls as sc
from ociruntime.process import namespaces
from ociruntime.security import containersafe
from ociruntime.signals import FORWARDED_SIGNALS

EXIT_FAILED = 255  # runc: every exec failure
#: /proc/<pid>/ns names, in the order C joins them (user first, mount last). PID and time
#: are joined by P for its children.
_NS_NAMES = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "cgroup": "cgroup",
             "mount": "mnt"}  # fmt: skip
_FOR_CHILDREN = {"pid": "pid", "time": "time_for_children"}
#: The order I joins them in: see the module docstring.
_JOIN_ORDER = ("user", "mount", "ipc", "uts", "network", "cgroup", "pid", "time")


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
        from ociruntime.cli import check_pid_file_dir

        check_pid_file_dir(opts.pid_file)
    sd = open_existing(opts.root, opts.container_id)
    try:
        state = sd.load()
    finally:
        # The lock guards the state file only: held across the exec, a process frozen
        # in a paused container (--ignore-paused) would block `resume` forever.
        sd.unlock()
    status = status_of(sd, state)
    if status == "stopped":
        raise RuntimeFailure("cannot exec in a stopped container")
    if status == "creating":
        raise RuntimeFailure("cannot exec in a container that is being created")
    if status == "paused" and not opts.ignore_paused:
        raise RuntimeFailure("cannot exec in a paused container (use --ignore-paused to override)")
    config = _load_json(os.path.join(state.bundle, "config.json"), "config.json")
    proc = _process_spec(opts, config)
    if proc.get("terminal"):
        if opts.detach and not opts.console_socket:
            raise RuntimeFailure(
                "cannot allocate tty if runc will detach without setting console socket"
            )
        from ociruntime.process import terminal  # before setns: the container cannot import it

        terminal.check_config(proc)
    if opts.console_socket and not (proc.get("terminal") and opts.detach):
        raise RuntimeFailure("cannot use console socket if runc will not detach or allocate tty")

    # loaded before the fork: I and C import nothing
    from ociruntime.cgroups import cgroupfs  # noqa: F401
    from ociruntime.process import settings  # noqa: F401
    from ociruntime.security import capabilities  # noqa: F401

    # The container's linux.seccomp applies to exec'd processes too (runc's setns init);
    # built here, while the host's site-packages are reachable.
    opts.seccomp_filter = _container_seccomp(config)
    opts.process_attrs = _process_attrs(opts, proc, config)
    opts.status = status  # for a seccomp agent's ContainerProcessState

    ns_fds = _open_namespaces(state.pid)
    console = None
    peer = None
    try:
        if proc.get("terminal"):
            from ociruntime.process import terminal

            if opts.detach:
                console = terminal.connect(str(opts.console_socket))
            else:
                console, peer = terminal.pair()
        return _run(opts, sd, state, proc, ns_fds, console, peer, preserve_fds)
    finally:
        for fd in ns_fds.values():
            os.close(fd)
        if console is not None:
            console.close()


def _run(opts, sd, state, proc, ns_fds, console, peer, preserve_fds) -> int:
    from ociruntime.stages.channel import channel_pair

    parent, child = channel_pair()
    containersafe.detach_from_host_files()  # C inherits our memory as it is now
    containersafe.hide()
    sc.set_child_subreaper()  # C is I's child: it comes back to us when I exits
    intermediate = os.fork()
    if intermediate == 0:
        parent.close()
        _intermediate(opts, state, proc, ns_fds, console, child, preserve_fds)
    child.close()
    pid = _reap_intermediate(parent, intermediate)
    if console is not None:
        console.close()
    msg = _serve_child(opts, state, parent, pid) if pid else None
    if pid == 0 or msg is not None:  # an error before execve: C exits, reap it
        if pid:
            os.waitpid(pid, 0)
        msg = msg or _INTERMEDIATE_FAILED
        if peer is not None:
            peer.close()
        raise RuntimeFailure(str(msg.get("message", "exec: the process failed to start")))
    if opts.pid_file:  # foreground too, as runc
        _write_pid_file(opts.pid_file, pid)
    if opts.detach:
        return 0
    for sig in FORWARDED_SIGNALS:
        _signal.signal(sig, lambda n, _frame: _forward(pid, n))
    if peer is not None:
        from ociruntime.process import terminal

        try:
            attached = terminal.Attached(terminal.receive_master(peer))
        finally:
            peer.close()
        attached.prepare()
        _signal.signal(_signal.SIGWINCH, lambda _n, _frame: attached.resize())
        status = attached.run(pid)
    else:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status)


def _serve_child(opts, state, chan, pid: int) -> dict | None:  # noqa: ANN001
    """C's one message (its error, or None once it execs), after handing its seccomp
    notify fd to the agent if it asks for that (as create does for the init)."""
    try:
        msg = chan.receive()
        while msg is not None and msg.get("type") == "seccomp":
            from ociruntime.container.state import public_state
            from ociruntime.security import seccomp_notify

            container = public_state(state, opts.status)
            try:
                seccomp_notify.forward(opts.seccomp_filter, pid, msg.get("fd"), container)
            except BaseException:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
                raise
            chan.send("seccomp-done")
            msg = chan.receive()
        return msg
    finally:
        chan.close()


def _write_pid_file(path: str, pid: int) -> None:
    """As runc: a pid file that cannot be written fails exec, and the process it would
    have named is killed and reaped first, never left running unaccounted for. (The CLI
    checked the directory before anything started; this is the race after that.)"""
    from ociruntime.commands.create import write_pid_file

    try:
        write_pid_file(path, pid)
    except OSError as e:
        _forward(pid, _signal.SIGKILL)
        os.waitpid(pid, 0)
        raise RuntimeFailure(f"--pid-file {path}: {e.strerror}") from None


def _forward(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _open_namespaces(init_pid: int) -> dict[str, int]:
    """fds of the init's namespaces that differ from ours (joining our own user namespace
    would fail; the others would be no-ops)."""
    fds: dict[str, int] = {}
    try:
        for kind, name in (*_NS_NAMES.items(), *(("pid", "pid"), ("time", "time"))):
            try:
                theirs = os.stat(f"/proc/{init_pid}/ns/{name}")
            except FileNotFoundError:
                continue  # a kernel without this namespace type
            except ProcessLookupError:
                raise RuntimeFailure("cannot exec in a stopped container") from None
            mine_name = _FOR_CHILDREN.get(kind, name)
            try:
                mine = os.stat(f"/proc/self/ns/{mine_name}")
            except FileNotFoundError:
                mine = None
            if mine is not None and (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
                continue
            fds[kind] = os.open(f"/proc/{init_pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


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


_INTERMEDIATE_FAILED = {"message": "exec: the process failed to enter the container"}


def _reap_intermediate(chan, intermediate: int) -> int:  # noqa: ANN001
    """C's pid as I reports it (0 if I failed: its error is then the next message), once
    I is reaped, so that C is already ours to wait for."""
    msg = chan.receive()
    os.waitpid(intermediate, 0)
    if msg is not None and msg.get("type") == "pid":
        return int(msg["pid"])
    if msg is not None:
        raise RuntimeFailure(str(msg.get("message", _INTERMEDIATE_FAILED["message"])))
    return 0


def _intermediate(opts, state, proc, ns_fds, console, chan, preserve_fds) -> None:
    """I: join the container, fork C inside it, report C's pid; never returns."""
    from ociruntime.stages.channel import run_stage

    def body() -> None:
        if containersafe.IMPORT_GUARD_ENV in os.environ:  # tests: no import after the fork
            from ociruntime import importguard

            importguard.install("exec")
        keep = {*range(3, 3 + preserve_fds), chan.rfd, chan.wfd, *ns_fds.values()}
        if console is not None:
            keep.add(console.sock.fileno())
        from ociruntime.log import LOG

        LOG.forget_file()
        containersafe.close_fds(keep)
        _join_container(state, ns_fds, getattr(opts, "process_attrs", None))
        pid = os.fork()
        if pid == 0:
            run_stage(chan, lambda: _finish_and_exec(state, proc, console, chan, opts),
                      "exec", EXIT_FAILED)  # fmt: skip
        chan.send("pid", pid=pid)
        os._exit(0)

    run_stage(chan, body, "exec", EXIT_FAILED)


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


def _container_seccomp(config: dict) -> object | None:
    spec = (config.get("linux") or {}).get("seccomp") if isinstance(config, dict) else None
    if not spec:
        return None
    from ociruntime.security import seccomp

    return seccomp.build(spec)


def _join_container(state, ns_fds, attrs=None) -> None:  # noqa: ANN001
    """In I: the container's cgroups, then its namespaces, the mount namespace right
    after the user one (from then on our root is the container's), the PID and time
    namespaces last, for C. Closes the namespace fds."""
    from ociruntime.cgroups import cgroupfs
    from ociruntime.security import capabilities

    capabilities.last_cap()  # read (and remembered) on our own /proc, for C
    if attrs is not None:  # process.execCPUAffinity: initial before the cgroups
        attrs.set_initial_affinity()
    cgroupfs.join(state.cgroup_dirs, 0)  # 0: this process (host paths: before setns(mnt))
    if attrs is not None:  # ... final (or the container's default) after
        attrs.set_final_affinity(state.cgroup_dirs)
    for kind in _JOIN_ORDER:
        fd = ns_fds.pop(kind, None)
        if fd is None:
            if kind == "mount":  # sharing our mount namespace: the container's root
                os.chroot(f"/proc/{state.pid}/root")
            continue
        try:
            sc.setns(fd, namespaces.FLAGS[kind])
        except OSError as e:
            raise RuntimeFailure(
                f"joining the container's {kind} namespace: {e.strerror}"
            ) from None
        finally:
            os.close(fd)
    os.chdir("/")


def _finish_and_exec(state, proc, console, chan, opts) -> None:  # noqa: ANN001
    """In C, inside the container: the process's own settings, then execve."""
    seccomp_filter = getattr(opts, "seccomp_filter", None)
    attrs = getattr(opts, "process_attrs", None)
    from ociruntime.process import settings
    from ociruntime.security import capabilities, procfs

    # The container's /proc, checked (no mount on a path we write is followed), never a
    # handle on the host's: a container process could take that from us through /proc.
    procfs.use_host()

    settings.apply_rlimits(proc.get("rlimits") or [])
    if "oomScoreAdj" in proc:
        settings.set_oom_score_adj(proc["oomScoreAdj"])
    if attrs is not None:  # personality, scheduler, I/O priority, LSM labels
        attrs.apply()
    procfs.close()  # done with /proc: nothing else happens here that needs it
    if not getattr(state, "no_new_keyring", False):  # the container's keyring, as runc
        settings.join_session_keyring(f"_ses.{state.id}", set_permissions=False)
    env = settings.env_dict(proc.get("env") or [])
    executable = settings.find_executable(proc["args"][0], env)
    user = proc.get("user") or {}
    if console is not None:
        os.setsid()
        console.setup(proc.get("consoleSize"), user.get("uid", 0), console=False)
    cap_sets = capabilities.resolve_sets(proc.get("capabilities"))
    no_new_privs = bool(proc.get("noNewPrivileges"))
    if seccomp_filter is not None and not no_new_privs:  # needs CAP_SYS_ADMIN: before
        settings.load_seccomp(seccomp_filter, chan)
    settings.switch_user(user, cap_sets)
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise RuntimeFailure(f"process.cwd {cwd}: {e.strerror}") from None
    settings.apply_capabilities(cap_sets, no_new_privs)
    if seccomp_filter is not None and no_new_privs:  # as late as runc's setns init
        settings.load_seccomp(seccomp_filter, chan)
    settings.restore_signal_defaults(*FORWARDED_SIGNALS)
    os.execve(executable, proc["args"], env)
