"""`process.terminal`: the container's pty, made by its init, and the host's end of it.

Imported only when a config asks for a terminal, so what it needs (`_socket`, `termios`,
`fcntl`: ~0.7 ms) costs nothing on the hot path. `create` imports it before the fork: the
init finds it in memory after pivot_root, and calls it through the `InitConsole` it is
given (no import statement runs in the init).

The protocol is runc's (libcontainer's setupConsole and utils.SendFds):

- `create --console-socket PATH` connects to PATH before forking (PATH is on the host);
  the init inherits the connected socket.
- The init, after pivot_root (so /dev/ptmx is the container's own devpts, through the
  pts/ptmx symlink) and before the rootfs turns read-only: opens /dev/ptmx, unlocks it,
  opens the slave /dev/pts/N, bind-mounts it on /dev/console, applies
  `process.consoleSize`, sends the master as one SCM_RIGHTS message whose payload is its
  name, "/dev/ptmx", then makes the slave its controlling terminal and its fds 0, 1, 2.
- `run` without `-d` makes a socketpair instead, receives the master itself and proxies
  it to the caller's terminal (`Attached`) until the container exits.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import select
import stat
import sys
import termios
import time

from ociruntime.errors import RuntimeFailure, field_error, pointer
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc
from ociruntime.rootfs.safepath import bind_fd, bind_target

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable

TIOCGPTN = 0x80045430  # _IOR('T', 0x30, unsigned int): the pty number
TIOCSPTLCK = 0x40045431  # _IOW('T', 0x31, int): (un)lock the slave
TIOCGPTPEER = 0x5441  # _IO('T', 0x41): open the slave from the master, by no path
MASTER_NAME = b"/dev/ptmx"  # what runc sends with the fd (the master's file name)
MAX_NAME_LEN = 4096  # runc's utils.MaxNameLen
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path, minus the terminating NUL
_WINSIZE_MAX = 0xFFFF  # struct winsize has unsigned shorts


def check_config(proc: dict) -> None:
    """What create can refuse before anything exists."""
    size = proc.get("consoleSize") or {}
    for key in ("height", "width"):
        if size.get(key, 0) > _WINSIZE_MAX:
            raise field_error(
                pointer("process", "consoleSize", key),
                f"{size[key]} is more than a terminal can have ({_WINSIZE_MAX})",
            )


class InitConsole:
    """The init's end of the console socket: connected to --console-socket, or one end of
    `run`'s socketpair."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock

    def close(self) -> None:
        self.sock.close()

    def setup(self, console_size: dict | None, uid: int, console: bool = True) -> None:
        """In the init only, inside its rootfs (after pivot_root): the pty, /dev/console,
        the master sent, the slave as controlling terminal and stdio. `exec` calls it too
        (console=False: its pty is not bound on /dev/console, as with runc)."""
        try:
            master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        except OSError as e:
            raise _failure(
                f"open /dev/ptmx: {e.strerror} (a terminal needs a devpts mount on /dev/pts)"
            ) from None
        try:
            slave, slave_path = _open_slave(master)
            _step("chown " + slave_path, _chown_to_user, slave, uid)
            if console:
                _step("/dev/console", _mount_console, slave)
            if console_size and console_size.get("height") and console_size.get("width"):
                size = (console_size["height"], console_size["width"])
                _step("/process/consoleSize", termios.tcsetwinsize, master, size)
            _step("sending the pty master to the console socket", _send_fd, self.sock, master)
            _step("ioctl(TIOCSCTTY)", fcntl.ioctl, slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
        finally:
            os.close(master)
            self.sock.close()


def _failure(reason: str) -> RuntimeFailure:
    """A failure of the terminal /process/terminal asked for (exec's too: its --tty is
    that field of the process it runs)."""
    return field_error(pointer("process", "terminal"), reason)


def _step(what: str, call: Callable[..., object], *args: object) -> None:
    try:
        call(*args)
    except (OSError, termios.error) as e:
        reason = getattr(e, "strerror", None) or (e.args[-1] if e.args else e)
        raise _failure(f"{what}: {reason}") from None


def _open_slave(master: int) -> tuple[int, str]:
    try:
        fcntl.ioctl(master, TIOCSPTLCK, bytes(4))  # unlockpt
        number = int.from_bytes(fcntl.ioctl(master, TIOCGPTN, bytes(4)), sys.byteorder)
    except OSError as e:
        raise _failure(f"unlocking the pty: {e.strerror}") from None
    path = f"/dev/pts/{number}"
    try:  # the master's own peer: /dev/pts/N is a name the container could reshape
        return fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC), path
    except OSError as e:
        raise _failure(f"open {path}: {e.strerror}") from None


def _chown_to_user(slave: int, uid: int) -> None:
    """As runc (fixStdioPermissions): the user owns its terminal; the gid (devpts' gid=5)
    stays."""
    if os.fstat(slave).st_uid != uid:
        os.fchown(slave, uid, -1)


def _mount_console(slave: int) -> None:
    """Bind the slave on /dev/console, creating it (0666) if missing, as runc does. By fd
    on both ends (CVE-2025-52565: checking a path, then mounting by it, leaves a window to
    swap in a symlink): the slave fd itself, and /dev/console opened with no symlink
    followed, which must be a file or a device."""
    dev = sc.openat2(k.AT_FDCWD, "/dev", os.O_PATH | os.O_DIRECTORY, 0, k.RESOLVE_NO_SYMLINKS)
    try:
        target = bind_target(dev, "console")
    finally:
        os.close(dev)
    try:
        bind_fd(slave, target)
    finally:
        os.close(target)


def _send_fd(sock: _socket.socket, fd: int) -> None:
    """utils.SendFds: the name as the payload, the fd as SCM_RIGHTS."""
    rights = fd.to_bytes(4, sys.byteorder, signed=True)
    sock.sendmsg([MASTER_NAME], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, rights)])


# --- the host side -----------------------------------------------------------------------


def connect(path: str) -> InitConsole:
    """`--console-socket PATH`, connected in `create` before the fork."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    try:
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            sock.connect(path)
        else:  # too long for a sockaddr_un: through an fd of its directory
            dir_fd = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_CLOEXEC)
            try:
                sock.connect(f"/proc/self/fd/{dir_fd}/{os.path.basename(path)}")
            finally:
                os.close(dir_fd)
    except OSError as e:
        sock.close()
        raise RuntimeFailure(f"--console-socket {path}: {_connect_error(path, e)}") from None
    return InitConsole(sock)


def _connect_error(path: str, err: OSError) -> str:
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return "not a socket"
    except OSError:
        pass
    return f"connect: {err.strerror or err}"


def pair() -> tuple[InitConsole, _socket.socket]:
    """For an attached `run`: (the init's end, ours), both close-on-exec."""
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    return InitConsole(theirs), ours


def receive_master(sock: _socket.socket) -> int:
    """The master the init sent (utils.RecvFd), close-on-exec."""
    try:
        _, ancillary, _, _ = sock.recvmsg(
            MAX_NAME_LEN, _socket.CMSG_SPACE(4), _socket.MSG_CMSG_CLOEXEC
        )
    except OSError as e:
        raise _failure(f"receiving the pty master: {e.strerror}") from None
    fds = [
        int.from_bytes(data[i : i + 4], sys.byteorder, signed=True)
        for level, kind, data in ancillary
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS
        for i in range(0, len(data) - 3, 4)
    ]
    if len(fds) != 1:
        for fd in fds:
            os.close(fd)
        raise _failure("the container init sent no pty master")
    return fds[0]


def _raw(attrs: list) -> list:
    """cfmakeraw as containerd/console (runc) does it: OPOST stays, so the caller's
    terminal still turns the container's bare newlines into CR LF."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    t = termios
    iflag &= ~(t.IGNBRK | t.BRKINT | t.PARMRK | t.ISTRIP | t.INLCR | t.IGNCR | t.ICRNL | t.IXON)
    lflag &= ~(t.ECHO | t.ECHONL | t.ICANON | t.ISIG | t.IEXTEN)
    cflag = (cflag & ~(t.CSIZE | t.PARENB)) | t.CS8
    cc = list(cc)
    cc[t.VMIN], cc[t.VTIME] = 1, 0
    return [iflag, oflag, cflag, lflag, ispeed, ospeed, cc]


class Attached:
    """`run` without -d: the caller's stdin and stdout <-> the container's pty master."""

    _CHUNK = 65536
    _DRAIN_IDLE_MS = 200  # after the exit: output still held by a process outside the
    _DRAIN_MAX_S = 2.0  # container's PID namespace is not waited for longer than this

    def __init__(self, master: int) -> None:
        self.master = master
        # The terminal whose size the container follows: like runc's host console.
        self.host = next((fd for fd in (0, 1, 2) if os.isatty(fd)), None)
        self.saved: list | None = None
        self.out_ok = True

    def prepare(self) -> None:
        """Before the process starts: the pty translates no newlines (runc's ClearONLCR;
        the caller's terminal does) and takes the caller's size."""
        try:
            attrs = termios.tcgetattr(self.master)
            attrs[1] &= ~termios.ONLCR
            termios.tcsetattr(self.master, termios.TCSANOW, attrs)
        except termios.error as e:
            raise _failure(f"the pty master: {e.args[-1]}") from None
        self.resize()

    def resize(self) -> None:
        """The caller's size onto the container's terminal (initially and on SIGWINCH)."""
        if self.host is None:
            return
        try:
            termios.tcsetwinsize(self.master, termios.tcgetwinsize(self.host))
        except (OSError, termios.error):
            pass  # the caller's terminal went away: nothing to follow

    def run(self, pid: int) -> int:
        """Proxy until the container's init exits; returns its wait status. The caller's
        stdin is raw meanwhile (if a terminal), restored whatever happens."""
        if os.isatty(0):
            try:
                self.saved = termios.tcgetattr(0)
                termios.tcsetattr(0, termios.TCSANOW, _raw(self.saved))
            except termios.error:
                self.saved = None  # proxy anyway, cooked
        pidfd = os.pidfd_open(pid)
        try:
            os.set_blocking(self.master, False)
            master_open = self._copy(pidfd)
            _, status = os.waitpid(pid, 0)
            if master_open:
                self._drain()
            return status
        finally:
            os.close(pidfd)
            self.close()

    def close(self) -> None:
        if self.saved is not None:
            try:
                termios.tcsetattr(0, termios.TCSADRAIN, self.saved)
            except termios.error:
                pass
            self.saved = None
        if self.master >= 0:
            os.close(self.master)
            self.master = -1

    def _copy(self, pidfd: int) -> bool:
        """stdin -> master and master -> stdout until the init exits; returns whether the
        master may still hold output."""
        pending = b""  # read from stdin, not yet taken by the pty
        stdin_open, master_open = True, True
        line_open = False  # the last input did not end a line
        while True:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            if master_open:
                poller.register(self.master, select.POLLIN | (select.POLLOUT if pending else 0))
            if stdin_open and len(pending) < self._CHUNK:
                poller.register(0, select.POLLIN)
            events = dict(poller.poll())
            if pidfd in events:
                return master_open
            ev = events.get(self.master, 0)
            if ev & ~select.POLLOUT and not self._output():
                master_open, pending = False, b""
            if ev & select.POLLOUT and pending:
                try:
                    pending = pending[os.write(self.master, pending) :]
                except BlockingIOError:
                    pass
                except OSError:
                    master_open, pending = False, b""
            if 0 in events:
                try:
                    data = os.read(0, self._CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    pending += data if master_open else b""
                    line_open = not data.endswith(b"\n")
                else:
                    stdin_open = False
                    pending += self._eof(line_open)

    def _eof(self, line_open: bool) -> bytes:
        """What tells the container its input ended. A caller's terminal that closed hangs
        up (SIGHUP is forwarded): nothing. Otherwise (stdin a file or a pipe), the pty's EOF
        character, as script(1) does: twice if a line is pending (the first only ends it).
        runc has no such case: it refuses to run a terminal without one."""
        if os.isatty(0):
            return b""
        try:
            eof = termios.tcgetattr(self.master)[6][termios.VEOF]
        except termios.error:
            return b""
        eof = eof if isinstance(eof, bytes) else bytes([eof])
        return eof * (2 if line_open else 1)

    def _drain(self) -> None:
        poller = select.poll()
        poller.register(self.master, select.POLLIN)
        deadline = time.monotonic() + self._DRAIN_MAX_S
        while (left := deadline - time.monotonic()) > 0:
            if not poller.poll(min(self._DRAIN_IDLE_MS, int(left * 1000) + 1)):
                return
            if not self._output():
                return

    def _output(self) -> bool:
        """One read of the master to stdout; False once the container's side is closed."""
        try:
            data = os.read(self.master, self._CHUNK)
        except BlockingIOError:
            return True
        except OSError:  # EIO: no process has the terminal open any more
            return False
        if not data:
            return False
        self._write_out(data)
        return True

    def _write_out(self, data: bytes) -> None:
        while data and self.out_ok:
            try:
                data = data[os.write(1, data) :]
            except BlockingIOError:
                select.select([], [1], [])
            except OSError:
                self.out_ok = False  # stdout is gone: keep reading, so the container never blocks
