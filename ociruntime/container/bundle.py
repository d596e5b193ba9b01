"""Loading an OCI bundle: config.json parsed, validated against our schema, rootfs found.

Every failure names the file and the JSON pointer of the offending field, in one line.

config.json is hostile input as far as this module is concerned (an engine may pass on
what a user wrote): it must be a regular file (a symlink to one is followed, as runc
does) of at most MAX_CONFIG_BYTES, nested at most MAX_DEPTH levels, and no string in it
may hold a NUL byte or an unpaired UTF-16 surrogate; each is refused in one line before
any of the config is used, so no later path, syscall or message has to care.
"""

from __future__ import annotations

import posix  # not os (~1 ms): create's path loads none (pathlite.py)
import stat

from ociruntime import jsonlite, pathlite
from ociruntime.errors import RuntimeFailure, field_error, field_error_at, pointer

#: The largest config.json read. Real ones are far smaller: runc's `spec` ~3 KB, podman's
#: and containerd's with their default seccomp profile 15-60 KB, Kubernetes' ~100 KB at
#: most (its annotations are capped at 256 KiB in all). 4 MiB leaves 40x room, and
#: keeps the worst document (millions of tiny arrays) at ~0.3 s and ~115 MB to parse;
#: 16 MiB would cost ~1 s and ~430 MB.
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: The deepest nesting of arrays/objects accepted. The spec's own deepest path is 6
#: levels (/linux/seccomp/syscalls/0/args/0); 64 leaves room for extensions while keeping
#: the parser and everything that walks the document afterwards (the validators, an
#: error's repr of a value) far from Python's recursion limit.
MAX_DEPTH = 64


class Bundle:
    __slots__ = ("path", "config", "rootfs")

    def __init__(self, path: str, config: dict, rootfs: str) -> None:
        self.path, self.config, self.rootfs = path, config, rootfs  # paths absolute


def load(path: str) -> Bundle:
    bundle = pathlite.abspath(path)
    if not pathlite.isdir(bundle):
        raise RuntimeFailure(f"bundle {path}: no such directory")
    try:
        raw = read_bounded(pathlite.join(bundle, "config.json"), "config.json")
    except FileNotFoundError:
        raise RuntimeFailure(f"config.json: not found in bundle {bundle}") from None
    config = parse_config(raw)
    return Bundle(bundle, config, _rootfs(bundle, config))


def read_bounded(path: str, what: str, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, symlinks followed.

    stat() first, so a device (a symlink to /dev/zero, read without end) or a FIFO (whose
    open blocks until a writer comes) is refused without being opened; then the open is
    O_NONBLOCK and fstat() checks again what was opened, so a file swapped for a FIFO
    meanwhile cannot block either. The read stops at limit + 1 bytes, should the file
    grow after the fstat. FileNotFoundError is left to the caller to word."""
    try:
        _check_regular(posix.stat(path), what, limit)
        fd = posix.open(path, posix.O_RDONLY | posix.O_NONBLOCK | posix.O_NOCTTY | posix.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise RuntimeFailure(f"{what}: {e.strerror}") from None
    try:
        _check_regular(posix.fstat(fd), what, limit)
        posix.set_blocking(fd, True)
        chunks, size = [], 0
        while size <= limit:
            chunk = posix.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as e:
        raise RuntimeFailure(f"{what}: {e.strerror}") from None
    finally:
        posix.close(fd)
    if size > limit:
        raise RuntimeFailure(f"{what}: larger than {limit} bytes")
    return b"".join(chunks)


_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def _check_regular(st: posix.stat_result, what: str, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "something else")
        raise RuntimeFailure(f"{what}: not a regular file but {kind}")
    if st.st_size > limit:
        raise RuntimeFailure(f"{what}: {st.st_size} bytes, larger than {limit}")


def parse_json(raw: bytes, what: str) -> object:
    """UTF-8 JSON nested at most MAX_DEPTH levels, no NUL byte or lone surrogate in any
    string (see check_strings); every refusal one line naming `what`."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as e:
        raise RuntimeFailure(f"{what}: not UTF-8: invalid byte at offset {e.start}") from None
    try:
        value = jsonlite.loads_bounded(text, MAX_DEPTH)
    except jsonlite.TooDeep as e:
        raise RuntimeFailure(f"{what}: {e}") from None
    except ValueError as e:
        where = f" at line {e.lineno} column {e.colno}" if hasattr(e, "lineno") else ""
        raise RuntimeFailure(f"{what}: invalid JSON{where}: {getattr(e, 'msg', e)}") from None
    if "\\u0000" in text or "\\ud" in text or "\\uD" in text:  # how JSON spells both
        check_strings(value, what)
    return value


def check_strings(value: object, what: str) -> None:
    """Refuse a NUL byte in any string (a key too): every path, argument, environment
    entry or name in a config ends in a C string, where NUL ends it early (a hostname
    cut short) or Python refuses it mid-operation (ValueError: embedded null byte).
    Refuse an unpaired surrogate (JSON's "\\ud800"): no UTF-8 path or name can carry it.
    Iterative, so depth costs no recursion."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        node, at = stack.pop()
        if isinstance(node, str):
            _check_string(node, at or "/", what)
        elif isinstance(node, dict):
            for key, child in node.items():
                child_at = at + pointer(key)
                _check_string(key, child_at, what, "the name ")
                stack.append((child, child_at))
        elif isinstance(node, list):
            stack.extend((child, f"{at}/{i}") for i, child in enumerate(node))


def _check_string(s: str, at: str, what: str, subject: str = "") -> None:
    """`subject` says whether it is the member's name (key) rather than its value."""
    if "\x00" in s:
        raise field_error(at, f"{subject}contains a NUL byte", what)
    if not s.isascii():
        try:
            s.encode()
        except UnicodeEncodeError:
            reason = f"{subject}is not valid Unicode (an unpaired surrogate)"
            raise field_error(at, reason, what) from None


def parse_config(raw: bytes) -> dict:
    """JSON (bounded, see parse_json), then the schema, then the checks a schema cannot
    express."""
    config = parse_json(raw, "config.json")
    from ociruntime.container.validation import ConfigInvalid, check_config

    try:
        check_config(config)
    except ConfigInvalid as e:
        raise RuntimeFailure(str(e)) from None
    major = str(config["ociVersion"]).split(".", 1)[0]
    if major != "1":
        raise field_error(
            pointer("ociVersion"), f"{config['ociVersion']!r} is not a 1.x spec version"
        )
    if (config.get("linux") or {}).get("sysctl"):
        from ociruntime.process import namespaces

        namespaces.check_sysctl(config["linux"])
    _check_environments(config)
    return config


def _check_environments(config: dict) -> None:
    """The process's and every hook's env, as runc's init checks the process's."""
    check_env((config.get("process") or {}).get("env") or [], pointer("process", "env"))
    for stage, hooks in (config.get("hooks") or {}).items():
        for i, hook in enumerate(hooks or []):
            check_env(hook.get("env") or [], pointer("hooks", stage, i, "env"))


def check_env(env: list[str], where: str) -> None:
    """Each entry NAME=value with a non-empty NAME (runc refuses the others too): execve
    itself takes any string, but Python's refuses an empty name mid-start (ValueError in
    the container's init, after `start`), and a NAME without "=" means nothing. `where`
    is a pointer into config.json, "<document>: <pointer>" or a flag (exec's --env)."""
    for i, entry in enumerate(env):
        if not entry.partition("=")[0] or "=" not in entry:
            raise field_error_at(f"{where}/{i}", f"{entry!r} is not NAME=value")


def _rootfs(bundle: str, config: dict) -> str:
    root = (config.get("root") or {}).get("path")
    if not root:
        raise field_error(pointer("root", "path"), "a rootfs is required on Linux")
    rootfs = pathlite.normpath(pathlite.join(bundle, root))
    if not pathlite.isdir(rootfs):
        raise field_error(pointer("root", "path"), f"rootfs {rootfs} does not exist")
    return rootfs
