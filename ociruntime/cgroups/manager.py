"""One container's cgroup, behind one object: the cgroupfs driver.

The state record carries the cgroup in three fields (`cgroup_dirs`: every directory the
init joined, `cgroup_created`: the ones we made, `cgroup_paths`: controller -> directory,
"" for v2, as runc records them); `ContainerState.cgroup_manager()` turns them into the one
thing the commands act on (this package knows nothing of the record: no import cycle).
What to write (`resources.py`), the writes (`limits.py`), freezing
(`freezer.py`), statistics (`stats.py`) and device rules stay in their modules; this class
only says which of them acts on which directory.

The interface is small and says nothing of directories on purpose: a systemd driver is
to be a second manager with the same methods. The freezer and `existing.py` (who is in
the cgroup, removing it) are imported up front (small; state.py imports this module);
cgroupfs when a method makes or joins a cgroup (`exec` loads it before its fork); limits,
stats and the log only when a method needs them.
"""

import _signal
import posix  # not os: the one-shot commands never load it (pathlite.py)

from ociruntime import pathlite
from ociruntime.cgroups import existing, freezer
from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups import cgroupfs


def _cgroupfs():  # noqa: ANN202 - the module
    """cgroupfs, loaded on first use: the one-shot commands (`state`, `kill`, `start`,
    `delete`, `pause`) need only the freezer and `existing.py` (they run on every
    container's start and end: see ARCHITECTURE.md's hot path). exec loads it before its
    fork (stages/exec_stages.py)."""
    from ociruntime.cgroups import cgroupfs

    return cgroupfs


class Manager:
    """The container's cgroup on a cgroupfs host (v1, v2 or hybrid)."""

    __slots__ = ("dirs", "created", "paths", "_layout")

    def __init__(self, dirs: list[str], created: list[str], paths: dict[str, str]) -> None:
        self.dirs = dirs  # every directory the init joins (one per hierarchy)
        self.created = created  # what we made, hence remove
        self.paths = paths  # controller -> directory, "" for v2
        self._layout: cgroupfs.Layout | None = None

    @property
    def layout(self) -> "cgroupfs.Layout":
        """Which directory and cgroup version serve each controller (built once)."""
        if self._layout is None:
            self._layout = _cgroupfs().Layout(self.paths)
        return self._layout

    # --- membership ---------------------------------------------------------------------

    def exists(self) -> bool:
        """Is any of the container's cgroup directories still there?"""
        return any(pathlite.isdir(d) for d in self.dirs)

    def join(self, pid: int) -> None:
        """Move `pid` (0: the caller) into every directory of the container's cgroup."""
        _cgroupfs().join(self.dirs, pid)

    def sub(self, wanted: dict[str, str]) -> "Manager":
        """The container's cgroup with some directories replaced by existing sub-cgroups
        of theirs, for `exec --cgroup` (runc 1.1's SubCgroupPaths) to join instead: {"":
        path} the same path below every directory (cgroup v1's hierarchies, or v2's one);
        {controller: path} below that controller's directory, the others unchanged. A
        path leading outside its directory, an unknown controller or a missing directory
        is refused in runc's words; nothing is made, and the result removes nothing."""
        moved: dict[str, str] = {}  # container directory -> the sub-cgroup to join
        if "" in wanted:  # runc: the unprefixed path wins, for every hierarchy
            moved = {d: _below(d, wanted[""]) for d in self.dirs}
        else:
            for controller, path in wanted.items():
                if controller not in self.paths:
                    raise RuntimeFailure(f"unknown controller {controller} in SubCgroupPaths")
                moved[self.paths[controller]] = _below(self.paths[controller], path)
        for d in moved.values():
            if not pathlite.isdir(d):
                raise RuntimeFailure(f"sub-cgroup {d}: no such file or directory (it must exist)")
        paths = {c: moved.get(d, d) for c, d in self.paths.items()}
        return Manager([moved.get(d, d) for d in self.dirs], [], paths)

    def pids(self, everywhere: bool = False) -> list[int]:
        """The processes of the container's cgroup and of the cgroups below it (runc's
        GetAllPids: an `exec --cgroup` process is the container's too): from its first
        hierarchy (every process joins that one first), or with `everywhere` from all of
        them (a create that died may have left its init in some only)."""
        if everywhere:
            return existing.all_procs(self.dirs + _below_all(self.dirs))
        first = next((d for d in self.dirs if pathlite.isdir(d)), None)
        if first is None:
            return []
        below = _below_all([first])
        return existing.all_procs([first, *below]) if below else existing.procs([first])

    def remove(self) -> None:
        """Remove the directories we made and the cgroups below the container's own
        (made for `exec --cgroup`, or by the container: runc removes them too), deepest
        first; the processes must be gone."""
        own = [d for d in self.dirs if d in self.created]
        for below in sorted(_below_all(own), key=len, reverse=True):
            try:
                existing.remove([below], attempts=10)
            except RuntimeFailure:
                pass  # in use: another container's, nested in ours (ours then stays too)
        existing.remove(self.created)

    # --- freezer ------------------------------------------------------------------------

    def frozen(self) -> bool:
        """Paused by us (not by an ancestor); False for a container without a cgroup."""
        return bool(self.paths) and freezer.is_frozen(self.paths)

    def freeze(self) -> None:
        """Freeze every process, waiting until the kernel says they are (pause)."""
        freezer.freeze(self.paths)

    def thaw(self) -> None:
        freezer.thaw(self.paths)

    # --- signals ------------------------------------------------------------------------

    def kill_all(self, sig: int) -> None:
        """Signal every process of the cgroup. SIGKILL through cgroup v2's cgroup.kill
        where there is one (the kernel kills them all, forks included); otherwise, as
        runc 1.1.5, freeze so nothing forks meanwhile, signal each process, thaw (a paused
        container is thawed too, as runc does)."""
        if sig == _signal.SIGKILL and self._cgroup_kill():
            return
        frozen = False
        if self.paths:
            try:
                self.freeze()
                frozen = True
            except RuntimeFailure:
                pass  # as runc: signal them anyway
        try:
            for pid in self.pids():
                try:
                    posix.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def _cgroup_kill(self) -> bool:
        """Write cgroup.kill if the v2 directory has one (then thaw a paused cgroup, or its
        processes would die only once thawed); False where there is none."""
        unified = self.paths.get("")
        if not unified or not pathlite.exists(pathlite.join(unified, "cgroup.kill")):
            return False
        try:
            with open(pathlite.join(unified, "cgroup.kill"), "w") as f:
                f.write("1")
        except OSError as e:
            if e.errno in existing.GONE:
                return True  # removed meanwhile: nothing left in it to kill
            raise
        if freezer.is_frozen(self.paths):
            self.thaw()
        return True

    # --- resources ----------------------------------------------------------------------

    def apply(self, new: dict, old: dict) -> None:
        """Write the whole of `new` (linux.resources) over `old`, as `update` does: limits
        depend on each other (swap on memory, quota on period), so all are written again.
        If the kernel refuses one, what the files held is put back, then `old`; the
        refusal is the error raised."""
        from ociruntime.cgroups import limits

        planned = limits.prepare(new, self.layout)
        before = limits.snapshot(self.layout, planned.settings)
        try:
            planned.apply()
        except RuntimeFailure:
            self._roll_back(before, old)
            raise

    def _roll_back(self, before: list[tuple[str, str]], old: dict) -> None:
        """Best effort, as runc: the files' previous content, then the old resources; a
        failure here is logged, the update's own error is the one reported."""
        from ociruntime.cgroups import limits

        limits.restore(self.layout, before)
        try:
            limits.prepare(old, self.layout).apply()
        except RuntimeFailure as e:
            from ociruntime.log import LOG

            LOG.warning(f"setting the previous limits back failed: {e}")

    def stats(self) -> dict:
        """Resource usage in runc's `events` "stats" shape."""
        from ociruntime.cgroups import stats

        return stats.collect(self.layout)


def _below(directory: str, path: str) -> str:
    """`path` inside `directory` (a leading / is relative to it too, as Go's path.Join);
    refused if it leads out (runc 1.1: '%s is not a sub cgroup path'; a whole-component
    check, where runc's prefix check let a sibling with a common prefix through)."""
    joined = pathlite.normpath(directory + "/" + path)
    if joined != directory and not joined.startswith(directory.rstrip("/") + "/"):
        raise RuntimeFailure(f"{path} is not a sub cgroup path")
    return joined


def _below_all(dirs: list[str]) -> list[str]:
    """Every cgroup directory below each of `dirs` (none for most containers: one
    scandir each)."""
    found: list[str] = []
    stack = list(dirs)
    while stack:
        try:
            entries = list(posix.scandir(stack.pop()))
        except OSError:
            continue
        children = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        found += children
        stack += children
    return found
