"""The kernel's CPU (and memory node) list format, "0-3,7", parsed once for everyone:
cpuset files in `events --stats`, CPU affinity in process settings."""

from __future__ import annotations


def parse_cpu_list(text: str) -> list[int]:
    """The numbers of a list such as "0-3, 7" (spaces around parts allowed), in order.

    Raises ValueError with a message naming the bad list or range, which callers put
    after the field they parsed; an empty text is an invalid list (a cpuset file that
    is empty means "none": check before calling)."""
    out: list[int] = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        try:
            lo = int(first)
            hi = int(last) if dash else lo
        except ValueError:
            raise ValueError(f"invalid CPU list {text!r}") from None
        if lo < 0 or hi < lo:
            raise ValueError(f"invalid CPU range {part.strip()!r} in {text!r}")
        out.extend(range(lo, hi + 1))
    return out
