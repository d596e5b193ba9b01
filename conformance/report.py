"""The inspector's report: parsing it, and normalising it for a diff between runtimes.

Parsing keeps the facts as the container saw them (what the spec checks need).
Normalising then removes what legitimately differs between two runs of the same config:
namespace inode numbers (replaced by host/new/joined), the container id and bundle path,
pipe numbers, the runner's own cgroup, host-sized tmpfs defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Sections holding one fact per key; the others (args, env, mount) are ordered lists.
KEYED_SECTIONS = (
    "pid1",
    "fd",
    "ns",
    "status",
    "rlimit",
    "uts",
    "cgroup",
    "dev",
    "probe",
    "node",
    "sysctl",
    "clock",
    "tty",
    "uid_map",
    "gid_map",
    "syscall",
    "netdev",
    "persona",
    "sched",
    "cgfile",
    "devaccess",
)


@dataclass
class Mount:
    """One /proc/self/mountinfo line as the inspector printed it."""

    point: str
    fstype: str
    options: tuple[str, ...]  # per-mount flags: ro, nosuid, relatime...
    propagation: tuple[str, ...]  # shared / slave / unbindable / private
    source: str
    superopts: tuple[str, ...]  # the filesystem's own options: mode=, size=, ...
    root: str  # the part of the source filesystem mounted here

    def has(self, option: str) -> bool:
        return option in self.options

    def data(self, key: str) -> str | None:
        """Value of a `key=value` filesystem option, if present."""
        for opt in self.superopts:
            name, _, value = opt.partition("=")
            if name == key:
                return value
        return None


@dataclass
class Report:
    """Everything one inspector run printed, by section."""

    raw: str
    complete: bool = False
    keyed: dict[str, dict[str, str]] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    scalars: dict[str, str] = field(default_factory=dict)

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        return self.keyed.get(section, {}).get(key, default)

    def section(self, name: str) -> dict[str, str]:
        return self.keyed.get(name, {})

    def mount_at(self, point: str) -> Mount | None:
        """The topmost mount at `point` (the last one listed: it was mounted last)."""
        found = [m for m in self.mounts if m.point == point]
        return found[-1] if found else None

    def mounts_under(self, point: str) -> list[Mount]:
        """The visible mount at `point` and every mount below it (mounts that a later
        one at the same point covers are not part of what a process sees there)."""
        prefix = point.rstrip("/") + "/"
        top = self.mount_at(point)
        below = [m for m in self.mounts if m.point.startswith(prefix)]
        return ([top] if top else []) + below


def parse(text: str) -> Report:
    report = Report(raw=text)
    for line in text.splitlines():
        section, _, rest = line.partition(" ")
        if section == "end":
            report.complete = True
        elif section in ("args", "env"):
            _parse_listed(report, section, rest)
        elif section == "mount":
            report.mounts.append(_parse_mount(rest))
        elif section in KEYED_SECTIONS:
            key, _, value = rest.partition(" ")
            report.keyed.setdefault(section, {})[key] = value
        elif section:
            report.scalars[section] = rest
    return report


def _parse_listed(report: Report, section: str, rest: str) -> None:
    if section == "args":
        _, _, value = rest.partition(" ")  # "args INDEX VALUE"
        report.args.append(value)
    else:
        report.env.append(rest)


def _parse_mount(rest: str) -> Mount:
    point, fstype, options, propagation, source, superopts, root = rest.split(" ", 6)
    return Mount(
        point=point,
        fstype=fstype,
        options=tuple(options.split(",")),
        propagation=tuple(propagation.split(",")),
        source=source,
        superopts=tuple(superopts.split(",")),
        root=root,
    )


@dataclass
class Normaliser:
    """Per-run substitutions that make two runtimes' reports comparable."""

    host_ns: dict[str, str]  # name -> inode of the runner's own namespaces
    joined_ns: dict[str, str]  # inode -> label, for namespaces a config joins by path
    replacements: dict[str, str]  # literal text -> placeholder (id, bundle path, ...)
    configured_sizes: frozenset[str]  # size=/nr_inodes= values some config option sets

    def lines(self, report: Report) -> list[str]:
        """The report as sorted `section key value` lines, ready for a set difference."""
        out: list[str] = []
        for section, facts in report.keyed.items():
            for key, value in facts.items():
                line = self._keyed_line(section, key, value)
                if line:
                    out.append(line)
        out += [f"args {i} {self._text(a)}" for i, a in enumerate(report.args)]
        out += [f"env {self._text(e)}" for e in report.env]
        out += [self._mount_line(m) for m in report.mounts]
        out += [f"{k} {self._text(v)}" for k, v in report.scalars.items()]
        return sorted(out)

    def _text(self, value: str) -> str:
        for literal, placeholder in self.replacements.items():
            value = value.replace(literal, placeholder)
        return value

    def _keyed_line(self, section: str, key: str, value: str) -> str | None:
        if section == "clock":
            return None  # a moment in time: checked against the host's, never diffed
        if section == "ns":
            return f"ns {key} {self.ns_label(key, value)}"
        if (section, key) in (("pid1", "shell_pid"), ("status", "PPid")):
            # A PID outside a new PID namespace is just a number of the moment.
            value = value if value in ("0", "1") else "<pid>"
        return f"{section} {key} {self._text(value)}"

    def ns_label(self, name: str, inode: str) -> str:
        """host (inherited), joined:<label> (entered by path) or new."""
        if inode in self.joined_ns:
            return f"joined:{self.joined_ns[inode]}"
        if self.host_ns.get(name) == inode:
            return "host"
        return "new"

    def _mount_line(self, m: Mount) -> str:
        # ro/rw of the superblock is left out: one runtime mounts a read-only tmpfs
        # read-only, another mounts it and then remounts the mount read-only; what the
        # container gets is the mount's flag, which stays in.
        superopts = [o for o in m.superopts if o not in ("ro", "rw") and not self._host_sized(o)]
        fields = [
            m.point,
            m.fstype,
            ",".join(m.options),
            ",".join(m.propagation),
            m.source,
            ",".join(superopts),
            m.root,
        ]
        return "mount " + self._text(" ".join(fields))

    def _host_sized(self, opt: str) -> bool:
        """tmpfs sizes nobody configured are a fraction of the host's RAM."""
        name, _, value = opt.partition("=")
        return name in ("size", "nr_inodes") and value not in self.configured_sizes
