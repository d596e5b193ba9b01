"""The init's user-namespace stage: the first process `create` forks when the container
has a user namespace, which comes back as the real init forked inside it.

Every namespace must belong to the container's user namespace for its root to manage it
(mount proc, set the hostname...): so the user namespace comes first, and the PID and
time namespaces, which only a child can enter, are created after it here rather than by
`create`. Namespaces joined by path are entered before a new user namespace (afterwards
we would lack the rights over the host's), or after a joined one (which then owns them).
This process reports the real init's pid and exits: `create` reaps it and the init is
reparented, as runc's is.
"""

from __future__ import annotations

import os

from ociruntime.errors import RuntimeFailure
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.process import namespaces, userns

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from ociruntime.stages.plan import InitPlan
    from ociruntime.stages.protocol import StageEnd

#: Namespaces joined by path before (or right after) the user namespace.
_EARLY = ("ipc", "uts", "network")


def run(plan: InitPlan, end: StageEnd) -> tuple[str, ...]:
    """In the forked stage; returns only in the real init, with the namespaces (by path)
    it joined already, for the init not to join them again."""
    ns = plan.namespaces
    early = tuple(kind for kind in _EARLY if ns.get(kind))
    if ns["user"]:
        namespaces.join(ns, ("user", *early))
    else:
        namespaces.join(ns, early)
        try:
            sc.unshare(k.CLONE_NEWUSER)
        except OSError as e:
            raise RuntimeFailure(f"creating user namespace: {e.strerror}") from None
        end.request_id_mapping()
    # Before becoming root: the uid change makes us non-dumpable, and /proc/self files
    # (timens_offsets) would then belong to the host's root.
    namespaces.enter_for_children_for_good(ns, plan.linux.get("timeOffsets"))
    userns.become_root()
    pid = os.fork()
    if pid:
        end.send_init_pid(pid)
        os._exit(0)
    return early
