"""Driving a runtime the way an engine does, and owning everything a run creates.

A `Workspace` holds one busybox rootfs template, one private `--root` per runtime, every
bundle, and the helper processes whose namespaces configs join by path. Every container
id and every cgroup path a config names carries the workspace's tag, so that `cleanup`
can find (and report) whatever a runtime leaves behind: containers, cgroups, processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
INSPECTOR = Path(__file__).with_name("inspector.sh")
BUILD_ROOTFS = REPO / "bundles" / "build-rootfs.sh"
RUNTIMES = {
    "ociruntime": str(REPO / ".venv" / "bin" / "ociruntime"),
    "runc": "/usr/sbin/runc",
}
CGROUP_ROOT = "/sys/fs/cgroup"
#: Seconds one runtime command may take before it counts as hung.
COMMAND_TIMEOUT = 30


@dataclass
class Invocation:
    """What one runtime command did: exit code and its output (read from files)."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error(self) -> str:
        """The runtime's last stderr line; of a logrus-style record (runc's `time=...
        level=error msg="..."`), just the message, which does not change between runs."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        m = re.search(r'level=\w+ msg="(.*)"\s*$', last)
        return m.group(1).replace('\\"', '"') if m else last


def invoke(
    binary: str,
    root: Path,
    args: list[str],
    timeout: float = COMMAND_TIMEOUT,
    umask: int | None = None,
    stdout: Path | None = None,
) -> Invocation:
    """Run `binary --root ROOT ARGS...` with stdio on files, never pipes: a created
    container's init inherits the caller's stdio and would hold a pipe open forever.
    `umask`: the caller's umask the runtime starts with (default: the runner's).
    `stdout`: a file to write stdout to instead of a temporary one (what a container made
    by `create` prints arrives there after this returns)."""
    argv = [binary, "--root", str(root), *args]
    out_file = open(stdout, "w+b") if stdout else tempfile.TemporaryFile()  # noqa: SIM115
    with out_file as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                timeout=timeout,
                umask=-1 if umask is None else umask,
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -signal.SIGKILL
        out.seek(0)
        err.seek(0)
        return Invocation(
            args, code, out.read().decode(errors="replace"), err.read().decode(errors="replace")
        )


class NamespaceHolder:
    """A sleeping process in its own namespaces, for configs that join one by path.

    The UTS namespace gets a hostname of its own, so that joining it is visible from
    inside; with `pid`, the holder forks, and the sleeping child is PID 1 of the new PID
    namespace (the namespace dies with it)."""

    HOSTNAME = "joined-uts"

    def __init__(self, kinds: tuple[str, ...]) -> None:
        flags = [f"--{kind}" for kind in kinds]
        # Only ever in a UTS namespace of its own: anywhere else it would rename the host.
        naming = f"hostname {self.HOSTNAME}; " if "uts" in kinds else ""
        script = naming + "echo ready; exec sleep 3600"
        if "pid" in kinds:
            flags += ["--fork"]
        self.proc = subprocess.Popen(
            ["unshare", *flags, "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"namespace holder for {kinds} did not start")
        self.pid = self._sleeper_pid() if "pid" in kinds else self.proc.pid

    def _sleeper_pid(self) -> int:
        """With --fork, the namespace's PID 1 is unshare's child."""
        with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
            return int(f.read().split()[0])

    def path(self, kind: str) -> str:
        return f"/proc/{self.pid}/ns/{_PROC_NS_NAMES.get(kind, kind)}"

    def inode(self, kind: str) -> str:
        return ns_inode(self.path(kind))

    def stop(self) -> None:
        """Kill the sleeper first: with --fork it is unshare's child and would outlive it."""
        if self.pid != self.proc.pid:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


_PROC_NS_NAMES = {"network": "net", "mount": "mnt"}


def ns_inode(path: str) -> str:
    """`net:[4026531833]` -> `4026531833`."""
    return os.readlink(path).split("[", 1)[1].rstrip("]")


def cpus_allowed(status_file: str) -> str:
    """The Cpus_allowed_list of a /proc/PID/status ("" when the process is gone)."""
    try:
        with open(status_file) as f:
            lines = [ln for ln in f if ln.startswith("Cpus_allowed_list:")]
    except OSError:
        return ""
    return lines[0].split(":", 1)[1].strip() if lines else ""


def host_namespaces() -> dict[str, str]:
    """The runner's own namespaces: what a container inherits when it asks for none."""
    return {name: ns_inode(f"/proc/self/ns/{name}") for name in os.listdir("/proc/self/ns")}


class Workspace:
    """Temp dir, rootfs template, per-runtime state roots, namespace holders; cleanup."""

    def __init__(self) -> None:
        self.tag = "ocicf" + uuid.uuid4().hex[:6]
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-", dir="/tmp"))
        # Reachable by every uid: a container in a user namespace must reach its bundle as
        # its own mapped root, as under an engine (mkdtemp makes the directory 0700).
        self.dir.chmod(0o755)
        self.template = self.dir / "rootfs-template"
        subprocess.run(
            [str(BUILD_ROOTFS), str(self.template)], check=True, stdout=subprocess.DEVNULL
        )
        self.roots = {name: self.dir / "state" / name for name in RUNTIMES}
        self.holders: dict[str, NamespaceHolder] = {}
        self.holder_pids: list[int] = []  # for the record: all gone after cleanup
        self.veth_count = 0

    def holder(self, name: str, kinds: tuple[str, ...]) -> NamespaceHolder:
        """A namespace holder, started on first use and shared by every case."""
        if name not in self.holders:
            self.holders[name] = NamespaceHolder(kinds)
            self.holder_pids += sorted({self.holders[name].pid, self.holders[name].proc.pid})
        return self.holders[name]

    def container_id(self, case: str, runtime: str) -> str:
        return f"{self.tag}-{case}-{runtime[:4]}"

    def placeholders(self, bundle: Path, cid: str) -> dict[str, str]:
        """What `@NAME@` in a corpus config stands for, per bundle."""
        values = {"@BUNDLE@": str(bundle), "@ID@": cid, "@TAG@": self.tag}
        for name, holder in self.holders.items():
            for kind in ("uts", "ipc", "network", "pid", "cgroup", "time", "mount"):
                values[f"@NS:{name}:{kind}@"] = holder.path(kind)
        return values

    def make_bundle(
        self,
        name: str,
        config: dict,
        files: dict[str, str | None],
        conf_lines: list[str],
        extra: dict[str, str] | None = None,
    ) -> tuple[Path, dict]:
        """A bundle dir with a private rootfs (hard links to the template: cheap, and
        nothing a runtime does changes the linked files), the inspector, its probe list,
        the case's extra files, and config.json with placeholders (and `extra` ones)
        filled in. With a user namespace the rootfs is a real copy owned by the mapped
        root, as an engine prepares it (chowning hard links would change the template)."""
        bundle = self.dir / "bundles" / name
        bundle.mkdir(parents=True)
        rootfs = bundle / "rootfs"
        owner = mapped_root(config)
        link = shutil.copy2 if owner else os.link
        shutil.copytree(self.template, rootfs, symlinks=True, copy_function=link)
        shutil.copyfile(INSPECTOR, rootfs / "inspect")
        os.chmod(rootfs / "inspect", 0o755)
        (rootfs / "inspect.conf").write_text("".join(line + "\n" for line in conf_lines))
        if owner:
            subprocess.run(["chown", "-R", "-h", f"{owner[0]}:{owner[1]}", str(rootfs)], check=True)
        for relpath, content in files.items():
            _make_file(bundle / relpath, content)
        text = json.dumps(config, indent=2)
        values = {**self.placeholders(bundle, name), **(extra or {})}
        for key, value in values.items():
            text = text.replace(key, value)
        (bundle / "config.json").write_text(text)
        return bundle, json.loads(text)

    def runtime(self, name: str, args: list[str], **options) -> Invocation:
        """`invoke` the runtime `name` with this workspace's root (options: invoke's)."""
        return invoke(RUNTIMES[name], self.roots[name], args, **options)

    def veth(self, case: str, runtime: str) -> Veth:
        """A fresh veth pair for one run of a case, named after the workspace tag."""
        self.veth_count += 1
        return Veth(f"{self.tag}{self.veth_count:02x}{runtime[0]}")

    def cleanup(self, keep_files: bool = False) -> list[str]:
        """Delete every container, stop the holders, remove the temp dir; return what had
        to be cleaned up behind a runtime (containers, cgroups), for the report."""
        leftovers: list[str] = []
        for name in RUNTIMES:
            listed = self.runtime(name, ["list", "-q"]).stdout.split()
            for cid in listed:
                self.runtime(name, ["delete", "--force", cid])
                leftovers.append(f"{name}: container {cid} still existed")
        for holder in self.holders.values():
            holder.stop()
        self.holders.clear()
        leftovers += remove_tagged_cgroups(self.tag)
        leftovers += remove_tagged_links(self.tag)
        if keep_files:
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        return leftovers


def mapped_root(config: dict) -> tuple[int, int] | None:
    """The host uid/gid of the container's root, when the config has a user namespace
    of its own with mappings."""
    linux = config.get("linux") or {}
    kinds = {ns.get("type"): ns.get("path") for ns in linux.get("namespaces") or []}
    if "user" not in kinds or kinds["user"]:
        return None
    ids = []
    for field in ("uidMappings", "gidMappings"):
        found = [m["hostID"] for m in linux.get(field) or [] if m["containerID"] == 0]
        if not found:
            return None
        ids.append(found[0])
    return ids[0], ids[1]


class Veth:
    """A veth pair on the host: `end` (with an address, up) is for the config to move into
    a container, `peer` stays. The kernel destroys both when the container's network
    namespace dies with `end` in it; `remove` deletes what is still there."""

    ADDRESS = "192.0.2.10/24"  # a documentation range: carries no traffic

    def __init__(self, stem: str) -> None:
        self.end, self.peer = stem + "a", stem + "b"
        _ip("link", "add", self.end, "type", "veth", "peer", "name", self.peer)
        _ip("addr", "add", self.ADDRESS, "dev", self.end)
        _ip("link", "set", self.end, "up")

    def remove(self) -> None:
        for name in (self.end, self.peer):
            if os.path.exists(f"/sys/class/net/{name}"):
                subprocess.run(["ip", "link", "del", name], capture_output=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def remove_tagged_links(tag: str) -> list[str]:
    """Network interfaces of the workspace still on the host (a run leaves none behind:
    `Veth.remove` runs after each case)."""
    found = sorted(n for n in os.listdir("/sys/class/net") if n.startswith(tag))
    for name in found:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    return [f"network interface {name}" for name in found]


def _make_file(path: Path, content: str | None) -> None:
    """`None` makes a directory; a string makes a file with that content."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is None:
        path.mkdir(exist_ok=True)
    else:
        path.write_text(content)


def tagged_cgroups(tag: str) -> list[str]:
    """Every cgroup directory (any hierarchy) whose name contains the workspace tag."""
    found = []
    for dirpath, dirnames, _ in os.walk(CGROUP_ROOT):
        found += [os.path.join(dirpath, d) for d in dirnames if tag in d]
    return found


def remove_tagged_cgroups(tag: str) -> list[str]:
    """rmdir what runtimes left behind (deepest first) and say what it was: one line per
    cgroup path, however many hierarchies it is in."""
    found = tagged_cgroups(tag)
    for path in sorted(found, key=len, reverse=True):
        for dirpath, dirnames, _ in os.walk(path, topdown=False):
            for d in dirnames:
                _rmdir_quietly(os.path.join(dirpath, d))
        _rmdir_quietly(path)
    tops = [p for p in found if tag not in os.path.dirname(p)]
    counts: dict[str, int] = {}
    for path in tops:
        inside = os.path.relpath(path, CGROUP_ROOT).split("/", 1)[1]
        counts[inside] = counts.get(inside, 0) + 1
    return [f"cgroup {p} (in {n} hierarchies)" for p, n in sorted(counts.items())]


def _rmdir_quietly(path: str) -> None:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
