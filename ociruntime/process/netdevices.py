"""`linux.netDevices`: host network interfaces moved into the container's network namespace.

What runtime-spec v1.3.0 (config-linux.md, "Network Devices") asks, and where it is done:

- Each key names an interface of the runtime's network namespace that MUST be made
  available in the container, under `name` if given (else under its host name). A `name`
  with a `%d` template lets the kernel pick a free number. A name already taken in the
  container's namespace is an error (without a template).
- Permanent addresses of global scope (IFA_F_PERMANENT, RT_SCOPE_UNIVERSE) of every family
  MUST be kept: the kernel drops every address of a device that changes namespace, so they
  are read before the move and added again after it. The device MUST then be set up.
- The runtime MUST NOT move a device out before deletion: when the container's namespace
  dies, the kernel returns physical devices to the initial namespace (under their container
  name) and destroys virtual ones (veth, macvlan...). So `delete` does nothing for them.

`create` calls `check` before it makes anything; builds a `Mover` right after the fork (the
pyroute2 import then overlaps the init's work) which looks the devices up on the host; and
calls `Mover.move` when the init says its network namespace exists: before any hook runs and
before the container is reported created. If `create` fails after that, `Mover.restore`
moves the devices back with their addresses and state: the container never existed, and a
virtual device would otherwise die with the namespace.

pyroute2 is imported here only, and only for a config with netDevices: importing any part of
it runs its package `__init__`, which loads all of pyroute2 (asyncio included), ~110 ms.
"""

from __future__ import annotations

import os

from ociruntime.errors import field_error, pointer
from ociruntime.kernel import constants as k
from ociruntime.kernel import syscalls as sc

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from pyroute2 import IPRoute
    from pyroute2.netlink import nlmsg

IFNAMSIZ = 16  # the kernel's buffer, NUL included: names have at most 15 bytes
#: Bytes the kernel's dev_valid_name refuses: '/', ':', NUL and its isspace() set.
_BAD_BYTES = frozenset(b"/:\0 \t\n\v\f\r\xa0")
IFF_UP = 0x1
IFA_F_PERMANENT = 0x80
RT_SCOPE_UNIVERSE = 0
#: Address flags that are settings (kept when an address is added again), as opposed to
#: states the kernel computes (secondary, tentative, dadfailed, deprecated, permanent).
_SETTABLE_IFA_FLAGS = 0x02 | 0x04 | 0x10 | 0x100 | 0x200 | 0x400 | 0x800


def _at(host_name: str, *rest: str) -> str:
    """/linux/netDevices/<host_name>[/...]: the entry a message is about."""
    return pointer("linux", "netDevices", host_name, *rest)


def target_name(host_name: str, entry: dict) -> str:
    """The name inside the container. An empty `name` counts as none, as in runc."""
    return entry.get("name") or host_name


def check(devices: dict, namespaces: dict[str, str | None]) -> None:
    """Everything decidable from config.json alone, before `create` makes anything."""
    first = next(iter(devices))
    if "network" not in namespaces:
        raise field_error(
            _at(first),
            "moving network devices needs a new network namespace"
            " (/linux/namespaces has no network entry)",
        )
    path = namespaces["network"]
    if path and _same_file(path, "/proc/self/ns/net"):
        raise field_error(
            _at(first),
            f"the network namespace {path} is the runtime's own:"
            " devices can only move into another one",
        )
    taken: dict[str, str] = {}
    for host_name, entry in devices.items():
        problem = name_problem(host_name, template=False)
        if problem:
            raise field_error(_at(host_name), f"{host_name!r} {problem}")
        name = target_name(host_name, entry)
        where = _at(host_name, "name") if entry.get("name") else _at(host_name)
        problem = name_problem(name, template=True)
        if problem:
            raise field_error(where, f"{name!r} {problem}")
        if "%" not in name:
            if name in taken:
                raise field_error(
                    where, f"{name!r} is also the container name of {_at(taken[name])}"
                )
            taken[name] = host_name


def name_problem(name: str, template: bool) -> str | None:
    """Why the kernel would refuse `name` as an interface name (dev_valid_name, and
    dev_alloc_name for a template), or None."""
    raw = name.encode()
    if not raw:
        return "is not an interface name: it is empty"
    if len(raw) >= IFNAMSIZ:
        return f"is not an interface name: longer than {IFNAMSIZ - 1} bytes"
    if name in (".", ".."):
        return "is not an interface name"
    if _BAD_BYTES.intersection(raw):
        return "is not an interface name: it contains '/', ':' or white space"
    if "%" in name:
        if not template:
            return "is not an interface name: it contains '%'"
        if name.count("%") != 1 or "%d" not in name:
            return "is not an interface name: '%' may only appear once, as the template %d"
    return None


def _same_file(a: str, b: str) -> bool:
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False  # joining the namespace reports a bad path
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


class _Device:
    """One entry, as found on the host, and where it went."""

    def __init__(self, host_name: str, target: str, link: dict, addresses: list[dict]) -> None:
        self.host_name, self.target = host_name, target
        self.index: int = link["index"]
        self.was_up = bool(link["flags"] & IFF_UP)
        self.mac = link.get("address")
        self.addresses = addresses
        self.moved_as: tuple[int, str] | None = None  # (ifindex, name) in the container


class Mover:
    """Moves the configured devices into the init's network namespace, and back on failure."""

    def __init__(self, devices: dict) -> None:
        from pyroute2 import IPRoute  # heavy: netDevices configs only

        self._iproute = IPRoute
        self.host = IPRoute()
        self.container: IPRoute | None = None
        self.host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.devices = [self._look_up(name, entry) for name, entry in devices.items()]
        except BaseException:
            self.close()
            raise

    def _look_up(self, host_name: str, entry: dict) -> _Device:
        found = self.host.link_lookup(ifname=host_name)
        if not found:
            raise field_error(_at(host_name), "no network interface of that name")
        link = _link_info(self.host.get_links(found[0])[0])
        addresses = [_address_info(a) for a in self.host.get_addr(index=link["index"]) if _kept(a)]
        return _Device(host_name, target_name(host_name, entry), link, addresses)

    def move(self, init_pid: int) -> None:
        """Into the namespace of `init_pid`, renamed, with their addresses, set up."""
        netns = os.open(f"/proc/{init_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.container = self._iproute_in(netns)
            names = {link["ifname"] for link in map(_link_info, self.container.get_links())}
            for dev in self.devices:
                self._move_one(dev, netns, names)
                names.add(dev.moved_as[1])
        finally:
            os.close(netns)

    def _iproute_in(self, netns: int) -> IPRoute:
        """A netlink socket of the container's namespace: made while this thread is in it
        (a socket stays in the namespace it was made in), then straight back."""
        sc.setns(netns, k.CLONE_NEWNET)
        try:
            return self._iproute()
        finally:
            sc.setns(self.host_ns, k.CLONE_NEWNET)

    def _move_one(self, dev: _Device, netns: int, names: set[str]) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        if "%" not in dev.target and dev.target in names:
            raise field_error(
                _at(dev.host_name),
                f"the container's network namespace already has an interface named {dev.target!r}",
            )
        try:
            self.host.link("set", index=dev.index, net_ns_fd=netns, ifname=dev.target)
        except NetlinkError as e:
            # The kernel may move the device and then fail to rename it: find it to restore.
            self._find_moved(dev, names, dev.host_name)
            raise field_error(
                _at(dev.host_name), f"moving it into the container: {os.strerror(e.code)}"
            ) from None
        self._find_moved(dev, names, dev.target)
        if dev.moved_as is None:
            raise field_error(_at(dev.host_name), "moved, but not found in the container")
        index, name = dev.moved_as
        try:
            _add_addresses(self.container, index, dev.addresses, dev.host_name, name)
            self.container.link("set", index=index, state="up")
        except NetlinkError as e:
            raise field_error(
                _at(dev.host_name),
                f"configuring it as {name!r} in the container: {os.strerror(e.code)}",
            ) from None

    def _find_moved(self, dev: _Device, names_before: set[str], expected: str) -> None:
        """Where `dev` is in the container now, if there: by name, or for a %d template
        the new interface with its MAC address (its ifindex when several match)."""
        links = [_link_info(m) for m in self.container.get_links()]
        if "%" in expected:
            candidates = [
                link for link in links if link["ifname"] not in names_before
                and link.get("address") == dev.mac
            ]  # fmt: skip
            candidates.sort(key=lambda link: link["index"] != dev.index)
        else:
            candidates = [link for link in links if link["ifname"] == expected]
        if candidates and candidates[0]["ifname"] not in names_before:
            dev.moved_as = candidates[0]["index"], candidates[0]["ifname"]

    def restore(self) -> None:
        """`create` failed: every moved device goes back under its host name, with its
        addresses and up/down state. Best effort: one failure does not stop the others."""
        from ociruntime.log import LOG

        for dev in reversed([d for d in self.devices if d.moved_as is not None]):
            index, name = dev.moved_as
            try:
                self.container.link(
                    "set", index=index, net_ns_fd=self.host_ns, ifname=dev.host_name
                )
                dev.moved_as = None
                self._reconfigure_on_host(dev)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                LOG.warning(
                    str(field_error(_at(dev.host_name), f"moving {name!r} back to the host: {e}"))
                )
        self.close()

    def _reconfigure_on_host(self, dev: _Device) -> None:
        found = self.host.link_lookup(ifname=dev.host_name)
        if not found:
            return
        _add_addresses(self.host, found[0], dev.addresses, dev.host_name, dev.host_name)
        if dev.was_up:
            self.host.link("set", index=found[0], state="up")

    def close(self) -> None:
        """Done (created, or restored): let go of the sockets and the namespace."""
        for ipr in (self.container, self.host):
            if ipr is not None:
                try:
                    ipr.close()
                except OSError:
                    pass
        self.container = None
        if self.host_ns >= 0:
            os.close(self.host_ns)
            self.host_ns = -1
        self.devices = []


def _link_info(msg: nlmsg) -> dict:
    """The parts of an RTM_NEWLINK message used here."""
    return {
        "index": msg["index"],
        "flags": msg["flags"],
        "ifname": msg.get_attr("IFLA_IFNAME"),
        "address": msg.get_attr("IFLA_ADDRESS"),
    }


def _kept(msg: nlmsg) -> bool:
    """The addresses the spec says survive the move: permanent, of global scope."""
    flags = msg.get_attr("IFA_FLAGS")
    if flags is None:
        flags = msg["flags"]
    return bool(flags & IFA_F_PERMANENT) and msg["scope"] == RT_SCOPE_UNIVERSE


def _address_info(msg: nlmsg) -> dict:
    """What it takes to add the address again (lifetimes are infinite: it is permanent)."""
    info = {"family": msg["family"], "prefixlen": msg["prefixlen"]}
    for key in ("address", "local", "broadcast", "anycast", "label", "rt_priority", "proto"):
        value = msg.get_attr("IFA_" + key.upper())
        if value is not None:
            info[key] = value
    flags = msg.get_attr("IFA_FLAGS") or 0
    if flags & _SETTABLE_IFA_FLAGS:
        info["flags"] = flags & _SETTABLE_IFA_FLAGS
    return info


def _add_addresses(ipr: IPRoute, index: int, addresses: list[dict], old: str, new: str) -> None:
    for info in addresses:
        info = dict(info)
        label = info.pop("label", old)
        if label != old and label.startswith(old):  # an alias, "eth0:1": keep its suffix
            alias = new + label[len(old) :]
            if len(alias.encode()) < IFNAMSIZ:
                info["label"] = alias
        ipr.addr("add", index=index, **info)  # no label: the kernel uses the device's name
