"""Driving CRIU for `checkpoint` and `restore`: its RPC, its log, its reason.

As runc does: `criu swrk FD` started with one end of a SOCK_SEQPACKET socketpair, a
`criu_req` (protobuf) sent, `criu_resp`es read until the final one. Why the RPC and not
criu's command line (which our first version drove, and which covers every option):

- CRIU talks back during a restore and we must answer: `setup-namespaces` is where runc
  runs the prestart/createRuntime hooks (the tree's namespaces exist, nothing runs yet),
  and `orphan-pts-master` hands over, with SCM_RIGHTS, the master of the pty CRIU made
  for a container with a terminal, which goes to --console-socket. The command line has
  action scripts for the first and nothing at all for the second (`--orphan-pts-master`
  exists only in the RPC: without it a terminal's pty cannot even be dumped);
- `rst_sibling` (swrk only) makes the restored init our child, as runc's is.

The protobuf is proto2 with a handful of scalar, string and nested fields: encoded and
decoded here (about sixty lines, field numbers from criu's rpc.proto, which Debian's
criu installs as /usr/include/criu/rpc.proto) rather than through the protobuf package
and a generated rpc_pb2, which the venv would otherwise need for this alone.

Everything CRIU says goes to its log (`log_file`, in the work directory, level 4); when
it fails we quote its first `Error (...)` line: the one line the user sees is CRIU's own
reason. Nothing here is imported by create/start/state: only `checkpoint` and `restore`
load it.
"""

from __future__ import annotations

import os

from ociruntime.errors import RuntimeFailure

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: CRIU's keys for a namespace the container joined by path (runc's and crun's names):
#: dumped as external `net[INODE]:extRootNetNS`, restored with inherit_fd of that key.
EXTERNAL_NAMESPACES = {"network": ("net", "extRootNetNS"), "pid": ("pid", "extRootPidNS")}
#: runc's --manage-cgroups-mode values -> rpc.proto's criu_cg_mode.
CGROUP_MODES = {"soft": 3, "full": 4, "strict": 5, "ignore": 0}
DESCRIPTORS = "descriptors.json"

# rpc.proto: criu_req_type
DUMP, RESTORE, PRE_DUMP, NOTIFY = 1, 2, 4, 6
# rpc.proto: criu_opts field numbers
(IMAGES_DIR_FD, PID, LEAVE_RUNNING, EXT_UNIX_SK, TCP_ESTABLISHED, SHELL_JOB, FILE_LOCKS,
 LOG_LEVEL, LOG_FILE, PS, NOTIFY_SCRIPTS, ROOT, PARENT_IMG, TRACK_MEM, AUTO_DEDUP,
 WORK_DIR_FD, EXT_MNT, MANAGE_CGROUPS, CG_ROOT, RST_SIBLING, INHERIT_FD,
 MANAGE_CGROUPS_MODE, EXTERNAL, EMPTY_NS, FREEZE_CGROUP, LAZY_PAGES, ORPHAN_PTS_MASTER,
 LSM_PROFILE) = (1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 23, 24, 25, 26,
                 27, 34, 37, 38, 44, 48, 50, 53)  # fmt: skip


# --- proto2, the little of it rpc.proto uses ------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # a negative int32 is ten bytes of two's complement
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Message:
    """A proto2 message being built: fields appended in any order, repeated ones again."""

    def __init__(self) -> None:
        self.data = bytearray()

    def int(self, field: int, value: int) -> Message:  # int32, uint32, bool, enum
        self.data += _varint(field << 3) + _varint(int(value))
        return self

    def bytes(self, field: int, value: bytes | str | Message) -> Message:
        raw = value.data if isinstance(value, Message) else value
        raw = raw.encode() if isinstance(raw, str) else bytes(raw)
        self.data += _varint(field << 3 | 2) + _varint(len(raw)) + raw
        return self


def decode(buf: bytes) -> dict[int, list]:
    """field number -> its values (ints for varints, bytes for length-delimited)."""
    fields: dict[int, list] = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            size, i = _read_varint(buf, i)
            value, i = buf[i : i + size], i + size
        elif wire in (1, 5):  # fixed64/fixed32: none in rpc.proto, skipped
            size = 8 if wire == 1 else 4
            value, i = buf[i : i + size], i + size
        else:
            raise RuntimeFailure(f"criu: unreadable reply (wire type {wire})")
        fields.setdefault(field, []).append(value)
    return fields


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if i >= len(buf):
            raise RuntimeFailure("criu: truncated reply")
        byte = buf[i]
        n |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return n, i


# --- a swrk session --------------------------------------------------------------------------


class Criu:
    """One criu invocation's settings: the executable, images and work directories."""

    def __init__(self, binary: str, images: str, work: str) -> None:
        self.binary, self.images, self.work = binary, images, work

    def run(
        self,
        request_type: int,
        log_name: str,
        opts: Message,
        on_notify: Callable[[str, int, list[int]], None] | None = None,
        pass_fds: Sequence[int] = (),
        preexec: Callable[[], None] | None = None,
        keep_log: bool = True,
    ) -> dict[int, list]:
        """Send one request (the images and work directories and the log added to
        `opts`), answer CRIU's notifications with `on_notify`, return its final reply.
        A failure is a RuntimeFailure quoting CRIU's reason (its log then removed
        unless `keep_log`: the user named no work directory to keep it in, and a failed
        command must leave nothing behind). The first exception `on_notify` raised wins
        over CRIU's account of it."""
        import socket
        import subprocess

        images = os.open(self.images, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        work = os.open(self.work, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        proc = None
        try:
            # criu reads the directories through /proc/<our pid>/fd/N (its peer's)
            opts.int(IMAGES_DIR_FD, images).int(WORK_DIR_FD, work)
            opts.int(LOG_LEVEL, 4).bytes(LOG_FILE, log_name).int(NOTIFY_SCRIPTS, 1)
            try:
                proc = subprocess.Popen(
                    [self.binary, "swrk", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(), *pass_fds), preexec_fn=preexec,
                )  # fmt: skip
            except FileNotFoundError:
                raise RuntimeFailure(f"criu: {self.binary}: executable not found") from None
            except subprocess.SubprocessError as e:  # preexec failed in the child
                raise RuntimeFailure(f"criu: preparing criu's process failed: {e}") from None
            theirs.close()
            ours.send(bytes(Message().int(1, request_type).bytes(2, opts).data))
            failure, reply = self._converse(ours, request_type, on_notify)
        finally:
            ours.close()
            theirs.close()
            if proc is not None:
                proc.wait()
            os.close(images)
            os.close(work)
        if failure is not None:
            self._forget_log(log_name, keep_log)
            raise failure
        if reply is None or not (reply.get(2) or [0])[0]:
            log = os.path.join(self.work, log_name)
            said = (reply or {}).get(9) or [b""]
            reason = reason_from(log, said[0].decode(errors="replace"))
            self._forget_log(log_name, keep_log)
            raise RuntimeFailure(f"criu {_NAMES.get(request_type, '')} failed: {reason}")
        return reply

    def _converse(
        self, sock, request_type: int, on_notify: Callable[[str, int, list[int]], None] | None
    ) -> tuple[BaseException | None, dict[int, list] | None]:
        """Read replies until the final one; each notification answered (a refusal
        when on_notify raised, which CRIU turns into a failed operation)."""
        import socket

        failure: BaseException | None = None
        while True:
            try:
                data, ancillary, _, _ = sock.recvmsg(
                    1 << 20, socket.CMSG_SPACE(16), socket.MSG_CMSG_CLOEXEC
                )
            except OSError as e:
                return failure or RuntimeFailure(f"criu: reading its reply: {e.strerror}"), None
            fds = [
                int.from_bytes(raw[i : i + 4], "little", signed=True)
                for level, kind, raw in ancillary
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                for i in range(0, len(raw) - 3, 4)
            ]
            if not data:
                return failure, None  # criu went away
            reply = decode(data)
            if (reply.get(1) or [0])[0] != NOTIFY:
                return failure, reply
            note = decode((reply.get(5) or [b""])[0])
            script = (note.get(1) or [b""])[0].decode(errors="replace")
            pid = (note.get(2) or [0])[0]
            ok = failure is None
            if ok and on_notify is not None:
                try:
                    on_notify(script, pid, fds)
                except BaseException as e:  # noqa: BLE001 - handed back to the caller
                    failure, ok = e, False
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            sock.send(bytes(Message().int(1, NOTIFY).int(3, ok).data))

    def _forget_log(self, log_name: str, keep_log: bool) -> None:
        if not keep_log:
            try:
                os.unlink(os.path.join(self.work, log_name))
            except FileNotFoundError:
                pass


_NAMES = {DUMP: "dump", RESTORE: "restore", PRE_DUMP: "pre-dump"}


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
