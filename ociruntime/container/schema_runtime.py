"""The runtime half of the generated schema validator (`_config_validator`, written by
schemas/generate.py): the pattern matchers and the combinators its one line per schema node
is built from. Hand-written and kept here once, so the generated module holds only the
schemas' own data, and a fix to a combinator is reviewed as code, not regenerated.

`create` validates config.json on every container start, and importing jsonschema alone
costs ~70 ms: ociruntime.container.validation runs the generated checks and imports
jsonschema only to word a rejection. So this module, on that path, imports nothing (`re`
only inside Lazy.search, for a pattern Seq cannot decide, and the generator makes Seq of
every pattern our schemas have).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Check = Callable[[object], bool]

__all__ = [
    "IN",
    "LITERAL",
    "MANY",
    "NOT_IN",
    "Lazy",
    "Seq",
    "all_of",
    "any_of",
    "anything",
    "array",
    "integer",
    "is_boolean",
    "is_null",
    "is_string",
    "object_",
    "string",
    "words",
]

NO_LIMIT = float("inf")
LITERAL, IN, NOT_IN = 0, 1, 2  # Seq step kinds
MANY = None  # no upper bound on a Seq step


class Seq:
    """A pattern without groups or alternatives, decided greedily (no backtracking, no re).

    Each step is (kind, chars, low, high): the string chars (LITERAL, low = high = 1), or
    low to high (MANY: no limit) characters IN or NOT_IN chars, as many as there are.
    start/end: the pattern begins with `^`/ends with `$` which, as in re, also matches
    before a final newline. search(s) is `re.search(pattern, s) is not None`, because
    schemas/generate.py builds a Seq only where greedy matching is exact.
    """

    __slots__ = ("pattern", "steps", "start", "end")

    def __init__(
        self,
        pattern: str,
        *steps: tuple[int, str, int, int | None],
        start: bool = False,
        end: bool = False,
    ) -> None:
        self.pattern = pattern
        self.steps = steps
        self.start = start
        self.end = end

    def __repr__(self) -> str:
        return f"Seq({self.pattern!r})"

    def search(self, s: str) -> bool:
        if self.start:
            return self.match(s, 0)
        for i in range(len(s) + 1):
            if self.match(s, i):
                return True
        return False

    def match(self, s: str, i: int) -> bool:
        """Whether the pattern (without its `^`) matches s at index i."""
        n = len(s)
        for kind, chars, low, high in self.steps:
            if kind == LITERAL:
                if not s.startswith(chars, i):
                    return False
                i += len(chars)
            elif high == 1:
                if i < n and (s[i] in chars) == (kind == IN):
                    i += 1
                elif low:
                    return False
            else:
                if kind == IN:
                    j = n - len(s[i:].lstrip(chars))
                else:  # up to the first excluded character
                    j = n
                    for c in chars:
                        k = s.find(c, i, j)
                        if k >= 0:
                            j = k
                if j - i < low:
                    return False
                i = j
        return not self.end or i == n or (i == n - 1 and s[i] == "\n")


class Lazy:
    """A pattern Seq cannot decide: compiled with re, imported on first use only."""

    __slots__ = ("pattern", "regex")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.regex = None

    def __repr__(self) -> str:
        return f"Lazy({self.pattern!r})"

    def search(self, s: str) -> bool:
        if self.regex is None:
            import re

            self.regex = re.compile(self.pattern)
        return self.regex.search(s) is not None


def anything(v: object) -> bool:
    return True


def is_string(v: object) -> bool:
    return isinstance(v, str)


def is_boolean(v: object) -> bool:
    return isinstance(v, bool)


def is_null(v: object) -> bool:
    return v is None


def string(
    pattern: Seq | Lazy | None = None, enum: set[str] | frozenset[str] | None = None
) -> Check:
    """A string, in enum if given, containing a match of pattern if given (re.search)."""

    def check(v: object) -> bool:
        if not isinstance(v, str) or (enum is not None and v not in enum):
            return False
        return pattern is None or pattern.search(v)

    return check


def integer(low: float = -NO_LIMIT, high: float = NO_LIMIT) -> Check:
    """A draft-04 integer: a JSON number without fraction, so not 1.0 and not a bool."""

    def check(v: object) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    return check


def array(items: Check = anything, min_items: int = 0) -> Check:
    def check(v: object) -> bool:
        if not isinstance(v, list) or len(v) < min_items:
            return False
        for x in v:
            if not items(x):
                return False
        return True

    return check


def object_(
    members: dict[str, Check] | None = None,
    required: tuple[str, ...] = (),
    patterns: tuple[tuple[Seq | Lazy, Check], ...] = (),
    extra: Check | None = anything,
) -> Check:
    """properties/required/patternProperties/additionalProperties (None: no extra members)."""
    members = members or {}
    if patterns or extra is not anything:
        return _object_general(members, required, patterns, extra)

    def check(v: object) -> bool:
        if not _has_all(v, required):
            return False
        for k, x in v.items():
            f = members.get(k)
            if f is not None and not f(x):
                return False
        return True

    return check


def _has_all(v: object, required: tuple[str, ...]) -> bool:
    """An object (a dict) with every required member."""
    if not isinstance(v, dict):
        return False
    for k in required:
        if k not in v:
            return False
    return True


def _object_general(
    members: dict[str, Check],
    required: tuple[str, ...],
    patterns: tuple[tuple[Seq | Lazy, Check], ...],
    extra: Check | None,
) -> Check:
    def check(v: object) -> bool:
        if not _has_all(v, required):
            return False
        for k, x in v.items():
            f = members.get(k)
            seen = f is not None
            if seen and not f(x):
                return False
            for pattern, g in patterns:
                if pattern.search(k):
                    seen = True
                    if not g(x):
                        return False
            if not seen and (extra is None or not extra(x)):
                return False
        return True

    return check


def words(text: str) -> frozenset[str]:
    """An enum of strings without whitespace, written as one text: the generated module
    keeps a long enum (seccomp's architectures, its actions) in a few lines of data."""
    return frozenset(text.split())


def any_of(*checks: Check) -> Check:
    def check(v: object) -> bool:
        return any(c(v) for c in checks)

    return check


def all_of(*checks: Check) -> Check:
    def check(v: object) -> bool:
        return all(c(v) for c in checks)

    return check
