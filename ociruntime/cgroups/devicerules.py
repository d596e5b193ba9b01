"""Device rules as runc 1.1.5 reads and writes them: access strings, and cgroup v1's
devices controller modelled so that only the rules that change are written.

runc reads an access string for the letters r, w and m it holds (each once, in that
order: "rwa" is "rw", "mw" is "wm", other letters are ignored), refuses an empty one, and
refuses a rule that would leave an allowed device with no access at all ("x", "a"). On
v1 it does not write "deny everything, then every rule": it reads devices.list (what the
cgroup allows now), computes the writes that take it to the target (its devices
emulator's transition), writes only those and reads devices.list back. So a cgroup that
already allows what the container needs (one that existed before `create`) is never,
even for an instant, left denying a device its processes use; the same model refuses
what v1 cannot do (a deny that punches a hole in an allowed wildcard, which the kernel
would silently ignore).

Pure (no kernel access here): `cgroupfs.apply_device_rules` reads and writes the files.
On the create path: imports nothing.
"""

from __future__ import annotations

PERMS = "rwm"
#: The words runc's devices controller fails with after its writes (engines match them).
NOT_PRECISE = "resulting devices cgroup doesn't precisely match target"
NOT_MODE = "resulting devices cgroup doesn't match target mode"


class RuleError(Exception):
    """A rule runc's emulator refuses; the caller names the field."""


def access(text: str) -> str:
    """runc's reading of an access string: its r, w, m, each once, in that order."""
    return "".join(c for c in PERMS if c in text)


def key_of(rule: str) -> tuple[str, str, str]:
    """("c", "1", "3") of "c 1:3 rw"."""
    kind, _, rest = rule.partition(" ")
    major, _, minor = rest.partition(" ")[0].partition(":")
    return kind, major, minor


def _wider(key: tuple[str, str, str]) -> list[tuple[str, str, str]]:
    """The wildcard exceptions that also match `key`'s device (itself excluded)."""
    kind, major, minor = key
    return [w for w in ((kind, "*", minor), (kind, major, "*"), (kind, "*", "*")) if w != key]


def _minus(perms: str, other: str) -> str:
    return "".join(c for c in perms if c not in other)


def _text(key: tuple[str, str, str], perms: str) -> str:
    return f"{key[0]} {key[1]}:{key[2]} {perms}"


class Emulator:
    """What a v1 devices cgroup allows: a default (allow or deny every device) and the
    exceptions to it, device (type, major, minor; "*" for any) -> access letters."""

    __slots__ = ("default_allow", "rules")

    def __init__(self) -> None:
        self.default_allow = False  # a fresh emulator: deny everything, no exception
        self.rules: dict[tuple[str, str, str], str] = {}

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Emulator)
            and self.default_allow == other.default_allow
            and self.rules == other.rules
        )

    @classmethod
    def from_list(cls, text: str) -> Emulator:
        """From devices.list, which lists what is allowed: "a *:* rwm" alone for a cgroup
        that allows everything (its deny exceptions are not shown)."""
        e = cls()
        for line in text.splitlines():
            if line.strip():
                e.apply(True, line.strip())
        return e

    def apply(self, allow: bool, rule: str) -> None:
        """One write of `rule` ("c 1:3 rw") to devices.allow (`allow`) or devices.deny,
        as the kernel applies it: type "a" resets the default, whatever follows."""
        key, perms = key_of(rule), rule.partition(" ")[2].partition(" ")[2]
        if key[0] == "a":
            self.default_allow, self.rules = allow, {}
            return
        if allow == self.default_allow:
            self._remove(key, access(perms))
        else:
            self.rules[key] = access(self.rules.get(key, "") + perms)

    def _remove(self, key: tuple[str, str, str], perms: str) -> None:
        """Take `perms` off the exception for exactly `key`. v1 ignores a removal that a
        wider exception still grants; runc refuses it rather than pretend."""
        for wider in _wider(key):
            if set(self.rules.get(wider, "")) & set(perms):
                kind = "deny" if self.default_allow else "allow"
                raise RuleError(
                    f"unable to remove '{kind}' exception: not supported by devices cgroupv1 "
                    "(cannot punch hole in existing wildcard rule "
                    f"{_text(wider, self.rules[wider])})"
                )
        left = _minus(self.rules.get(key, ""), perms)
        if left:
            self.rules[key] = left
        else:
            self.rules.pop(key, None)

    def spared(self, rule: str) -> str | None:
        """A deny `rule` less the access wider allowed exceptions grant (v1 cannot take
        it from one device): the rule to write, or None if nothing is left."""
        key = key_of(rule)
        if self.default_allow:
            return rule
        wide = "".join(self.rules.get(w, "") for w in _wider(key))
        perms = _minus(access(rule.rsplit(" ", 1)[-1]), wide)
        return _text(key, perms) if perms else None

    def transition(self, target: Emulator) -> list[tuple[bool, str]]:
        """The writes, (to devices.allow?, rule), that take this cgroup to `target`: a
        reset only when the default changes or this cgroup allows everything (its deny
        exceptions cannot be read), then the access each exception loses, then what each
        gains. None when nothing changes."""
        writes: list[tuple[bool, str]] = []
        old = self.rules
        if self.default_allow or self.default_allow != target.default_allow:
            writes.append((target.default_allow, "a *:* rwm"))
            old = {}
        for key in sorted(old):
            dropped = _minus(old[key], target.rules.get(key, ""))
            if dropped:
                writes.append((target.default_allow, _text(key, dropped)))
        for key in sorted(target.rules):
            gained = _minus(target.rules[key], old.get(key, ""))
            if gained:
                writes.append((not target.default_allow, _text(key, gained)))
        return writes

    def mismatch(self, target: Emulator) -> str | None:
        """runc's check after the writes (self: devices.list read back): None if this is
        the target; a deny-by-default cgroup must match exactly, an allow-by-default one
        (whose deny exceptions cannot be read) its default."""
        if not target.default_allow and self != target:
            return NOT_PRECISE
        if target.default_allow != self.default_allow:
            return NOT_MODE
        return None
