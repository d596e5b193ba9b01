"""One container's cgroup, behind one object: the cgroupfs driver.

The state record carries the cgroup in three fields (`cgroup_dirs`: every directory the
init joined, `cgroup_created`: the ones we made, `cgroup_paths`: controller -> directory,
"" for v2, as runc records them); `ContainerState.cgroup_manager()` turns them into the one
thing the commands act on (this package knows nothing of the record: no import cycle).
What to write (`resources.py`), the writes (`limits.py`), freezing
(`freezer.py`), statistics (`stats.py`) and device rules stay in their modules; this class
only says which of them acts on which directory.

The interface is small and says nothing of directories on purpose: a systemd driver is
to be a second manager with the same methods. cgroupfs and the freezer are imported up
front (small, and `exec` needs them loaded before its fork: state.py imports this module);
limits, stats and the log only when a method needs them.
"""

from __future__ import annotations

import _signal
import os

from ociruntime.cgroups import cgroupfs, freezer
from ociruntime.errors import RuntimeFailure


class Manager:
    """The container's cgroup on a cgroupfs host (v1, v2 or hybrid)."""

    __slots__ = ("dirs", "created", "paths", "_layout")

    def __init__(self, dirs: list[str], created: list[str], paths: dict[str, str]) -> None:
        self.dirs = dirs  # every directory the init joins (one per hierarchy)
        self.created = created  # what we made, hence remove
        self.paths = paths  # controller -> directory, "" for v2
        self._layout: cgroupfs.Layout | None = None

    @property
    def layout(self) -> cgroupfs.Layout:
        """Which directory and cgroup version serve each controller (built once)."""
        if self._layout is None:
            self._layout = cgroupfs.Layout(self.paths)
        return self._layout

    # --- membership ---------------------------------------------------------------------

    def exists(self) -> bool:
        """Is any of the container's cgroup directories still there?"""
        return any(os.path.isdir(d) for d in self.dirs)

    def join(self, pid: int) -> None:
        """Move `pid` (0: the caller) into every directory of the container's cgroup."""
        cgroupfs.join(self.dirs, pid)

    def pids(self, everywhere: bool = False) -> list[int]:
        """The processes of the container's cgroup: from its first hierarchy (every process
        joins that one first), or with `everywhere` from all of them (a create that died
        may have left its init in some only)."""
        if everywhere:
            return cgroupfs.all_procs(self.dirs)
        return cgroupfs.procs(self.dirs)

    def remove(self) -> None:
        """Remove the directories we made (deepest first); the processes must be gone."""
        cgroupfs.remove(self.created)

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
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if frozen:
                self.thaw()

    def _cgroup_kill(self) -> bool:
        """Write cgroup.kill if the v2 directory has one (then thaw a paused cgroup, or its
        processes would die only once thawed); False where there is none."""
        unified = self.paths.get("")
        if not unified or not os.path.exists(os.path.join(unified, "cgroup.kill")):
            return False
        with open(os.path.join(unified, "cgroup.kill"), "w") as f:
            f.write("1")
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
