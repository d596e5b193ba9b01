"""CRIU's action script during `restore`: the container's prestart and createRuntime
hooks, run where runc runs them, at CRIU's `setup-namespaces` step (the restored tree's
namespaces exist, its processes do not run yet).

runc gets that moment as an RPC notification; through criu's command line it is the
`--action-script` criu runs with CRTOOLS_SCRIPT_ACTION=setup-namespaces and
CRTOOLS_INIT_PID set to the restored init's pid (ociruntime.criu explains the choice).
`restore` writes what the hooks need to a JSON file and criu runs
`python -m ociruntime.criu_action FILE`; every other action is a no-op. A failing hook
exits non-zero, which fails criu's restore (and so `restore`, which rolls back).

The script is criu's child and so starts in the container's cgroup (criu was put there
for the restored tree to inherit it): it moves back to the cgroups of the `restore`
that launched criu first, as runc's hooks run in runc's own.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    if os.environ.get("CRTOOLS_SCRIPT_ACTION") != "setup-namespaces":
        return 0
    import json

    with open(argv[0]) as f:
        job = json.load(f)
    from ociruntime.errors import RuntimeFailure
    from ociruntime.process import hooks

    for d in job.get("own_cgroups") or []:
        try:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass  # best effort: the hooks then run in the container's cgroup
    state = dict(job["state"], pid=int(os.environ.get("CRTOOLS_INIT_PID") or 0))
    try:
        for kind in ("prestart", "createRuntime"):
            hooks.run_hooks(kind, job["hooks"].get(kind) or [], state)
    except RuntimeFailure as e:
        with open(job["reason_file"], "w") as f:
            f.write(str(e))
        sys.stderr.write(f"{e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
