"""Cgroup placement: which directories the init joins, and creating them.

One path per mounted hierarchy: every cgroup v1 hierarchy (controllers and named ones such
as name=systemd) and the v2 unified one, so the same code serves v1, v2 and hybrid hosts.
Like runc's cgroupfs driver, a relative `linux.cgroupsPath` (and the default, which is the
container id) is taken relative to the runtime's own cgroup in each hierarchy; an absolute
one is taken from each hierarchy's root.

`Layout` is the one view of a container's cgroup the rest of the runtime uses, whatever
the host: which directory (and which cgroup version) serves each controller. Resource
limits are written by `limits.py`, freezing is `freezer.py`'s; `manager.py`'s `Manager` is
what commands act on, built from a container's record; what is in an existing cgroup
and removing it are `existing.py`'s.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)

from ociruntime import pathlite
from ociruntime.cgroups import freezer, warmup
from ociruntime.cgroups.existing import remove
from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.fsutil import read_file

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.cgroups import devicerules


#: runc 1.1.5's words (libcontainer's factory, Create), which engines and people grep for.
FROZEN = "container's cgroup unexpectedly frozen"


class Hierarchy:
    """One mounted cgroup hierarchy (`controllers` is empty for the v2 unified one)."""

    __slots__ = ("mountpoint", "controllers", "own_path")

    def __init__(self, mountpoint: str, controllers: frozenset[str], own_path: str) -> None:
        self.mountpoint = mountpoint
        self.controllers = controllers
        self.own_path = own_path  # this process's cgroup in it, from /proc/self/cgroup

    @property
    def is_v2(self) -> bool:
        return not self.controllers


#: Mount options of a v1 hierarchy that name no controller (one list: warmup.py reads bytes).
_V1_SUPER_OPTION_NOISE = frozenset(o.decode() for o in warmup.NOT_CONTROLLERS)


def _own_cgroups() -> dict[frozenset[str], str]:
    own: dict[frozenset[str], str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            own[frozenset(c for c in controllers.split(",") if c)] = path
    return own


def hierarchies() -> list[Hierarchy]:
    """Every cgroup hierarchy mounted in this mount namespace (first mount of each)."""
    own = _own_cgroups()
    found: dict[frozenset[str], Hierarchy] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _source, super_opts = right.split()
            if fstype not in ("cgroup", "cgroup2"):
                continue
            mountpoint = left.split()[4]
            if fstype == "cgroup2":
                key: frozenset[str] = frozenset()
            else:
                key = frozenset(o for o in super_opts.split(",") if o not in _V1_SUPER_OPTION_NOISE)
            if key in own and key not in found:
                found[key] = Hierarchy(mountpoint, key, own[key])
    return list(found.values())


def host_mode(found: list[Hierarchy]) -> str:
    """ "v1", "v2" or "hybrid" (v1 controllers plus a v2 hierarchy), from the mounts
    already read: no extra system call. Named v1 hierarchies (name=systemd) hold no
    controller and do not make a v2 host hybrid."""
    v1 = any(c for h in found for c in h.controllers if not c.startswith("name="))
    v2 = any(h.is_v2 for h in found)
    return "hybrid" if v1 and v2 else "v2" if v2 else "v1"


def paths_of(pairs: list[tuple[Hierarchy, str]]) -> dict[str, str]:
    """controller -> directory, as runc records it: each v1 controller (and named
    hierarchy) by name, the v2 directory under ""."""
    paths: dict[str, str] = {}
    for h, d in pairs:
        for c in h.controllers or ("",):
            paths[c] = d
    return paths


class Layout:
    """A container's cgroup on this host: one directory per hierarchy, and for each
    controller the one that serves it. A controller mounted on v1 is served there; one
    that is only on the v2 hierarchy (hugetlb on this hybrid host, all of them on a v2
    host) by the v2 directory."""

    __slots__ = ("paths", "_v2_available")

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths
        self._v2_available: frozenset[str] | None = None

    @property
    def unified(self) -> str | None:
        return self.paths.get("")

    @property
    def mode(self) -> str:
        v1 = any(c and not c.startswith("name=") for c in self.paths)
        return "hybrid" if v1 and self.unified else "v2" if self.unified else "v1"

    def v2_root(self) -> str | None:
        """The v2 hierarchy's mountpoint: the highest ancestor that is still a cgroup.
        Ancestors that do not exist yet are walked through: under systemd a pod's slices
        are made with its first scope, after create has checked the limits."""
        d = self.unified
        if d is None:
            return None
        while True:
            parent = pathlite.dirname(d)
            if parent == d:
                return d
            if pathlite.exists(parent) and not pathlite.exists(
                pathlite.join(parent, "cgroup.controllers")
            ):
                return d
            d = parent

    def v2_available(self) -> frozenset[str]:
        """Controllers the v2 hierarchy has (its root's cgroup.controllers), read once."""
        if self._v2_available is None:
            root = self.v2_root()
            names = read_file(root, "cgroup.controllers") or ""
            self._v2_available = frozenset(names.split())
        return self._v2_available

    def where(self, controller: str) -> str | None:
        """ "v1" or "v2": the version serving `controller`; None when nothing does. ""
        names the v2 directory itself (core files such as cgroup.freeze)."""
        if controller and controller in self.paths:
            return "v1"
        if self.unified and (not controller or controller in self.v2_available()):
            return "v2"
        return None

    def dir_of(self, controller: str) -> str | None:
        version = self.where(controller)
        if version is None:
            return None
        return self.paths[controller] if version == "v1" else self.unified


def enable_v2_controllers(layout: Layout, controllers: list[str] | None = None) -> None:
    """Make `controllers` (default: every one the v2 hierarchy has, as runc does on a v2
    host) usable in the container's v2 directory: each ancestor's cgroup.subtree_control
    must list them. Best effort, as in runc: an ancestor holding processes refuses
    (cgroup v2's no-internal-processes rule), and the writes that need the controller
    then fail naming the resource."""
    leaf, root = layout.unified, layout.v2_root()
    if leaf is None or root is None or leaf == root:
        return
    wanted = controllers if controllers is not None else sorted(layout.v2_available())
    if not wanted:
        return
    request = " ".join("+" + c for c in wanted)
    ancestors = [root]
    for part in pathlite.relpath(leaf, root).split("/")[:-1]:
        ancestors.append(pathlite.join(ancestors[-1], part))
    for d in ancestors:
        _enable_in(d, request)


def _enable_in(directory: str, request: str) -> None:
    path = pathlite.join(directory, "cgroup.subtree_control")
    try:
        with open(path, "w") as f:
            f.write(request)
    except OSError:
        for one in request.split():  # one refused controller must not block the others
            try:
                with open(path, "w") as f:
                    f.write(one)
            except OSError:
                pass


def placement(
    cgroups_path: str | None, container_id: str, found: list[Hierarchy]
) -> list[tuple[Hierarchy, str]]:
    """(hierarchy, directory) for each hierarchy: where the container's init goes.
    Computed once per create and handed to everything that needs it."""
    path = cgroups_path or container_id
    if ":" in path and not path.startswith("/"):
        raise RuntimeFailure(
            f"linux.cgroupsPath: {path!r} is a systemd slice:prefix:name path; "
            "it needs the systemd cgroup driver (--systemd-cgroup)"
        )
    pairs = []
    for h in found:
        base = "/" if path.startswith("/") else h.own_path
        rel = pathlite.normpath(pathlite.join(base, path)).lstrip("/")
        full = pathlite.normpath(pathlite.join(h.mountpoint, rel))
        if not (full + "/").startswith(h.mountpoint.rstrip("/") + "/"):
            raise RuntimeFailure(f"linux.cgroupsPath: {path!r} leaves the cgroup hierarchy")
        pairs.append((h, full))
    return pairs


def check_existing(pairs: list[tuple[Hierarchy, str]]) -> int:
    """Before anything is made, as runc 1.1.5's create looks at a cgroup that is already
    there; returns how many processes it holds.

    One that holds processes is used anyway, with runc 1.1.5's two warnings in its words
    (counted where runc counts: the devices hierarchy, or v2, and every cgroup below);
    runc 1.2 refuses it. `create` records it (`cgroup_shared`) so that `delete` kills
    only the container's init, never the processes that were there before. One that is
    frozen would take the init and never let it run (create would wait for it forever),
    so it is refused in runc's words, before the state dir exists; a cgroup frozen by an
    ancestor only is not "frozen" (freezer.self_freezing), as for runc. For a fresh
    cgroup this is one failed stat and one failed read."""
    paths = paths_of(pairs)
    counted = paths.get("devices") or paths.get("")
    found = len(_all_pids(counted)) if counted and pathlite.isdir(counted) else 0
    if found:
        from ociruntime.log import LOG

        LOG.warning(f"container's cgroup is not empty: {found} process(es) found")
        LOG.warning(
            "DEPRECATED: running container in a non-empty cgroup won't be supported in "
            "runc 1.2; https://github.com/opencontainers/runc/issues/3132"
        )
    if freezer.is_frozen(paths):
        where = paths.get("freezer") or paths.get("")
        raise field_error(pointer("linux", "cgroupsPath"), f"{FROZEN} ({where})")
    return found


def _all_pids(directory: str) -> set[int]:
    """Every pid in the cgroup and the cgroups below it (runc's GetAllPids)."""
    pids: set[int] = set()
    below = [directory]
    while below:  # os.walk's order does not matter here, nor its errors (ignored)
        dirpath = below.pop()
        text = read_file(dirpath, "cgroup.procs") or ""
        pids.update(int(x) for x in text.split())
        try:
            with posix.scandir(dirpath) as entries:
                below.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            pass
    return pids


def missing(pairs: list[tuple[Hierarchy, str]]) -> list[str]:
    """The directories `create(pairs)` would make now (deepest last): what `create`
    records before making them, so that a create killed half-way leaves none behind."""
    out: list[str] = []
    for h, d in pairs:
        cur, gone = h.mountpoint, False
        for part in pathlite.relpath(d, h.mountpoint).split("/"):
            cur = pathlite.join(cur, part)
            gone = gone or not pathlite.isdir(cur)  # below a missing one: no stat needed
            if gone:
                out.append(cur)
    return out


def create(pairs: list[tuple[Hierarchy, str]]) -> list[str]:
    """mkdir -p each dir; returns the directories created here (deepest last) so that a
    rollback or delete removes exactly those. v1 cpuset cgroups with empty cpus/mems get
    their parent's, down the whole path (runc's cpusetEnsureParent): no task can join one
    that is empty, and a directory of the path that already existed may be (made by hand,
    or by a tool that never set them; the kernel fails the join with ENOSPC). On v2 an
    empty cpuset.cpus already means the parent's, and the root has none to copy."""
    created: list[str] = []
    try:
        for h, d in pairs:
            parts = pathlite.relpath(d, h.mountpoint).split("/")
            cur = h.mountpoint
            for part in parts:
                cur = pathlite.join(cur, part)
                try:
                    posix.mkdir(cur, 0o755)
                    created.append(cur)
                except FileExistsError:
                    pass
                if "cpuset" in h.controllers:
                    _inherit_cpuset(cur)
    except OSError as e:
        remove(created)
        raise RuntimeFailure(f"creating cgroup {e.filename}: {e.strerror}") from None
    return created


def _inherit_cpuset(path: str) -> None:
    """An empty cpuset.cpus or cpuset.mems of `path` gets its parent's (the parent's are
    set already: the path is walked from the top)."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        mine = pathlite.join(path, name)
        if not pathlite.exists(mine):
            return
        with open(mine) as f:
            if f.read().strip():
                continue
        with open(pathlite.join(pathlite.dirname(path), name)) as f:
            parent = f.read().strip()
        with open(mine, "w") as f:
            f.write(parent)


def join(dirs: list[str], pid: int) -> None:
    """Move `pid` into each dir. The first write can take ~10 ms (the kernel waits for an
    RCU grace period), which is why `create` does it while the init builds the rootfs."""
    data = str(pid).encode()
    for d in dirs:
        try:
            fd = posix.open(pathlite.join(d, "cgroup.procs"), posix.O_WRONLY | posix.O_CLOEXEC)
            try:
                posix.write(fd, data)
            finally:
                posix.close(fd)
        except OSError as e:
            raise RuntimeFailure(f"joining cgroup {d}: {e.strerror}") from None


#: What runc always allows after the config's own rules (libcontainer's AllowedDevices):
#: creating any device node, and using the default devices, /dev/pts/*,
#: /dev/ptmx and /dev/net/tun.
DEFAULT_ALLOWED_DEVICES = (
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm", "c 1:5 rwm",
    "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm",
)  # fmt: skip


def device_rules(resources: dict) -> list[tuple[bool, str]]:
    """(allow, "type major:minor access") in the order the kernel must see them: the
    config's `linux.resources.devices`, then runc's defaults, so later rules win as in
    the spec. Read as runc reads them (devicerules.py): the access letters r, w, m (others
    ignored); an empty access, an unknown type, a rule allowing a device no access and a
    deny v1 cannot do are refused in runc's words after the field's pointer, here, before
    anything is made. The devices `linux.devices` creates get no rule of their own: as
    with runc 1.1.5 (and config-linux.md's example, which pairs /dev/sda with a read-only
    rule), the config's rules say what may be done with them. Then, unlike runc, the
    config's deny rules that name one device type and major again, less what an allowed
    wildcard grants (v1 cannot take that away): a config that denies writes to /dev/null
    means it (runc's defaults would allow them back); its leading "deny all" is not
    repeated, or the defaults would go."""
    from ociruntime.cgroups import devicerules  # only with device rules

    config = [(bool(r.get("allow")), _device_rule(i, r)) for i, r in
              enumerate(resources.get("devices") or [])]  # fmt: skip
    target = devicerules.Emulator()
    for i, (allow, rule) in enumerate(config):
        try:
            target.apply(allow, rule)
        except devicerules.RuleError as e:
            raise field_error(pointer("linux", "resources", "devices", i), f"{rule}: {e}") from None
    rules = config + [(True, rule) for rule in DEFAULT_ALLOWED_DEVICES]
    for rule in DEFAULT_ALLOWED_DEVICES:
        target.apply(True, rule)
    _refuse_blank(config, target, resources)
    for allow, rule in config:
        if allow or rule[0] == "a" or rule.split(" ")[1][0] == "*":
            continue
        again = target.spared(rule)
        if again:
            target.apply(False, again)
            rules.append((False, again))
    return rules


def _device_rule(i: int, rule: dict) -> str:
    """One config rule as v1 writes it, its access read as runc reads it."""
    from ociruntime.cgroups import devicerules  # only with device rules

    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise field_error(
            pointer("linux", "resources", "devices", i, "type"),
            f'invalid cgroup device type "{kind}"',
        )
    if not rule.get("access"):
        raise field_error(
            pointer("linux", "resources", "devices", i, "access"),
            f"device access at {i} field cannot be empty",
        )
    major, minor = rule.get("major", "*"), rule.get("minor", "*")
    major = "*" if major in (None, -1) else major
    minor = "*" if minor in (None, -1) else minor
    return f"{kind} {major}:{minor} {devicerules.access(str(rule['access']))}"


def _refuse_blank(config: list[tuple[bool, str]], target: devicerules.Emulator,
                  resources: dict) -> None:  # fmt: skip
    """An allowed device left with no access ("x", "a": no r, w or m) is what runc's
    check after its writes refuses; refused here, naming the rule, before the writes."""
    from ociruntime.cgroups import devicerules  # only with device rules

    if target.default_allow:
        return
    blank = {key for key, perms in target.rules.items() if not perms}
    for i, (_allow, rule) in enumerate(config):
        if rule.endswith(" ") and devicerules.key_of(rule) in blank:
            given = resources["devices"][i]["access"]
            raise field_error(
                pointer("linux", "resources", "devices", i, "access"),
                f'"{given}" grants none of r, w, m: {devicerules.NOT_PRECISE}',
            )


def apply_device_rules(pairs: list[tuple[Hierarchy, str]], rules: list[tuple[bool, str]]) -> None:
    """The v1 devices controller, as runc: read what the cgroup allows now (devices.list),
    write only what takes it to the rules' result, read it back. A fresh cgroup (its
    parent's list) gets a reset and every rule; one that existed before and already
    allows the same gets nothing, so its processes never lose a device in between.
    Without the controller (cgroup v2), an eBPF program built from the same rules is
    attached to the v2 directory (devices_bpf.py)."""
    from ociruntime.cgroups import devicerules  # only with device rules

    if not any("devices" in h.controllers for h, _ in pairs):
        v2 = [d for h, d in pairs if h.is_v2]
        if v2:
            from ociruntime.cgroups import devices_bpf  # only on v2 hosts: it loads ctypes' libc

            devices_bpf.apply(v2[0], rules)
        return
    target = devicerules.Emulator()
    for allow, rule in rules:
        target.apply(allow, rule)  # device_rules has checked them: no RuleError
    for h, d in pairs:
        if "devices" in h.controllers:
            _sync_devices(d, target)


def _sync_devices(d: str, target: devicerules.Emulator) -> None:
    """Write the transition from devices.list to `target`; check the list then says it."""
    from ociruntime.cgroups import devicerules  # only with device rules

    try:
        current = devicerules.Emulator.from_list(_read_devices_list(d))
        for allow, rule in current.transition(target):
            name = "devices.allow" if allow else "devices.deny"
            try:
                with open(pathlite.join(d, name), "w") as f:
                    f.write(rule)
            except OSError as e:
                raise RuntimeFailure(
                    f"linux.resources.devices: {name} {rule!r}: {e.strerror}"
                ) from None
        why = devicerules.Emulator.from_list(_read_devices_list(d)).mismatch(target)
    except devicerules.RuleError as e:  # a devices.list runc's model cannot read
        raise RuntimeFailure(f"linux.resources.devices: {d}/devices.list: {e}") from None
    if why is not None:
        raise RuntimeFailure(f"linux.resources.devices: {why} ({d}/devices.list)")


def _read_devices_list(d: str) -> str:
    try:
        with open(pathlite.join(d, "devices.list")) as f:
            return f.read()
    except OSError as e:
        raise RuntimeFailure(f"linux.resources.devices: {d}/devices.list: {e.strerror}") from None
