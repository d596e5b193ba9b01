"""runc-compatible logging: `--log FILE` with `--log-format text|json`.

containerd reads the JSON form (one object a line, keys `level`, `msg`, `time`, as logrus's
JSONFormatter writes them) to report runtime errors, so the shape matters; the stdlib
`logging` package is not used because importing it costs more than this whole module.
"""

from __future__ import annotations

import os
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

    def _open(self) -> int | None:
        if self._fd is None and self.path:
            self._fd = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
        return self._fd

    def forget_file(self) -> None:
        """In a process the container can see: the --log path is the host's (inside the
        rootfs it would name a file of the container's), and an open fd of it would be
        a host file reachable through /proc/<pid>/fd. Later records go nowhere."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = None
        self.path = None

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
        if fd is not None:
            os.write(fd, self._format(level, msg).encode())
        elif level == "debug":
            sys.stderr.write(self._format(level, msg))

    def debug(self, msg: str) -> None:
        self.log("debug", msg)

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
