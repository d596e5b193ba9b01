"""The compiled-filter cache for linux.seccomp (issue #12 item 2,
ociruntime/security/seccomp_cache.py): a cached program is the fresh compile byte for
byte, a container made from it behaves the same (errno, the -ENOSYS stub, the notify fd),
an entry that fails any check is ignored and rebuilt, a hit imports no pyseccomp, and
parallel creates of a cold profile leave one valid entry."""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ociruntime.container.state import validate_id
from ociruntime.errors import RuntimeFailure
from ociruntime.security import seccomp, seccomp_cache
from testkit.processes import SECCOMP_CACHE_DIR
from tests.test_bad_input import (  # noqa: F401 - the autouse fixture checks for leftover processes
    new_log_lines,
    no_leftover_processes,
)
from tests.test_hot_path import HEAVY, imported_modules
from tests.test_parity import ENOSYS, EPERM, enosys_bundle, rawsyscall  # noqa: F401 - a fixture
from tests.test_seccomp import (  # noqa: F401 - agent: a fixture
    DENY_MKDIR,
    MKDIR_SCRIPT,
    NOTIFY_SCRIPT,
    PODMAN_PROFILE,
    X86,
    _notified,
    agent,
    notify_profile,
    podman_profile_to_config,
    seccomp_bundle,
)

NATIVE = {"x86_64": X86, "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]}[platform.machine()]


def podman_profile() -> dict:
    if not os.path.exists(PODMAN_PROFILE):
        pytest.skip("containers-common not installed")
    with open(PODMAN_PROFILE) as f:
        profile = json.load(f)
    caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID"]
    return podman_profile_to_config(profile, caps)


#: Profiles the in-process checks compile: flags, a listener, unknown names (debug lines),
#: an architecture without the named syscalls (a warning on x86_64), the ENOSYS stub.
PROFILES = {
    "deny-mkdir-with-flags": lambda: dict(
        DENY_MKDIR, flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    ),
    "notify": lambda: notify_profile("/run/agent.sock", metadata="m\u00e9ta"),
    "unknown-names-and-archs": lambda: {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": [*NATIVE, "SCMP_ARCH_AARCH64", "SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "no_such_syscall"], "action": "SCMP_ACT_ALLOW"}],
    },
    "podman-default": podman_profile,
}


def entries(root: str) -> list[str]:
    return sorted(os.listdir(Path(root) / SECCOMP_CACHE_DIR))


def entry_is_valid(root: str, name: str) -> bool:
    """The runtime's own checks (owner, mode, links, header, key, length, checksum)."""
    dir_fd = os.open(Path(root) / SECCOMP_CACHE_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        payload = seccomp_cache._read(dir_fd, name, bytes.fromhex(name))
    finally:
        os.close(dir_fd)
    return payload is not None and seccomp_cache._decode(payload) is not None


class Lines:
    """Stands in for the runtime's LOG: what was logged, the cache's own lines apart."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def debug(self, msg: str) -> None:
        self.lines.append(("debug", msg))

    def warning(self, msg: str) -> None:
        self.lines.append(("warning", msg))

    def build_lines(self) -> list[tuple[str, str]]:
        return [line for line in self.lines if not line[1].startswith("seccomp cache")]


@pytest.mark.pure
def test_the_cache_dir_is_no_container_id() -> None:
    """No container can take the cache's name (so `list` skips it, and create, state or
    delete refuse it), and testkit's leftover checks name the same directory."""
    assert seccomp_cache.DIR_NAME == SECCOMP_CACHE_DIR
    with pytest.raises(RuntimeFailure, match="invalid container ID format"):
        validate_id(seccomp_cache.DIR_NAME)


@pytest.mark.parametrize("name", PROFILES)
def test_a_cached_program_is_the_fresh_compile(tmp_path, monkeypatch, name) -> None:
    """Miss (built, stored), then hit (read; building again would fail): the hit's program
    is byte for byte a fresh compile's and the stored one, with the same flags, listener
    and metadata, and it logs what the build logged."""
    profile, root = PROFILES[name](), str(tmp_path / "root")
    fresh = seccomp.build(profile, Lines())
    miss_log, hit_log = Lines(), Lines()
    monkeypatch.setattr(seccomp_cache, "LOG", miss_log)
    stored = seccomp_cache.filter_for(profile, root)
    assert any("stored entry" in msg for _, msg in miss_log.lines), miss_log.lines
    (entry,) = entries(root)
    assert entry_is_valid(root, entry)
    monkeypatch.setattr(seccomp, "build", lambda *a: pytest.fail("built again: not a hit"))
    monkeypatch.setattr(seccomp_cache, "LOG", hit_log)
    hit = seccomp_cache.filter_for(profile, root)
    assert hit.program_bytes() == fresh.program_bytes() == stored.program_bytes()
    assert len(hit) > 0
    assert (hit.flags, hit.listener, hit.metadata) == (fresh.flags, fresh.listener,
                                                      fresh.metadata)  # fmt: skip
    assert hit_log.build_lines() == miss_log.build_lines()
    assert f"seccomp cache: the filter from entry {entry}" in [m for _, m in hit_log.lines]
    if name == "unknown-names-and-archs":  # aarch64 has no mkdir: a warning
        assert ("debug", "unknown seccomp syscall 'no_such_syscall' ignored") in hit_log.lines
        warning = ("warning", "seccomp: could not find any syscalls for arch SCMP_ARCH_AARCH64")
        assert warning in hit_log.lines
    mode = os.stat(Path(root) / SECCOMP_CACHE_DIR).st_mode
    assert stat.S_IMODE(mode) == 0o700


def test_another_profile_or_no_root_misses(tmp_path, monkeypatch) -> None:
    """One entry per profile (a changed errno is another key); validate (no root) and a
    non-root caller never touch the cache."""
    root = str(tmp_path / "root")
    seccomp_cache.filter_for(DENY_MKDIR, root)
    changed = json.loads(json.dumps(DENY_MKDIR))
    changed["syscalls"][0]["errnoRet"] = 13
    seccomp_cache.filter_for(changed, root)
    assert len(entries(root)) == 2
    seccomp_cache.filter_for(DENY_MKDIR, None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    seccomp_cache.filter_for(notify_profile("/x"), root)
    assert len(entries(root)) == 2


# --- real containers -----------------------------------------------------------------


def run_logged(runtime, bundle, *command: str, **kw) -> tuple[object, list[str]]:
    """`run` the bundle (or another command) with --debug: its result and log messages.
    `kw`: subprocess.run's (env, cwd)."""
    offset = os.path.getsize(runtime.log) if os.path.exists(runtime.log) else 0
    args = command or ("run", "--bundle", str(bundle.path), runtime.new_id())
    r = runtime("--debug", *args, **kw)
    return r, [json.loads(line)["msg"] for line in new_log_lines(runtime, offset)]


def hit(messages: list[str]) -> bool:
    return any(m.startswith("seccomp cache: the filter from entry") for m in messages)


def stored(messages: list[str]) -> bool:
    return any(m.startswith("seccomp cache: stored entry") for m in messages)


def test_a_cached_filter_behaves_as_a_fresh_one(runtime, make_bundle, rawsyscall) -> None:  # noqa: F811
    """The -ENOSYS stub's profile, run twice: the first create compiles and stores it,
    the second loads the entry; both see ENOSYS above the profile's highest syscall, the
    default EPERM for a known one it leaves out, and getpid allowed."""
    bundle = enosys_bundle(make_bundle, rawsyscall, architectures=True)
    first, cold = run_logged(runtime, bundle)
    second, warm = run_logged(runtime, bundle)
    assert first.returncode == second.returncode == 0, (first, second)
    assert stored(cold) and not hit(cold), cold
    assert hit(warm) and not stored(warm), warm
    errnos = [int(line.split("=")[1]) for line in second.stdout.split()]
    assert errnos == [ENOSYS, ENOSYS, ENOSYS, EPERM, 0], second.stdout
    assert second.stdout == first.stdout
    assert len(entries(runtime.root)) == 1


def test_exec_loads_the_entry_create_stored(runtime, make_bundle) -> None:
    """exec builds the container's filter too: create's entry serves it."""
    bundle = seccomp_bundle(make_bundle, "sleep 1000", DENY_MKDIR)
    cid = runtime.new_id()
    _, created = run_logged(runtime, bundle, "create", "--bundle", str(bundle.path), cid)
    assert stored(created), created
    runtime("start", cid, check=True)
    r, execed = run_logged(runtime, bundle, "exec", cid, "sh", "-c", "mkdir /tmp/y; echo $?")
    assert (r.returncode, r.stdout) == (0, "1\n"), r
    assert "Operation not permitted" in r.stderr
    assert hit(execed) and not stored(execed), execed
    assert runtime("list", "-q").stdout == f"{cid}\n"  # the cache dir is no container


def test_the_notify_fd_reaches_the_agent_from_a_cached_filter(runtime, make_bundle, agent) -> None:  # noqa: F811
    """NEW_LISTENER and the listener come from the entry: the agent gets the fd and
    answers mkdir (ENOSPC) for the cold and the warm create alike."""
    bundle = seccomp_bundle(make_bundle, NOTIFY_SCRIPT, notify_profile(agent.path))
    expected = (
        "mkdir: can't create directory '/tmp/x': No space left on device\nmkdir=1\n"
        "ls: /tmp/x: No such file or directory\nhi\nnotify-fds=0\n"
    )
    for n, was_cached in ((1, False), (2, True)):
        r, messages = run_logged(runtime, bundle)
        assert (r.returncode, r.stdout) == (0, expected), r
        assert hit(messages) is was_cached, messages
        state = agent.wait_for(n)[-1]
        assert (state["fds"], state["metadata"]) == (["seccompFd"], "meta-1")
    assert _notified(agent) == [("mkdir", "/tmp/x")] * 2


def _another_profiles_entry(tmp_path: Path) -> bytes:
    scratch = str(tmp_path / "scratch")
    seccomp_cache.filter_for(dict(DENY_MKDIR, defaultErrnoRet=13), scratch)
    (name,) = entries(scratch)
    return (Path(scratch) / SECCOMP_CACHE_DIR / name).read_bytes()


def _spoil(path: Path, case: str, tmp_path: Path) -> None:
    """Spoil the entry at `path` as `case` says (a hard link's second name is
    `hard-link` beside it: it must be on the same filesystem)."""
    data = path.read_bytes()
    if case == "corrupted":  # one bit of the program flipped
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 1]) + data[-2:])
    elif case == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif case == "foreign-key":
        path.write_bytes(_another_profiles_entry(tmp_path))
    elif case == "not-root-owned":
        os.chown(path, 1000, 1000)
    elif case == "group-writable":
        os.chmod(path, 0o620)
    elif case == "hard-linked":
        os.link(path, path.with_name("hard-link"))
    elif case == "symlink":  # to a valid copy of itself
        shutil.copy2(path, tmp_path / "target")
        path.unlink()
        path.symlink_to(tmp_path / "target")


SPOILED = ("corrupted", "truncated", "foreign-key", "not-root-owned", "group-writable",
           "hard-linked", "symlink")  # fmt: skip


@pytest.mark.parametrize("case", SPOILED)
def test_a_spoiled_entry_is_ignored_and_rebuilt(runtime, make_bundle, tmp_path, case) -> None:
    """Each is ignored (a debug line says why), the container works as before, and the
    entry is replaced by a valid one of root's that the next create hits."""
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, DENY_MKDIR)
    first, _ = run_logged(runtime, bundle)
    (name,) = entries(runtime.root)
    path = Path(runtime.root) / SECCOMP_CACHE_DIR / name
    _spoil(path, case, tmp_path)
    again, messages = run_logged(runtime, bundle)
    assert again.returncode == 0 and again.stdout == first.stdout, again
    assert "mkdir=1" in again.stdout and "Operation not permitted" in again.stdout
    assert any(f"entry {name}" in m and "rebuilt" in m for m in messages), messages
    assert stored(messages) and not hit(messages), messages
    if case == "hard-linked":  # the old file keeps its second name: ours is a new one
        assert path.with_name("hard-link").stat().st_nlink == 1
        path.with_name("hard-link").unlink()
    st = path.lstat()
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_nlink) == (0, 1)
    assert stat.S_IMODE(st.st_mode) == 0o600 and entries(runtime.root) == [name]
    assert entry_is_valid(runtime.root, name)
    _, messages = run_logged(runtime, bundle)
    assert hit(messages), messages


def test_a_cache_dir_others_can_write_is_not_used(runtime, make_bundle) -> None:
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, DENY_MKDIR)
    first, _ = run_logged(runtime, bundle)
    (name,) = entries(runtime.root)
    os.chmod(Path(runtime.root) / SECCOMP_CACHE_DIR, 0o777)
    again, messages = run_logged(runtime, bundle)
    assert again.returncode == 0 and again.stdout == first.stdout, again
    assert not hit(messages) and not stored(messages), messages
    assert any("writable by others: not used" in m for m in messages), messages
    assert entries(runtime.root) == [name]


@pytest.mark.pure
@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86_64's hwcaps subdirectories")
def test_which_library_paths_leave_libseccomp_to_the_ld_cache(tmp_path, monkeypatch) -> None:
    """LD_LIBRARY_PATH keeps the cache only where ld.so could not find libseccomp in it:
    containerd's own (`/opt/containerd/lib:`, the empty entry being the working
    directory) does; a directory with the library, or with a subdirectory ld.so searches
    first, or a $ORIGIN token, does not."""
    soname = seccomp.LIBSECCOMP_SONAME

    def clear(value: str | None) -> bool:
        if value is None:
            monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
        else:
            monkeypatch.setenv("LD_LIBRARY_PATH", value)
        return seccomp_cache._library_path_clear(soname, "x86_64")

    empty, with_lib, with_tls, bundle = (tmp_path / n for n in ("e", "l", "t", "b"))
    for d in (empty, with_lib, with_tls, bundle / "rootfs" / "lib"):
        d.mkdir(parents=True)
    (with_lib / soname).write_bytes(b"")
    (with_tls / "tls").mkdir()
    (bundle / "rootfs" / "lib" / soname).write_bytes(b"")  # not a directory ld.so searches
    monkeypatch.chdir(bundle)
    assert clear(None) and clear("")
    assert clear(f"{empty}:") and clear(f"/nonexistent;{empty}")
    assert not clear(f"{empty}:{with_lib}") and not clear(f"{with_tls}")
    assert not clear("$ORIGIN/../lib") and not clear(f"{empty}:$LIB")
    monkeypatch.chdir(with_lib)
    assert not clear(f"{empty}:"), "the empty entry is the working directory"
    monkeypatch.setenv("LD_LIBRARY_PATH", str(empty))
    assert not seccomp_cache._library_path_clear(soname, "riscv64")


def test_containerds_library_path_uses_the_cache(runtime, make_bundle, tmp_path) -> None:
    """The runtime as containerd's shim starts it (containerd's opt plugin prepends
    /opt/containerd/lib to LD_LIBRARY_PATH, leaving an empty entry; the working directory
    is the bundle): stored, then a hit. With a copy of libseccomp in a directory of
    LD_LIBRARY_PATH, ld.so would load that copy: no cache, and the filter still works."""
    bundle = seccomp_bundle(make_bundle, MKDIR_SCRIPT, DENY_MKDIR)
    libdir = tmp_path / "opt-lib"
    libdir.mkdir()
    env = dict(os.environ, LD_LIBRARY_PATH=f"{libdir}:")
    first, cold = run_logged(runtime, bundle, env=env, cwd=bundle.path)
    second, warm = run_logged(runtime, bundle, env=env, cwd=bundle.path)
    assert first.returncode == second.returncode == 0, (first, second)
    assert stored(cold) and hit(warm), (cold, warm)
    assert second.stdout == first.stdout
    shutil.copy(seccomp_cache._libseccomp_file(seccomp.LIBSECCOMP_SONAME.encode(),
                                               seccomp_cache._LD_FLAGS[platform.machine()]),
                libdir / seccomp.LIBSECCOMP_SONAME)  # fmt: skip
    third, messages = run_logged(runtime, bundle, env=env, cwd=bundle.path)
    assert third.returncode == 0 and third.stdout == first.stdout, third
    assert not hit(messages) and not stored(messages), messages


def test_a_hit_imports_no_pyseccomp(runtime, make_bundle) -> None:
    """Through the installed launcher under -X importtime: the cold create imports
    pyseccomp (the measurement sees it), the warm one neither it nor anything heavy."""
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["linux"]["seccomp"] = podman_profile()
    bundle.write()
    cold = imported_modules(runtime, "create", "--bundle", str(bundle.path), runtime.new_id())
    assert "pyseccomp" in cold
    warm = imported_modules(runtime, "create", "--bundle", str(bundle.path), runtime.new_id())
    assert "ociruntime.security.seccomp_cache" in warm
    assert not warm & (HEAVY | {"ctypes.util", "_hashlib"}), sorted(warm & HEAVY)


def test_parallel_creates_of_a_cold_profile(runtime, make_bundle) -> None:
    """10 creates at once, none finding an entry: all succeed and leave one valid entry
    (each writes a whole temporary file and renames it; the last rename wins)."""
    bundle = make_bundle(["sleep", "1000"])
    bundle.config["linux"]["seccomp"] = podman_profile()
    bundle.write()
    ids = [runtime.new_id() for _ in range(10)]
    with ThreadPoolExecutor(len(ids)) as pool:
        results = list(pool.map(
            lambda cid: runtime("create", "--bundle", str(bundle.path), cid), ids
        ))  # fmt: skip
    assert [r.returncode for r in results] == [0] * len(ids), [r.stderr for r in results]
    (name,) = entries(runtime.root)
    assert entry_is_valid(runtime.root, name)
    _, messages = run_logged(runtime, bundle, "create", "--bundle", str(bundle.path),
                             runtime.new_id())  # fmt: skip
    assert hit(messages), messages
    assert runtime("list", "-q").stdout.split() == sorted(runtime.ids)
