"""`ps`: the container's processes (from its cgroup), as runc prints them."""

from __future__ import annotations

from ociruntime import jsonlite
from ociruntime.container.container import Container
from ociruntime.errors import RuntimeFailure


def ps(root: str, container_id: str, fmt: str, ps_args: list[str]) -> str:
    """The container's pids as JSON, or the host's ps output cut to the container's rows."""
    container = Container.load(root, container_id)
    container.unlock()  # the record is read: running the host's ps needs no lock
    # A stopped container (not yet deleted) is no error, as in runc: its cgroup is empty,
    # so `--format json` prints `null` (Go's nil slice) and the table only its header.
    # containerd's shim asks this for `ctr task ps` whatever the task's state.
    pids = container.cgroups.pids()
    if fmt == "json":
        return (jsonlite.dumps(pids, compact=True) if pids else "null") + "\n"
    if fmt != "table":
        raise RuntimeFailure(f"invalid format option: {fmt}")
    return _ps_table(pids, ps_args or ["-ef"])


def _ps_table(pids: list[int], ps_args: list[str]) -> str:
    """Run the host's ps and keep its header and the container's rows (the PID column
    is found by name, so any ps options work)."""
    import subprocess

    try:
        out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=False)
    except FileNotFoundError:  # runc's words, then what to do about it
        raise RuntimeFailure(
            'exec: "ps": executable file not found in $PATH (Debian: install procps)'
        ) from None
    if out.returncode != 0:
        raise RuntimeFailure(f"ps {' '.join(ps_args)}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeFailure("couldn't find PID field in ps output")
    column = header.index("PID")
    wanted = {str(p) for p in pids}
    rows = [line for line in lines[1:] if line.split()[column] in wanted]
    return "\n".join([lines[0], *rows]) + "\n"
