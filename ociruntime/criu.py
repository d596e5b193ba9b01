"""Driving CRIU for `checkpoint` and `restore`: its command line, its log, its reason.

runc speaks CRIU's RPC (`criu swrk` over a socketpair, protobuf messages); we run the
`criu` executable with options instead. Why:

- Debian 12's criu 3.17 ships the executable and its CLI options are the RPC's fields one
  for one (`--ext-mount-map`, `--external`, `--inherit-fd`, `--manage-cgroups`,
  `--cgroup-root`, `--freeze-cgroup`, `--prev-images-dir`, ...), so nothing of runc's
  description of a container is lost;
- the RPC needs protobuf (a generated `rpc_pb2` and the protobuf runtime) in our venv, or
  a hand-written encoder: a second copy of CRIU's message schema to keep in step;
- the two RPC notifications runc relies on have CLI equivalents: `setup-namespaces` (where
  runc runs the prestart/createRuntime hooks) reaches an `--action-script`
  (ociruntime.criu_action), and "the restored tree is the runtime's child" is
  `--restore-sibling` (criu forks the tree as its own sibling, i.e. as our child).

What the CLI cannot do is hand back the master of an orphaned pty (the RPC's
`orphan-pts-master` notification carries the fd), so a container whose process has a
terminal is refused by `checkpoint` up front rather than dumped into an image that
`restore` could not reattach (see README).

Everything CRIU says goes to its log (`-o`, in the work directory, `-v4`); when it fails
we quote its first `Error (...)` line: the one line the user sees is CRIU's own reason.
Nothing here is imported by create/start/state: only `checkpoint` and `restore` load it.
"""

from __future__ import annotations

import os

from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: CRIU's keys for a namespace the container joined by path (runc's and crun's names):
#: dumped as `--external net[INODE]:extRootNetNS`, restored with `--inherit-fd fd[N]:KEY`.
EXTERNAL_NAMESPACES = {"network": ("net", "extRootNetNS"), "pid": ("pid", "extRootPidNS")}
#: runc's --manage-cgroups-mode values (criu's own words for them).
CGROUP_MODES = ("soft", "full", "strict", "ignore")
DESCRIPTORS = "descriptors.json"


class Criu:
    """One criu invocation's settings: the executable, images and work directories."""

    def __init__(self, binary: str, images: str, work: str) -> None:
        self.binary, self.images, self.work = binary, images, work

    def command(self, action: str, log_name: str, options: Sequence[str]) -> list[str]:
        return [self.binary, action, "-D", self.images, "-W", self.work, "-o", log_name,
                "-v4", *options]  # fmt: skip

    def run(
        self,
        action: str,
        log_name: str,
        options: Sequence[str],
        pass_fds: Sequence[int] = (),
        preexec: Callable[[], None] | None = None,
        keep_log: bool = True,
    ) -> None:
        """Run criu to completion; a failure is a RuntimeFailure quoting its reason (and
        criu's log removed unless `keep_log`: the user named no work directory to keep
        it in, and a failure must leave nothing behind)."""
        import subprocess

        argv = self.command(action, log_name, options)
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, pass_fds=tuple(pass_fds), preexec_fn=preexec,
                check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise RuntimeFailure(f"criu: {self.binary}: executable not found") from None
        except subprocess.SubprocessError as e:  # the preexec step failed in the child
            raise RuntimeFailure(f"criu {action}: preparing criu's process failed: {e}") from None
        if done.returncode != 0:
            log = os.path.join(self.work, log_name)
            reason = reason_from(log, done.stdout.decode(errors="replace"))
            if not keep_log:
                try:
                    os.unlink(log)
                except FileNotFoundError:
                    pass
            raise RuntimeFailure(f"criu {action} failed: {reason}")


def reason_from(log_path: str, output: str) -> str:
    """CRIU's first `Error (file:line): reason` line (from its log, else what it printed),
    without the location: the first error is the cause, the later ones its echoes."""
    lines: list[str] = []
    try:
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        pass
    lines += output.splitlines()
    for line in lines:
        _, found, rest = line.partition("Error (")
        if found:
            return rest.partition("): ")[2].strip() or line.strip()
    printed = [line.strip() for line in output.splitlines() if line.strip()]
    if printed:
        return printed[-1]
    return "no reason given (see " + log_path + ")"


def resolve_in_root(rootfs: str, destination: str) -> str:
    """A mount destination as CRIU sees it in the container: symlinks of the rootfs
    followed inside it (crun's chroot_realpath; runc uses the destination as written,
    which is the same for the usual config). A missing path stays as written."""
    parts = [p for p in destination.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        here = os.path.join(rootfs, *resolved, part)
        if os.path.islink(here) and hops < 40:
            hops += 1
            target = os.readlink(here)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return "/" + "/".join(resolved)


def is_bind(mount: dict) -> bool:
    options = mount.get("options") or []
    return mount.get("type") == "bind" or "bind" in options or "rbind" in options


def bind_mounts(config: dict, rootfs: str) -> list[tuple[str, str]]:
    """(destination in the container, source on the host) of every bind mount: CRIU
    cannot dump what lies outside the container, so each is an external mount, keyed
    by its destination (runc's addCriuDumpMount / addCriuRestoreMount)."""
    pairs = []
    for m in config.get("mounts") or []:
        if not is_bind(m):
            continue
        source = m.get("source") or ""
        pairs.append((resolve_in_root(rootfs, m["destination"]), source))
    return pairs


def masked_files(config: dict, init_pid: int) -> list[str]:
    """linux.maskedPaths that are files (bound over with /dev/null) in the running
    container: external mounts keyed /dev/null, as runc's addMaskPaths. Directories are
    masked with a read-only tmpfs, which CRIU dumps itself."""
    found = []
    for path in (config.get("linux") or {}).get("maskedPaths") or []:
        try:
            st = os.stat(f"/proc/{init_pid}/root/{path.lstrip('/')}")
        except OSError:
            continue
        if not os.path.isdir(f"/proc/{init_pid}/root/{path.lstrip('/')}") and st is not None:
            found.append(path)
    return found


def joined_namespaces(config: dict) -> dict[str, str]:
    """type -> path of the network and PID namespaces the container joined by path."""
    joined = {}
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") in EXTERNAL_NAMESPACES and ns.get("path"):
            joined[ns["type"]] = ns["path"]
    return joined
