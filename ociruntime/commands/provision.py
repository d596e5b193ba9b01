"""What `create` and `restore` both do to bring a container into being around its first
process: the first record (written before anything it names exists), the cgroups
(`CgroupSetup`: made, device rules, limits planned and written once the process is in
them) and the rollback (`Rollback`) that removes all of it when the operation fails
part-way. `create` forks the init in between; `restore` has CRIU recreate the process
tree instead. Crash safety rests on the order: the record first, then what it names
(see create.py's docstring).
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import time

from ociruntime import pathlite
from ociruntime.cgroups import cgroupfs, existing
from ociruntime.container.state import ContainerState, StateDir, process_start_time
from ociruntime.errors import RuntimeFailure
from ociruntime.log import LOG

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups import limits, systemd
    from ociruntime.container import bundle
    from ociruntime.stages.parent import InitProcess


def rfc3339_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def first_record(
    sd: StateDir,
    b: bundle.Bundle,
    cgroup_pairs: list[tuple[cgroupfs.Hierarchy, str]],
    shared: bool,
    scope: systemd.Scope | None,
) -> ContainerState:
    """Written before any cgroup or process exists: the cgroups this create is about to
    make (every directory of the placement that does not exist yet: `delete` of a create
    killed half-way through mkdir removes them, ignoring those never made), and the
    creator, so that `state` can tell a create under way from one that died. Under
    systemd the unit too (delete stops it), and of the directories only the scope's
    own: its slices are systemd's."""
    cfg = b.config
    resources = (cfg.get("linux") or {}).get("resources") or {}
    own = process_start_time(posix.getpid())
    state = ContainerState(
        id=sd.id,
        pid=0,
        start_time=0,
        bundle=b.path,
        rootfs=b.rootfs,
        created=rfc3339_now(),
        annotations=cfg.get("annotations") or {},
        cgroup_dirs=[d for _, d in cgroup_pairs],
        cgroup_created=_to_make(cgroup_pairs, scope),
        cgroup_paths=cgroupfs.paths_of(cgroup_pairs),
        resources={k: v for k, v in resources.items() if k != "devices"},
        hooks={k: v for k, v in (cfg.get("hooks") or {}).items() if k in ("poststart", "poststop")},
        creator=[posix.getpid(), own[0] if own else 0],
        cgroup_shared=shared,
        systemd_unit=scope.unit if scope is not None else "",
    )
    sd.save(state)
    return state


def _to_make(pairs: list[tuple[cgroupfs.Hierarchy, str]], scope: systemd.Scope | None) -> list[str]:
    """The directories this create may make: every missing one of the placement, or
    under systemd only the scope's directories (the slices above belong to systemd)."""
    if scope is None:
        return cgroupfs.missing(pairs)
    return [d for _, d in pairs if not pathlite.isdir(d)]


def prepare_limits(resources: dict, layout: cgroupfs.Layout) -> limits.Limits | None:
    """linux.resources besides devices, planned (and so validated) now and written once
    the init is in its cgroup, as runc does: the kernel then checks a memory limit
    against real usage."""
    if not any(v not in (None, {}, []) for k, v in resources.items() if k != "devices"):
        return None
    if not layout.paths:  # rootless, and not allowed to create a cgroup (as runc refuses)
        raise RuntimeFailure(
            "linux.resources: limits need a cgroup of the container's own, "
            "which this user may not create"
        )
    from ociruntime.cgroups import limits  # only then: configs without limits never load it

    return limits.prepare(resources, layout)


class CgroupSetup:
    """The container's cgroups: made, given their device rules, limits planned (which
    validates them) and v2 controllers enabled; `InitProcess.serve` then joins the init
    and writes the limits.

    As root this runs after the init's fork (`make`, called by serve). Making a cgroup
    waits for the kernel's cgroup lock, which the warm-up (cgroups/warmup.py) holds
    through an RCU grace period (~10-25 ms on cgroup v1): done before the fork, that wait
    delayed everything; done here, the init enters its namespaces and builds its rootfs
    meanwhile. The first record already lists the directories about to be made, so a
    create killed at any point leaves nothing that `delete` does not remove.
    Unprivileged, the directories are made before the fork (`make_or_stay_in_ours`):
    without a cgroup of its own the container stays in ours, and the init's plan must
    say so."""

    def __init__(
        self, pairs: list[tuple[cgroupfs.Hierarchy, str]], devices: list, resources: dict,
        undo: Rollback, planned: list[str], scope: systemd.Scope | None = None,
    ) -> None:  # fmt: skip
        self.pairs, self.devices, self.resources, self.undo = pairs, devices, resources, undo
        self.planned = planned  # what the first record says create is about to make
        self.scope = scope  # --systemd-cgroup: the unit to start first, with the init in it
        self.own = True  # False: unprivileged, in our cgroups (nothing made, joined, limited)
        self.made = False

    def make_or_stay_in_ours(self) -> list[tuple[cgroupfs.Hierarchy, str]]:
        try:
            self._make_dirs()
        except RuntimeFailure:
            self.own = False
            return _rootless_cgroups([h for h, _ in self.pairs])
        return self.pairs

    def _make_dirs(self) -> None:
        # Whatever interrupts the mkdirs, the rollback removes what they may have made
        # (those never made are skipped), then exactly what they made.
        self.undo.cgroups_created = self.planned
        self.undo.cgroups_created = cgroupfs.create(self.pairs)
        self.made = True
        cgroupfs.apply_device_rules(self.pairs, self.devices)

    def make(self) -> limits.Limits | None:
        """Made and ready for the init to join; returns its planned limits. A v2 host
        gets every controller enabled for the container, as with runc; a hybrid one
        only the v2 controllers the limits need."""
        if not self.own:
            return prepare_limits(self.resources, cgroupfs.Layout({}))  # refuses any
        if not self.made:
            if self.scope is not None:
                self._start_unit()
            self._make_dirs()
        layout = cgroupfs.Layout(cgroupfs.paths_of(self.pairs))
        if layout.mode == "v2":
            cgroupfs.enable_v2_controllers(layout)
        planned = prepare_limits(self.resources, layout)
        if layout.mode == "hybrid" and planned is not None and planned.v2_controllers():
            cgroupfs.enable_v2_controllers(layout, planned.v2_controllers())
        return planned

    def _start_unit(self) -> None:
        """--systemd-cgroup: the scope, with the init (or the user-namespace stage that
        forks it) in it; the limits are checked first, so a bad value is refused in
        the cgroupfs words, naming the field, before systemd sees it."""
        from ociruntime.cgroups import systemd

        assert self.scope is not None and self.undo.init is not None
        layout = cgroupfs.Layout(cgroupfs.paths_of(self.pairs))
        prepare_limits(self.resources, layout)
        pid = self.undo.init.pid
        systemd.start(self.scope, pid, self.resources, self.devices, layout.mode == "v2")
        self.undo.unit = self.scope.unit  # started: ours to stop (not before: the
        # name may be another container's unit, which a failed start must leave alone)


class Rollback:
    """What to tear down if create fails part-way: the init (its moved network devices
    back to the host, while their namespace lives, then the process), cgroups, state
    dir."""

    def __init__(self, sd: StateDir) -> None:
        self.sd = sd
        self.init: InitProcess | None = None
        self.cgroups_created: list[str] = []
        self.unit = ""  # --systemd-cgroup: the scope unit, once started

    def run(self) -> None:
        if self.init is not None:
            self.init.abort()
        try:
            self._stop_unit()
            existing.remove(self.cgroups_created)
        finally:
            try:
                self.sd.lock()  # unless held; the directory may be gone (a delete)
            except RuntimeFailure:
                pass
            else:
                self.sd.remove()

    def _stop_unit(self) -> None:
        """Best effort: the create's own error is the one reported."""
        if self.unit:
            from ociruntime.cgroups import systemd

            try:
                systemd.stop(self.unit)
            except RuntimeFailure as e:
                LOG.warning(f"rolling back: {e}")


def _rootless_cgroups(found: list[cgroupfs.Hierarchy]) -> list[tuple[cgroupfs.Hierarchy, str]]:
    """Unprivileged without a cgroup it may create (runc's rootless mode): the container
    stays in ours. It then owns no cgroup: nothing is joined or limited, and `kill --all`
    or `delete` must not signal our cgroup's other processes, so the state records none;
    only the cgroup mount shows these directories."""
    return [(h, pathlite.join(h.mountpoint, h.own_path.lstrip("/"))) for h in found]
