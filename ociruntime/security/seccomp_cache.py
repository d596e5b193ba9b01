"""The compiled-filter cache: a `linux.seccomp` profile is compiled once, then loaded as is.

Engines send the same profile with every container and every exec (Docker's and podman's
default: ~370 syscall names). `filter_for` keeps what `seccomp.build` makes of it (the
program exactly as seccomp(2) loads it, the -ENOSYS stub in front; the load flags; the
listener and its metadata; the debug and warning lines the build logged) in one file,
`<root>/.seccomp@cache/<key>`, and the next create or exec of the same profile loads
that: no pyseccomp import, no libseccomp call, no translation. A profile that fails to
build is never stored, so a hit is a profile that built here before, and its errors are
what they were. The lines the build logged (an unknown syscall skipped, at debug level as
runc; an architecture without syscalls, a warning) are stored and logged again on a hit,
so `--debug` and `--log` read the same either way.

Where: `.seccomp@cache` under the state root (`--root`), made 0700; `@` is not allowed in
a container id, so no container can take the name and `list` skips it (StateDir refuses
it). Only root (euid 0) uses the cache, and only entries root made: a rootless runtime
builds every time. Nothing else maintains it: `delete` leaves it alone (entries are per
profile, not per container), a stale entry is just never hit again, and `rm -rf
<root>/.seccomp@cache` clears it (the next create rebuilds).

The key: sha256 over our format version, the machine and byte order, the kernel (release
and build: libseccomp asks it which actions and flags it supports), the identity (path,
device, inode, size, mtime, ctime) of every file the program is computed by (libseccomp,
found as the dynamic loader finds it: `_libseccomp_file`; pyseccomp, found as the import
system finds it: `_module_file`; seccomp.py, seccomp_stub.py and this module), and the
profile itself in one canonical spelling (jsonlite.dumps_canonical). An upgrade of any of
them changes the key; the old entries are then simply not read. Which syscall names
libseccomp knows (the ones skipped) is part of libseccomp, so of its identity. When a file
cannot be located this way (LD_PRELOAD set, an LD_LIBRARY_PATH that could supply
libseccomp: `_library_path_clear`, a glibc-hwcaps variant of libseccomp, pyseccomp in a
zip...), there is no key and no cache. On every miss the guess is checked against what
was really loaded (`_loaded_as_predicted`: the libseccomp mapped in this process,
pyseccomp's __file__): an entry is written only when they agree, so a host where the
guess is wrong never uses the cache rather than using a wrong entry.

An entry: MAGIC, FORMAT, the key, the payload's length and its sha256 (an 80-byte
header), then the payload. It is read through a directory fd of a directory that must be
root's and not group- or world-writable, opened O_NOFOLLOW (a symlink is not read), and
used only if it is a regular root-owned file with one link, not group- or world-writable,
whose header names this key and whose payload has the length and checksum the header
gives; anything else (corrupt, truncated, another key's, someone else's) is ignored,
rebuilt and replaced. Written to `.<key>.<pid>.tmp` in the directory, then renamed over
the entry: a reader sees the old entry or the new, and concurrent creates of one profile
each write a whole entry and the last rename wins. No fsync: the default root is a tmpfs,
and a torn entry after a crash fails its checksum and is rebuilt (an fsync would cost
every miss on a disk root). Any failure to read or write the cache is a debug line and a
build, never an error.
"""

from __future__ import annotations

import _imp
import os
import stat
import sys

from ociruntime import jsonlite
from ociruntime.log import LOG
from ociruntime.security import seccomp

try:
    from _sha256 import sha256 as _sha256_new  # built in: hashlib would load OpenSSL (~2 ms)
except ImportError:  # another CPython build: see _sha256
    _sha256_new = None

DIR_NAME = ".seccomp@cache"
FORMAT = 1
MAGIC = b"OCIRSECC"
HEADER = 80  # MAGIC 8, FORMAT 4, key 32, payload length 4, payload sha256 32
MAX_ENTRY = 1 << 20  # a 4096-instruction program is 32 KiB; the rest is a few strings
#: ld.so.cache: the new format's magic, and the flags of a 64-bit library for this machine
#: (glibc's FLAG_ELF_LIBC6 | FLAG_X8664_LIB64, FLAG_ELF_LIBC6 | FLAG_AARCH64_LIB64)
LD_CACHE = "/etc/ld.so.cache"
_LD_MAGIC = b"glibc-ld.so.cache1.1"
_LD_FLAGS = {"x86_64": 0x0303, "aarch64": 0x0A03}
#: What ld.so looks into, in each LD_LIBRARY_PATH directory, before the directory itself:
#: glibc-hwcaps/<level>/ and (glibc < 2.37) the legacy hwcaps subdirectories, which nest
#: tls, platform and hwcap names (tls/haswell/avx512_1/x86_64/...). Listed by first
#: component, a superset of what any x86_64 CPU searches (LD_DEBUG=libs shows the list).
#: A machine not listed uses no cache when LD_LIBRARY_PATH is set.
_LD_SUBDIRS = {"x86_64": ("glibc-hwcaps", "tls", "haswell", "xeon_phi", "avx512_1", "x86_64")}
_LEVELS = {b"d": "debug", b"w": "warning"}


def filter_for(spec: dict, root: str | None) -> seccomp.Filter:
    """`linux.seccomp`'s filter: from the cache under `root` when it holds a valid entry
    for this profile here, else built by seccomp.build (and then stored). Without a root
    (`validate`) or as another user than root: built, no cache."""
    found = _environment() if root is not None and os.geteuid() == 0 else None
    if root is None or found is None:
        return seccomp.build(spec)
    material, predicted = found
    key = _sha256(material + b"\0" + jsonlite.dumps_canonical(spec).encode())
    name = key.hex()
    cached = _lookup(os.path.join(root, DIR_NAME), name, key)
    if cached is not None:
        LOG.debug(f"seccomp cache: the filter from entry {name}")
        return cached
    recorder = _Recorder()
    filt = seccomp.build(spec, recorder)
    entry = _encode(key, filt, recorder.lines)
    if entry is not None and _loaded_as_predicted(*predicted):
        _store(root, name, entry)
    return filt


class _Recorder:
    """Stands in for LOG while the filter is built: passes each line on and keeps it for
    the entry (a hit logs them again)."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, msg: str) -> None:
        self.lines.append(("debug", msg))
        LOG.debug(msg)

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))
        LOG.warning(msg)


def _sha256(data: bytes) -> bytes:
    if _sha256_new is None:
        from hashlib import sha256

        return sha256(data).digest()
    return _sha256_new(data).digest()


# --- the key -------------------------------------------------------------------------


def _environment() -> tuple[bytes, tuple[str, str]] | None:
    """Everything but the profile that the key covers (the module docstring), and the
    libseccomp and pyseccomp files it names; None when they cannot be located."""
    uname = os.uname()
    flags = _LD_FLAGS.get(uname.machine)
    if flags is None or os.environ.get("LD_PRELOAD"):
        return None
    if not _library_path_clear(seccomp.LIBSECCOMP_SONAME, uname.machine):
        return None
    lib = _libseccomp_file(seccomp.LIBSECCOMP_SONAME.encode(), flags)
    module = _module_file("pyseccomp")
    if lib is None or module is None:
        return None
    here = os.path.dirname(seccomp.__file__)
    parts = [f"ociruntime seccomp cache {FORMAT}", uname.machine, sys.byteorder,
             uname.release, uname.version]  # fmt: skip
    for path in (lib, module, seccomp.__file__, os.path.join(here, "seccomp_stub.py"), __file__):
        try:
            st = os.stat(path)
        except OSError:
            return None
        parts.append(
            f"{path} {st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"
        )
    return "\n".join(parts).encode("utf-8", "surrogateescape"), (lib, module)


def _library_path_clear(soname: str, machine: str) -> bool:
    """Whether LD_LIBRARY_PATH, which ld.so searches before /etc/ld.so.cache, cannot
    supply `soname`: unset, or none of its directories (an empty entry is the working
    directory, as ld.so takes it) holds the file or a subdirectory ld.so would search
    for it. Engines often run the runtime with one set for their own libraries
    (containerd's shim passes its environment on); where it could matter, or where it
    uses $ORIGIN-style tokens, no cache. Checked on every lookup, so a library that
    appears there later turns the cache off from then on."""
    value = os.environ.get("LD_LIBRARY_PATH")
    if not value:
        return True
    subdirs = _LD_SUBDIRS.get(machine)
    if subdirs is None or "$" in value:
        return False
    for entry in value.replace(";", ":").split(":"):
        for name in (soname, *subdirs):
            if os.path.lexists(os.path.join(entry or ".", name)):
                return False
    return True


def _libseccomp_file(soname: bytes, flags: int) -> str | None:
    """The file the dynamic loader opens for `soname`, found without loading it.

    pyseccomp loads `ctypes.CDLL(ctypes.util.find_library("seccomp"))`, and
    seccomp._import_pyseccomp makes find_library answer the soname, so ld.so picks the
    file: LD_PRELOAD, LD_LIBRARY_PATH (the caller has ruled both out: see
    `_library_path_clear`), the RUNPATH of the caller (none for the interpreter and
    _ctypes), then /etc/ld.so.cache, which ldconfig
    rewrites whenever a package installs a library. This reads that cache as ld.so does
    (glibc >= 2.32's format, in the host's byte order: entries of int32 flags, uint32 key
    and value offsets, uint32 osversion, uint64 hwcap; strings relative to the header)
    and returns the first entry for the soname with this machine's flags: its path (the
    soname's symlink; `os.stat` follows it to the versioned file). None when the cache
    is unreadable or of another format, has no such entry, or has one for a glibc-hwcaps
    subdirectory, which ld.so may prefer depending on the CPU."""
    try:
        with open(LD_CACHE, "rb") as f:
            data = f.read()
    except OSError:
        return None
    start = data.find(_LD_MAGIC)
    count = int.from_bytes(data[start + 20 : start + 24], sys.byteorder)
    table = start + 48
    if start < 0 or start % 4 or table + 24 * count > len(data):
        return None
    words = memoryview(data)[table : table + 24 * count].cast("I")
    want = soname + b"\0"
    for n, key in enumerate(words[1::6].tolist()):
        if data[start + key : start + key + len(want)] != want or words[6 * n] != flags:
            continue
        if words[6 * n + 4] or words[6 * n + 5]:
            return None  # a glibc-hwcaps variant
        value = start + words[6 * n + 2]
        end = data.find(b"\0", value)
        return os.fsdecode(data[value:end]) if end > value else None
    return None


def _module_file(name: str) -> str | None:
    """Where `import name` finds a top-level module, without importing it: as the path
    finder looks, the first sys.path directory holding the package `name/__init__.py`,
    an extension module or `name.py` (the launcher's sys.path: the package's directory,
    then site-packages). None if an entry it cannot look into (an existing zip) comes
    first, or none has it."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    names = (os.path.join(name, "__init__.py"),
             *(name + suffix for suffix in _imp.extension_suffixes()), name + ".py")  # fmt: skip
    for entry in sys.path:
        directory = entry or "."
        if os.path.isfile(directory):
            return None
        for candidate in names:
            path = os.path.join(directory, candidate)
            if os.path.isfile(path):
                return path
    return None


def _loaded_as_predicted(lib: str, module: str) -> bool:
    """After a build (pyseccomp imported, libseccomp loaded): are they the files the key
    named? The libseccomp mapped in this process must be the file `lib` resolves to, and
    pyseccomp's __file__ must be `module`. Else nothing is stored."""
    imported = getattr(sys.modules.get("pyseccomp"), "__file__", None)
    if imported is None or os.path.realpath(imported) != os.path.realpath(module):
        LOG.debug(f"seccomp cache: pyseccomp is not {module}: not stored")
        return False
    try:
        with open("/proc/self/maps", "rb") as f:
            maps = f.read().decode("utf-8", "surrogateescape")
    except OSError:
        return False
    mapped = {
        line.split(None, 5)[5] for line in maps.splitlines()
        if line.count(" ") >= 5 and "/libseccomp.so" in line
    }  # fmt: skip
    if mapped != {os.path.realpath(lib)}:
        LOG.debug(f"seccomp cache: libseccomp loaded from {sorted(mapped)}, not {lib}")
        return False
    return True


# --- entries -------------------------------------------------------------------------


def _open_dir(path: str) -> int | None:
    """The cache directory, if it is one of root's that only root can write to."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if st.st_uid != 0 or st.st_mode & 0o022:
        os.close(fd)
        LOG.debug(f"seccomp cache {path}: not root's or writable by others: not used")
        return None
    return fd


def _lookup(path: str, name: str, key: bytes) -> seccomp.Filter | None:
    """The filter of a valid entry for `key`, its build's log lines logged again."""
    dir_fd = _open_dir(path)
    if dir_fd is None:
        return None
    try:
        payload = _read(dir_fd, name, key)
    finally:
        os.close(dir_fd)
    decoded = _decode(payload) if payload is not None else None
    if decoded is None:
        if payload is not None:
            LOG.debug(f"seccomp cache: entry {name} does not decode: rebuilt")
        return None
    filt, lines = decoded
    for level, msg in lines:
        if level == "debug":
            LOG.debug(msg)
        else:
            LOG.warning(msg)
    return filt


def _read(dir_fd: int, name: str, key: bytes) -> bytes | None:
    """The payload of the entry `name`, if it passes every check of the module docstring."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)  # fmt: skip
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP: a symlink
        LOG.debug(f"seccomp cache: entry {name}: {e.strerror}: rebuilt")
        return None
    try:
        st = os.fstat(fd)
        trusted = stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_nlink == 1
        if not trusted or st.st_mode & 0o022 or st.st_size > MAX_ENTRY:
            LOG.debug(f"seccomp cache: entry {name}: not a file of root's alone: rebuilt")
            return None
        data = os.read(fd, st.st_size + 1)  # one more: a file grown meanwhile fails below
    finally:
        os.close(fd)
    length = int.from_bytes(data[44:48], "little")
    header_ok = data[:8] == MAGIC and int.from_bytes(data[8:12], "little") == FORMAT
    if not header_ok or data[12:44] != key or len(data) != HEADER + length:
        LOG.debug(f"seccomp cache: entry {name}: another format, key or length: rebuilt")
        return None
    payload = data[HEADER:]
    if _sha256(payload) != data[48:80]:
        LOG.debug(f"seccomp cache: entry {name}: checksum mismatch: rebuilt")
        return None
    return payload


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _text(s: str) -> bytes:
    raw = s.encode("utf-8", "surrogatepass")  # a JSON string may hold a lone surrogate
    return _u32(len(raw)) + raw


def _encode(key: bytes, filt: seccomp.Filter, lines: list[tuple[str, str]]) -> bytes | None:
    """The entry for a built filter (None if it would be larger than MAX_ENTRY). Payload:
    flags, listens (1 byte), listener, metadata, the log lines (count, then level byte
    and text each), the program (length, bytes); integers u32 little-endian, texts a u32
    length and UTF-8."""
    parts = [_u32(filt.flags), b"\1" if filt.listener is not None else b"\0",
             _text(filt.listener or ""), _text(filt.metadata), _u32(len(lines))]  # fmt: skip
    for level, msg in lines:
        parts += [level[:1].encode(), _text(msg)]
    program = filt.program_bytes()
    parts += [_u32(len(program)), program]
    payload = b"".join(parts)
    if HEADER + len(payload) > MAX_ENTRY:
        return None
    return b"".join([MAGIC, _u32(FORMAT), key, _u32(len(payload)), _sha256(payload), payload])


class _Reader:
    """A cursor over a payload; ValueError past its end."""

    __slots__ = ("data", "at")

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def raw(self, size: int) -> bytes:
        if self.at + size > len(self.data):
            raise ValueError("past the end")
        self.at += size
        return self.data[self.at - size : self.at]

    def u32(self) -> int:
        return int.from_bytes(self.raw(4), "little")

    def text(self) -> str:
        return self.raw(self.u32()).decode("utf-8", "surrogatepass")


def _decode(payload: bytes) -> tuple[seccomp.Filter, list[tuple[str, str]]] | None:
    """What _encode stored (None for anything else: a checked payload of ours always
    decodes, so this guards against our own bugs)."""
    r = _Reader(payload)
    try:
        flags, listens, listener, metadata = r.u32(), r.raw(1) == b"\1", r.text(), r.text()
        lines = [(_LEVELS[r.raw(1)], r.text()) for _ in range(r.u32())]
        program = r.raw(r.u32())
    except (ValueError, KeyError):  # UnicodeDecodeError is a ValueError
        return None
    if r.at != len(payload) or not program or len(program) % 8:
        return None
    filt = seccomp.Filter.from_bytes(program, flags, listener if listens else None, metadata)
    return filt, lines


def _store(root: str, name: str, entry: bytes) -> None:
    """Write the entry (module docstring: a temporary file renamed over it); failures are
    debug lines."""
    path = os.path.join(root, DIR_NAME)
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        LOG.debug(f"seccomp cache {path}: {e.strerror}: not stored")
        return
    dir_fd = _open_dir(path)
    if dir_fd is None:
        return
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        _write_new(dir_fd, tmp, entry)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        LOG.debug(f"seccomp cache: stored entry {name}")
    except OSError as e:
        LOG.debug(f"seccomp cache: entry {name}: {e.strerror}: not stored")
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
    finally:
        os.close(dir_fd)


def _write_new(dir_fd: int, name: str, data: bytes) -> None:
    """Create `name` afresh (a file a killed writer with our pid left is replaced)."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
