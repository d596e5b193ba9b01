"""runc-compatible logging: `--log FILE` with `--log-format text|json`.

containerd reads the JSON form (one object a line, keys `level`, `msg`, `time`, as logrus's
JSONFormatter writes them) to report runtime errors, so the shape matters; the stdlib
`logging` package is not used because importing it costs more than this whole module.
"""

import posix  # not os: the one-shot commands never load it (pathlite.py)
import sys
import time

from ociruntime import jsonlite
from ociruntime.errors import cut

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class Logger:
    """Writes records to the --log file (if any); errors also go to stderr as plain text."""

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.path = path
        self.fmt = fmt
        self.threshold = _LEVELS["debug" if debug else "info"]
        self._fd: int | None = None
        #: runc's log pipe: (read end, write end) for the stage being forked (see
        #: `child_pipe`); -1 for an end closed here
        self._pipe: tuple[int, int] | None = None
        self._to_pipe = False  # a stage: self._fd is the pipe's write end

    def _open(self) -> int | None:
        if self._fd is None and self.path:
            self._fd = posix.open(
                self.path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC, 0o644
            )
        return self._fd

    def child_pipe(self) -> None:
        """Before forking a stage that enters the container (the init, exec's I): with
        --log, a pipe for its records, as runc hands its init a log pipe. The stage
        cannot write the --log file itself: the path is the host's (relative to our cwd,
        or absent or read-only in the rootfs) and an open fd of it would be a host file
        reachable through /proc/<pid>/fd; a pipe is no file. Both ends close-on-exec
        (the stage's execve is its EOF) and non-blocking (a full pipe drops a record,
        never blocks nor fails the stage)."""
        if self.path and self._pipe is None:
            self._pipe = posix.pipe2(posix.O_CLOEXEC | posix.O_NONBLOCK)

    def use_pipe(self) -> None:
        """In the stage, before it can be seen: records go to the pipe `child_pipe` made
        (in the chosen format, each whole), none without --log; no file stays open."""
        if self._fd is not None:
            posix.close(self._fd)
        self._fd, self._to_pipe = None, True
        if self._pipe is None:
            self.path = None
            return
        read_end, self._fd = self._pipe
        posix.close(read_end)
        self._pipe = None

    def close_pipe(self) -> None:
        """In a stage whose parent stopped reading (`create` exits once the init is ready,
        where runc's init closes its log pipe too): close our end; from then on an error
        goes to stderr only, as runc's."""
        if self._to_pipe and self._fd is not None:
            posix.close(self._fd)
        self._fd, self._to_pipe, self.path = None, False, None

    def pipe_fds(self) -> tuple[int, ...]:
        """The fds a stage must keep open for `use_pipe`."""
        return () if self._pipe is None else (self._pipe[1],)

    def drain_child(self) -> None:
        """In the parent: copy what the stage wrote so far into the --log file; at its EOF
        (every writer exec'd or exited) close the pipe. Never blocks."""
        if self._pipe is None:
            return
        read_end, write_end = self._pipe
        if write_end >= 0:  # ours: only the stage's copies may keep it open
            posix.close(write_end)
            self._pipe = (read_end, -1)
        while True:
            try:
                data = posix.read(read_end, 65536)
            except BlockingIOError:
                return
            if not data:
                posix.close(read_end)
                self._pipe = None
                return
            fd = self._open()
            if fd is not None:
                posix.write(fd, data)

    def _format(self, level: str, msg: str) -> str:
        msg = cut(msg)  # whatever the caller quoted: one bounded line
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if self.fmt == "json":
            return jsonlite.dumps({"level": level, "msg": msg, "time": now}, compact=True) + "\n"
        return f"time={jsonlite.dumps(now)} level={level} msg={jsonlite.dumps(msg)}\n"

    def log(self, level: str, msg: str) -> None:
        if _LEVELS[level] < self.threshold:
            return
        fd = self._open()
        if fd is not None and self._to_pipe:
            try:
                posix.write(fd, self._format(level, msg).encode())
            except OSError:  # full, or the reader gone (create exited): logging never fails
                pass
        elif fd is not None:
            posix.write(fd, self._format(level, msg).encode())
        elif level == "debug":
            sys.stderr.write(self._format(level, msg))

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

    def stage(self, name: str) -> None:
        """--debug: where an operation is, as CLOCK_MONOTONIC in ms (the clock of Python's
        perf_counter), so that `bench/bench.py --profile` lays out a command's time
        against its own start; from a forked stage too (through the log pipe). Free
        without --debug: one comparison."""
        if self.threshold <= 10:
            self.log("debug", f"stage {name} at {time.monotonic_ns() / 1e6:.3f} ms")

    def warning(self, msg: str) -> None:
        """To the --log file when there is one, else to stderr only when that is a
        terminal (a person). Engines hand the runtime the container's own stdio (podman's
        conmon without --log), where a warning would land in the container's output."""
        if self.path:
            self.log("warning", msg)
        elif sys.stderr.isatty():
            sys.stderr.write(self._format("warning", msg))

    def error(self, msg: str) -> None:
        """Fatal errors, as runc reports them: with --log, a record in the file (what
        containerd reads) and the bare message on stderr; without, the formatted record
        on stderr (what podman reads). One line either way."""
        if self.path:
            self.log("error", msg)
            sys.stderr.write(cut(msg) + "\n")
        else:
            sys.stderr.write(self._format("error", msg))
        sys.stderr.flush()


#: The process-wide logger, configured once by the CLI.
LOG = Logger()


def configure(path: str | None, fmt: str, debug: bool) -> None:
    LOG.path, LOG.fmt = path, fmt
    LOG.threshold = _LEVELS["debug" if debug else "info"]
