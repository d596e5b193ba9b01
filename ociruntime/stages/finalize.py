"""The last steps of a process entering a container, shared by the init and exec's C
(runc's finalizeNamespace and what surrounds it in its standard and setns inits).

Inside the container's namespaces and root, still with every privilege: rlimits, OOM
score, personality/scheduler/LSM attributes, the session keyring, the executable found
(so a missing program fails now, not at start), then privileges dropped in the order the
kernel allows: seccomp first without noNewPrivileges (loading it then needs
CAP_SYS_ADMIN; the user switch runs under the filter, as in runc), cwd, user, cwd
again if root could not enter it, capabilities, and seccomp last with noNewPrivileges
(as late as runc 1.1.5: what still runs under it is the caller's last messages and
execve). `execute` is the execve.

What differs between the two callers is a parameter: the keyring's permissions, where
/proc is opened and closed, exec's terminal, and the init's last privileged step
(`before_seccomp`: it stops being bound to `create` while it still may).
Imported before the fork by both (nothing here imports anything).
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime.errors import field_error, pointer
from ociruntime.process import settings
from ociruntime.security import capabilities, procfs

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

    from ociruntime.process.mempolicy import MemoryPolicy
    from ociruntime.process.procattrs import ProcessAttrs
    from ociruntime.process.terminal import InitConsole
    from ociruntime.security.seccomp import Filter
    from ociruntime.stages.protocol import StageEnd


class Finalize:
    """How a caller finalizes: the differences between the init and exec's C."""

    __slots__ = ("seccomp", "attrs", "keyring", "keyring_permissions", "exec_procfs",
                 "console", "before_seccomp", "document", "process_at", "mempolicy")  # fmt: skip

    def __init__(
        self,
        *,
        seccomp: Filter | None,
        attrs: ProcessAttrs | None,
        keyring: str | None,
        keyring_permissions: bool,
        exec_procfs: bool,
        console: InitConsole | None = None,
        before_seccomp: Callable[[], None] | None = None,
        document: tuple[str, str] = ("config.json", "/process"),
        mempolicy: MemoryPolicy | None = None,
    ) -> None:
        self.seccomp, self.attrs = seccomp, attrs
        #: linux.memoryPolicy: set before the user switch and any filter, inherited by
        #: the process across execve
        self.mempolicy = mempolicy
        #: the session keyring to join (None: --no-new-keyring), and whether to let the
        #: container's user search it (the init's; exec may not own it)
        self.keyring, self.keyring_permissions = keyring, keyring_permissions
        #: exec: open the container's /proc for the process attributes and close it right
        #: after them. The init: its private procfs is open and closes after capabilities.
        self.exec_procfs = exec_procfs
        #: exec's terminal, set up once the executable is found (the init's is set up
        #: right after pivot_root, before anything turns read-only)
        self.console = console
        self.before_seccomp = before_seccomp
        #: the document and JSON pointer of the process object, for error messages
        self.document, self.process_at = document

    @property
    def place(self) -> str:
        """The process object's place, for settings' messages: "config.json: /process"."""
        return f"{self.document}: {self.process_at}"


def finalize(proc: dict, end: StageEnd, how: Finalize) -> tuple[str, dict[str, str]]:
    """The process's settings up to, not including, execve: returns (executable, env)."""
    _apply_limits(proc, how)
    if how.keyring is not None:
        settings.join_session_keyring(how.keyring, set_permissions=how.keyring_permissions)
    env = settings.env_dict(proc.get("env") or [])
    executable = settings.find_executable(proc["args"][0], env, how.place)
    user = proc.get("user") or {}
    if how.console is not None:
        posix.setsid()
        how.console.setup(proc.get("consoleSize"), user.get("uid", 0), console=False)
    cap_sets = capabilities.resolve_sets(proc.get("capabilities"))
    if how.before_seccomp is not None:
        how.before_seccomp()
    _drop_privileges(proc, end, how, cap_sets)
    return executable, env


def _apply_limits(proc: dict, how: Finalize) -> None:
    """rlimits, OOM score and attributes: while every privilege is still ours."""
    if how.exec_procfs:
        # The container's /proc, checked (no mount on a path we write is followed), never
        # a handle on the host's: a container process could take that from us via /proc.
        procfs.use_host()
    settings.apply_rlimits(proc.get("rlimits") or [], how.place)
    if "oomScoreAdj" in proc:
        settings.set_oom_score_adj(proc["oomScoreAdj"], how.place)
    if how.attrs is not None:  # personality, scheduler, I/O priority, LSM labels
        how.attrs.apply()
    if how.mempolicy is not None:  # linux.memoryPolicy: set_mempolicy(2)
        how.mempolicy.apply()
    if how.exec_procfs:
        procfs.close()  # done with /proc: nothing else happens here that needs it


def _drop_privileges(
    proc: dict, end: StageEnd, how: Finalize, cap_sets: dict[str, set[int]]
) -> None:
    """seccomp around the user switch, as the module docstring says."""
    no_new_privs = bool(proc.get("noNewPrivileges"))
    if how.seccomp is not None and not no_new_privs:
        _load_seccomp(how.seccomp, end)  # needs CAP_SYS_ADMIN: before the switch
    cwd = proc.get("cwd") or "/"
    entered = _chdir(cwd, how, retry_later=True)
    settings.switch_user(proc.get("user") or {}, cap_sets, how.place)
    if not entered:
        _chdir(cwd, how, retry_later=False)
    settings.apply_capabilities(cap_sets, no_new_privs, how.place)
    if not how.exec_procfs:
        procfs.close()  # the private procfs: nothing exec'd into the container may reach it
    if how.seccomp is not None and no_new_privs:
        _load_seccomp(how.seccomp, end)  # as late as runc 1.1.5 (and its setns init)


def _load_seccomp(filt: Filter, end: StageEnd) -> None:
    """Install the filter create or exec built before the fork; with SCMP_ACT_NOTIFY
    rules, hand its notify fd over to the parent (which sends it to the agent)."""
    try:
        filt.load()
    except OSError as e:
        raise field_error(
            pointer("linux", "seccomp"), f"loading the filter: {e.strerror}"
        ) from None
    filt.hand_over(end.report_seccomp_fd)


def _chdir(cwd: str, how: Finalize, *, retry_later: bool) -> bool:
    """Enter the cwd; as runc, once before the user switch (a cwd only root may enter,
    e.g. /root 0700, works for any user) and, if root was refused (EACCES/EPERM: a
    root-squashed volume the user owns), again after it. Returns whether it is entered."""
    try:
        posix.chdir(cwd)
    except OSError as e:
        if retry_later and isinstance(e, PermissionError):
            return False
        raise field_error(
            how.process_at + pointer("cwd"), f"{cwd}: {e.strerror}", how.document
        ) from None
    return True


def execute(executable: str, args: list[str], env: dict[str, str], *signals: int) -> None:
    """Python ignores SIGPIPE and SIGXFSZ (and the caller may have handlers for
    `signals`): the defaults back, then execve. Never returns."""
    settings.restore_signal_defaults(*signals)
    posix.execve(executable, args, env)
