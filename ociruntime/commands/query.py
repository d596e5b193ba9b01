"""`state` and `list`: what engines parse, so the shapes follow runc's exactly."""

import fcntl
import posix  # not os: the one-shot commands never load it (pathlite.py)
import pwd

from ociruntime import jsonlite, pathlite
from ociruntime.container.container import Container
from ociruntime.container.state import STATE_FILE, ContainerState, StateDir
from ociruntime.errors import RuntimeFailure


def state(root: str, container_id: str) -> str:
    """The runtime-spec state of one container, status read from the kernel now."""
    container = Container.load(root, container_id)
    return jsonlite.dumps_indent(container.public(container.status()))


def _all_states(root: str) -> list[dict]:
    """Every container, without taking their locks (a reader never waits for a writer):
    records are replaced atomically, so each read is whole. A container deleted while we
    list is skipped; a directory without a record is left out while its lock is held (a
    create about to write it, a delete removing it) and shown as stopped otherwise (what
    a killed create or delete left: `delete` removes it)."""
    try:
        names = sorted(posix.listdir(root))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        path = pathlite.join(root, name)
        try:
            sd = StateDir(root, name)
            if pathlite.exists(pathlite.join(path, STATE_FILE)):
                st = sd.load()
            else:
                st = _unrecorded(sd)
                if st is None:
                    continue
            container = Container(sd, st)
            entry = container.public(container.status())
            entry["owner"] = _owner(path)
        except (RuntimeFailure, ValueError, TypeError, FileNotFoundError, NotADirectoryError):
            continue  # gone meanwhile, or not ours
        out.append(entry)
    return out


def _unrecorded(sd: StateDir) -> ContainerState | None:
    """A placeholder for a directory without a record whose lock nobody holds."""
    try:
        fd = posix.open(sd.path, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return None
    finally:
        posix.close(fd)
    if pathlite.exists(pathlite.join(sd.path, STATE_FILE)):
        return None  # written meanwhile: the next list shows it
    return sd.placeholder()


def _owner(path: str) -> str:
    uid = posix.stat(path).st_uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


def list_containers(root: str, fmt: str, quiet: bool) -> str:
    """`list` in runc's three shapes: ids only (-q), JSON, or its tabwriter table."""
    entries = _all_states(root)
    if quiet:
        return "".join(e["id"] + "\n" for e in entries)
    if fmt == "json":
        return jsonlite.dumps(entries or None, compact=True) + "\n"
    if fmt != "table":
        raise RuntimeFailure(f"invalid format option: {fmt}")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    rows += [[e["id"], str(e["pid"]), e["status"], e["bundle"], e["created"], e["owner"]]
             for e in entries]  # fmt: skip
    # Go's tabwriter(minwidth=12, padding=3), as runc uses: cells padded to
    # max(12, widest + 3), the last column unpadded.
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    return "".join(
        "".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + r[-1] + "\n"
        for r in rows
    )
