"""The container model without a container: the one table of refusals (in the words the
commands have always used), the cgroup Manager built from a record, and the helpers
written once (fsutil, cpulist, kill_and_reap)."""

from __future__ import annotations

import os
import subprocess

import pytest

from ociruntime.container.container import Container, refusal
from ociruntime.container.state import ContainerState, StateDir
from ociruntime.cpulist import parse_cpu_list
from ociruntime.errors import RuntimeFailure
from ociruntime.fsutil import read_file, write_atomic
from ociruntime.signals import kill_and_reap

pytestmark = pytest.mark.pure  # no root, no kernel state: the unprivileged tier

STATUSES = ("creating", "created", "running", "paused", "stopped")

#: (operation, status) -> the refusal the commands printed before the Container existed.
TODAY = {
    ("start", "stopped"): "cannot start a container that has stopped",
    ("start", "running"): "cannot start an already running container",
    ("start", "creating"): "cannot start a container in the creating state",
    ("start", "paused"): "cannot start a container in the paused state",
    ("kill", "stopped"): "container not running",
    ("kill", "creating"): "container not running",
    ("pause", "stopped"): "container not running",
    ("pause", "creating"): "container not running",
    ("pause", "paused"): "container not running",
    ("resume", "stopped"): "container not paused",
    ("resume", "creating"): "container not paused",
    ("resume", "created"): "container not paused",
    ("resume", "running"): "container not paused",
    ("update", "stopped"): "container not running",
    ("update", "creating"): "container not running",
    ("events", "stopped"): "container with id c1 is not running",
    ("exec", "stopped"): "cannot exec in a stopped container",
    ("exec", "creating"): "cannot exec in a container that is being created",
    ("exec", "paused"): "cannot exec in a paused container (use --ignore-paused to override)",
    ("exec --ignore-paused", "stopped"): "cannot exec in a stopped container",
    ("exec --ignore-paused", "creating"): "cannot exec in a container that is being created",
}


@pytest.mark.parametrize("operation", ["start", "kill", "pause", "resume", "update", "events",
                                       "exec", "exec --ignore-paused"])  # fmt: skip
@pytest.mark.parametrize("status", STATUSES)
def test_refusals_are_todays_words(operation: str, status: str) -> None:
    assert refusal(operation, status, "c1") == TODAY.get((operation, status))


@pytest.mark.parametrize("status", STATUSES)
def test_delete_refuses_all_but_stopped(status: str) -> None:
    expected = None if status == "stopped" else (
        f"cannot delete container c1 that is not stopped: {status}"
    )  # fmt: skip
    assert refusal("delete", status, "c1") == expected


def _state(**cgroups: object) -> ContainerState:
    return ContainerState(
        id="c1",
        pid=0,
        start_time=0,
        bundle="/b",
        rootfs="/b/rootfs",
        created="2026-01-01T00:00:00Z",
        **cgroups,
    )  # type: ignore[arg-type]


def test_manager_from_state_shares_the_records_lists(tmp_path) -> None:  # noqa: ANN001
    d = tmp_path / "cg"
    state = _state(cgroup_dirs=[str(d)], cgroup_created=[str(d)], cgroup_paths={"": str(d)})
    m = state.cgroup_manager()
    assert (m.dirs, m.created, m.paths) == ([str(d)], [str(d)], {"": str(d)})
    assert not m.exists() and m.pids() == [] and not m.frozen()
    d.mkdir()
    (d / "cgroup.procs").write_text("7\n9\n")
    (d / "cgroup.freeze").write_text("1\n")
    assert m.exists() and m.pids() == [7, 9] and m.frozen()
    assert m.layout.unified == str(d)


def test_a_container_without_a_cgroup_is_never_frozen() -> None:
    assert not _state().cgroup_manager().frozen()


def test_check_raises_the_refusal(tmp_path) -> None:  # noqa: ANN001
    sd = StateDir(str(tmp_path), "c1")
    c = Container(sd, _state(creator=[0, 0]))  # a create that died: stopped
    assert c.status() == "stopped"
    with pytest.raises(RuntimeFailure, match="^container not paused$"):
        c.check("resume")
    assert c.check("delete") == "stopped"


def test_load_keeps_the_id_checks_and_not_found(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(RuntimeFailure, match="^invalid container ID format$"):
        Container.load(str(tmp_path), "../x")
    with pytest.raises(RuntimeFailure, match="^container does not exist$"):
        Container.load(str(tmp_path), "nope")


def test_read_file(tmp_path) -> None:  # noqa: ANN001
    (tmp_path / "f").write_text("1\n")
    assert read_file(str(tmp_path), "f") == "1\n"
    assert read_file(str(tmp_path), "missing") is None
    assert read_file(None, "f") is None
    assert read_file(str(tmp_path), ".") is None  # a directory: unreadable as a file


def test_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "state.json"
    path.write_text("old")
    write_atomic(str(path), b"new", 0o600)
    assert path.read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


@pytest.mark.parametrize(("text", "cpus"), [
    ("0", [0]), ("0-3", [0, 1, 2, 3]), ("0-1,5\n", [0, 1, 5]), (" 2 , 4-5 ", [2, 4, 5]),
])  # fmt: skip
def test_cpu_list(text: str, cpus: list[int]) -> None:
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize(("text", "message"), [
    ("", "invalid CPU list ''"), ("a", "invalid CPU list 'a'"), ("-1", "invalid CPU list '-1'"),
    ("3-1", "invalid CPU range '3-1' in '3-1'"), ("0,,1", "invalid CPU list '0,,1'"),
])  # fmt: skip
def test_cpu_list_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_cpu_list(text)
    assert str(e.value) == message


def test_kill_and_reap_a_child_and_a_gone_pid() -> None:
    child = subprocess.Popen(["sleep", "100"])
    kill_and_reap(child.pid)
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, 0)  # reaped already
    kill_and_reap(child.pid)  # gone: no error
