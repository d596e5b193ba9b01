"""Signal names as runc accepts them: KILL, SIGKILL, kill, or a number."""

from __future__ import annotations

import signal

from ociruntime.errors import RuntimeFailure


def parse_signal(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
        raise RuntimeFailure("unable to signal init: invalid argument")
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise RuntimeFailure(f'unknown signal "{text}"') from None
