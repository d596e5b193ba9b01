"""Pure translation of OCI ``mounts[].options`` into what mount(2)/mount_setattr(2) take.

Kept free of syscalls so the rules (which option sets or clears which bit, which words are
filesystem data, what wins when options conflict) can be unit-tested on their own; the
code that actually mounts consumes a :class:`MountOptions`.

Semantics, chosen to match runc where runc is well-defined:

* Plain flags (``ro``/``rw``, ``nosuid``/``suid``, ...) each set or clear one ``MS_*`` bit,
  applied left to right, so the last of a conflicting pair wins per bit.  Different atime
  words are *not* made mutually exclusive here (runc does not either): ``noatime`` plus
  ``strictatime`` both reach the kernel, whose own precedence then decides.
* Propagation words are collected in order, never merged into ``flags``; each needs its
  own mount(2) call.
* Recursive words (``rro``, ``rnosuid``, ...) become one ``(attr_set, attr_clr)`` pair for
  mount_setattr(2) with ``AT_RECURSIVE``; a later word of a pair undoes an earlier one.
  The recursive atime words form an enum (the kernel rejects a partially cleared
  ``MOUNT_ATTR__ATIME`` with EINVAL), see :func:`_next_atime`.
* Anything unknown is filesystem data (``mode=755``, ``size=65536k``, ``newinstance``...),
  passed through in order.
"""

from __future__ import annotations

# mount(2) flags and mount_setattr(2) attributes: defined in the kernel layer.
from ociruntime.kernel.constants import (  # noqa: F401 - re-exported for callers of this module
    MOUNT_ATTR__ATIME,
    MOUNT_ATTR_IDMAP,
    MOUNT_ATTR_NOATIME,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NODIRATIME,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_NOSYMFOLLOW,
    MOUNT_ATTR_RDONLY,
    MOUNT_ATTR_RELATIME,
    MOUNT_ATTR_STRICTATIME,
    MS_BIND,
    MS_DIRSYNC,
    MS_I_VERSION,
    MS_LAZYTIME,
    MS_MANDLOCK,
    MS_MOVE,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_NOSYMFOLLOW,
    MS_POSIXACL,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    MS_SHARED,
    MS_SILENT,
    MS_SLAVE,
    MS_STRICTATIME,
    MS_SYNCHRONOUS,
    MS_UNBINDABLE,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Iterable


#: option -> (clears?, MS_* bit).  ``defaults`` is accepted and does nothing.
_FLAG_OPTIONS: dict[str, tuple[bool, int]] = {
    "acl": (False, MS_POSIXACL),
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noacl": (True, MS_POSIXACL),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "symfollow": (True, MS_NOSYMFOLLOW),
    "sync": (False, MS_SYNCHRONOUS),
}

_PROPAGATION_OPTIONS: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

#: Recursive on/off attributes: option -> (clears?, MOUNT_ATTR_* bit).
_RECURSIVE_BIT_OPTIONS: dict[str, tuple[bool, int]] = {
    word: (clears, bit)
    for sets_it, clears_it, bit in (
        ("rro", "rrw", MOUNT_ATTR_RDONLY),
        ("rnosuid", "rsuid", MOUNT_ATTR_NOSUID),
        ("rnodev", "rdev", MOUNT_ATTR_NODEV),
        ("rnoexec", "rexec", MOUNT_ATTR_NOEXEC),
        ("rnodiratime", "rdiratime", MOUNT_ATTR_NODIRATIME),
        ("rnosymfollow", "rsymfollow", MOUNT_ATTR_NOSYMFOLLOW),
    )
    for word, clears in ((sets_it, False), (clears_it, True))
}

#: Recursive atime words: the mode they select outright.
_RECURSIVE_ATIME_MODES: dict[str, int] = {
    "rrelatime": MOUNT_ATTR_RELATIME,
    "rnoatime": MOUNT_ATTR_NOATIME,
    "rstrictatime": MOUNT_ATTR_STRICTATIME,
}

#: Recursive "not that mode" words: (mode they cancel, mode they fall back to).
_RECURSIVE_ATIME_NEGATIONS: dict[str, tuple[int, int]] = {
    "ratime": (MOUNT_ATTR_NOATIME, MOUNT_ATTR_RELATIME),
    "rnostrictatime": (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_RELATIME),
    "rnorelatime": (MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME),
}

#: Options that are neither flags nor fs data: OCI idmapped mounts and runc's tmpcopyup.
_SPECIAL_OPTIONS = ("idmap", "ridmap", "tmpcopyup")

#: Every option name understood (the ``features`` command reports it as ``mountOptions``).
SUPPORTED_OPTIONS: tuple[str, ...] = tuple(
    sorted(
        {
            *_FLAG_OPTIONS,
            *_PROPAGATION_OPTIONS,
            *_RECURSIVE_BIT_OPTIONS,
            *_RECURSIVE_ATIME_MODES,
            *_RECURSIVE_ATIME_NEGATIONS,
            *_SPECIAL_OPTIONS,
        }
    )
)


class MountOptions:
    """The parsed form of one mount's ``options`` (immutable, compared by value).

    ``flags``: MS_* bits for mount(2) (includes MS_BIND/MS_REC for bind/rbind and
    MS_REMOUNT for remount, never propagation).  ``clear_flags``: MS_* bits the options
    explicitly turned off (``rw``, ``suid``, ``dev``, ``exec``, ``atime``...), so remount
    logic knows which inherited flags the user rejected and which it may keep.
    ``propagation``: MS_* propagation values in the order given, one mount(2) call each.
    ``recursive_attrs``: ``(attr_set, attr_clr)`` for mount_setattr(2) with AT_RECURSIVE,
    ``(0, 0)`` when no recursive option was given.  ``data``: the filesystem-specific rest.
    A plain class: `dataclasses` (~6 ms) and even `collections` (~2 ms) cost too much to
    import on the hot path.
    """

    FIELDS = (
        "flags", "clear_flags", "propagation", "recursive_attrs", "data", "is_bind",
        "is_recursive_bind", "idmap", "ridmap", "tmpcopyup",
    )  # fmt: skip
    __slots__ = FIELDS

    def __init__(
        self,
        flags: int = 0,
        clear_flags: int = 0,
        propagation: tuple[int, ...] = (),
        recursive_attrs: tuple[int, int] = (0, 0),
        data: str = "",
        is_bind: bool = False,
        is_recursive_bind: bool = False,
        idmap: bool = False,
        ridmap: bool = False,
        tmpcopyup: bool = False,
    ) -> None:
        values = (flags, clear_flags, propagation, recursive_attrs, data, is_bind,
                  is_recursive_bind, idmap, ridmap, tmpcopyup)  # fmt: skip
        for name, value in zip(self.FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("MountOptions is immutable")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MountOptions) and self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.FIELDS)
        return f"MountOptions({args})"

    @property
    def has_recursive_attrs(self) -> bool:
        """Whether a mount_setattr(2) call is needed at all."""
        return self.recursive_attrs != (0, 0)

    @property
    def idmapped(self) -> bool:
        """Whether the mount must be id-mapped (``idmap`` or its recursive form)."""
        return self.idmap or self.ridmap


class _Accumulator:
    """Mutable state while walking the option list; frozen into MountOptions at the end."""

    def __init__(self) -> None:
        self.flags = 0
        self.clear_flags = 0
        self.propagation: list[int] = []
        self.attr_set = 0
        self.attr_clr = 0
        self.atime: int | None = None
        self.data: list[str] = []
        self.special: set[str] = set()

    def flag(self, clear: bool, bit: int) -> None:
        """Set or clear one MS_* bit; the latest word about a bit decides."""
        if clear:
            self.flags &= ~bit
            self.clear_flags |= bit
        else:
            self.flags |= bit
            self.clear_flags &= ~bit

    def recursive_bit(self, clear: bool, bit: int) -> None:
        """Set or clear one MOUNT_ATTR_* bit, undoing an earlier opposite word.

        (runc 1.1.5 instead keeps both, so ``rro,rrw`` ends read-only there: the kernel
        applies attr_clr before attr_set.  Last-wins is what a user reading the list means.)
        """
        if clear:
            self.attr_set &= ~bit
            self.attr_clr |= bit
        else:
            self.attr_clr &= ~bit
            self.attr_set |= bit

    def build(self) -> MountOptions:
        attr_set, attr_clr = self.attr_set, self.attr_clr
        if self.atime is not None:
            attr_set |= self.atime
            attr_clr |= MOUNT_ATTR__ATIME
        return MountOptions(
            flags=self.flags,
            clear_flags=self.clear_flags,
            propagation=tuple(self.propagation),
            recursive_attrs=(attr_set, attr_clr),
            data=",".join(self.data),
            is_bind=bool(self.flags & MS_BIND),
            is_recursive_bind=self.flags & (MS_BIND | MS_REC) == MS_BIND | MS_REC,
            idmap="idmap" in self.special,
            ridmap="ridmap" in self.special,
            tmpcopyup="tmpcopyup" in self.special,
        )


def _next_atime(current: int | None, option: str) -> int:
    """The recursive atime mode after ``option``.

    mount_setattr(2) can only replace the whole atime field, so every atime word yields a
    full mode.  A negation cancels its own mode and leaves any other chosen mode alone;
    with nothing chosen yet it picks the nearest mode that satisfies it: ``ratime`` and
    ``rnostrictatime`` fall back to the kernel default relatime (as runc >= 1.4.1 does;
    1.1.5 sent a partial attr_clr and got EINVAL), and ``rnorelatime`` to strictatime
    (the only other mode that still updates atime, as runc does for a lone ``norelatime``
    on bind mounts).
    """
    if option in _RECURSIVE_ATIME_MODES:
        return _RECURSIVE_ATIME_MODES[option]
    cancelled, fallback = _RECURSIVE_ATIME_NEGATIONS[option]
    if current is None or current == cancelled:
        return fallback
    return current


def _apply(acc: _Accumulator, option: str) -> None:
    """Route one option word to the bucket it belongs to."""
    if option in _FLAG_OPTIONS:
        acc.flag(*_FLAG_OPTIONS[option])
    elif option in _PROPAGATION_OPTIONS:
        acc.propagation.append(_PROPAGATION_OPTIONS[option])
    elif option in _RECURSIVE_BIT_OPTIONS:
        acc.recursive_bit(*_RECURSIVE_BIT_OPTIONS[option])
    elif option in _RECURSIVE_ATIME_MODES or option in _RECURSIVE_ATIME_NEGATIONS:
        acc.atime = _next_atime(acc.atime, option)
    elif option in _SPECIAL_OPTIONS:
        acc.special.add(option)
    elif option:
        # Empty words are dropped: they would only put stray commas into the data string.
        acc.data.append(option)


def parse_mount_options(options: Iterable[str] | None) -> MountOptions:
    """Translate an OCI ``mounts[].options`` list (``None`` means no options)."""
    acc = _Accumulator()
    for option in options or ():
        _apply(acc, option)
    return acc.build()


def is_supported(option: str) -> bool:
    """Whether ``option`` is a recognised word rather than filesystem data."""
    return option in _SUPPORTED_SET


_SUPPORTED_SET = frozenset(SUPPORTED_OPTIONS)
