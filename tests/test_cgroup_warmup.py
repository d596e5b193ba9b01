"""The cgroup warm-up the launcher starts (ociruntime/cgroups/warmup.py): which command
lines start it, and the cgroup.procs it writes to.

The launcher reads the command word before the CLI is imported, so it has its own small
reading of the global flags; these tests hold it to the CLI's. Its target is found from
raw bytes of /proc/self/cgroup and /proc/self/mountinfo; on this host it must be the
file cgroupfs.hierarchies() names.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ociruntime import cli, pathlite
from ociruntime.cgroups import cgroupfs, warmup
from ociruntime.errors import RuntimeFailure

#: Words a command line is made of: every global flag in each form, values, commands,
#: and the separators parse_flags treats apart.
_FLAG_FORMS = [
    form
    for f in cli.GLOBAL_FLAGS
    for name in f.names
    for form in (f"--{name}", f"-{name}", f"--{name}=v")
]
words = st.lists(
    st.sampled_from([*_FLAG_FORMS, "create", "run", "exec", "state", "--", "-", "x", "--nope"]),
    max_size=7,
)


@pytest.mark.pure
def test_value_flags_are_the_clis() -> None:
    assert warmup.GLOBAL_VALUE_FLAGS == {
        name for f in cli.GLOBAL_FLAGS if f.takes_value for name in f.names
    }


@pytest.mark.pure
@given(words)
@example(["--root", "create", "state", "x"])  # `create` is --root's value
@example(["--log=create", "run"])
@example(["--debug", "--", "exec", "x"])
@example(["-", "create"])
def test_command_word_is_the_one_the_cli_dispatches(argv: list[str]) -> None:
    """For every command line the CLI accepts, the same command; for the others, no
    error (the CLI then refuses it; a warm-up started for nothing is harmless)."""
    found = warmup.command_of(argv)
    try:
        parsed = cli.parse_flags(argv, cli.GLOBAL_FLAGS, "ociruntime")
    except RuntimeFailure:
        return
    assert found == (parsed.args[0] if parsed.args else None)


def test_target_is_our_cgroup_in_the_first_v1_hierarchy() -> None:
    """What the warm-up writes "0" to: the cgroup.procs of our own cgroup (a no-op
    move), in the first v1 controller hierarchy cgroupfs finds; none on a v2-only host."""
    v1 = [
        h
        for h in cgroupfs.hierarchies()
        if h.controllers and not all(c.startswith("name=") for c in h.controllers)
    ]
    if not v1:
        assert warmup.own_v1_procs() is None
        return
    expected = pathlite.join(v1[0].mountpoint, v1[0].own_path.lstrip("/"), "cgroup.procs")
    assert warmup.own_v1_procs() == expected
