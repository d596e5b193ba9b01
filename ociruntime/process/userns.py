"""User namespaces: checking `linux.uidMappings`/`gidMappings`, writing them, and the
user namespaces behind id-mapped mounts.

Only a process outside a user namespace can write its maps, so a container's user
namespace is made in two steps (see `init.user_namespace_stage`): the init unshares
CLONE_NEWUSER and asks `create` to map it; `create` writes /proc/<init>/uid_map and
gid_map (`write_maps`) and answers; the init then becomes the namespace's root
(`become_root`). As root on the host any mapping can be written directly; an unprivileged
caller may only map its own uid and gid (after denying setgroups), and anything more goes
through the setuid helpers newuidmap/newgidmap, which check /etc/subuid and /etc/subgid.
"""

from __future__ import annotations

import os

from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.security import procfs

_KINDS = (("uidMappings", "uid"), ("gidMappings", "gid"))


def check(linux: dict, user_ns: str | None) -> None:
    """A new user namespace needs both mappings, with container root mapped and no
    range overlapping another on either side (the kernel would refuse with EINVAL; this
    says which entries). A joined one (path) brings its own maps."""
    if user_ns is not None:
        return
    for field, kind in _KINDS:
        maps = linux.get(field) or []
        if not maps:
            raise field_error(
                pointer("linux", field), f"a new user namespace needs {kind} mappings"
            )
        check_ranges(pointer("linux", field), maps)
        if not any(m["containerID"] <= 0 < m["containerID"] + m["size"] for m in maps):
            raise field_error(pointer("linux", field), f"no mapping for container {kind} 0 (root)")


def check_ranges(where: str, maps: list[dict]) -> None:
    """Sizes above zero and no two ranges overlapping, inside or outside (pure)."""
    for i, m in enumerate(maps):
        if m["size"] <= 0:
            raise field_error(f"{where}/{i}/size", "must be above 0")
        for j in range(i):
            other = maps[j]
            for side in ("containerID", "hostID"):
                a, b = m[side], other[side]
                if a < b + other["size"] and b < a + m["size"]:
                    raise field_error(
                        f"{where}/{i}",
                        f"{side} range {a}-{a + m['size'] - 1} "
                        f"overlaps {where}/{j} ({b}-{b + other['size'] - 1})",
                    )


def _map_text(maps: list[dict]) -> str:
    return "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in maps)


def write_maps(pid: int, linux: dict) -> None:
    """Map the user namespace of `pid` (called from outside it, by `create`)."""
    uid_maps, gid_maps = linux["uidMappings"], linux["gidMappings"]
    if os.geteuid() == 0:
        _write(pid, "uid_map", "/linux/uidMappings", _map_text(uid_maps))
        _write(pid, "gid_map", "/linux/gidMappings", _map_text(gid_maps))
        return
    if _only_own(uid_maps, os.geteuid()) and _only_own(gid_maps, os.getegid()):
        # The kernel lets an unprivileged process map its own ids only once setgroups
        # is denied (else dropping a group could grant access: CVE-2014-8989).
        _write(pid, "setgroups", "/linux/gidMappings", "deny")
        _write(pid, "uid_map", "/linux/uidMappings", _map_text(uid_maps))
        _write(pid, "gid_map", "/linux/gidMappings", _map_text(gid_maps))
        return
    _run_helper("newuidmap", pid, "uidMappings", uid_maps)
    _run_helper("newgidmap", pid, "gidMappings", gid_maps)


def _only_own(maps: list[dict], own: int) -> bool:
    return len(maps) == 1 and maps[0]["hostID"] == own and maps[0]["size"] == 1


def _write(pid: int, name: str, where: str, text: str) -> None:
    try:
        procfs.write(f"{pid}/{name}", text)  # the host's procfs, checked
    except OSError as e:
        raise field_error(
            where,
            f"writing {name}: {e.strerror}"
            + (
                " (unprivileged: only your own id can be mapped without newuidmap)"
                if e.errno == 1 and os.geteuid()
                else ""
            ),  # fmt: skip
        ) from None


def _run_helper(tool: str, pid: int, field: str, maps: list[dict]) -> None:
    """newuidmap/newgidmap PID CONTAINER HOST SIZE...: the setuid helpers from shadow's
    uidmap package, which allow the ranges /etc/subuid or /etc/subgid grant the caller."""
    import subprocess  # only for unprivileged multi-id mappings

    path = next((p for p in (f"/usr/bin/{tool}", f"/bin/{tool}") if os.access(p, os.X_OK)), None)
    if path is None:
        raise field_error(
            pointer("linux", field),
            f"mapping more than your own id unprivileged needs {tool} (Debian package uidmap)",
        )
    argv = [path, str(pid)]
    for m in maps:
        argv += [str(m["containerID"]), str(m["hostID"]), str(m["size"])]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        why = why.removeprefix(f"{tool}: ")
        raise field_error(pointer("linux", field), f"{tool}: {why}")


def become_root() -> None:
    """In the freshly mapped namespace: take container uid/gid 0 (the capabilities the
    unshare gave stay: the uid changes from an unmapped one to the namespace's root)."""
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    except OSError as e:
        raise RuntimeFailure(f"user namespace: becoming root: {e.strerror}") from None
    if setgroups_allowed():
        os.setgroups([])


def setgroups_allowed() -> bool:
    """False in a user namespace whose creator denied setgroups (unprivileged maps)."""
    try:
        return procfs.read("self/setgroups").strip() != b"deny"
    except OSError:
        return True


def idmapped_tree(source: str, recursive: bool, mount: dict, where: str) -> int:
    """A detached, id-mapped copy of the mount at `source` (open_tree + mount_setattr
    with MOUNT_ATTR_IDMAP), made by `create` on the host, where the kernel allows it
    (the filesystem's owner namespace must be ours); the init attaches it inside the
    rootfs with move_mount. `where` is the mount's, e.g. /mounts/3."""
    uid_maps, gid_maps = mount.get("uidMappings") or [], mount.get("gidMappings") or []
    for field, maps in (("uidMappings", uid_maps), ("gidMappings", gid_maps)):
        if not maps:
            raise field_error(
                f"{where}/{field}", "an id-mapped mount needs both uidMappings and gidMappings"
            )
        check_ranges(f"{where}/{field}", maps)
    userns_fd = _mapping_namespace(uid_maps, gid_maps, where)
    try:
        tree = sc.open_tree(source, recursive)
        try:
            sc.mount_setattr(tree, k.MOUNT_ATTR_IDMAP, 0, recursive, userns_fd)
        except OSError:
            os.close(tree)
            raise
        return tree
    except OSError as e:
        raise field_error(where, f"id-mapping {source}: {e.strerror}") from None
    finally:
        os.close(userns_fd)


def _mapping_namespace(uid_maps: list[dict], gid_maps: list[dict], where: str) -> int:
    """An fd of a user namespace with these maps: a child unshares one and waits while
    we map it and open it, then exits."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(go_w)  # or the read below would never see EOF
        os.close(ready_r)
        code = 0
        try:
            sc.unshare(k.CLONE_NEWUSER)
        except OSError:
            code = 1
        os.write(ready_w, b"x")
        os.read(go_r, 1)
        os._exit(code)
    os.close(ready_w)
    os.close(go_r)
    try:
        os.read(ready_r, 1)
        _write(pid, "uid_map", f"{where}/uidMappings", _map_text(uid_maps))
        _write(pid, "gid_map", f"{where}/gidMappings", _map_text(gid_maps))
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(go_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
