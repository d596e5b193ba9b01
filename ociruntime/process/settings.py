"""Applying `process` (and the process-wide parts of `linux`) inside the init.

Order matters and follows the kernel's rules: rlimits and sysctls while still root with
every capability; the bounding set is trimmed before the user switch (it needs
CAP_SETPCAP); KEEPCAPS keeps the permitted set across setuid; the final capability sets
and no_new_privs come last, so nothing after them needs a privilege.
"""

from __future__ import annotations

import _signal
import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import stat

from ociruntime import pathlite
from ociruntime.errors import RuntimeFailure, field_error, field_error_at, pointer
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.kernel.constants import KEY_OTH_SEARCH, KEY_USR_SEARCH
from ociruntime.security import capabilities, procfs

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Where the process object is in config.json, for messages (exec passes its own place).
PROCESS = "config.json: /process"

#: Fields handled by ociruntime.process.procattrs, which create and exec import only for them.
ATTR_PROCESS_FIELDS = ("scheduler", "ioPriority", "execCPUAffinity", "apparmorProfile",
                       "selinuxLabel")  # fmt: skip
ATTR_LINUX_FIELDS = ("personality",)


def wants_attrs(proc: dict, linux: dict) -> bool:
    """Whether the config sets a personality, scheduler, I/O priority, exec CPU affinity
    or LSM label (see ociruntime.process.procattrs)."""
    # An empty personality object is still one (runc refuses it: it has no domain).
    return any(proc.get(k) for k in ATTR_PROCESS_FIELDS) or any(
        linux.get(k) is not None for k in ATTR_LINUX_FIELDS
    )


def apply_sysctls(sysctl: dict[str, str]) -> None:
    """Through the trusted procfs: a mount over the container's /proc/sys must not
    receive them (ociruntime.security.procfs)."""
    for key, value in sysctl.items():
        try:
            procfs.write("sys/" + key.replace(".", "/"), value)
        except OSError as e:
            raise field_error(pointer("linux", "sysctl", key), f"{value}: {e.strerror}") from None


#: RLIMIT_* by name; config.json's uint64 maximum is the kernel's RLIM64_INFINITY.
_RLIMITS = {name: value for name, value in vars(k).items() if name.startswith("RLIMIT_")}


def apply_rlimits(rlimits: list[dict], where: str = PROCESS) -> None:
    """`where`: the process object's place in the document the user wrote (for messages:
    config.json's /process, or exec's --process file)."""
    seen: set[str] = set()
    for i, rl in enumerate(rlimits):
        name, at = rl["type"], where + pointer("rlimits", i)
        if name in seen:  # config.md: duplicated types MUST generate an error
            raise field_error_at(at, f"{name} is listed more than once")
        seen.add(name)
        number = _RLIMITS.get(name)
        if number is None:
            raise field_error_at(at + "/type", f"unknown rlimit type {name!r}")
        try:
            sc.setrlimit(number, rl["soft"], rl["hard"])
        except (OSError, ValueError, OverflowError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise field_error_at(
                at, f"{name} soft={rl['soft']} hard={rl['hard']}: {reason}"
            ) from None


def set_oom_score_adj(value: int, where: str = PROCESS) -> None:
    try:
        procfs.write("self/oom_score_adj", str(value))
    except OSError as e:
        raise field_error_at(where + "/oomScoreAdj", f"{value}: {e.strerror}") from None


def join_session_keyring(name: str, set_permissions: bool = True) -> None:
    """A session keyring per container (`_ses.<id>`, which exec'd processes join too), so
    containers do not share keys with the host or each other (runc). As runc, the init
    lets the container's user search it (the "other" class inside a user namespace);
    exec only joins it (`set_permissions=False`: it may not own it)."""
    try:
        serial = sc.keyctl_join_session_keyring(name)
    except OSError as e:
        if e.errno not in (38, 1):  # ENOSYS, EPERM: keyrings unavailable here; runc goes on too
            raise RuntimeFailure(f"joining session keyring: {posix.strerror(e.errno)}") from None
        return
    if not set_permissions:
        return
    try:
        description = sc.keyctl_describe(serial)
    except OSError as e:
        raise RuntimeFailure(f"session keyring: {posix.strerror(e.errno)}") from None
    perm = int(description.split(b";")[3], 16)  # type;uid;gid;perm;description
    perm |= KEY_OTH_SEARCH if _in_user_namespace() else KEY_USR_SEARCH
    try:
        sc.keyctl_setperm(serial, perm)
    except OSError as e:
        raise RuntimeFailure(f"session keyring permissions: {posix.strerror(e.errno)}") from None


def _in_user_namespace() -> bool:
    """Anything but the initial namespace's identity map means a user namespace."""
    try:
        return procfs.read("self/uid_map").split() != [b"0", b"0", b"4294967295"]
    except OSError:
        return False


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


def find_executable(arg0: str, env: dict[str, str], where: str = PROCESS) -> str:
    """Resolve args[0] in the container's PATH, as execvp would, but *now*, so a missing
    program fails `create` rather than `start` (runc behaves the same)."""
    # The wording is runc's (Go's exec errors): engines classify the message by it, e.g.
    # podman exits 127 for "no such file or directory" / "executable file not found in"
    # and 126 for "permission denied".
    if "/" in arg0:
        try:
            mode = posix.stat(arg0).st_mode
        except OSError as e:
            reason = e.strerror or "error"
            reason = reason[:1].lower() + reason[1:]  # Go's wording: "no such file or ..."
            raise field_error_at(
                where + "/args/0", f'exec: "{arg0}": stat {arg0}: {reason}'
            ) from None
        if stat.S_ISREG(mode) and posix.access(arg0, posix.X_OK):
            return arg0
        raise field_error_at(where + "/args/0", f'exec: "{arg0}": permission denied')
    for directory in env.get("PATH", DEFAULT_PATH).split(":"):
        path = pathlite.join(directory or ".", arg0)
        if pathlite.isfile(path) and posix.access(path, posix.X_OK):
            return path
    reason = f'exec: "{arg0}": executable file not found in $PATH'
    raise field_error_at(where + "/args/0", reason)


def switch_user(user: dict, cap_sets: dict[str, set[int]], where: str = PROCESS) -> None:
    """Groups, gid, uid and umask; the bounding set is trimmed first and KEEPCAPS holds the
    permitted set over setuid so apply_capabilities can still set it."""
    capabilities.drop_bounding(cap_sets["bounding"])
    sc.set_keepcaps(True)
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    groups = user.get("additionalGids") or []
    try:
        try:
            sc.setgroups(groups)
        except PermissionError:
            if groups:
                raise
            # A user namespace whose creator denied setgroups (unprivileged maps): there
            # are no supplementary groups to drop.
        sc.setgid(gid)
        sc.setuid(uid)
    except OSError as e:
        raise field_error_at(where + "/user", f"uid={uid} gid={gid}: {e.strerror}") from None
    umask = user.get("umask")
    posix.umask(0o022 if umask is None else umask)


def apply_capabilities(
    cap_sets: dict[str, set[int]], no_new_privileges: bool, where: str = PROCESS
) -> None:
    try:
        capabilities.apply_sets(cap_sets)
    except OSError as e:
        raise field_error_at(where + "/capabilities", e.strerror or str(e)) from None
    sc.set_keepcaps(False)
    if no_new_privileges:
        sc.set_no_new_privs()


def restore_signal_defaults(*extra: int) -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across
    execve: restore the defaults the process would get from runc (`yes | head -1` must
    end), plus any `extra` signal the caller had handlers for."""
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ, *extra):
        _signal.signal(sig, _signal.SIG_DFL)
