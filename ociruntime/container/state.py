"""Container state on disk: `<root>/<id>/state.json`, its lock, and the live status.

The file is our own record (what delete and start need later); `public_state` turns it
into the runtime-spec state JSON that `ociruntime state` prints. The status is never
stored: it is derived from the kernel each time (is the init alive, is it the same
process, has start consumed the exec fifo), so it cannot go stale.

Crash safety (any command may be SIGKILLed at any instant): `create` writes a first record
right after making the directory, before it makes any cgroup or process, naming the
cgroups it is about to make and itself (`creator`: its pid and start time); it writes the
record again as soon as it knows the init's pid, and a last time, without `creator`, once
the container is created; meanwhile the status is "creating". The lock is held for each
read or write of the record, not while `create` waits for its init (a hook may run
`state`). So whatever a killed command leaves is described on disk:

- a record with `creator` whose create is gone is a create that died: "stopped" (even if
  its init still runs, blocked on the exec fifo: it never became a container), and
  `delete` kills its processes and removes its cgroups and directory;
- a directory without state.json (a create killed before its first write, a delete
  killed after removing the record, which it removes last) holds nothing else: `load`
  returns a placeholder record, "stopped", that `delete` removes;
- `.state.json.tmp` (a write cut short) is removed with the directory.
"""

import fcntl
import posix  # not os: the one-shot commands never load it (pathlite.py)

from ociruntime import SPEC_VERSION, jsonlite, pathlite
from ociruntime.cgroups import freezer
from ociruntime.errors import RuntimeFailure
from ociruntime.fsutil import make_dirs, write_atomic

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups.manager import Manager

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
#: A state directory name: NAME_MAX. (runc has no check and fails later in lstat.)
MAX_ID_LENGTH = 255
#: runc's `^[\w+-\.]+$`: word characters plus the range '+'..'.', which is "+,-.".
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+,-.")


def validate_id(container_id: str) -> None:
    """Refuse ids that could escape the state root or confuse engines (as runc does)."""
    if not container_id:
        raise RuntimeFailure("container id cannot be empty")
    if len(container_id) > MAX_ID_LENGTH:
        raise RuntimeFailure(f"invalid container ID: longer than {MAX_ID_LENGTH} characters")
    if container_id in (".", "..") or not _ID_CHARS.issuperset(container_id):
        raise RuntimeFailure("invalid container ID format")


class ContainerState:
    """What the runtime remembers about one container between commands.

    A plain class rather than a dataclass: `dataclasses` costs ~6 ms to import, a fifth
    of runc's whole create, on every command.
    """

    FIELDS = (
        "id", "pid", "start_time", "bundle", "rootfs", "created", "owner", "annotations",
        "cgroup_dirs", "cgroup_created", "hooks", "spec_version", "no_new_keyring",
        "cgroup_paths", "resources", "creator", "cgroup_shared", "systemd_unit",
    )  # fmt: skip

    def __init__(
        self,
        id: str,
        pid: int,
        start_time: int,  # /proc/<pid>/stat field 22: guards against PID reuse
        bundle: str,
        rootfs: str,
        created: str,
        owner: str = "",
        annotations: dict[str, str] | None = None,
        cgroup_dirs: list[str] | None = None,  # every dir the init joined
        cgroup_created: list[str] | None = None,  # the ones we made (removed on delete)
        hooks: dict[str, list[dict]] | None = None,  # poststart/poststop, for later
        spec_version: str = SPEC_VERSION,
        no_new_keyring: bool = False,  # create --no-new-keyring: exec keeps its keyring too
        cgroup_paths: dict[str, str] | None = None,  # controller -> dir ("" for v2), as runc
        resources: dict | None = None,  # linux.resources as `update` last left them
        creator: list[int] | None = None,  # [pid, start time] of `create` until it is done
        cgroup_shared: bool = False,  # the cgroup held other processes at create (runc 1.1.5
        # warns and goes on): delete then kills the container's init only
        systemd_unit: str = "",  # --systemd-cgroup: the container's scope unit
    ) -> None:
        self.id, self.pid, self.start_time = id, pid, start_time
        self.bundle, self.rootfs, self.created, self.owner = bundle, rootfs, created, owner
        self.annotations = annotations or {}
        self.cgroup_dirs = cgroup_dirs or []
        self.cgroup_created = cgroup_created or []
        self.hooks = hooks or {}
        self.spec_version = spec_version
        self.no_new_keyring = no_new_keyring
        self.cgroup_paths = cgroup_paths or {}
        self.resources = resources or {}
        self.creator = creator
        self.cgroup_shared = cgroup_shared
        self.systemd_unit = systemd_unit

    def cgroup_manager(self) -> "Manager":
        """The manager of this container's cgroup (the record's lists are shared, not
        copied: a change made through the record is seen there)."""
        if self.systemd_unit:  # --systemd-cgroup: the driver (and D-Bus) only then
            from ociruntime.cgroups.systemd import SystemdManager

            return SystemdManager(
                self.cgroup_dirs, self.cgroup_created, self.cgroup_paths, self.systemd_unit
            )
        from ociruntime.cgroups.manager import Manager  # by the commands that act on it

        return Manager(self.cgroup_dirs, self.cgroup_created, self.cgroup_paths)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}


class StateDir:
    """`<root>/<id>`: created exclusively (a duplicate id fails), locked per operation."""

    def __init__(self, root: str, container_id: str) -> None:
        validate_id(container_id)
        self.root = root
        self.id = container_id
        self.path = pathlite.join(root, container_id)
        self._lock_fd: int | None = None

    @property
    def fifo_path(self) -> str:
        return pathlite.join(self.path, EXEC_FIFO)

    def create(self) -> None:
        make_dirs(self.root, 0o700)
        try:
            posix.mkdir(self.path, 0o711)
        except FileExistsError:
            raise RuntimeFailure("container with given ID already exists") from None
        self.lock()

    def exists(self) -> bool:
        return pathlite.exists(pathlite.join(self.path, STATE_FILE))

    def lock(self) -> None:
        """Serialize operations on one container (flock on the directory itself).

        Once the lock is ours the directory must still be the one we opened: a `delete`
        that held the lock meanwhile may have removed it (and a `create` made a new one
        under the same name, which is not ours to touch). A no-op if we hold it."""
        if self._lock_fd is not None:
            return
        try:
            fd = posix.open(self.path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        except FileNotFoundError:
            raise RuntimeFailure("container does not exist") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            held = posix.fstat(fd)
            try:
                now = posix.stat(self.path)
            except FileNotFoundError:
                now = None
            if now is None or (now.st_ino, now.st_dev) != (held.st_ino, held.st_dev):
                raise RuntimeFailure("container does not exist")
        except BaseException:
            # never a lock held by an fd we forgot (a later lock() would wait on it)
            posix.close(fd)
            raise
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            posix.close(self._lock_fd)
            self._lock_fd = None

    def load(self) -> ContainerState:
        """The record. Under our lock a directory without one is what a killed create or
        delete left (they write or remove it under the lock): a placeholder, "stopped",
        that `delete` removes. Unlocked (`list`), a missing record may be one being
        written right now: "does not exist"."""
        try:
            with open(pathlite.join(self.path, STATE_FILE), "rb") as f:
                raw = jsonlite.loads(f.read())
        except FileNotFoundError:
            if self._lock_fd is None:
                raise RuntimeFailure("container does not exist") from None
            return self.placeholder()
        return ContainerState(**raw)

    def placeholder(self) -> ContainerState:
        """The record of a directory that has none: nothing but the directory is left."""
        return ContainerState(
            id=self.id, pid=0, start_time=0, bundle="", rootfs="",
            created="0001-01-01T00:00:00Z", creator=[0, 0],
        )  # fmt: skip

    def save(self, state: ContainerState) -> None:
        """Atomic (`.state.json.tmp`, renamed over the old record): a reader never sees a
        record half-written, a killed writer leaves the old one."""
        write_atomic(pathlite.join(self.path, STATE_FILE), jsonlite.dumps(state.to_dict()).encode())

    def remove(self) -> None:
        """Remove the directory and everything in it (only files: fifo, state, tmp).
        The record goes last: until then a killed delete can be run again in full."""
        try:
            names = posix.listdir(self.path)
        except FileNotFoundError:
            return
        names.sort(key=lambda name: name == STATE_FILE)
        for name in names:
            try:
                posix.unlink(pathlite.join(self.path, name))
            except FileNotFoundError:
                pass
        try:
            posix.rmdir(self.path)
        except FileNotFoundError:
            pass
        self.unlock()


def open_existing(root: str, container_id: str) -> StateDir:
    """A locked StateDir of an existing container, or a 'does not exist' failure."""
    sd = StateDir(root, container_id)
    sd.lock()
    return sd


def proc_stat(pid: int) -> list[bytes] | None:
    """/proc/<pid>/stat from field 3 (the state letter) on, or None if `pid` is gone:
    fields[n - 3] is proc(5)'s field n (the command name before it may hold spaces)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(b")") + 2 :].split()


def process_start_time(pid: int) -> tuple[int, str] | None:
    """(start time in clock ticks, state letter) of `pid`, or None if it is gone."""
    fields = proc_stat(pid)
    if fields is None:
        return None
    return int(fields[19]), fields[0].decode()  # field 22 (starttime), field 3 (state)


def init_alive(state: ContainerState) -> bool:
    """True if the recorded init still runs: same PID *and* same start time, not a zombie."""
    info = process_start_time(state.pid)
    if info is None:
        return False
    start, letter = info
    return start == state.start_time and letter not in ("Z", "X")


def creator_alive(state: ContainerState) -> bool:
    """Is the `create` that is still making this container running (same start time)?"""
    pid, start = state.creator or (0, 0)
    if not pid:
        return False
    info = process_start_time(pid)
    return info is not None and info[0] == start and info[1] not in ("Z", "X")


def status_of(sd: StateDir, state: ContainerState) -> str:
    """creating / created / running / paused / stopped.

    A record still naming its creator is "creating" while that create runs and
    "stopped" once it is gone: a create that died never made a container, even if its
    init lives on (blocked on the exec fifo); `start` refuses it, `delete` removes it."""
    if state.creator is not None:
        return "creating" if creator_alive(state) else "stopped"
    if not init_alive(state):
        return "stopped"
    if state.cgroup_paths and freezer.is_frozen(state.cgroup_paths):  # Manager.frozen()
        return "paused"
    if pathlite.exists(sd.fifo_path):
        return "created"
    return "running"


def public_state(state: ContainerState, status: str) -> dict:
    """The runtime-spec state object plus runc's extras (rootfs, created, owner)."""
    out: dict = {
        "ociVersion": state.spec_version,
        "id": state.id,
        "pid": state.pid if status != "stopped" else 0,  # creating: 0 until it is known
        "status": status,
        "bundle": state.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
    }
    if state.annotations:
        out["annotations"] = state.annotations
    out["owner"] = state.owner
    return out
