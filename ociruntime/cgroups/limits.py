"""Writing `linux.resources` into a container's cgroup, for `create` and `update`.

`resources.plan` decides what to write where; this module does the writes and turns the
kernel's refusals into errors naming the resource and its value, e.g.
`linux.resources.memory.limit 1024: below the container's current memory usage (...)`.
Imported only when a config sets a limit.
"""

from __future__ import annotations

import errno
import os

from ociruntime.cgroups import resources as res
from ociruntime.cgroups.cgroupfs import Layout
from ociruntime.errors import RuntimeFailure
from ociruntime.fsutil import read_file


class Limits:
    """The planned writes for one container; `apply` performs them."""

    def __init__(self, layout: Layout, settings: list[res.Setting], warnings: list[str]) -> None:
        self.layout, self.settings, self.warnings = layout, settings, warnings

    def v2_controllers(self) -> list[str]:
        """The v2 controllers the writes need enabled (on a hybrid host, where create
        enables only those)."""
        names = {s.controller for s in self.settings if s.controller}
        return sorted(c for c in names if self.layout.where(c) == "v2")

    def apply(self) -> None:
        if self.warnings:
            from ociruntime.log import LOG

            for warning in self.warnings:
                LOG.warning(warning)
        write_all(self.layout, self.settings)

    def check_oom(self) -> None:
        """Raise the memory limit's error if the OOM killer struck in the container's
        cgroup (a limit the kernel accepts at once may still be too low for the init:
        its pages are charged to the cgroup only as it touches them)."""
        memory = [s for s in self.settings if s.file in ("memory.limit_in_bytes", "memory.max")]
        d = self.layout.dir_of("memory")
        if not memory or d is None:
            return
        v1 = self.layout.where("memory") == "v1"
        text = _read(d, "memory.oom_control" if v1 else "memory.events") or ""
        kills = next(
            (line.split()[1] for line in text.splitlines() if line.startswith("oom_kill ")), "0"
        )
        if kills != "0":
            s = memory[0]
            raise res.error(
                s.field,
                s.shown,
                "too low: the OOM killer killed the container's init during create",
            )


def prepare(resources: dict, layout: Layout) -> Limits:
    """Plan the writes (this validates them: bad values fail here, before any write)."""
    settings, warnings = res.plan(resources, layout.where, reader(layout), layout.mode)
    return Limits(layout, settings, warnings)


def reader(layout: Layout):
    """What `resources.plan` reads current values with: a controller's file or None."""

    def read(controller: str, name: str) -> str | None:
        return read_file(layout.dir_of(controller), name)

    return read


def write_all(layout: Layout, settings: list[res.Setting]) -> None:
    """Write in order; a write the kernel refuses with EINVAL only until a later one is
    in (cpu period vs quota, burst vs quota) is retried once at the end."""
    deferred = []
    for s in settings:
        try:
            _write(layout, s)
        except OSError as e:
            if s.flags & res.DEFER_ON_EINVAL and e.errno == errno.EINVAL:
                deferred.append(s)
                continue
            raise explain(layout, s, e) from None
    for s in deferred:
        try:
            _write(layout, s)
        except OSError as e:
            raise explain(layout, s, e) from None


def _write(layout: Layout, s: res.Setting) -> None:
    d = layout.dir_of(s.controller)
    if d is None:  # resources.plan checks availability: only a vanished cgroup gets here
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), s.file)
    path = os.path.join(d, s.file)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if s.fallback is not None:
            return _write(layout, s.fallback)
        if s.flags & res.OPTIONAL:
            return None
        raise
    try:
        os.write(fd, s.value.encode())
    finally:
        os.close(fd)
    if s.flags & res.READ_BACK:
        with open(path) as f:
            seen = f.read().strip()
        if seen != s.value:
            bound = "maximum" if int(s.value) > int(seen) else "minimum"
            raise res.error(s.field, s.shown, f"the {bound} allowed is {seen}")
    return None


def snapshot(layout: Layout, settings: list[res.Setting]) -> list[tuple[str, str]]:
    """(path, content) of the one-line files `settings` will write, to undo them."""
    saved = []
    for s in settings:
        d = layout.dir_of(s.controller)
        text = _read(d, s.file) if d else None
        if text is not None and "\n" not in text and text:
            saved.append((os.path.join(str(d), s.file), text))
    return saved


def restore(layout: Layout, saved: list[tuple[str, str]]) -> None:
    """Write a snapshot back, last write first; refusals are ignored (best effort)."""
    for path, text in reversed(saved):
        try:
            with open(path, "w") as f:
                f.write(text)
        except OSError:
            pass


def explain(layout: Layout, s: res.Setting, e: OSError) -> RuntimeFailure:
    """The kernel's refusal, in terms of the resource."""
    d = layout.dir_of(s.controller) or ""
    if s.flags & res.MEMORY_LIMIT and e.errno == errno.EBUSY:
        usage = _read_int(d, "memory.usage_in_bytes")
        peak = _read_int(d, "memory.max_usage_in_bytes")
        return res.error(
            s.field, s.shown,
            f"below the container's current memory usage (usage {usage}, peak {peak} bytes)",
        )  # fmt: skip
    if s.flags & res.CPUSET and e.errno in (errno.ERANGE, errno.EINVAL):
        what = "CPUs" if s.file.endswith("cpus") else "memory nodes"
        parent = _available_cpuset(d, s.file, layout.where(s.controller) == "v2")
        return res.error(s.field, s.shown, f"not within the {what} this cgroup may use ({parent})")
    if e.errno == errno.ENOENT:
        why = f"not supported here: {os.path.join(d, s.file)} does not exist"
        if layout.where(s.controller) == "v2" and s.controller:
            enabled = (_read(d, "cgroup.controllers") or "").split()
            if s.controller not in enabled:
                why = (
                    f"the {s.controller} controller is not enabled for the container's "
                    f"cgroup {d} (its parent's cgroup.subtree_control lacks it)"
                )
        return res.error(s.field, s.shown, why)
    return res.error(s.field, s.shown, f"the kernel refuses it ({s.file}: {e.strerror})")


def _read(d: str, name: str) -> str | None:
    """A one-line cgroup file, stripped (what snapshots and messages compare)."""
    text = read_file(d, name)
    return None if text is None else text.strip()


def _read_int(d: str, name: str) -> str:
    return _read(d, name) or "?"


def _available_cpuset(d: str, name: str, v2: bool) -> str:
    parent = os.path.dirname(d)
    if v2:
        return _read(parent, name + ".effective") or "?"
    return _read(parent, name) or "?"
