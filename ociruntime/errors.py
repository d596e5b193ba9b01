"""The one exception type commands raise to fail with a clear, one-line message."""

from __future__ import annotations


class RuntimeFailure(Exception):
    """A user-visible failure: the CLI prints `str(self)` as one line and exits `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code
