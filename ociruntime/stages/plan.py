"""The plans: everything a process stage needs, computed once before the fork.

`create` (and exec's P) check and build every part of a plan while the host's files are
reachable and before anything is made, so a config's error is theirs and the stages
only read it. A new feature adds one field here, one protocol method if the parent must
act (protocol.py) and one step where the spec orders it (init.py, finalize.py).
Plain classes with __slots__: this is on `create`'s hot path (no dataclasses).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups import cgroupfs
    from ociruntime.cgroups.manager import Manager
    from ociruntime.container.state import ContainerState
    from ociruntime.process.mempolicy import MemoryPolicy
    from ociruntime.process.procattrs import ProcessAttrs
    from ociruntime.process.terminal import InitConsole
    from ociruntime.security.seccomp import Filter


class InitPlan:
    """The container init's plan (read by the user-namespace stage, the init and the
    parent's InitProcess)."""

    __slots__ = (
        "config", "bundle", "rootfs", "container_id", "fifo_fd", "namespaces", "cgroups",
        "cgroup_dirs", "no_pivot", "no_new_keyring", "preserve_fds",
        "public_state", "console", "seccomp", "idmapped", "attrs", "mempolicy",
        "log_until_exec",
    )  # fmt: skip

    def __init__(
        self,
        *,
        config: dict,
        bundle: str,
        rootfs: str,
        container_id: str,
        fifo_fd: int,
        namespaces: dict[str, str | None],
        cgroups: list[tuple[cgroupfs.Hierarchy, str]],
        cgroup_dirs: list[str],
        no_pivot: bool,
        no_new_keyring: bool,
        preserve_fds: int,
        public_state: dict,
        console: InitConsole | None,
        seccomp: Filter | None,
        idmapped: dict[int, int] | None,
        attrs: ProcessAttrs | None,
        mempolicy: MemoryPolicy | None = None,
        log_until_exec: bool = False,
    ) -> None:
        self.config = config
        self.bundle, self.rootfs, self.container_id = bundle, rootfs, container_id
        #: O_PATH fd of the exec fifo, opened by `create` (a host path)
        self.fifo_fd = fifo_fd
        #: linux.namespaces: type -> path (None: a new one)
        self.namespaces = namespaces
        #: (hierarchy, host directory) pairs, for the init's cgroup mounts
        self.cgroups = cgroups
        #: the directories the parent moves the init into (none when rootless)
        self.cgroup_dirs = cgroup_dirs
        self.no_pivot, self.no_new_keyring = no_pivot, no_new_keyring
        self.preserve_fds = preserve_fds
        #: the state JSON hooks receive (pid and status filled in as they become known)
        self.public_state = public_state
        self.console = console  # process.terminal: the console socket
        self.seccomp = seccomp  # linux.seccomp: the filter, built (not loaded)
        self.idmapped = idmapped  # mounts index -> id-mapped tree fd
        self.attrs = attrs  # personality, scheduler, I/O priority, LSM labels
        self.mempolicy = mempolicy  # linux.memoryPolicy, checked; set by the init
        #: `run`: the parent copies our log pipe until we exec; `create` exits at ready,
        #: so the init closes it then (as runc's): a created init holds only the fifo
        self.log_until_exec = log_until_exec

    @property
    def linux(self) -> dict:
        return self.config.get("linux") or {}

    @property
    def process(self) -> dict:
        return self.config["process"]


class ExecPlan:
    """What exec's I and C need, built by P before the fork."""

    __slots__ = (
        "container", "cgroups", "status", "process", "process_document", "ns_fds",
        "console", "preserve_fds", "seccomp", "attrs", "mempolicy",
    )  # fmt: skip

    def __init__(
        self,
        *,
        container: ContainerState,
        cgroups: Manager,
        status: str,
        process: dict,
        process_document: tuple[str, str],
        ns_fds: dict[str, int],
        console: InitConsole | None,
        preserve_fds: int,
        seccomp: Filter | None,
        attrs: ProcessAttrs | None,
        mempolicy: MemoryPolicy | None = None,
    ) -> None:
        self.container, self.status = container, status  # status: for a seccomp agent
        self.cgroups = cgroups  # the container's cgroup, which I joins
        self.process = process  # the process object, with the command line's overrides
        #: (document, JSON pointer of the process object) for messages about its fields
        self.process_document = process_document
        self.ns_fds = ns_fds  # the init's namespaces that differ from ours, open
        self.console = console
        self.preserve_fds = preserve_fds
        self.seccomp = seccomp  # the container's linux.seccomp, built
        self.attrs = attrs
        self.mempolicy = mempolicy  # the container's linux.memoryPolicy, as the init's
