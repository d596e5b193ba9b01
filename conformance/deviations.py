"""Documented deviations: known, explained differences from the spec or between runtimes.

Each entry says who deviates, what the spec says, and who is right. `explain` tags every
failure and every report difference of a case that an entry accounts for; whatever is
left is "unexplained", which the test treats as a real failure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol


class Explainable(Protocol):
    """What `explain` reads and writes of a case's result (results.CaseResult: results
    imports this module, so not the other way round)."""

    name: str
    failures: dict[str, list[str]]
    notes: dict[str, list[str]]
    only: dict[str, list[str]]
    explained: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Deviation:
    id: str
    who: str  # who deviates: "runc", "both", or "neither" (the spec is silent)
    title: str
    spec: str  # what the spec says
    verdict: str  # who is right
    failure: str | None = None  # regex over a failure of `who`
    diff: str | None = None  # regex over a line only one runtime's report has
    note: str | None = None  # regex over a NOTE-level observation (never a failure)
    cases: str | None = None  # regex over the case names it can apply to

    def explains_failure(self, runtime: str, text: str) -> bool:
        return (
            self.failure is not None
            and self.who in (runtime, "both")
            and re.search(self.failure, text) is not None
        )


DEVIATIONS: tuple[Deviation, ...] = (
    Deviation(
        "D1",
        "neither",
        "stdio of a foreground `run`: runc relays it through pipes, "
        "ociruntime hands the container the caller's own fds",
        "silent: runtime.md defines no stdio behaviour",
        "both fine",
        diff=r"^fd [012] ",
    ),
    Deviation(
        "D2",
        "runc",
        "the `cgroup` mount with `ro` on cgroup v1: runc leaves the tmpfs at "
        "/sys/fs/cgroup writable (only the hierarchies under it are read-only)",
        "config.md: `ro` is a MUST option; the mount at the destination is asked read-only",
        "ociruntime",
        failure=r"/sys/fs/cgroup and every hierarchy read-only",
        diff=r"^mount /sys/fs/cgroup tmpfs ",
    ),
    Deviation(
        "D3",
        "runc",
        "runc adds HOME (from the rootfs's /etc/passwd) when the config's env has none",
        "config.md: `env` is the process's environment; nothing adds to it",
        "ociruntime (exactly the configured env); runc's is a documented extension",
        diff=r"^env HOME=",
        note=r"^env: nothing beyond the configured variables \(added: \['HOME'\]\)",
    ),
    Deviation(
        "D4",
        "neither",
        "inside a cgroup namespace the name=systemd hierarchy is mounted "
        "with source `systemd` by runc, `cgroup` by ociruntime",
        "silent: the source of a mount the runtime makes on its own is free",
        "both fine",
        diff=r"^mount /sys/fs/cgroup/systemd cgroup .* (cgroup|systemd) name=systemd ",
    ),
    Deviation(
        "D5",
        "runc",
        "rootfsPropagation `shared` is not applied: runc's root stays private",
        "config-linux.md: `shared`: the rootfs mount belongs to a new peer group",
        "ociruntime",
        failure=r"propagation of / \(want shared",
        diff=r"^mount / ",
    ),
    Deviation(
        "D6",
        "runc",
        "`domainname` is ignored by runc 1.1.5",
        "config.md: `domainname` sets the container's domainname in its UTS namespace",
        "ociruntime",
        failure=r"^uts: domainname",
        diff=r"^uts domainname ",
    ),
    Deviation(
        "D7",
        "runc",
        "no time namespace (runc 1.1.5 implements runtime-spec 1.0.2): a config with one fails",
        "config-linux.md (1.1+): `time` namespaces and `timeOffsets`",
        "ociruntime",
        failure=r'namespace \{"time"',
        diff=r"^run: ",
        cases=r"^ns-time$",
    ),
    Deviation(
        "D8",
        "runc",
        "rootfsPropagation `unbindable`: runc applies it (not recursively) to the host's / "
        "before bind-mounting the rootfs; with the bundle on that filesystem the kernel "
        "refuses the bind (EINVAL) and create fails, with it on another (a tmpfs /tmp) "
        "the container's / is left private",
        "config-linux.md: `unbindable` is a valid rootfsPropagation",
        "ociruntime",
        failure=r"^run exited 1: .*rootfs.*: invalid argument"
        r"|^rootfsPropagation: propagation of / \(want unbindable, shows private\)",
        diff=r"^run: |^mount / \S+ \S+ (unbindable|private) ",
        cases=r"^rootfs-unbindable$",
    ),
    Deviation(
        "D9",
        "runc",
        "duplicated rlimit types are accepted (the last one wins)",
        "config.md: duplicated `rlimits` types MUST generate an error",
        "ociruntime",
        failure=r"accepted a config the spec says MUST fail",
        diff=r"^run: ",
        cases=r"^err-duplicate-rlimit$",
    ),
    Deviation(
        "D10",
        "runc",
        "delete leaves the parent cgroups that create made (it removes only the leaf)",
        "runtime.md: deleting MUST delete the resources create made",
        "ociruntime",
        failure=r"delete left cgroups it created",
        diff=r"^cgroups left=",
    ),
    Deviation(
        "D11",
        "runc",
        "poststart hooks run during create, before startContainer, and see status `created`",
        "config.md: poststart MUST be called after the user process "
        "is executed, before start returns; hooks in the listed order",
        "ociruntime",
        failure=r"^hooks after |^hook poststart: status",
        diff=r"^hook (order|statuses)=",
    ),
    Deviation(
        "D12",
        "runc",
        "createContainer and startContainer hooks get the pid as seen in the "
        "container's PID namespace (1)",
        "runtime.md: the state's `pid` is the container process's ID as seen by the host",
        "ociruntime",
        failure=r"^hook (createContainer|startContainer): pid ",
    ),
    Deviation(
        "D13",
        "runc",
        "delete of a created (not stopped) container succeeds and kills it",
        "runtime.md: deleting a container that is not stopped MUST have no effect and MUST "
        "generate an error",
        "ociruntime (refuses without --force; containerd's shim and podman pass --force "
        "when they mean it)",
        failure=r"^delete \(created\): ok",
        diff=r"^delete \(created\): ",
        cases=r"^delete-created$",
    ),
    Deviation(
        "D14",
        "both",
        "with no process.user.umask, both set 0022 instead of keeping the caller's umask",
        "config.md: if unspecified, the umask should not be changed from the calling "
        "process' umask (a lowercase should: a NOTE, not a failure)",
        "neither follows it; ociruntime does what runc does",
        note=r"umask unchanged when unset",
    ),
    Deviation(
        "D15",
        "runc",
        "no id-mapped mounts (runc 1.1.5 implements runtime-spec 1.0.2): the `idmap` option "
        "and the mount's uidMappings/gidMappings are ignored, a plain bind is made",
        "config.md (1.2+): `idmap`: the mount is created as an id-mapped mount; the mount's "
        "`uidMappings`: the mapping to convert UIDs from the source file system to the "
        "destination mount point",
        "ociruntime",
        failure=r"^idmap: ",
        diff=r"^(mount /mapped |node /mapped/)",
        cases=r"^idmapped-",
    ),
    Deviation(
        "D16",
        "runc",
        "`linux.netDevices` is ignored (runc 1.1.5 implements runtime-spec 1.0.2): the "
        "device stays on the host",
        "config-linux.md (1.3): netDevices are network devices that MUST be made available "
        "in the container",
        "ociruntime",
        failure=r"^netDevices: ",
        diff=r"^netdev ",
        cases=r"^net-devices",
    ),
    Deviation(
        "D17",
        "neither",
        "in a user namespace, /dev/mqueue belongs to the container's root group under "
        "ociruntime, to the overflow gid 65534 under runc (mounted while its gid was still "
        "the host's root group, which the namespace does not map)",
        "silent: the owner of a mount the config lists without uid/gid options is free",
        "both fine",
        diff=r"^dev /dev/mqueue d ",
        cases=r"^(user-namespace|idmapped-)",
    ),
    Deviation(
        "D18",
        "runc",
        "`linux.personality`, `process.scheduler`, `process.ioPriority` and "
        "`process.execCPUAffinity` are ignored (runc 1.1.5 implements runtime-spec 1.0.2; "
        "runc 1.2 added them): the process keeps the runtime's execution domain, policy, "
        "nice, I/O priority and CPUs",
        "config-linux.md: `personality` sets the Linux execution personality; config.md: "
        "`scheduler`: the scheduler properties for the process (`nice`: if not set, the "
        "runtime must use the value 0); `ioPriority` configures the I/O priority settings "
        "for the container's processes; `execCPUAffinity`: `final` is the list of CPUs the "
        "process will be run on after the transition to container's cgroup",
        "ociruntime",
        failure=r"^(personality|scheduler|ioPriority|execCPUAffinity): ",
        diff=r"^(persona|sched|ioprio) |^execCPUAffinity ",
        cases=r"^(personality|scheduler|io-priority|exec|spec-example)",
    ),
    Deviation(
        "D19",
        "runc",
        "`hugepageLimits` on a hybrid host whose hugetlb controller is only on the v2 "
        "hierarchy: runc 1.1.5 looks for it among the v1 hierarchies only and fails create "
        "(`cannot set hugetlb limit`); ociruntime writes hugetlb.<size>.max there",
        "config-linux.md: `hugepageLimits` represents the `hugetlb` controller which allows "
        "to limit the HugeTLB reservations (if supported) or usage (page fault)",
        "ociruntime (the host has the controller; runc cannot find it)",
        failure=r"cannot set hugetlb limit",
        diff=r"^run: ",
        cases=r"^resources-hugetlb$",
    ),
    Deviation(
        "D20",
        "runc",
        "a config's rule denying a default device (writes to /dev/full, all of /dev/zero) "
        "has no effect: runc appends its default allow-list after the config's rules, so "
        "the device stays usable",
        'config-linux.md "Allowed Device list": `devices` configures the allowed device '
        "list; the runtime MUST apply entries in the listed order",
        "ociruntime (repeats the config's rules for one device after the defaults)",
        failure=r"^devices cgroup: /dev/\S+ (read|write) denied",
        diff=r"^(devaccess |cgfile devices/devices\.list )",
        cases=r"^resources-devices",
    ),
    Deviation(
        "D21",
        "both",
        "`blockIO.weight` where the host's block I/O controller has no weight file (no "
        "blkio.weight, no BFQ weight): both accept the config and apply nothing",
        "config-linux.md: `weight` specifies per-cgroup weight (the kernel decides whether "
        "a weight file exists: a NOTE, not a failure)",
        "neither can apply it here; ociruntime does what runc does",
        note=r"^resources: blockIO\.weight applied",
    ),
    Deviation(
        "D22",
        "ociruntime",
        "a config without a mount namespace (and without maskedPaths/readonlyPaths, which "
        "both refuse with runc's words): runc 1.1.5 sets the rootfs up in the caller's "
        "mount namespace (/ made rslave, the rootfs bound on itself, every config mount "
        "mounted there, then chroot) and leaves those mounts on the host after the "
        "container exits; ociruntime refuses the config rather than change the host's mounts",
        "config-linux.md: a namespace type not in `namespaces` MUST be inherited from the runtime",
        "runc follows the letter; ociruntime keeps the host's mount table untouched",
        failure=r"a mount namespace is required: without one the rootfs would be mounted",
    ),
    # Differences found by issue #11's side-by-side checks that no corpus case exercises:
    # documented here so that each has one place that says who is right (no pattern).
    Deviation(
        "D23",
        "ociruntime",
        "the working directory of a poststop hook run by `delete`: runc 1.1.5 leaves the "
        "caller's, ociruntime uses the bundle (as for prestart, createRuntime and poststart, "
        "where runc uses the bundle too)",
        "config.md: hooks run in the runtime namespace; their working directory is not specified",
        "both fine; ociruntime's does not depend on where `delete` was called from",
    ),
    Deviation(
        "D24",
        "runc",
        "`delete` of a container created in a cgroup that already held other processes "
        "(both warn `container's cgroup is not empty`): without its own PID namespace runc "
        "1.1.5 kills every process of the cgroup, ociruntime only the container's",
        "runtime.md: delete MUST delete the resources created during create (the other "
        "processes were not)",
        "ociruntime",
    ),
    Deviation(
        "D25",
        "neither",
        "a failure after `run` started the container (a startContainer hook): runc 1.1.5 "
        "prints it on stderr only, ociruntime also writes it to --log",
        "silent: the spec defines no log",
        "both fine",
    ),
    Deviation(
        "D26",
        "runc",
        "linux.seccomp.flags SECCOMP_FILTER_FLAG_TSYNC: runc 1.1.5 drops it, ociruntime "
        "passes it to seccomp(2)",
        "config-linux.md: flags is the list of flags to use with seccomp(2)",
        "ociruntime",
    ),
    Deviation(
        "D27",
        "neither",
        "a command-line usage error: runc prints `Incorrect Usage.` and the command's help "
        "on stdout besides the error; ociruntime prints the one error line (its words are "
        "runc's, an unknown flag's prefixed with the command)",
        "silent: the command line is runc's, not the spec's",
        "both fine; scripts match the error line, which agrees",
    ),
)


def explain(result: Explainable) -> None:
    """Record which deviation accounts for which failure and report difference. A
    deviation with a failure pattern explains report differences only in cases where
    that failure happened, so it cannot hide an unrelated difference elsewhere."""
    for runtime in result.failures:
        result.explained.setdefault(runtime, {})
    for d in DEVIATIONS:
        if d.cases and not re.search(d.cases, result.name):
            continue
        hits = [
            (runtime, text)
            for runtime, texts in result.failures.items()
            for text in texts
            if d.explains_failure(runtime, text)
        ]
        if d.note:
            hits += [
                (runtime, text)
                for runtime, texts in result.notes.items()
                for text in texts
                if d.who in (runtime, "both") and re.search(d.note, text)
            ]
        if d.diff and (d.failure is None or hits):
            hits += [
                (runtime, line)
                for runtime, lines in result.only.items()
                for line in lines
                if re.search(d.diff, line)
            ]
        for runtime, item in hits:
            result.explained[runtime].setdefault(item, d.id)


def render_markdown(seen: set[str]) -> str:
    rows = [
        "## Documented deviations",
        "",
        "| id | who | what | the spec | verdict | seen |",
        "|---|---|---|---|---|---|",
    ]
    for d in DEVIATIONS:
        rows.append(
            f"| {d.id} | {d.who} | {d.title} | {d.spec} | {d.verdict} | "
            f"{'yes' if d.id in seen else 'no'} |"
        )
    return "\n".join(rows) + "\n"
