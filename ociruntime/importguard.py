"""Tests only: make an import after the init's or an exec's fork fail loudly.

The rule: the init (forked by `create`) and an exec's intermediate process (forked by
`exec`) import everything they will ever need before they change anything of their own:
an exec's stages before the fork, the init first thing after it (stages/parent.py,
`_become_init`: still root in the host's namespaces, while `create` waits for the
kernel's cgroup lock), before this guard goes on. After that they join
the container's namespaces (setns), a user namespace that may not read the host's files,
and pivot_root: `import` would then look up sys.path in the container's filesystem. At
best that is an ImportError seen only inside some container ("No module named ..."), at
worst the container's own file run by the runtime, as root, before the container's
process exists. Nothing in production checks it; this guard does, in tests.

With OCIRUNTIME_IMPORT_GUARD in the environment (tests/conftest.py sets it for the whole
suite), the forked child installs a meta-path finder as its stage starts: every module not
imported yet fails with `LateImport`, written to stderr as well, in case some code
catches ImportError. The launcher runs `python -I`, which ignores PYTHON* variables but
not os.environ: hence the name. In production the cost is the test at the call sites,
`IMPORT_GUARD_ENV in os.environ` (one dict lookup); this module is imported only when the
variable is set, before the guard is on.
"""

from __future__ import annotations

import os
import sys

from ociruntime.security.containersafe import IMPORT_GUARD_ENV

__all__ = ["IMPORT_GUARD_ENV", "LateImport", "install"]


class LateImport(ImportError):
    """An import after the fork: see this module's docstring."""


class _Guard:
    """A meta-path finder that refuses every module (sys.modules never reaches it)."""

    def __init__(self, where: str) -> None:
        self.where = where

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        message = (
            f"ociruntime: import of {name} after the fork ({self.where}): import it before "
            "(see ociruntime/importguard.py)"
        )
        try:
            os.write(2, (message + "\n").encode())
        except OSError:
            pass
        raise LateImport(message, name=name)


def install(where: str) -> None:
    """From now on, in this process and what it forks, no new module can be imported."""
    sys.meta_path.insert(0, _Guard(where))
