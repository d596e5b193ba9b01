"""runtime.md's lifecycle, driven the same way on both runtimes.

Each scenario is a sequence of operations on one container. Every step records what
the runtime did (exit status, the container's status afterwards) next to what
runtime.md requires, so a scenario both checks the spec and compares the runtimes:
two runtimes agree when their (ok, status) sequences and hook orders are identical.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from conformance import corpus
from conformance.cgroupfiles import cpu_set
from conformance.harness import (
    Invocation,
    Workspace,
    cpus_allowed,
    ns_inode,
    remove_tagged_cgroups,
    tagged_cgroups,
)

GONE = "<none>"  # the status of a container that does not exist (state fails)
#: The status right after a successful kill: whether the process is gone yet is a race
#: (the signal's delivery and the exit take their time), so it is not read; the
#: `wait for stopped` step that follows each kill checks the outcome.
DYING = "<dying>"
SILENT = object()  # the spec says nothing: recorded, never checked
#: config.md's hooks, in the order they run.
HOOK_KINDS = tuple(
    "prestart createRuntime createContainer startContainer poststart poststop".split()
)


@dataclass
class Step:
    """One operation: what happened, and what runtime.md wants (SILENT: no rule)."""

    label: str
    ok: bool
    status: str
    want_ok: object = SILENT
    want_status: object = SILENT
    detail: str = ""
    rule: str = "runtime.md"  # whose rule want_ok/want_status are

    @property
    def conforms(self) -> bool:
        return (self.want_ok is SILENT or self.ok == self.want_ok) and (
            self.want_status is SILENT or self.status == self.want_status
        )

    def outcome(self) -> str:
        return f"{self.label}: {'ok' if self.ok else 'error'} -> {self.status}"

    def failure(self) -> str:
        want = []
        if self.want_ok is not SILENT:
            want.append("ok" if self.want_ok else "an error")
        if self.want_status is not SILENT:
            want.append(f"status {self.want_status}")
        got = self.outcome() + (f" [{self.detail}]" if self.detail else "")
        return f"{got}; {self.rule} wants {' and '.join(want)}"


@dataclass
class Driver:
    """Runs one scenario's operations on one runtime, against one container."""

    ws: Workspace
    runtime: str
    scenario: str
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)  # compared, not checked
    problems: list[str] = field(default_factory=list)  # spec violations beyond steps

    def __post_init__(self) -> None:
        self.cid = self.ws.container_id(f"lc-{self.scenario}", self.runtime)
        self.bundle: Path | None = None
        self.siblings: list[Driver] = []

    def make_bundle(self, edit: corpus.Edit) -> Path:
        config = corpus.base_config()
        config["process"]["args"] = ["sleep", "600"]
        edit(config)
        self.bundle, _ = self.ws.make_bundle(self.cid, config, dict(corpus.COMMON_FILES), [])
        (self.bundle / "log").mkdir()
        return self.bundle

    def op(
        self, label: str, args: list[str], want_ok: object = SILENT, want_status: object = SILENT
    ) -> Step:
        inv = self.ws.runtime(self.runtime, args)
        dying = inv.ok and args[0] == "kill"
        step = Step(
            label,
            inv.ok,
            DYING if dying else self.status(),
            want_ok,
            want_status,
            "" if inv.ok else inv.error()[-200:],
        )
        self.steps.append(step)
        return step

    def call(self, label: str, args: list[str], want_ok: object, want_status: object) -> Invocation:
        """An operation runtime.md does not define (pause, resume, update, events): runc's
        CLI, which engines drive, says what it does. The invocation back, for its output."""
        inv = self.ws.runtime(self.runtime, args)
        detail = "" if inv.ok else inv.error()[-200:]
        self.steps.append(
            Step(label, inv.ok, self.status(), want_ok, want_status, detail, "runc's CLI")
        )
        return inv

    def create(self, want_ok: object = True, want_status: object = "created") -> Step:
        return self.op(
            "create", ["create", "--bundle", str(self.bundle), self.cid], want_ok, want_status
        )

    def state(self) -> dict | None:
        inv = self.ws.runtime(self.runtime, ["state", self.cid])
        return json.loads(inv.stdout) if inv.ok else None

    def status(self) -> str:
        st = self.state()
        return st["status"] if st else GONE

    def wait_for(self, status: str, timeout: float = 10) -> Step:
        """Poll `state` until it says `status` (a stopped init is not our child)."""
        deadline = time.monotonic() + timeout
        while self.status() != status and time.monotonic() < deadline:
            time.sleep(0.02)
        step = Step(f"wait for {status}", True, self.status(), SILENT, status)
        self.steps.append(step)
        return step

    def run_to_stopped(self) -> None:
        self.create()
        self.op("start", ["start", self.cid], True, "running")
        self.op("kill KILL", ["kill", self.cid, "KILL"], True)
        self.wait_for("stopped")

    def sibling(self, suffix: str, edit: corpus.Edit) -> Driver:
        """A second container of the same scenario (cleaned up with this one)."""
        other = Driver(self.ws, self.runtime, f"{self.scenario}-{suffix}")
        other.make_bundle(edit)
        self.siblings.append(other)
        return other

    def cleanup(self) -> None:
        for d in [self, *self.siblings]:
            self.ws.runtime(self.runtime, ["delete", "--force", d.cid])

    def verdict(self) -> list[str]:
        return [s.failure() for s in self.steps if not s.conforms] + self.problems

    def comparable(self) -> list[str]:
        return [s.outcome() for s in self.steps] + [f"{k}={v}" for k, v in self.facts.items()]


# --- scenarios ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    name: str
    group: str
    doc: str
    run: Callable[[Driver], None]


_SCENARIOS: list[Scenario] = []


def scenario(name: str, group: str, doc: str) -> Callable:
    """Lists the function below as the scenario `name` of `group` (SCENARIOS: in the
    order of this file)."""

    def register(run: Callable[[Driver], None]) -> Callable[[Driver], None]:
        _SCENARIOS.append(Scenario(name, group, doc, run))
        return run

    return register


def unchanged(config: dict) -> None:
    """The lifecycle base as it is: `sleep 600` under runc's default spec."""


def marker_mount(config: dict) -> None:
    """The process touches /log/ran when it runs: proof of when the user code started."""
    config["process"]["args"] = ["sh", "-c", "touch /log/ran; exec sleep 600"]
    config["mounts"].append(corpus.bind("@BUNDLE@/log", "/log", "rbind", "rw"))


@scenario(
    "transitions",
    "lifecycle",
    (
        "creating→created→running→stopped→deleted; "
        "create does not run the program, start does; state fields"
    ),
)
def transitions(d: Driver) -> None:
    """creating -> created -> running -> stopped -> deleted; create must not run the
    user code, start must; state carries what runtime.md lists."""
    bundle = d.make_bundle(marker_mount)
    d.create()
    _check_state_fields(d, "created")
    ran = bundle / "log" / "ran"
    if ran.exists():
        d.problems.append("create ran the user-specified program (runtime.md: MUST NOT)")
    d.op("start", ["start", d.cid], True, "running")
    if not _eventually(ran.exists):
        d.problems.append("start did not run the user-specified program")
    _check_state_fields(d, "running")
    d.op("kill KILL (running)", ["kill", d.cid, "KILL"], True)
    d.wait_for("stopped")
    d.op("delete (stopped)", ["delete", d.cid], True, GONE)
    d.op("state (deleted)", ["state", d.cid], False, GONE)


def _check_state_fields(d: Driver, status: str) -> None:
    st = d.state() or {}
    want = {"id": d.cid, "status": status, "bundle": str(d.bundle)}
    wrong = {k: st.get(k) for k, v in want.items() if st.get(k) != v}
    if not isinstance(st.get("pid"), int) or st.get("pid", 0) <= 0:
        wrong["pid"] = st.get("pid")
    if "ociVersion" not in st:
        wrong["ociVersion"] = None
    if wrong:
        d.problems.append(f"state while {status}: wrong or missing {wrong}")


def _eventually(predicate: Callable[[], bool], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _unchanged_and(d: Driver, status: str) -> None:
    """A container of the unchanged config, brought to `status` (created, running or
    stopped)."""
    d.make_bundle(unchanged)
    if status == "stopped":
        d.run_to_stopped()
        return
    d.create()
    if status == "running":
        d.op("start", ["start", d.cid], True, "running")


def one_command(command: str, status: str, ok: bool) -> None:
    """The scenario "VERB-STATUS": `command` ("start", "kill KILL", "delete") on a
    container of the unchanged config that is `status`: ok (a kill then waited out), or an
    error and no effect (still `status`)."""
    verb, *rest = command.split()

    def run(d: Driver) -> None:
        _unchanged_and(d, status)
        label, argv = f"{command} ({status})", [verb, d.cid, *rest]
        if ok:
            d.op(label, argv, True)
            d.wait_for("stopped")
        else:
            d.op(label, argv, False, status)

    scenario(f"{verb}-{status}", "lifecycle", f"{verb} on a {status} container")(run)


# start on a running or stopped container: an error, and no effect. kill is allowed on a
# created container (neither created nor running: error).
one_command("start", "running", ok=False)
one_command("start", "stopped", ok=False)
one_command("kill KILL", "created", ok=True)
one_command("kill KILL", "stopped", ok=False)


@scenario("kill-signal", "lifecycle", "kill delivers the named signal")
def kill_signal(d: Driver) -> None:
    """kill MUST deliver the given signal: the process traps USR1 and exits (it says
    when its trap is in place: PID 1 ignores a signal it has no handler for)."""
    script = "trap 'exit 7' USR1; touch /log/trapped; while :; do sleep 1; done"
    bundle = d.make_bundle(corpus.compose(marker_mount, corpus.process(args=["sh", "-c", script])))
    d.create()
    d.op("start", ["start", d.cid], True, "running")
    if not _eventually((bundle / "log" / "trapped").exists):
        d.problems.append("the process never got as far as installing its trap")
    d.op("kill USR1 (running)", ["kill", d.cid, "USR1"], True)
    d.wait_for("stopped")


# runtime.md: deleting a container that is not stopped MUST error, with no effect.
one_command("delete", "running", ok=False)
one_command("delete", "created", ok=False)


@scenario("delete-stopped", "lifecycle", "delete removes the container and the cgroups create made")
def delete_stopped(d: Driver) -> None:
    """delete MUST remove what create made: here, two levels of cgroups."""
    d.make_bundle(corpus.linux(cgroupsPath="/@ID@/leaf"))
    d.run_to_stopped()
    d.op("delete (stopped)", ["delete", d.cid], True, GONE)
    left = sorted(
        {os.path.relpath(p, "/sys/fs/cgroup").split("/", 1)[1] for p in tagged_cgroups(d.cid)}
    )
    if left:
        d.problems.append(f"delete left cgroups it created: {left}")
    d.facts["cgroups left"] = left


def _exits_3(config: dict) -> None:
    config["process"]["args"] = ["sh", "-c", "exit 3"]


@scenario("run-keep", "lifecycle", "run --keep keeps the stopped container and its cgroups")
def run_keep(d: Driver) -> None:
    """runc's CLI (runtime.md has no `run`): `run --keep` exits with the process's status
    and leaves the container stopped, its cgroups in place, until `delete` removes both."""
    d.make_bundle(_exits_3)
    inv = d.call("run --keep", ["run", "--keep", "--bundle", str(d.bundle), d.cid],
                 False, "stopped")  # fmt: skip
    d.facts["run --keep exit code"] = inv.returncode
    kept = bool(tagged_cgroups(d.cid))
    if not kept:
        d.problems.append("run --keep: the stopped container's cgroups are gone")
    d.facts["cgroups kept"] = kept
    d.op("delete (kept)", ["delete", d.cid], True, GONE)
    if tagged_cgroups(d.cid):
        d.problems.append("delete of a kept container left its cgroups")


@scenario(
    "shared-cgroup-parent",
    "lifecycle",
    "delete while another container uses the parent cgroup this one's create made",
)
def shared_cgroup_parent(d: Driver) -> None:
    """Two containers under one parent cgroup that the first one's create made: deleting
    the first MUST work and MUST NOT take away what the second still uses."""
    parent = f"/{d.cid}-parent"
    d.make_bundle(corpus.linux(cgroupsPath=f"{parent}/a"))
    other = d.sibling("b", corpus.linux(cgroupsPath=f"{parent}/b"))
    d.run_to_stopped()
    d.op("create a second container", ["create", "--bundle", str(other.bundle), other.cid], True)
    d.op("delete the first (stopped)", ["delete", d.cid], True, GONE)
    if other.status() != "created":
        d.problems.append(f"the second container is {other.status()} after the first's delete")
    d.op("delete the second (created)", ["delete", "--force", other.cid], True)
    # The parent stays with both runtimes: its creator could not remove it while it was
    # in use, and the second container did not create it. Recorded, then removed here.
    left = remove_tagged_cgroups(d.cid)
    d.facts["cgroups left"] = [x.replace(d.cid, "<id>") for x in left]


@scenario("unknown-id", "lifecycle", "state/start/kill/delete of an unknown id")
def unknown_id(d: Driver) -> None:
    """Every operation on a container that does not exist MUST error."""
    for name in ("state", "start", "kill", "delete"):
        args = [name, d.cid] + (["KILL"] if name == "kill" else [])
        d.op(f"{name} (no such container)", args, False, GONE)


@scenario("duplicate-id", "lifecycle", "create with an id in use")
def duplicate_id(d: Driver) -> None:
    """create with an id in use MUST error and MUST NOT touch the existing container."""
    d.make_bundle(unchanged)
    d.create()
    d.create(want_ok=False, want_status="created")


@scenario("state-annotations", "annotations", "state carries the annotations")
def annotations(d: Driver) -> None:
    wanted = {"com.example.key1": "value1", "org.example/empty": ""}
    d.make_bundle(corpus.top(annotations=wanted))
    d.create()
    got = (d.state() or {}).get("annotations")
    if got != wanted:
        d.problems.append(f"state annotations: want {wanted}, got {got}")
    d.facts["annotations"] = json.dumps(got, sort_keys=True)


@scenario("hooks", "hooks", "all six hooks: order, namespaces, env, state on stdin")
def hooks(d: Driver) -> None:
    """Hooks run in the listed order, at their moments, in their namespaces, with the
    state on stdin (config.md "POSIX-platform Hooks")."""
    bundle = d.make_bundle(_hook_config)
    log = bundle / "log"
    d.create()
    order = _hook_order(log)
    _expect_order(d, "after create", order, HOOK_KINDS[:3])
    pid = (d.state() or {}).get("pid")
    container_mnt = ns_inode(f"/proc/{pid}/ns/mnt") if pid else None
    d.op("start", ["start", d.cid], True, "running")
    _expect_order(d, "after start", _hook_order(log), HOOK_KINDS[:5])
    d.op("kill KILL", ["kill", d.cid, "KILL"], True)
    d.wait_for("stopped")
    d.op("delete", ["delete", d.cid], True, GONE)
    order = _hook_order(log)
    _expect_order(d, "after delete", order, HOOK_KINDS)
    _check_hook_namespaces(d, log, container_mnt)
    _check_hook_states(d, log, pid)
    d.facts["hook order"] = " ".join(name for name, _ in order)


def _hook_config(config: dict) -> None:
    script = (
        'cat > "$LOG/$1.json"; echo "$1 $(readlink /proc/self/ns/mnt) $HOOKVAR" >> "$LOG/order"'
    )
    host = {"LOG": "@BUNDLE@/log", "sh": "/bin/sh"}
    inside = {"LOG": "/log", "sh": "/bin/sh"}
    config["hooks"] = {
        kind: [
            {
                "path": where["sh"],
                "args": ["sh", "-c", script, "hook", kind],
                "env": [f"LOG={where['LOG']}", f"HOOKVAR={kind}-env"],
                "timeout": 10,
            }
        ]
        for kind in HOOK_KINDS
        for where in [inside if kind == "startContainer" else host]
    }
    config["mounts"].append(corpus.bind("@BUNDLE@/log", "/log", "rbind", "rw"))


def _hook_order(log: Path) -> list[tuple[str, list[str]]]:
    try:
        lines = (log / "order").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [(line.split()[0], line.split()[1:]) for line in lines if line.split()]


def _expect_order(d: Driver, when: str, order: list, want: tuple[str, ...]) -> None:
    names = tuple(name for name, _ in order)
    if names != want:
        d.problems.append(f"hooks {when}: ran {list(names)}, want {list(want)}")


def _check_hook_namespaces(d: Driver, log: Path, container_mnt: str | None) -> None:
    """createContainer and startContainer in the container's mount namespace, the
    others in the runtime's; each with its own env."""
    host_mnt = ns_inode("/proc/self/ns/mnt")
    for name, fields in _hook_order(log):
        inode = fields[0].split("[")[-1].rstrip("]") if fields else ""
        want = container_mnt if name in ("createContainer", "startContainer") else host_mnt
        if inode != want:
            d.problems.append(f"hook {name} ran in mount namespace {inode}, want {want}")
        if fields[1:] != [f"{name}-env"]:
            d.problems.append(f"hook {name} env: got {fields[1:]}")


def _check_hook_states(d: Driver, log: Path, pid: object) -> None:
    """The state on stdin: this container, and the status it is in at that moment."""
    statuses = {
        "createRuntime": "creating",
        "createContainer": "creating",
        "poststart": "running",
        "poststop": "stopped",
    }
    seen = {}
    for name in HOOK_KINDS:
        try:
            state = json.loads((log / f"{name}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError) as e:
            d.problems.append(f"hook {name}: no state on stdin ({type(e).__name__})")
            continue
        seen[name] = state.get("status")
        if state.get("id") != d.cid or state.get("bundle") != str(d.bundle):
            d.problems.append(f"hook {name}: state names {state.get('id')} / {state.get('bundle')}")
        if name in statuses and state.get("status") != statuses[name]:
            d.problems.append(
                f"hook {name}: status {state.get('status')!r}, want {statuses[name]!r}"
            )
        if name != "poststop" and state.get("pid") != pid:
            d.problems.append(f"hook {name}: pid {state.get('pid')}, not the init's host pid")
    d.facts["hook statuses"] = json.dumps(seen, sort_keys=True)


EXEC_USER = {"uid": 1000, "gid": 1000, "additionalGids": [20]}


def exec_cpu_affinity() -> dict[str, str]:
    """initial and final on different CPUs, final not every CPU the runner has (so
    that ignoring it shows); one CPU for both on a machine with one."""
    cpus = sorted(os.sched_getaffinity(0))
    return {"initial": str(cpus[0]), "final": str(cpus[-1])}


def _exec_config(config: dict) -> None:
    """A non-root init with its own namespaces, cwd, an extra variable and an
    execCPUAffinity: what exec must reproduce or apply."""
    corpus.namespaces("pid", "network", "ipc", "uts", "cgroup")(config)
    corpus.process(user=EXEC_USER, cwd="/tmp", execCPUAffinity=exec_cpu_affinity())(config)
    config["process"]["env"].append("EXECVAR=from-config")


@scenario(
    "exec",
    "exec",
    (
        "exec into a running container: output, exit status, user/cwd/env of the config, "
        "--user, the init's namespaces and cgroup, execCPUAffinity (the exec'd process on "
        "`final`, the init unaffected); refused once stopped"
    ),
)
def exec_into(d: Driver) -> None:
    """exec (runc's CLI; runtime.md has no exec operation) runs a new process in a running
    container: its output and exit status reach the caller; it runs as process.user with
    process.cwd and process.env of config.json (unless told otherwise), in every namespace
    of the init and in its cgroup; a stopped container refuses it."""
    d.make_bundle(_exec_config)
    d.create()
    d.op("start", ["start", d.cid], True, "running")
    pid = (d.state() or {}).get("pid")
    out = _exec(d, "exec: exit 3", ["sh", "-c", "echo out; echo err >&2; exit 3"], code=3)
    if out.returncode != 3 or out.stdout != "out\n" or "err" not in out.stderr.split():
        d.problems.append(
            f"exec: exit {out.returncode}, stdout {out.stdout!r}, stderr {out.stderr[-200:]!r}; "
            "want 3, 'out', 'err'"
        )
    d.facts["exec exit"] = out.returncode
    script = 'id -u; id -g; id -G; pwd; echo "$EXECVAR"'
    ident = _exec(d, "exec: identity", ["sh", "-c", script]).stdout.split("\n")[:5]
    want = ["1000", "1000", "1000 20", "/tmp", "from-config"]
    if ident != want:
        d.problems.append(f"exec: uid, gid, groups, cwd, env: {ident}, want {want}")
    d.facts["exec identity"] = " | ".join(ident)
    root = _exec(d, "exec --user 0:0", ["sh", "-c", "id -u; id -g"], ("--user", "0:0")).stdout
    if root.split() != ["0", "0"]:
        d.problems.append(f"exec --user 0:0: ran as {root.split()}")
    _check_exec_namespaces(d, pid)
    _check_exec_cpu_affinity(d, pid)
    d.op("kill KILL", ["kill", d.cid, "KILL"], True)
    d.wait_for("stopped")
    d.op("exec (stopped)", ["exec", d.cid, "true"], False, "stopped")


def _exec(
    d: Driver, label: str, command: list[str], options: tuple[str, ...] = (), code: int = 0
) -> Invocation:
    """`exec [OPTIONS] ID COMMAND`, recorded as a step that is ok when it exits `code` and
    leaves the container running; the invocation back, for its output."""
    inv = d.ws.runtime(d.runtime, ["exec", *options, d.cid, *command])
    d.steps.append(Step(label, inv.returncode == code, d.status(), True, "running"))
    return inv


def _check_exec_namespaces(d: Driver, pid: object) -> None:
    """The exec'd process's namespaces are the init's (read from the host) and its
    cgroup is the init's (both read inside, through the same cgroup namespace)."""
    if not isinstance(pid, int):
        d.problems.append("exec: no init pid in state")
        return
    kinds = sorted(k for k in os.listdir(f"/proc/{pid}/ns") if not k.endswith("_for_children"))
    init = [ns_inode(f"/proc/{pid}/ns/{k}") for k in kinds]
    script = "for n in " + " ".join(kinds) + "; do readlink /proc/self/ns/$n; done"
    listing = _exec(d, "exec: namespaces", ["sh", "-c", script]).stdout.split()
    got = [x.split("[")[-1].rstrip("]") for x in listing]
    if got != init:
        d.problems.append(f"exec: namespaces {kinds} are {got}, the init's {init}")
    d.facts["exec namespaces = init's"] = got == init
    both = "cat /proc/self/cgroup; echo --; cat /proc/1/cgroup"
    cg = _exec(d, "exec: cgroup", ["sh", "-c", both])
    mine, _, inits = cg.stdout.partition("--\n")
    if not mine or mine != inits:
        d.problems.append(f"exec: cgroup {mine!r}, the init's {inits!r}")
    d.facts["exec cgroup = init's"] = bool(mine) and mine == inits


def _check_exec_cpu_affinity(d: Driver, pid: object) -> None:
    """config.md `execCPUAffinity`: the exec'd process runs on `final` once it is in the
    container's cgroup; "not applicable to the container's init process": the init keeps
    the runtime's CPUs."""
    final = exec_cpu_affinity()["final"]
    grep = _exec(d, "exec: CPUs", ["grep", "Cpus_allowed_list", "/proc/self/status"])
    got = grep.stdout.split(":", 1)[-1].strip()
    if cpu_set(got) != cpu_set(final):
        d.problems.append(f"execCPUAffinity: the exec'd process runs on {got!r}, want {final!r}")
    d.facts["execCPUAffinity exec'd process on"] = got
    init = cpus_allowed(f"/proc/{pid}/status") if isinstance(pid, int) else "?"
    mine = cpus_allowed("/proc/self/status")
    if cpu_set(init) != cpu_set(mine):
        d.problems.append(f"execCPUAffinity: the init runs on {init!r}, the runtime's {mine!r}")
    d.facts["execCPUAffinity init = runtime's"] = init == mine


# --- issue #5: pause/resume, update, events (runc's CLI; runtime.md has none of them) -----

BUSY = ["sh", "-c", "while :; do :; done"]  # always runnable (R) unless frozen


@scenario(
    "pause-resume",
    "pause",
    (
        "pause freezes the processes (state paused), resume thaws them (running); pause "
        "of a paused and resume of a running container fail; delete --force of a paused one"
    ),
)
def pause_resume(d: Driver) -> None:
    """pause freezes every process of a running container (state says paused), a second
    pause and a resume of a running one are errors, resume thaws it (running again), and
    delete --force removes a paused container and its processes."""
    d.make_bundle(corpus.process(args=BUSY))
    d.create()
    d.op("start", ["start", d.cid], True, "running")
    pid = (d.state() or {}).get("pid")
    d.call("pause (running)", ["pause", d.cid], True, "paused")
    frozen = _eventually(lambda: _task_state(pid) in ("D", "S"), 5)
    if not frozen:
        d.problems.append(f"pause: the init is still {_task_state(pid)!r}, not frozen")
    d.facts["paused init frozen"] = frozen
    d.call("pause (paused)", ["pause", d.cid], False, "paused")
    d.call("resume (paused)", ["resume", d.cid], True, "running")
    thawed = _eventually(lambda: _task_state(pid) == "R", 5)
    if not thawed:
        d.problems.append(f"resume: the init is {_task_state(pid)!r}, not runnable again")
    d.facts["resumed init runnable"] = thawed
    d.call("resume (running)", ["resume", d.cid], False, "running")
    d.call("pause again", ["pause", d.cid], True, "paused")
    d.call("delete --force (paused)", ["delete", "--force", d.cid], True, GONE)
    gone = _eventually(lambda: _task_state(pid) in ("", "Z", "X"), 5)
    if not gone:
        d.problems.append("delete --force of a paused container left its init running")
    d.facts["init gone after delete --force"] = gone


def _task_state(pid: object) -> str:
    """The one-letter state of /proc/PID/stat ("" when the process is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


UPDATE_START = {"memory": {"limit": 268435456}, "pids": {"limit": 100}, "cpu": {"shares": 512}}
UPDATE_FLAGS = {"memory": {"limit": 402653184}, "pids": {"limit": 200}}
UPDATE_FILE = {"cpu": {"shares": 256}, "pids": {"limit": 300}}


@scenario(
    "update",
    "update",
    (
        "update --memory/--pids-limit and update -r FILE change the limits the container "
        "sees in its cgroup files; refused on a stopped container"
    ),
)
def update(d: Driver) -> None:
    """update changes a running container's limits, from flags and from a resources
    file (`-r`): the container sees them in its cgroup files; a stopped container
    refuses an update."""
    bundle = d.make_bundle(corpus.resources(**UPDATE_START))
    d.create()
    d.op("start", ["start", d.cid], True, "running")
    _read_limits(d, "at start", UPDATE_START)
    flags = ["--memory", str(UPDATE_FLAGS["memory"]["limit"]),
             "--pids-limit", str(UPDATE_FLAGS["pids"]["limit"])]  # fmt: skip
    d.call("update --memory --pids-limit", ["update", *flags, d.cid], True, "running")
    merged = {**UPDATE_START, **UPDATE_FLAGS}
    _read_limits(d, "after update (flags)", merged)
    (bundle / "resources.json").write_text(json.dumps(UPDATE_FILE))
    args = ["update", "-r", str(bundle / "resources.json"), d.cid]
    d.call("update -r FILE", args, True, "running")
    _read_limits(d, "after update -r", {**merged, **UPDATE_FILE})
    d.op("kill KILL", ["kill", d.cid, "KILL"], True)
    d.wait_for("stopped")
    d.call("update (stopped)", ["update", "--pids-limit", "50", d.cid], False, "stopped")


def _read_limits(d: Driver, when: str, resources: dict) -> None:
    """The files `resources` shows in, read inside the container through exec (the
    config's cgroup mount), against what they must say."""
    from conformance import cgroupfiles

    wanted = [e for e in cgroupfiles.expected_files(resources) if e.where == cgroupfiles.INSIDE]
    script = "; ".join(f"echo {e.file} $(cat /sys/fs/cgroup/{e.file})" for e in wanted)
    out = _exec(d, f"exec: read the limits {when}", ["sh", "-c", script]).stdout
    seen = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    for e in wanted:
        if not cgroupfiles.matches(e, seen.get(e.file)):
            d.problems.append(f"{when}: {e.file} is {seen.get(e.file)!r}, want {e.want!r}")
    d.facts[when] = " ".join(f"{k}={v}" for k, v in sorted(seen.items()))


@scenario(
    "events",
    "events",
    (
        "events --stats prints one JSON object of runc's shape (type, id, data: cpu, "
        "memory, pids...), its keys as runc's"
    ),
)
def events(d: Driver) -> None:
    """events --stats prints one JSON object of runc's shape (type "stats", the id, data
    with the controllers' statistics; the memory limit shows in it); its keys are
    compared with runc's."""
    d.make_bundle(corpus.resources(memory={"limit": 268435456}, pids={"limit": 100}))
    d.create()
    d.op("start", ["start", d.cid], True, "running")
    out = d.call("events --stats", ["events", "--stats", d.cid], True, "running").stdout
    try:
        objects = [json.loads(line) for line in out.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        d.problems.append(f"events --stats: not JSON ({e}): {out[:200]!r}")
        objects = []
    if len(objects) != 1:
        d.problems.append(f"events --stats printed {len(objects)} JSON objects, want 1")
    event = objects[0] if objects else {}
    data = event.get("data") or {}
    if event.get("type") != "stats" or event.get("id") != d.cid:
        d.problems.append(f"events --stats: type {event.get('type')!r}, id {event.get('id')!r}")
    limit = ((data.get("memory") or {}).get("usage") or {}).get("limit")
    if limit != 268435456:
        d.problems.append(f"events --stats: data.memory.usage.limit {limit}, want 268435456")
    if (data.get("pids") or {}).get("limit") != 100:
        d.problems.append(
            f"events --stats: data.pids.limit {(data.get('pids') or {}).get('limit')}"
        )
    d.facts["events keys"] = " ".join(event)
    d.facts["events data keys"] = " ".join(sorted(data))
    for key in ("cpu", "memory", "pids"):
        inner = data.get(key) or {}
        d.facts[f"events data.{key} keys"] = " ".join(sorted(k for k in inner if k != "raw"))
    d.op("kill KILL", ["kill", d.cid, "KILL"], True)
    d.wait_for("stopped")
    d.call("events --stats (stopped)", ["events", "--stats", d.cid], SILENT, "stopped")


SCENARIOS = tuple(_SCENARIOS)


def run_scenario(ws: Workspace, scenario: Scenario, runtime: str) -> Driver:
    d = Driver(ws, runtime, scenario.name)
    try:
        scenario.run(d)
    except Exception as e:  # noqa: BLE001 - a crashed scenario is a failed one, not a crash
        d.problems.append(f"scenario crashed: {type(e).__name__}: {e}")
    finally:
        d.cleanup()
    return d
