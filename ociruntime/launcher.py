"""Write a fast, isolated launcher script for the `ociruntime` command.

pip's console-script wrapper runs the interpreter with `site` (the venv's .pth files,
~2 ms) and imports `re`, then honours PYTHONPATH and friends. A container runtime runs as
root on every container operation, so this launcher starts Python isolated (-I: no
PYTHON* variables, no user site-packages) and without `site` (-S), with the two paths it
needs written in: where the package is and where its dependencies are. For `create`,
`run` and `exec` it first starts the cgroup warm-up (cgroups/warmup.py), before the
CLI is imported: the kernel's grace period it pays is the longest wait of a create.

    .venv/bin/python -m ociruntime.launcher .venv/bin/ociruntime
"""

from __future__ import annotations

import os
import sys
import sysconfig

TEMPLATE = """#!{python} -IS
# Written by `python -m ociruntime.launcher`: isolated from the environment, no site.
import sys
sys.path[0:0] = {paths!r}
if "create" in sys.argv or "run" in sys.argv or "exec" in sys.argv:
    from ociruntime.cgroups.warmup import warm_up_for
    warm_up_for(sys.argv[1:])  # the kernel's grace period, started first
from ociruntime.cli import run_and_exit
run_and_exit()
"""


def launcher_text() -> str:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_parent]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in paths:
            paths.append(path)
    return TEMPLATE.format(python=sys.executable, paths=paths)


def install(dest: str) -> None:
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(launcher_text())
    os.chmod(tmp, 0o755)
    os.rename(tmp, dest)


if __name__ == "__main__":
    install(sys.argv[1])
